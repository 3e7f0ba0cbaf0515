"""Seeding and generator states, device choice, the NaN guard, library versions, Ctrl-C, subnormals.

Library code never picks a device: it follows its inputs. Only entry points call
:func:`resolve_device` on the user's ``--device`` string.
"""

from __future__ import annotations

import importlib.metadata
import numbers
import platform
import random
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaecore.errors import InputDataError, NonFiniteLossError, integer_at_least

_VERSIONED = ("torch", "numpy", "pandas", "scikit-learn", "botorch", "gpytorch", "rdkit",
              "torch-geometric", "selfies", "safetensors", "vaelab")


def check_seed(seed: int) -> int:
    """``seed`` as an ``int`` if it is an integer in `[0, 2**64)` (numpy ints are fine).

    torch's generators hold 64 bits; they take -1 without a word (and 2.5 through
    ``torch.manual_seed``), which numpy's refuse.

    Raises:
        InputDataError: Naming the seed otherwise.
    """
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise InputDataError(f"seed must be a non-negative integer below 2**64, got {seed!r}")
    return int(seed)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a seeded CPU generator.

    Raises:
        InputDataError: If ``seed`` is not an integer in `[0, 2**64)` (see :func:`check_seed`).
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state() -> dict[str, Tensor]:
    """The global generators' states, for a resumable checkpoint.

    ``torch_rng``: the CPU generator's. ``cuda_rng`` `[n_devices, k]`, only where CUDA is in
    use: on a GPU the reparameterization noise, dropout and on-device shuffles draw from
    the CUDA generators, which :func:`seed_everything` seeds afresh on every resume.
    """
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(payload: Mapping[str, Any]) -> None:
    """Set the generators from what :func:`rng_state` stored in ``payload`` (keys it lacks are skipped).

    The states are moved to the CPU first: a checkpoint loaded onto the GPU moves them
    there, and ``torch.set_rng_state`` takes CPU byte tensors only (a resume on a GPU
    ended in "TypeError: RNG state must be a torch.ByteTensor"). CUDA states are restored
    for the devices present in both runs; a GPU run resumed on the CPU ignores them.
    """
    if isinstance(payload.get("torch_rng"), Tensor):
        torch.set_rng_state(payload["torch_rng"].cpu())
    cuda = payload.get("cuda_rng")
    if isinstance(cuda, Tensor) and torch.cuda.is_available():
        for index, state in enumerate(cuda.cpu()[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device=index)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, then MPS, then CPU; otherwise ``torch.device(spec)``.

    Raises:
        InputDataError: If the string is not a device, or names one that is absent
            (including a CUDA index beyond the devices present); the message names it.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputDataError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputDataError(f"device {spec!r} was asked for but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputDataError(f"device {spec!r} was asked for but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputDataError(f"device {spec!r} was asked for but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        # Other types torch names (xpu, hpu, xla, meta, ...) work where a plugin provides
        # them; elsewhere a run ended in torch's traceback at its first tensor ("PyTorch is
        # not linked with support for xla devices"), or at its first read from meta's.
        try:
            torch.zeros(1, device=device).cpu()
        except (RuntimeError, NotImplementedError) as err:  # torch's words: a table of its backends
            raise InputDataError(f"device {spec!r} is not usable here (torch cannot make and read a tensor on it); "
                                 "use auto, cpu, cuda, cuda:N or mps") from err
    return device


# The command line's --threads help: on a machine whose cores other jobs use too, torch's
# default (one thread a core) oversubscribes them (README: over 100x slower at 2 threads with
# one of 2 cores busy).
THREADS_HELP = "torch CPU threads (default: torch's choice; fewer than the cores where other jobs run beside)"


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` once ``threads`` is checked; ``None`` keeps torch's choice.

    Raises:
        InputDataError: ``threads`` is not an integer >= 1 (torch's own error for 0 is a
            ``RuntimeError``, and a script's ``if threads:`` ignored 0 silently).
    """
    if threads is not None:
        torch.set_num_threads(integer_at_least("threads", threads, 1))


def check_finite(loss: Tensor | float, step: int) -> None:
    """Stop training with an error naming the step if ``loss`` is NaN or infinite.

    This syncs with the device, so call it at logging intervals, not every step, on GPU.

    Args:
        loss: The loss (any shape) or a python float.
        step: The optimisation step, named in the error.

    Raises:
        NonFiniteLossError: If any element of ``loss`` is NaN or +-inf.
    """
    loss = torch.as_tensor(loss).detach()
    if not torch.isfinite(loss).all():
        shown = loss.cpu().tolist() if loss.numel() <= 8 else f"{(~torch.isfinite(loss)).sum().item()} non-finite values"
        raise NonFiniteLossError(f"non-finite loss ({shown}) at step {step}")


def library_versions() -> dict[str, str]:
    """Versions of python and the libraries a run depends on (``absent`` if missing)."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    versions["cuda"] = torch.version.cuda or "none"
    return versions


_FLUSH_DEPTH = 0  # nesting depth of flush_denormals(); torch has no getter for the flag


@contextmanager
def flush_denormals() -> Iterator[bool]:
    """Flush subnormal floats to zero on the CPU for the duration of the block.

    Trained models drift into subnormal numbers: a Bernoulli decoder's logits for
    pixels that are always black fall below about -87, where sigmoid and its
    gradient become subnormal, and Adam's moment estimates follow. x86 CPUs handle
    subnormals through a slow microcode path; on MNIST a trained M2 step took 2.7x
    as long without flushing as with it (``bench/fewlabel.py --step-timing
    --weights RUN_DIR``). Flushing them changes values only below
    about ``1e-38`` in float32, far under anything a loss or a gradient resolves.
    CUDA kernels are unaffected (they flush or not by their own compile flags).

    Nested blocks keep flushing on until the outermost one exits, which restores
    the default, no flushing (torch cannot report the setting, so flushing turned on
    by the caller before the block is turned off too).

    Yields:
        Whether this CPU supports flushing (``torch.set_flush_denormal``'s answer);
        when ``False`` the block runs unchanged.
    """
    global _FLUSH_DEPTH
    supported = torch.set_flush_denormal(True)
    _FLUSH_DEPTH += 1
    try:
        yield supported
    finally:
        _FLUSH_DEPTH -= 1
        if _FLUSH_DEPTH == 0:
            torch.set_flush_denormal(False)


class Interrupted(Exception):
    """Raised inside :func:`interruptible` blocks after Ctrl-C, at a safe point."""


@contextmanager
def interruptible() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C or SIGTERM into a flag the training loop polls between steps.

    Yields a dict whose ``"stop"`` entry becomes ``True`` on SIGINT or SIGTERM; loops
    check it, write a checkpoint and exit cleanly. SIGTERM is what ``kill``, batch
    schedulers (a job's time limit, preemption) and container runtimes send before they
    kill: it ended a run at once, losing the work since its last checkpoint (up to an
    epoch). A second signal interrupts immediately.
    """
    state = {"stop": False}
    caught = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in caught}

    def handler(signum, frame):  # noqa: ANN001 - signal handler signature
        if state["stop"]:
            for each, before in previous.items():
                signal.signal(each, before)
            raise KeyboardInterrupt
        state["stop"] = True

    try:
        for signum in caught:
            signal.signal(signum, handler)
    except ValueError:  # not the main thread: no handler, plain KeyboardInterrupt semantics
        yield state
        return
    try:
        yield state
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)

"""Seeding, device choice, the NaN guard, versions, Ctrl-C handling and subnormal flushing."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import torch

from vaecore.errors import InputDataError, NonFiniteLossError
from vaecore.runtime import (
    check_finite,
    flush_denormals,
    interruptible,
    library_versions,
    resolve_device,
    restore_rng_state,
    rng_state,
    seed_everything,
    set_threads,
)


def _draw(generator: torch.Generator) -> tuple:
    return (
        random.random(),
        np.random.rand(),
        torch.rand(3).tolist(),
        torch.randn(2, generator=generator).tolist(),
    )


def test_seed_everything_is_reproducible() -> None:
    first = _draw(seed_everything(123))
    second = _draw(seed_everything(123))
    other = _draw(seed_everything(124))
    assert first == second
    assert all(a != b for a, b in zip(first, other))
    assert _draw(seed_everything(np.int64(123))) == first  # numpy ints are seeds too
    assert _draw(seed_everything(2**40)) is not None  # beyond numpy's 32-bit range


def test_rng_state_round_trips_through_a_checkpoint(tmp_path) -> None:
    from vaecore.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(5)
    save_checkpoint(tmp_path / "c.safetensors", {"step": 1, **rng_state()}, {"kind": "test"})
    expected = torch.rand(4)
    torch.rand(7)  # the generator moves on, as a run does after its checkpoint
    payload = load_checkpoint(tmp_path / "c.safetensors", expected_config={"kind": "test"}).payload
    restore_rng_state(payload)
    assert torch.equal(torch.rand(4), expected)
    if not torch.cuda.is_initialized():  # CUDA's states are stored only where CUDA is in use
        assert set(rng_state()) == {"torch_rng"}


def test_restore_rng_state_skips_what_is_not_stored() -> None:
    torch.manual_seed(6)
    expected = torch.rand(3)
    torch.manual_seed(6)
    restore_rng_state({"step": 1})  # a checkpoint from before the states were stored
    restore_rng_state({"cuda_rng": torch.zeros(1, 16, dtype=torch.uint8)} if not torch.cuda.is_available() else {})
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None, 2**64])  # 2**64: torch's "Overflow when unpacking long long"
def test_bad_seed_is_named(bad: object) -> None:
    with pytest.raises(InputDataError, match=repr(bad).replace(".", r"\.")):
        seed_everything(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_thread_counts_are_named_and_change_nothing(bad: object) -> None:
    before = torch.get_num_threads()
    with pytest.raises(InputDataError, match=f"threads must be an integer >= 1, got {bad!r}"):
        set_threads(bad)  # type: ignore[arg-type]
    assert torch.get_num_threads() == before


def test_set_threads_sets_them_and_none_keeps_them() -> None:
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_resolve_device() -> None:
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert resolve_device() == auto
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu0", "cuda:x", "", "tpu"])
def test_bad_device_string_is_named(bad: str) -> None:
    with pytest.raises(InputDataError, match=f"'{bad}'"):
        resolve_device(bad)


@pytest.mark.parametrize("kind", ["meta", "xla"])
def test_a_device_type_that_cannot_run_here_is_named(kind: str) -> None:
    # torch accepts the names; a run ended in a traceback at its first tensor (xla: "PyTorch
    # is not linked with support for xla devices") or its first read (meta, which holds no data).
    with pytest.raises(InputDataError, match=f"device '{kind}' is not usable here"):
        resolve_device(kind)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_absent_cuda_is_named() -> None:
    with pytest.raises(InputDataError, match="'cuda:1'.*CUDA is not available"):
        resolve_device("cuda:1")


def test_check_finite_names_the_step() -> None:
    check_finite(torch.tensor(1.5), step=3)
    check_finite(2.0, step=3)
    check_finite(torch.ones(4), step=3)
    for bad in (torch.tensor(float("nan")), torch.tensor([1.0, float("inf")]), float("-inf")):
        with pytest.raises(NonFiniteLossError, match="at step 41"):
            check_finite(bad, step=41)
    with pytest.raises(FloatingPointError, match="3 non-finite values"):  # long tensors summarised
        check_finite(torch.tensor([float("nan")] * 3 + [0.0] * 20), step=1)


def test_library_versions() -> None:
    versions = library_versions()
    assert versions["torch"] == torch.__version__
    assert versions["numpy"] == np.__version__
    assert {"python", "platform", "cuda", "safetensors", "vaelab"} <= set(versions)


def _outside(signum: int, frame: object) -> None:
    raise AssertionError(f"signal {signum} reached the handler from outside interruptible()")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interruptible_turns_the_first_ctrl_c_or_sigterm_into_a_flag(signum: signal.Signals) -> None:
    # SIGTERM (kill, a batch scheduler's time limit or preemption) ended a run at once,
    # losing the work since its last checkpoint. Handlers of the test's own stand outside,
    # so that a signal let through fails the test instead of ending pytest.
    before = {each: signal.signal(each, _outside) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        with interruptible() as state:
            assert state["stop"] is False
            signal.raise_signal(signum)  # no KeyboardInterrupt: just the flag
            assert state["stop"] is True
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signum)  # the second one interrupts
        assert all(signal.getsignal(each) is _outside for each in before)  # put back
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)


def _flushes() -> bool:
    """Whether a subnormal float32 survives a multiplication right now."""
    return (torch.tensor(1e-40, dtype=torch.float32) * 1.0).item() == 0.0


def test_flush_denormals_flushes_inside_and_restores_after() -> None:
    subnormal = torch.tensor(1e-40, dtype=torch.float32)
    assert subnormal.item() != 0.0  # representable: the premise of the test
    assert not _flushes()
    with flush_denormals() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush subnormals")
        assert _flushes()
        with flush_denormals():
            assert _flushes()
        assert _flushes()  # the inner exit leaves the outer block flushing
    assert not _flushes()


def test_flush_denormals_restores_after_an_error() -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with flush_denormals():
            raise RuntimeError("inside")
    assert not _flushes()

"""A small training loop for models that expose ``loss_terms(x, objective=, k=, beta=)``.

:func:`fit_vae` runs Adam over shuffled mini-batches with dynamic binarization, logs one
row per epoch, writes a resumable checkpoint (model, optimizer, RNG state, epoch) after
every epoch and on Ctrl-C, and resumes from such a checkpoint. Evaluation helpers
compute per-example bounds and importance-sampled log p(x) in batches.

Nothing here picks a device: :func:`fit_vae` uses the ``device`` it is given (entry
points resolve it) or the model's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssvae.data import dynamic_binarize, fixed_binarize
from vaecore.checkpoint import load_checkpoint, save_checkpoint
from vaecore.config import config_to_dict
from vaecore.errors import InputDataError, integer_at_least
from vaecore.rundir import RunDir
from vaecore.runtime import check_finite, check_seed, flush_denormals, interruptible, restore_rng_state, rng_state

BINARIZE_MODES = ("dynamic", "fixed", "none")
LR_SCHEDULES = ("exponential", "burda")
CHECKPOINT_NAME = "checkpoint.safetensors"
# Seed of the fixed binarization of validation data (test data: see pipelines.vae).
VALID_BINARIZE_SEED = 1


def learning_rate(epoch: int, lr: float, *, schedule: str = "exponential", decay: float = 1.0) -> float:
    """The learning rate of (0-based) ``epoch``.

    Args:
        epoch: Epoch index, from 0.
        lr: Base learning rate.
        schedule: ``exponential`` (``lr * decay**epoch``; decay 1 is constant) or ``burda``
            (Burda et al. 2016: stage i lasts 3^i epochs at ``lr * 10**(-i/7)``).
        decay: Per-epoch factor of the exponential schedule.
    """
    if schedule == "exponential":
        return lr * decay**epoch
    if schedule == "burda":
        stage, end = 0, 1
        while epoch >= end:
            stage += 1
            end += 3**stage
        return lr * 10.0 ** (-stage / 7.0)
    raise InputDataError(f"unknown learning-rate schedule {schedule!r}; choose from {LR_SCHEDULES}")


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Index tensors (CPU, int64) of a random permutation of ``range(n)``, ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def _prepare(x: Tensor, mode: str, seed: int) -> Tensor:
    if mode == "fixed":
        return fixed_binarize(x, seed)
    return x  # "none", or "dynamic" (drawn per batch during training)


def check_rows(x: Tensor, name: str, *, width: int | None, binarize: str, dtype: torch.dtype) -> Tensor:
    """``x`` `[N, width]` (any width for ``None``) as ``dtype``, refused by name if training cannot read it.

    One read from the device per tensor and run. Without it the failures were torch's, and for
    validation data only after the first epoch: "mat1 and mat2 shapes cannot be
    multiplied", "Expected p_in >= 0 && p_in <= 1", "mat1 and mat2 must have the same dtype".

    Raises:
        InputDataError: Not 2-D or not ``width`` columns; NaN or infinite values; values
            outside `[0, 1]` where they are to be binarized.
    """
    if x.dim() != 2 or (width is not None and x.shape[1] != width):
        raise InputDataError(f"{name} must be rows of pixels, [N, {'D' if width is None else width}]; "
                             f"got shape {list(x.shape)}")
    x = x.to(dtype)
    if len(x):
        low, high = torch.stack(torch.aminmax(x)).tolist()  # one read, as the docstring says
        if not math.isfinite(low + high):  # NaN is neither above nor below anything
            raise InputDataError(f"{name} has NaN or infinite values")
        if binarize != "none" and not 0 <= low <= high <= 1:
            raise InputDataError(f"{name} must hold grey levels in [0, 1] to binarize ({binarize!r}); its values "
                                 f"span [{low:g}, {high:g}]")
    return x


@torch.no_grad()
def evaluate_terms(
    model: nn.Module, x: Tensor, *, objective: str = "elbo", k: int = 1, batch_size: int = 1000
) -> dict[str, Tensor]:
    """``model.loss_terms`` over ``x`` `[N, D]` in batches; per-example `[N]` entries only."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    for xb in x.split(batch_size):
        for key, value in model.loss_terms(xb, objective=objective, k=k).items():
            if value.dim() == 1:
                parts.setdefault(key, []).append(value)
    model.train(was_training)
    return {key: torch.cat(values) for key, values in parts.items()}


@torch.no_grad()
def evaluate_log_px(
    model: nn.Module,
    x: Tensor,
    *,
    n_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int = 500,
    progress: bool = True,
) -> Tensor:
    """Importance-sampled log p(x) (``model.log_marginal_likelihood``) for each row of x, `[N]`.

    Memory is about ``batch_size * chunk_size * D`` floats per forward pass.
    """
    was_training = model.training
    model.eval()
    out = []
    for xb in tqdm(x.split(batch_size), desc=f"log p(x), {n_samples} samples", disable=not progress, leave=False):
        out.append(model.log_marginal_likelihood(xb, n_samples=n_samples, chunk_size=chunk_size))
    model.train(was_training)
    return torch.cat(out)


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, generator: torch.Generator) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,  # completed epochs
        "generator": generator.get_state(),
        **rng_state(),
    }


def fit_vae(
    model: nn.Module,
    x_train: Tensor,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    lr_schedule: str = "exponential",
    lr_decay: float = 1.0,
    binarize: str = "dynamic",
    objective: str = "elbo",
    k: int = 1,
    beta: float | Callable[[int], float] = 1.0,
    valid: Tensor | None = None,
    device: torch.device | str | None = None,
    rundir: RunDir | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
    resume_from: str | os.PathLike | None = None,
    seed: int = 0,
    eval_batch_size: int = 1000,
    extra: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train ``model`` with Adam on its ``loss_terms``; one history row per epoch.

    Args:
        model: A module with ``loss_terms(x, objective=, k=, beta=)`` and a frozen
            dataclass ``config`` (e.g. :class:`ssvae.m1.VAE`); trained in place.
        x_train: Grey-level training pixels in `[0, 1]`, `[N, D]`.
        epochs: Total number of epochs; a resumed run trains only the missing ones.
        batch_size: Mini-batch size (100 in Burda et al.).
        lr, lr_schedule, lr_decay: Adam's learning rate per epoch, see :func:`learning_rate`.
        binarize: ``dynamic`` (fresh Bernoulli draw per batch), ``fixed`` (one seeded
            draw) or ``none`` (use grey levels, e.g. with a Gaussian likelihood).
        objective, k: Passed to ``loss_terms`` (``elbo`` or ``iwae`` with k samples).
        beta: KL weight, or a function from the optimisation step to it (warm-up).
        valid: Optional validation pixels `[M, D]`; binarized once with seed
            ``VALID_BINARIZE_SEED`` (unless ``binarize="none"``) and scored by the
            single-sample ELBO each epoch.
        device: Where to train; defaults to the model's device.
        rundir: If given, rows are logged to its ``history.csv`` and the checkpoint
            goes to ``rundir / "checkpoint.safetensors"``.
        checkpoint_path: Explicit checkpoint path (overrides the rundir's).
        progress: Show a tqdm bar per epoch with the current loss.
        resume_from: A checkpoint written by this function; model, optimizer, RNG state
            and the epoch count are restored (the model config must match).
        seed: Seeds the shuffling generator (and the fixed binarization).
        eval_batch_size: Batch size of the validation pass.
        extra: JSON-able data stored in the checkpoint beside the model config.

    Returns:
        The history: ``epoch, lr, beta, train_loss, train_elbo, train_kl[, valid_elbo], seconds``.

    Raises:
        KeyboardInterrupt: After Ctrl-C, once the checkpoint has been written.
        NonFiniteLossError: If the loss becomes NaN or infinite (checkpoint not overwritten).
    """
    if binarize not in BINARIZE_MODES:
        raise InputDataError(f"unknown binarize mode {binarize!r}; choose from {BINARIZE_MODES}")
    integer_at_least("epochs", epochs, 0)  # 2.5 or NaN passed `< 0` and failed inside range()
    integer_at_least("batch_size", batch_size, 1)
    seed = check_seed(seed)  # torch's generator names 2.5 as 'expected a long' after the data moved
    if len(x_train) == 0:
        raise InputDataError("x_train holds no examples: there is nothing to train on")
    parameter = next(model.parameters())
    device = torch.device(device) if device is not None else parameter.device
    width = getattr(getattr(model, "config", None), "x_dim", None)  # a model without one: any width
    x_train = check_rows(x_train, "x_train", width=width, binarize=binarize, dtype=parameter.dtype)
    if valid is not None:
        valid = check_rows(valid, "valid", width=x_train.shape[1], binarize=binarize, dtype=parameter.dtype)
    model.to(device)
    x_train = _prepare(x_train.to(device), binarize, seed)
    x_valid = None
    if valid is not None:
        x_valid = _prepare(valid.to(device), "none" if binarize == "none" else "fixed", VALID_BINARIZE_SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model_config = config_to_dict(model.config)
    if checkpoint_path is None and rundir is not None:
        checkpoint_path = rundir / CHECKPOINT_NAME

    start = 0
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, expected_config=model_config, device="cpu")
        model.load_state_dict(ckpt.payload["model"])
        optimizer.load_state_dict(ckpt.payload["optimizer"])
        generator.set_state(ckpt.payload["generator"])
        restore_rng_state(ckpt.payload)
        start = int(ckpt.payload["epoch"])
        if rundir is not None:
            rundir.truncate_history("epoch", start)

    def save(completed: int) -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, _state(model, optimizer, completed, generator), model_config, extra=extra)

    rows: list[dict[str, Any]] = []
    n_batches = -(-len(x_train) // batch_size)
    step = start * n_batches
    beta_at = beta if callable(beta) else (lambda _step: float(beta))
    model.train()
    with interruptible() as flag, flush_denormals():
        for epoch in range(start, epochs):
            epoch_lr = learning_rate(epoch, lr, schedule=lr_schedule, decay=lr_decay)
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr
            began = time.perf_counter()
            sums = torch.zeros(3, device=device)  # loss, elbo, kl summed over examples
            bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
            for idx in iterate_batches(len(x_train), batch_size, generator):
                if flag["stop"]:
                    bar.close()
                    save(epoch)  # the unfinished epoch is re-run on resume
                    raise KeyboardInterrupt(f"interrupted in epoch {epoch + 1}; checkpoint at {checkpoint_path}")
                xb = x_train[idx.to(device)]
                if binarize == "dynamic":
                    xb = dynamic_binarize(xb)
                b = beta_at(step)
                terms = model.loss_terms(xb, objective=objective, k=k, beta=b)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                step += 1
                with torch.no_grad():
                    sums += torch.stack([terms["loss"] * len(idx), terms["elbo"].sum(), terms["kl"].sum()])
                bar.update(1)
                if step % 20 == 0:  # syncs with the device, so not every step
                    loss_now = terms["loss"].detach()
                    check_finite(loss_now, step)
                    bar.set_postfix(loss=f"{loss_now.item():.2f}")
            bar.close()
            check_finite(sums, step)
            means = (sums / len(x_train)).tolist()
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": epoch_lr, "beta": b,
                                   "train_loss": means[0], "train_elbo": means[1], "train_kl": means[2]}
            if x_valid is not None:
                row["valid_elbo"] = evaluate_terms(model, x_valid, batch_size=eval_batch_size)["elbo"].mean().item()
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            if rundir is not None:
                rundir.log(row)
            # After the row: killed between the two, a resume runs the epoch again and replaces
            # its row; checkpointed first, the epoch's row was lost for good.
            save(epoch + 1)
            if progress:
                tqdm.write(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                                    for key, value in row.items()))
    return rundir.history if rundir is not None else pd.DataFrame(rows)


def default_checkpoint(directory: str | os.PathLike) -> Path:
    """The checkpoint :func:`fit_vae` writes inside a run directory."""
    return Path(directory) / CHECKPOINT_NAME

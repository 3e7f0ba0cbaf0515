"""Training and evaluation loops for :class:`chemvae.model.MoleculeVAE`.

Small on purpose: the model returns its loss terms, this module steps the optimizer,
follows a vaecore KL schedule, logs per-epoch means to the run directory, writes a
resumable checkpoint after every epoch, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from chemvae.batches import MoleculeTensors, iterate_batches
from chemvae.model import MoleculeVAE
from chemvae.persistence import save_model
from vaecore.checkpoint import load_checkpoint
from vaecore.config import config_to_dict
from vaecore.errors import finite_at_least
from vaecore.rundir import RunDir
from vaecore.runtime import check_finite, restore_rng_state, rng_state

Schedule = Callable[[int], float]
LOG_TERMS = ("loss", "recon", "kl", "elbo", "property_mse", "token_accuracy")


class _Means:
    """Running molecule-weighted means of scalar loss terms.

    Sums stay on the terms' device: reading them every step would make a GPU wait for
    the host once per term and step.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: Mapping[str, torch.Tensor], n: int) -> None:
        for key in LOG_TERMS:
            value = terms[key].detach() * n
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def result(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v) / max(self.count, 1) for k, v in self.sums.items()}


def train_epoch(
    model: MoleculeVAE,
    data: MoleculeTensors,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    *,
    step: int,
    batch_size: int,
    generator: torch.Generator,
    grad_clip: float | None = 50.0,
    stop: Mapping[str, bool] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> tuple[int, dict[str, float]]:
    """One pass over ``data`` in shuffled batches.

    Args:
        model: The VAE, on its training device.
        data: Training molecules.
        optimizer: Optimizer over ``model.parameters()``.
        schedule: KL weight of each optimisation step.
        step: Global step count before this epoch.
        batch_size: Molecules per step.
        generator: Shuffling generator (CPU).
        grad_clip: Max gradient norm, or ``None``.
        stop: ``interruptible()`` flag dict; the epoch ends early when ``stop["stop"]``.
        desc: Progress-bar label.
        progress: Show a tqdm bar.

    Returns:
        The new global step and the epoch's mean terms (``train_*``), ``beta``,
        ``train_seconds`` and ``train_molecules_per_s``.

    Raises:
        NonFiniteLossError: If the loss is NaN or infinite, checked every 50 steps and at
            the end of the epoch (one read from the device each).
    """
    if grad_clip is not None:  # clip_grad_norm_ with a negative norm flips every gradient
        finite_at_least("grad_clip", grad_clip, 0, strict=True)
    model.train()
    means = _Means()
    start = time.perf_counter()
    bar = tqdm(total=len(data), desc=desc, unit="mol", disable=not progress, leave=False)
    for batch in iterate_batches(data, batch_size, shuffle=True, generator=generator, device=model.device):
        beta = schedule(step)
        terms = model.loss_terms(batch, beta=beta)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        step += 1
        n = len(batch["smiles"])
        if step % 50 == 0:  # syncs with the device, so not every step
            check_finite(terms["loss"], step)
        means.add(terms, n)
        bar.update(n)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{float(terms['loss'].detach()):.2f}", beta=f"{beta:.3g}", refresh=False)
        if stop is not None and stop.get("stop"):
            break
    bar.close()
    if means.count:  # NaN in the steps after the last check would be logged, and checkpointed by fit
        check_finite(means.sums["loss"], step)
    seconds = time.perf_counter() - start
    row = means.result("train_")
    row.update(beta=schedule(step), train_seconds=seconds, train_molecules_per_s=means.count / max(seconds, 1e-9))
    return step, row


@torch.no_grad()
def evaluate_loss(model: MoleculeVAE, data: MoleculeTensors, *, beta: float, batch_size: int = 512,
                  prefix: str = "valid_") -> dict[str, float]:
    """Mean loss terms over ``data`` in eval mode (one posterior sample per molecule)."""
    was_training = model.training
    model.eval()
    means = _Means()
    for batch in iterate_batches(data, batch_size, shuffle=False, device=model.device):
        means.add(model.loss_terms(batch, beta=beta), len(batch["smiles"]))
    model.train(was_training)
    return means.result(prefix)


def reconstruct(model: MoleculeVAE, smiles: Sequence[str], *, batch_size: int = 1000) -> tuple[list[str], list[str]]:
    """Greedy decoding of the posterior means of ``smiles``.

    Returns:
        ``(inputs, decoded)``: the encodable inputs (as given) and their reconstructions;
        molecules the model cannot encode are left out of both.
    """
    z, kept = model.encode(smiles, errors="skip", batch_size=batch_size)
    decoded = model.decode(z, method="greedy", batch_size=batch_size)
    return [smiles[i] for i in kept], decoded


def save_training_state(path: Path, model: MoleculeVAE, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, *, epoch: int, step: int, **extra: object) -> Path:
    """A resumable checkpoint: model, optimizer, shuffling-generator state, counters, and the
    global CPU generator's state (the reparameterization noise and dropout draw from it on
    the CPU: without it a resumed run redrew the noise of its first epochs, and differed
    from the run uninterrupted from epoch 2 on), and on a GPU the CUDA generators' states;
    ``extra`` entries (the pipeline's KL warm-up in steps) are stored beside them."""
    return save_model(model, path, optimizer=optimizer.state_dict(), generator=generator.get_state(),
                      **rng_state(), epoch=epoch, step=step, **extra)


def load_training_state(path: Path, model: MoleculeVAE, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator) -> tuple[int, int]:
    """Restore what :func:`save_training_state` wrote; returns ``(epoch, step)``.

    Raises:
        ConfigMismatchError: If the checkpoint's model config differs from ``model``'s.
    """
    ckpt = load_checkpoint(path, expected_config=config_to_dict(model.config), device=model.device)
    model.load_state_dict(ckpt.payload["model"])
    optimizer.load_state_dict(ckpt.payload["optimizer"])
    generator.set_state(ckpt.payload["generator"].cpu())
    restore_rng_state(ckpt.payload)  # checkpoints written before it was stored lack it: skipped
    return int(ckpt.payload["epoch"]), int(ckpt.payload["step"])


def fit(
    model: MoleculeVAE,
    train: MoleculeTensors,
    valid: MoleculeTensors | None,
    *,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    rundir: RunDir,
    checkpoint_path: Path,
    start_epoch: int = 0,
    step: int = 0,
    grad_clip: float | None = 50.0,
    stop: Mapping[str, bool] | None = None,
    progress: bool = True,
    checkpoint_extra: Mapping[str, object] | None = None,
) -> int:
    """Train from ``start_epoch`` to ``epochs``, logging and checkpointing every epoch.

    ``checkpoint_extra``: scalars stored in every checkpoint (see :func:`save_training_state`).

    Returns:
        The number of completed epochs (less than ``epochs`` if stopped by Ctrl-C; the
        checkpoint then holds the state after the last completed epoch).
    """
    epoch = start_epoch
    for epoch in range(start_epoch + 1, epochs + 1):
        step, row = train_epoch(model, train, optimizer, schedule, step=step, batch_size=batch_size,
                                generator=generator, grad_clip=grad_clip, stop=stop,
                                desc=f"epoch {epoch}/{epochs}", progress=progress)
        if stop is not None and stop.get("stop"):
            return epoch - 1  # an incomplete epoch is neither logged nor checkpointed
        if valid is not None and len(valid):
            row.update(evaluate_loss(model, valid, beta=row["beta"], batch_size=max(batch_size, 256)))
        rundir.log({"epoch": epoch, "step": step, **row})
        save_training_state(checkpoint_path, model, optimizer, generator, epoch=epoch, step=step,
                            **(checkpoint_extra or {}))
        summary = ", ".join(f"{k}={row[k]:.3f}" for k in ("train_loss", "train_token_accuracy", "valid_loss")
                            if k in row)
        tqdm.write(f"epoch {epoch}/{epochs}: {summary}, {row['train_molecules_per_s']:.0f} mol/s")
    return epoch

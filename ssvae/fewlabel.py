"""Training M2 / M1+M2 on a few labels: the loop behind ``ssvae.fit``.

The loop is model-agnostic: a model exposes ``rows(x)`` (its stored training
representation of pixels, computed once), ``sample(rows)`` (a fresh stochastic input
per batch: binarized pixels for M2, z1 ~ q(z1|x) for M1+M2), ``mean(rows)`` (the
test-time input) and ``m2.loss_terms``. Every optimisation step sees a labelled and an
unlabelled batch together; the whole step runs on the device, and the host only syncs
every ``log_every`` steps and at the end of an epoch. Each epoch is scored on the
validation and test sets; the state with the best validation error is kept (model
selection on validation, test error reported at that epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssvae.data import translations
from ssvae.train_config import TrainConfig
from vaecore.checkpoint import load_checkpoint, save_checkpoint
from vaecore.errors import InputDataError
from vaecore.rundir import RunDir
from vaecore.runtime import check_finite, flush_denormals, interruptible, restore_rng_state, rng_state
from vaecore.training import WeightAverage, compiled_step

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_NAME = "model.safetensors"
_TERMS = ("loss", "labelled_bound", "unlabelled_bound", "cross_entropy", "kl", "labelled_accuracy")


@dataclass
class FewLabelData:
    """Pixels `[N, D]` in `[0, 1]` and int64 labels of the splits one run uses.

    ``image_shape`` is the shape of one image before flattening (e.g. ``(28, 28)``), if known.
    """

    x_l: Tensor
    y_l: Tensor
    x_u: Tensor
    x_valid: Tensor | None
    y_valid: Tensor | None
    x_test: Tensor | None
    y_test: Tensor | None
    image_shape: tuple[int, ...] | None = None

    @property
    def n_total(self) -> int:
        return len(self.x_l) + len(self.x_u)


@dataclass
class TrainResult:
    """What :func:`train_m2` returns; ``model`` holds the best-validation weights."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    valid_error: float
    test_error: float
    epochs_done: int
    seconds: float
    stopped_by_budget: bool
    stopped_by_patience: bool = False


@torch.no_grad()
def rows_of(model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 2000) -> Tensor:
    """``model.rows`` of pixels `[N, D]` in batches, on ``device``."""
    return torch.cat([model.rows(xb.to(device)) for xb in x.split(batch_size)]) if len(x) else x.to(device)


@torch.no_grad()
def count_errors(model: nn.Module, m2: nn.Module, rows: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """Misclassified examples among rows `[N, ...]` by ``m2``'s classifier (a device scalar, no sync)."""
    wrong = torch.zeros((), dtype=torch.int64, device=rows.device)
    for rb, yb in zip(rows.split(batch_size), y.split(batch_size)):
        wrong += (m2.logits(model.mean(rb)).argmax(-1) != yb).sum()
    return wrong


def _labelled_order(n_l: int, count: int, device: torch.device) -> Tensor:
    """``count`` labelled indices: concatenated random permutations of ``range(n_l)``."""
    reps = -(-count // n_l)
    return torch.cat([torch.randperm(n_l) for _ in range(reps)])[:count].to(device)


def _state_copy(model: nn.Module, ema: WeightAverage | None) -> dict[str, Tensor]:
    """The model's weights, with M2's replaced by their moving average when there is one."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if ema is not None:
        state.update({f"m2.{k}": v.detach().clone() for k, v in ema.module.state_dict().items()})
    return state


def check_trains(config: TrainConfig) -> None:
    """Refuse a new M2 run of 0 epochs: it would have no model to keep and score.

    Raises:
        InputDataError: ``config.epochs`` is 0.
    """
    if config.epochs == 0:
        raise InputDataError("train.epochs is 0: a new M2 run must train at least one epoch to have a model")


def train_m2(
    model: nn.Module,
    data: FewLabelData,
    config: TrainConfig,
    *,
    device: torch.device,
    model_spec: dict[str, Any],
    rundir: RunDir | None = None,
    progress: bool = True,
    resume: bool = False,
    seconds_before: float = 0.0,
) -> TrainResult:
    """Optimise ``model.m2`` on labelled + unlabelled batches; select on validation.

    Args:
        model: :class:`ssvae.pixel_m2.PixelM2` or :class:`ssvae.m1m2.M1M2` (on ``device``).
        data: The splits (pixels); converted once with ``model.rows``.
        config: Optimisation settings.
        device: Where every step runs.
        model_spec: JSON description of the model, stored with the checkpoints (see
            :func:`ssvae.classifier.build_model`).
        rundir: Run directory: ``history.csv`` rows, ``checkpoint.safetensors`` (resumable,
            every epoch and on Ctrl-C) and ``model.safetensors`` (best validation).
        progress: Show a progress bar with the current losses and validation error.
        resume: Continue from ``rundir / checkpoint.safetensors``.
        seconds_before: Wall time already spent by the run (M1's training), counted
            against ``config.time_budget_minutes``.

    Raises:
        KeyboardInterrupt: After Ctrl-C, once a resumable checkpoint has been written.
        NonFiniteLossError: If the loss becomes NaN or infinite.
    """
    n_l, n_u = len(data.x_l), len(data.x_u)
    if n_l == 0 or n_u == 0:
        raise InputDataError(f"semi-supervised training needs labelled and unlabelled examples, got {n_l} and {n_u}")
    model.to(device)
    x_l, y_l = data.x_l, data.y_l
    if config.label_shift > 0:  # the translated copies are made once, like the other rows
        x_l = translations(x_l, data.image_shape, config.label_shift)
        y_l = y_l.repeat(len(x_l) // n_l)
    rows_l, y_l = rows_of(model, x_l, device), y_l.to(device)
    rows_u = rows_of(model, data.x_u, device)
    evals = {name: (rows_of(model, x, device), y.to(device)) for name, x, y in
             (("valid", data.x_valid, data.y_valid), ("test", data.x_test, data.y_test)) if x is not None}

    n = n_l + n_u
    alpha = config.alpha * n / n_l
    w_l, w_u = (n_l / n, n_u / n) if config.weighting == "paper" else (1.0, 1.0)
    batch_u = min(config.unlabelled_batch, n_u)
    steps = n_u // batch_u  # equal-size batches; the remainder is reshuffled next epoch
    warmup_steps = config.warmup_epochs * steps

    def batch_terms(il: Tensor, iu: Tensor, beta: float | Tensor) -> dict[str, Tensor]:
        """One step's loss terms from the labelled and unlabelled row indices."""
        return model.m2.loss_terms(model.sample(rows_l[il]), y_l[il], model.sample(rows_u[iu]),
                                   alpha=alpha, beta=beta, labelled_weight=w_l, unlabelled_weight=w_u,
                                   entropy_weight=config.entropy_weight)

    step_terms: Callable[[Tensor, Tensor, float], dict[str, Tensor]] = batch_terms
    if config.compile_mode is not None:
        compiled = compiled_step(batch_terms, config.compile_mode, static=(rows_l, y_l, rows_u))

        def step_terms(il: Tensor, iu: Tensor, beta: float) -> dict[str, Tensor]:
            # beta as a device tensor: the warm-up neither recompiles nor copies from the host.
            return compiled(il, iu, torch.full((), beta, dtype=rows_u.dtype, device=device))

    optimizer = torch.optim.Adam(model.m2.parameters(), lr=config.lr, betas=config.betas)
    start, elapsed, stored_ema = 0, 0.0, None
    best = {"epoch": 0, "valid_error": math.inf, "test_error": math.nan}
    best_state: dict[str, Tensor] | None = None
    ckpt_path = rundir / CHECKPOINT_NAME if rundir is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, expected_config=model_spec, device=device)
        model.load_state_dict(ckpt.payload["model"])
        optimizer.load_state_dict(ckpt.payload["optimizer"])
        restore_rng_state(ckpt.payload)
        start, elapsed = int(ckpt.payload["epoch"]), float(ckpt.payload["seconds"])
        best = dict(ckpt.payload["best"])
        best_state = ckpt.payload.get("best_state")
        stored_ema = ckpt.payload.get("ema")
    if rundir is not None:
        # Rows after the checkpoint are run again. Without one the table starts afresh: a
        # run whose first checkpoint was never written (a full disk, a kill) had logged
        # epoch 1, and its resume, from scratch, logged epoch 1 a second time.
        rundir.truncate_history("epoch", start)
    # Polyak averaging of M2 (batch-norm statistics included); made after a resume so
    # that, without a stored average, it starts from the resumed weights.
    ema = WeightAverage(model.m2, config.ema_decay) if config.ema_decay is not None else None
    if ema is not None and stored_ema is not None:
        ema.load_state_dict(stored_ema)

    def save(epochs_done: int) -> None:
        if ckpt_path is None:
            return
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epochs_done,
                   "seconds": elapsed, "best": best, **rng_state()}
        if best_state is not None:
            payload["best_state"] = best_state
        if ema is not None:
            payload["ema"] = ema.state_dict()
        save_checkpoint(ckpt_path, payload, model_spec)

    if start == 0:
        check_trains(config)
    stopped_by_budget = stopped_by_patience = False
    done, last_valid, logged = start, math.nan, []
    model.train()
    with interruptible() as flag, flush_denormals():
        for epoch in range(start, config.epochs):
            # Checked between epochs (the last one is finished), and only once there is a
            # model to keep: an M1 that used up the budget left M2 untrained and unscored.
            if best_state is not None and config.out_of_time(seconds_before + elapsed):
                stopped_by_budget = True
                break
            # Checked before each epoch, like the budget, so that a resumed run that had
            # already run out of patience stops at once.
            if "valid" in evals and config.out_of_patience(epoch, best["epoch"]):
                stopped_by_patience = True
                break
            began = time.perf_counter()
            lr = config.learning_rate(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order_u = torch.randperm(n_u)[: steps * batch_u].to(device)
            order_l = _labelled_order(len(rows_l), steps * config.labelled_batch, device)
            sums = torch.zeros(len(_TERMS), device=device)
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
            for step in range(steps):
                if flag["stop"]:
                    bar.close()
                    elapsed += time.perf_counter() - began
                    save(epoch)  # the unfinished epoch is run again on resume
                    raise KeyboardInterrupt(f"interrupted in epoch {epoch + 1}; resumable checkpoint at {ckpt_path}")
                global_step = epoch * steps + step
                beta = config.kl_weight * (min(1.0, global_step / warmup_steps) if warmup_steps > 0 else 1.0)
                il = order_l[step * config.labelled_batch:(step + 1) * config.labelled_batch]
                iu = order_u[step * batch_u:(step + 1) * batch_u]
                terms = step_terms(il, iu, beta)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.m2.parameters(), config.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(model.m2)
                with torch.no_grad():
                    sums += torch.stack([terms[k].detach() for k in _TERMS])
                bar.update(1)
                if (step + 1) % config.log_every == 0:  # the only per-step host sync
                    check_finite(terms["loss"], global_step)
                    bar.set_postfix(loss=f"{terms['loss'].item():.2f}", ce=f"{terms['cross_entropy'].item():.3f}",
                                    valid_err=f"{last_valid:.4f}")
            bar.close()
            check_finite(sums, global_step)
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "beta": beta}
            row.update({f"train_{k}": v for k, v in zip(_TERMS, (sums / steps).tolist())})
            scorer = model.m2 if ema is None else ema.module
            model.eval()
            scorer.eval()
            for name, (rows, y) in evals.items():
                row[f"{name}_error"] = count_errors(model, scorer, rows, y, config.eval_batch_size).item() / max(len(y), 1)
            model.train()
            elapsed += time.perf_counter() - began
            row["seconds"] = elapsed
            last_valid = row.get("valid_error", math.nan)
            # Model selection on validation error; without a validation set, the last epoch.
            if "valid_error" not in row or row["valid_error"] <= best["valid_error"]:
                best = {"epoch": epoch + 1, "valid_error": last_valid, "test_error": row.get("test_error", math.nan)}
                best_state = _state_copy(model, ema)
                if rundir is not None:
                    save_checkpoint(rundir / MODEL_NAME, {"model": best_state}, model_spec, extra={"best": best})
            done = epoch + 1
            logged.append(row)
            if rundir is not None:
                rundir.log(row)
            save(done)  # after the row: a kill between the two re-runs the epoch, it never loses its row
            if progress:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    history = rundir.history if rundir is not None else pd.DataFrame(logged)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, history=history, best_epoch=int(best["epoch"]),
                       valid_error=float(best["valid_error"]), test_error=float(best["test_error"]),
                       epochs_done=done, seconds=elapsed, stopped_by_budget=stopped_by_budget,
                       stopped_by_patience=stopped_by_patience)

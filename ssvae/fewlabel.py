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
from vaecore.checkpoint import load_checkpoint, save_checkpoint
from vaecore.errors import InputDataError, finite_at_least, integer_at_least
from vaecore.rundir import RunDir
from vaecore.runtime import check_finite, flush_denormals, interruptible
from vaecore.training import WeightAverage, compiled_step

WEIGHTINGS = ("paper", "balanced")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_NAME = "model.safetensors"
_TERMS = ("loss", "labelled_bound", "unlabelled_bound", "cross_entropy", "kl", "labelled_accuracy")


@dataclass(frozen=True)
class TrainConfig:
    """How M2 (alone or on M1's z1) is optimised.

    Attributes:
        epochs: Passes over the unlabelled data (paper: 3000).
        lr, betas: Adam's settings (paper: 3e-4, (0.9, 0.999)).
        lr_decay: Per-epoch multiplicative learning-rate decay (1 = constant, the paper).
        lr_min_factor: The decay stops at ``lr * lr_min_factor``.
        labelled_batch, unlabelled_batch: Examples of each kind per step. The paper
            splits both sets into the same number of minibatches (100 at 100 labels:
            1 labelled + 499 unlabelled per step; 200 otherwise).
        alpha: Classification weight, multiplied by N / N_l (paper: 0.1).
        weighting: ``paper`` weighs the labelled and unlabelled batch means by their
            shares N_l / N and N_u / N of the data set (the paper's objective per
            example); ``balanced`` weighs both batch means by 1.
        warmup_epochs: Linear KL warm-up from 0 to ``kl_weight`` over this many epochs (0 = none).
        kl_weight: Final weight of KL(q(z|x,y) || p(z)) (1 = the bound; > 1 makes
            z costlier, so the decoder leans on y for the class, a trick beyond the paper).
        entropy_weight: Weight of H(q(y|x)) in the unlabelled bound (1 = the bound;
            below 1 sharpens q(y|x) on unlabelled data, a trick beyond the paper).
        label_shift: Train on every translation of the labelled images by up to this
            many pixels along rows and columns, with their labels: ``(2 * label_shift +
            1) ** 2`` copies, the unshifted one among them, drawn alike. ``alpha`` and the
            ``paper`` weights still count the original labels. 0 = none (the paper); a
            trick beyond it that needs the images' 2-D shape (``FewLabelData.image_shape``).
        grad_clip: Clip the gradient norm at this value (``None`` = no clipping).
        ema_decay: Evaluate (and keep) an exponential moving average of M2's weights
            and batch-norm statistics with this per-step decay, e.g. 0.999, warmed up
            over the first steps (Polyak averaging,
            :class:`~vaecore.training.WeightAverage`; ``None`` = the raw weights, as in
            the paper).
        time_budget_minutes: Stop after the epoch in which the run's total wall time
            (including M1's training) exceeds this; ``None`` = train all epochs. M2
            always trains at least one epoch, even when M1 used up the budget, so that
            the run has a model to keep and score.
        patience: Stop once the best-validation epoch (ties count as best) lies this many
            epochs back: early stopping. Without a validation set it does nothing (a
            preset's; one the user sets is refused there by
            :func:`~ssvae.presets.check_patience_setting`); the best epoch's weights are
            kept either way. ``None`` = no such stop.
        log_every: Steps between host syncs (NaN check and progress-bar losses).
        eval_batch_size: Batch size of the validation and test passes.
        compile_mode: Run each step's sampling and loss through ``torch.compile`` with
            this mode (one of ``COMPILE_MODES``; ``reduce-overhead`` adds CUDA graphs on
            a GPU, where the eager step is bound by kernel launches); ``None`` = eager.
            Compiling costs up to a minute once, and draws other random numbers than
            eager mode.
    """

    epochs: int = 3000
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 1.0
    lr_min_factor: float = 0.0
    labelled_batch: int = 1
    unlabelled_batch: int = 499
    alpha: float = 0.1
    weighting: str = "paper"
    warmup_epochs: float = 0.0
    kl_weight: float = 1.0
    entropy_weight: float = 1.0
    label_shift: int = 0
    grad_clip: float | None = None
    ema_decay: float | None = None
    time_budget_minutes: float | None = None
    patience: int | None = None
    log_every: int = 50
    eval_batch_size: int = 2000
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise InputDataError(f"unknown weighting {self.weighting!r}; choose from {WEIGHTINGS}")
        # Python callers reach these fields unparsed: 2.5 epochs or NaN passed `< 0` and
        # failed later inside range() or the loss.
        integer_at_least("epochs", self.epochs, 0)
        integer_at_least("labelled_batch", self.labelled_batch, 1)
        integer_at_least("unlabelled_batch", self.unlabelled_batch, 1)
        integer_at_least("label_shift", self.label_shift, 0)
        finite_at_least("alpha", self.alpha, 0)  # a negative weight would reward misclassifying the labels
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:  # NaN too
            raise InputDataError(f"time_budget_minutes must be > 0 or None, got {self.time_budget_minutes}")
        if self.patience is not None:
            integer_at_least("patience", self.patience, 1)
        finite_at_least("entropy_weight", self.entropy_weight, 0)
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise InputDataError(f"unknown compile_mode {self.compile_mode!r}; choose from {COMPILE_MODES} or None")
        # NaN or negative values here trained without any error: a negative clip norm flips
        # every gradient, a negative KL weight rewards a large KL.
        finite_at_least("lr", self.lr, 0, strict=True)
        finite_at_least("lr_decay", self.lr_decay, 0, strict=True)
        if not 0 <= self.lr_min_factor <= 1:  # a floor above 1 would raise the rate from the first epoch
            raise InputDataError(f"lr_min_factor must be in [0, 1], got {self.lr_min_factor}")
        finite_at_least("warmup_epochs", self.warmup_epochs, 0)
        finite_at_least("kl_weight", self.kl_weight, 0)
        if self.grad_clip is not None:
            finite_at_least("grad_clip", self.grad_clip, 0, strict=True)
        if not all(0 <= b < 1 for b in self.betas):
            raise InputDataError(f"betas must both lie in [0, 1), got {self.betas}")
        integer_at_least("log_every", self.log_every, 1)
        integer_at_least("eval_batch_size", self.eval_batch_size, 1)

    def learning_rate(self, epoch: int) -> float:
        return self.lr * max(self.lr_decay**epoch, self.lr_min_factor)

    def out_of_patience(self, epochs_done: int, best_epoch: int) -> bool:
        """Whether early stopping ends a run after ``epochs_done`` epochs, the best being ``best_epoch``."""
        return self.patience is not None and epochs_done - best_epoch >= self.patience

    def out_of_time(self, seconds: float) -> bool:
        """Whether the time budget ends a run that has spent ``seconds`` (M1's training included)."""
        return self.time_budget_minutes is not None and seconds >= 60.0 * self.time_budget_minutes


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
        torch.set_rng_state(ckpt.payload["torch_rng"])
        start, elapsed = int(ckpt.payload["epoch"]), float(ckpt.payload["seconds"])
        best = dict(ckpt.payload["best"])
        best_state = ckpt.payload.get("best_state")
        stored_ema = ckpt.payload.get("ema")
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
                   "seconds": elapsed, "best": best, "torch_rng": torch.get_rng_state()}
        if best_state is not None:
            payload["best_state"] = best_state
        if ema is not None:
            payload["ema"] = ema.state_dict()
        save_checkpoint(ckpt_path, payload, model_spec)

    if start == 0 and config.epochs == 0:
        raise InputDataError("train.epochs is 0: a new M2 run must train at least one epoch to have a model")
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
            save(done)
            logged.append(row)
            if rundir is not None:
                rundir.log(row)
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

"""How M2 (alone or on M1's z1) is optimised: :class:`TrainConfig`, checked when it is made.

The presets of :mod:`ssvae.presets` fill it per label count; :func:`ssvae.fewlabel.train_m2`
reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaecore.errors import InputDataError, finite_at_least, integer_at_least
from vaecore.training import check_decay

WEIGHTINGS = ("paper", "balanced")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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
        if self.ema_decay is not None:  # checked when training began: for M1+M2, after M1's training
            check_decay(self.ema_decay)
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

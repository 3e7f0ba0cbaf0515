"""Tests for ssvae.train_config: settings that would fail later, or train silently wrong, are named."""

from __future__ import annotations

import pytest

from ssvae.m2_config import M2Config
from ssvae.train_config import TrainConfig
from vaecore.errors import InputDataError


def test_train_config_rejects_bad_settings():
    with pytest.raises(InputDataError, match="weighting"):
        TrainConfig(weighting="sometimes")
    with pytest.raises(InputDataError, match="labelled_batch must be an integer >= 1, got 0"):
        TrainConfig(labelled_batch=0)
    with pytest.raises(InputDataError, match="label_shift must be an integer >= 0, got -1"):
        TrainConfig(label_shift=-1)
    with pytest.raises(InputDataError, match="alpha must be a finite number >= 0, got -1"):
        TrainConfig(alpha=-1.0)
    with pytest.raises(InputDataError, match="patience must be an integer >= 1, got 0"):
        TrainConfig(patience=0)
    # Unparsed Python values that passed `< 0` and failed later inside range() or the loss.
    for name, value in (("epochs", 2.5), ("epochs", float("nan")), ("unlabelled_batch", 2.5),
                        ("patience", 1.5), ("label_shift", 0.5), ("alpha", float("inf")),
                        ("entropy_weight", float("inf"))):
        with pytest.raises(InputDataError, match=f"{name} must be an? (integer|finite number) >= [01], got {value}"):
            TrainConfig(**{name: value})
    for budget in (0.0, -1.0, float("nan")):  # a budget that is spent before the first epoch
        with pytest.raises(InputDataError, match=f"time_budget_minutes must be > 0 or None, got {budget}"):
            TrainConfig(time_budget_minutes=budget)
    with pytest.raises(InputDataError, match="alpha must be a finite number >= 0, got nan"):
        TrainConfig(alpha=float("nan"))
    with pytest.raises(InputDataError, match="entropy_weight must be a finite number >= 0, got -0.1"):
        TrainConfig(entropy_weight=-0.1)
    with pytest.raises(InputDataError, match="unknown compile_mode 'fast'"):
        TrainConfig(compile_mode="fast")
    assert isinstance(M2Config(), M2Config)


@pytest.mark.parametrize(("kwargs", "message"), [
    # Each of these trained without any error: a negative clip norm flips every gradient
    # (the loss climbs), a negative KL weight rewards a large KL, a NaN rate gives NaN weights.
    ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0, got -1.0"),
    ({"kl_weight": -1.0}, "kl_weight must be a finite number >= 0, got -1.0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"lr_decay": 0.0}, "lr_decay must be a finite number > 0, got 0.0"),
    ({"warmup_epochs": -2.0}, "warmup_epochs must be a finite number >= 0, got -2.0"),
    ({"lr_min_factor": 2.0}, r"lr_min_factor must be in \[0, 1\], got 2.0"),
    ({"lr_min_factor": float("nan")}, r"lr_min_factor must be in \[0, 1\], got nan"),
    ({"betas": (0.9, 1.5)}, r"betas must both lie in \[0, 1\), got \(0.9, 1.5\)"),
    ({"log_every": 0}, "log_every must be an integer >= 1, got 0"),
    ({"eval_batch_size": 0}, "eval_batch_size must be an integer >= 1, got 0"),
    # Refused only when training began: for M1+M2, once M1 had trained.
    ({"ema_decay": 1.5}, r"ema_decay must be a number in \[0, 1\), got 1.5"),
])
def test_train_config_rejects_settings_that_would_train_silently_wrong(kwargs, message):
    with pytest.raises(InputDataError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig(grad_clip=None).grad_clip is None  # None: no clipping

"""``vaelab fewlabel``'s run config, and the settings it passes on to :func:`ssvae.fit`'s presets.

:class:`FewLabelRunConfig` is what ``config.json`` holds; a run's ``FitConfig`` is the
preset for its label count with ``--epochs`` and the like, then ``--set KEY=VALUE``, applied
(:func:`fit_config_for`). Everything is checked when the config is made, before any data
is read or any model trained.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from ssvae.presets import (IDLE_BECAUSE, MODELS, PRESETS, FitConfig, check_settings_keys, idle_settings, override,
                           preset)
from ssvae.train_config import TrainConfig
from vaecore.errors import InputDataError, integer_at_least


# The fewest test digits a t-SNE plot is drawn of (a smaller test set gets none), and the default.
MIN_TSNE_POINTS = 10
TSNE_POINTS = 2000


@dataclass(frozen=True)
class FewLabelRunConfig:
    """Everything ``vaelab fewlabel`` needs; written to ``config.json``.

    Attributes:
        data: ``mnist``, ``fixture`` or a path to an ``.npz`` (or IDX directory).
        labels: Number of labels to keep (balanced); ``None`` = the labels as given.
        model: ``m1``, ``m2`` or ``m1m2``.
        preset: ``default`` (GPU), ``fast`` (CPU, one hour) or ``paper``.
        seed: Seed of the label split and of training.
        device: ``auto``, ``cpu``, ``cuda``, ...
        epochs: M2's epochs (``None``: the preset's).
        m1_epochs: M1's epochs (``None``: the preset's).
        time_budget_minutes: Stop after the epoch that exceeds this total wall time.
        settings: Further preset overrides, ``"train.lr=1e-3"``, ``"m2.hidden=(300,)"``.
        self_train: Self-training rounds, one count N each (empty: none). Each round labels
            N unlabelled images per class with the latest model's most confident
            predictions and trains a new model (the preset for the larger label count) on
            the true labels and these (M2, M1+M2). A bare int counts as one round (0: none).
        tsne_points: Test digits in the t-SNE plot (0: no t-SNE; else at least :data:`MIN_TSNE_POINTS`).
        plots: Write the PNG plots.
        progress: Show progress bars.
    """

    data: str = "mnist"
    labels: int | None = 100
    model: str = "m1m2"
    preset: str = "default"
    seed: int = 0
    device: str = "auto"
    epochs: int | None = None
    m1_epochs: int | None = None
    time_budget_minutes: float | None = None
    settings: tuple[str, ...] = ()
    self_train: tuple[int, ...] = ()
    tsne_points: int = TSNE_POINTS
    plots: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputDataError(f"unknown model {self.model!r}; choose from {MODELS}")
        if self.preset not in PRESETS:
            raise InputDataError(f"unknown preset {self.preset!r}; choose from {PRESETS}")
        for name in ("epochs", "m1_epochs", "tsne_points"):
            if getattr(self, name) is not None:  # Python callers' 2.5 or NaN passed `< 0`
                integer_at_least(name, getattr(self, name), 0)
        if 0 < self.tsne_points < MIN_TSNE_POINTS:  # 1 or 2 failed in scikit-learn after the whole training
            raise InputDataError(f"tsne_points must be 0 (no t-SNE plot) or at least {MIN_TSNE_POINTS}, "
                                 f"got {self.tsne_points}")
        if not self.plots and self.tsne_points not in (0, TSNE_POINTS):  # was ignored without a word
            raise InputDataError(f"tsne_points={self.tsne_points} would be ignored: plots=False (--no-plots) draws no "
                                 "t-SNE; drop one of them")
        TrainConfig(time_budget_minutes=self.time_budget_minutes)  # its check, before any data or M1
        if self.epochs == 0 and self.model != "m1":  # refused here too, so that no M1 is trained for nothing
            raise InputDataError(f"epochs must be >= 1 for model {self.model!r}: 0 trains no M2 to keep and score")
        if isinstance(self.self_train, int):  # one round, as configs before rounds stored it
            object.__setattr__(self, "self_train", (self.self_train,) if self.self_train else ())
        parsed = parse_settings(self.settings)
        check_settings_keys(parsed)
        # Settings this model would not read (ssvae.presets.idle_settings), as they were given.
        given = {key: f"--{name.replace('_', '-')} {getattr(self, name)}" for name, key in LENGTH_SETTINGS.items()
                 if getattr(self, name) is not None}
        given |= {item.partition("=")[0].strip(): f"--set {item}" for item in self.settings}
        if idle := idle_settings(self.model, {key: parsed.get(key) for key in given}):
            cause, keys = idle
            advice = {"m1": " (M1's own settings are --m1-epochs and --set m1.*)",
                      "m2": " (M1 is trained by models 'm1' and 'm1m2')"}.get(cause, "")
            because = f"--set {IDLE_BECAUSE[cause]}" if cause == "m1.checkpoint" else IDLE_BECAUSE[cause]
            them = "it" if len(keys) == 1 else "them"
            raise InputDataError(f"{because}, so {', '.join(given[key] for key in keys)} would be ignored; "
                                 f"drop {them}{advice}")
        for n in self.self_train:
            integer_at_least("each self_train count", n, 1)
        if self.self_train and self.model == "m1":
            raise InputDataError(f"self_train needs no counts for model 'm1' (its classifier is fitted once "
                                 f"on M1's features), got {self.self_train} for {self.model!r}")


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``("train.lr=1e-3", "m2.hidden=(300,)")`` -> ``{"train.lr": 0.001, "m2.hidden": (300,)}``."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputDataError(f"setting {item!r} is not KEY=VALUE (e.g. train.lr=1e-3)")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text.strip()  # a bare word: a string setting such as weighting=paper (spaces around '=' too)
        key, value = key.strip(), tuple(value) if isinstance(value, list) else value
        if key in out and out[key] != value:  # the last one won without a word
            raise InputDataError(f"{key} is set twice, to {out[key]!r} and {value!r}; give it once")
        out[key] = value
    return out


def fit_config_for(config: FewLabelRunConfig, *, n_labels: int, n_total: int,
                   image_shape: tuple[int, ...] | None) -> FitConfig:
    """The preset for this run with the command line's overrides applied."""
    fit = preset(config.preset, model=config.model, n_labels=n_labels, n_total=n_total, image_shape=image_shape)
    return override(fit, **{**length_changes(config), **parse_settings(config.settings)})


# The command line's epochs and time budget, and the dotted settings they stand for.
LENGTH_SETTINGS = {"epochs": "train.epochs", "m1_epochs": "m1.epochs", "time_budget_minutes": "train.time_budget_minutes"}


def check_length_settings(config: FewLabelRunConfig) -> None:
    """Refuse ``--epochs`` and the like beside a ``--set`` of the same setting to another value.

    The ``--set`` was applied last, so ``--epochs 5 --set train.epochs=2`` trained 2 epochs
    and ignored the flag without a word.
    """
    settings = parse_settings(config.settings)
    for name, key in LENGTH_SETTINGS.items():
        value = getattr(config, name)
        if value is not None and key in settings and settings[key] != value:
            raise InputDataError(f"--{name.replace('_', '-')} {value} and --set {key}={settings[key]} set the same "
                                 "thing two ways; give one")


def length_changes(config: FewLabelRunConfig) -> dict[str, Any]:
    """The command line's epochs and time budget as dotted settings."""
    return {key: getattr(config, name) for name, key in LENGTH_SETTINGS.items() if getattr(config, name) is not None}

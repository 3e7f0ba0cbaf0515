"""``ssvae.fit``: train M1, M2 or M1+M2 on a few labels and get a classifier back.

The same function backs ``vaelab fewlabel``; it can be used without the CLI::

    clf = ssvae.fit(x_train, y_train, n_labels=100, x_valid=xv, y_valid=yv, preset_name="fast")
    clf.predict(x_test), clf.predict_proba(x_test)

The settings it trains with are a :class:`~ssvae.presets.FitConfig`, named by a preset of
:mod:`ssvae.presets` and overridable field by field.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssvae.classifier import FewLabelClassifier, image_rows, model_spec
from ssvae.data import translations
from ssvae.fewlabel import CHECKPOINT_NAME, FewLabelData, check_trains, train_m2
from ssvae.labels import (absent_classes, as_label_tensor, balanced_split, check_labels, given_labels, matches_split,
                          save_split)
from ssvae.m1 import VAE, fit_vae, load_vae
from ssvae.m1m2 import M1M2, active_dimensions
from ssvae.pixel_m2 import PixelM2
from ssvae.presets import (IDLE_BECAUSE, FitConfig, M1Settings, check_patience_setting, check_settings_keys,
                           idle_settings, override, preset)
from vaecore.config import stored_field
from vaecore.errors import InputDataError
from vaecore.nets import without_single_channel
from vaecore.resume import check_resume_length, config_differences, existing_run_config, holds_results
from vaecore.rundir import RunDir, write_csv
from vaecore.runtime import resolve_device, seed_everything
from vaecore.schedules import LinearWarmup


def m1_training_seconds(directory: Path | None) -> float:
    """Wall time already spent training M1 in ``directory`` (sum of its history's seconds).

    This is what a few-label run's time budget counts for M1, trained there or loaded from
    there (``M1Settings.checkpoint``: the run directory or a checkpoint file in it); 0
    without a history.
    """
    if directory is not None and directory.is_file():  # a checkpoint: its run's history beside it
        directory = directory.parent
    if directory is None or not (directory / "history.csv").exists():
        return 0.0
    import pandas as pd

    try:
        return float(pd.read_csv(directory / "history.csv")["seconds"].sum())
    except pd.errors.EmptyDataError:  # stopped before its first epoch ended
        return 0.0


def train_m1(x: Tensor, settings: M1Settings, *, x_valid: Tensor | None, device: torch.device,
             workdir: Path | None, seed: int, progress: bool, resume: bool = False) -> tuple[VAE, float]:
    """Train (or resume) M1 on all training images; returns it and its training wall time.

    With ``workdir``, M1's run (history, resumable checkpoint) lives there; ``resume``
    continues it, otherwise it starts afresh. With ``settings.checkpoint`` the trained M1
    is loaded instead; its time is the sum of its run's logged epoch times, if known.
    """
    if settings.checkpoint is not None:
        model = load_vae(settings.checkpoint, device=device)
        if model.config.x_dim != x.shape[1]:
            raise InputDataError(f"M1 checkpoint {settings.checkpoint} models {model.config.x_dim} inputs, "
                                 f"the data has {x.shape[1]}")
        return model, m1_training_seconds(Path(settings.checkpoint))
    model = VAE(replace(settings.vae, x_dim=x.shape[1])).to(device)
    ckpt = workdir / "checkpoint.safetensors" if workdir is not None else None
    resume_from = ckpt if resume and ckpt is not None and ckpt.exists() else None
    began = time.perf_counter()
    steps_per_epoch = -(-len(x) // settings.batch_size)
    beta = LinearWarmup(steps=round(settings.warmup_epochs * steps_per_epoch)) if settings.warmup_epochs > 0 else 1.0
    # Closed however the fit ends: an interrupted fit's frames may outlive it (a notebook's
    # last traceback) and would keep the directory locked.
    with RunDir(workdir, settings, seed=seed, device=device) if workdir is not None else nullcontext() as rundir:
        if rundir is not None and resume_from is None:
            rundir.truncate_history("epoch", 0)
        fit_vae(model, x, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                lr_decay=settings.lr_decay, beta=beta, binarize="dynamic", valid=x_valid, device=device,
                rundir=rundir, progress=progress, seed=seed, resume_from=resume_from)
    seconds = m1_training_seconds(workdir) if workdir is not None else time.perf_counter() - began
    return model.eval(), seconds


def split_data(x: Tensor, y: Tensor, labelled: Tensor, *, x_valid: Tensor | None = None,
               y_valid: Tensor | None = None, x_test: Tensor | None = None,
               y_test: Tensor | None = None, image_shape: tuple[int, ...] | None = None) -> FewLabelData:
    """Labelled rows ``labelled`` of (x, y), the other training rows as unlabelled."""
    mask = torch.ones(len(x), dtype=torch.bool)
    mask[labelled] = False
    return FewLabelData(x[labelled], y[labelled], x[mask], x_valid, y_valid, x_test, y_test, image_shape)


def fit_data(data: FewLabelData, config: FitConfig, *, n_classes: int, device: torch.device, seed: int = 0,
             rundir: RunDir | None = None, progress: bool = True, resume: bool = False) -> FewLabelClassifier:
    """Train ``config.model`` on prepared splits; the engine of :func:`fit` and the CLI.

    With a ``rundir``: ``m1/`` (M1's run), ``history.csv``, ``checkpoint.safetensors``
    (resumable) and ``model.safetensors`` (best validation) are written there.
    ``clf.seconds`` is the training wall time (M1 included, across resumes).
    """
    seed_everything(seed)
    if config.model != "m1" and len(data.x_u) == 0:  # refused by train_m2 only after M1's training
        raise InputDataError(f"every training example is labelled, and model {config.model!r} trains on unlabelled "
                             "ones too: keep some of the labels (vaelab fewlabel --labels N, ssvae.fit(n_labels=N)) "
                             "or mark the others -1")
    m2_checkpoint = rundir / CHECKPOINT_NAME if rundir is not None else None
    if config.model != "m1" and not (resume and m2_checkpoint and m2_checkpoint.is_file()):
        # train_m2's own check, made before M1 trains (--set train.epochs=0 passed the flags' check).
        check_trains(config.train)
    for what, labels in (("validation labels", data.y_valid), ("test labels", data.y_test)):
        if labels is not None:  # every row is scored: an unlabelled (-1) or unknown class would count as an error
            check_labels(labels, n_classes, what=what, allow_unlabelled=False)
    if config.model != "m1" and config.train.label_shift > 0:
        # Refuse a label shift the images cannot take now, not after M1's training.
        translations(data.x_l[:1], data.image_shape, config.train.label_shift)
    # A convolutional classifier sees the images (M1+M2's M2 gets them beside z1).
    image_shape = data.image_shape if config.m2.classifier_channels else None
    if config.model == "m1m2":  # refuse a classifier without images now, not after M1's training
        replace(config.m2, image_shape=image_shape, context_dim=data.x_l.shape[1]).check_images()
    m1, m1_seconds = None, 0.0
    if config.model in ("m1", "m1m2"):
        m1, m1_seconds = train_m1(torch.cat([data.x_l, data.x_u]), config.m1, x_valid=data.x_valid,
                                  device=device, workdir=rundir / "m1" if rundir is not None else None,
                                  seed=seed, progress=progress, resume=resume)
    if config.model == "m1":
        # scikit-learn is only needed here: imported late to keep ``import ssvae`` light.
        from ssvae.m1features import M1Classifier, posterior_means, select_classifier

        assert m1 is not None
        f_valid = posterior_means(m1, data.x_valid) if data.x_valid is not None else None
        sel = select_classifier(posterior_means(m1, data.x_l), data.y_l.numpy(), f_valid,
                                None if data.y_valid is None else data.y_valid.numpy(), seed=seed)
        if rundir is not None:
            write_csv(rundir / "m1_classifiers.csv", sel.table)
        clf = FewLabelClassifier(M1Classifier(m1, sel.classifier), n_classes=n_classes)
        clf.m1_selection = sel
        clf.seconds = m1_seconds
        return clf
    # The sizes come from the data, whatever a setting said; M1M2 sets its own x_dim and context.
    m2_config = replace(config.m2, n_classes=n_classes, x_dim=data.x_l.shape[1], image_shape=image_shape,
                        context_dim=0)
    if config.model == "m2":
        model: nn.Module = PixelM2(m2_config, binarize=config.binarize)
    else:
        assert m1 is not None
        model = M1M2(m1, m2_config, active_dimensions(m1, data.x_u[:10_000].to(device)))
    result = train_m2(model, data, config.train, device=device, model_spec=model_spec(model, config),
                      rundir=rundir, progress=progress, resume=resume, seconds_before=m1_seconds)
    clf = FewLabelClassifier(result.model, n_classes=n_classes, result=result, bayes_samples=config.bayes_samples)
    clf.seconds = m1_seconds + result.seconds
    return clf


def fit(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    *,
    model: str = "m1m2",
    n_labels: int | None = None,
    x_valid: Tensor | np.ndarray | None = None,
    y_valid: Tensor | np.ndarray | None = None,
    preset_name: str = "default",
    seed: int = 0,
    device: str | torch.device = "cpu",
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> FewLabelClassifier:
    """Train a few-label classifier on images ``x`` `[N, ...]` in `[0, 1]`.

    Args:
        x: Training images (all of them: labelled and unlabelled); ``train.label_shift``
            needs them unflattened, e.g. `[N, 28, 28]`.
        y: Their labels `[N]`; ``-1`` marks unlabelled ones.
        model: ``m1m2`` (default), ``m2`` or ``m1``.
        n_labels: Keep this many labels, balanced over classes and drawn with ``seed``
            (``y`` must then be fully labelled); ``None`` uses the labels of ``y`` as given.
        x_valid, y_valid: Validation set for model selection (recommended).
        preset_name: ``default``, ``fast`` or ``paper`` (see :func:`~ssvae.presets.preset`).
        seed: Seed of the label split and of training.
        device: ``cpu``, ``cuda``, ``auto``...
        workdir: Where to write checkpoints, history and the label split (optional); one
            that holds a run is refused unless ``resume``.
        resume: Continue the fit interrupted (Ctrl-C) in ``workdir``, called with the same
            data and arguments; only ``train.epochs``, ``m1.epochs`` and
            ``train.time_budget_minutes`` may change.
        progress: Show progress bars.
        overrides: Dotted settings, e.g. ``**{"train.epochs": 50, "m1.epochs": 10}``.

    Returns:
        The trained :class:`FewLabelClassifier` (best validation epoch).
    """
    xt, yt = image_rows(x, "x"), as_label_tensor(y, what="y")
    if len(xt) != len(yt):
        raise InputDataError(f"x has {len(xt)} rows but y has {len(yt)}")
    if (x_valid is None) != (y_valid is None):
        raise InputDataError("give x_valid and y_valid together, or neither")
    xv = yv = None
    if x_valid is not None:
        xv, yv = image_rows(x_valid, "x_valid"), as_label_tensor(y_valid, what="y_valid")
        if len(xv) != len(yv):
            raise InputDataError(f"x_valid has {len(xv)} rows but y_valid has {len(yv)}")
        if xv.shape[1] != xt.shape[1]:
            raise InputDataError(f"x_valid images have {xv.shape[1]} pixels each but x images {xt.shape[1]}")
    # The classes are the training labels'; a validation label beyond them is refused in fit_data.
    n_classes = int(yt.max()) + 1 if yt.numel() else 0
    if n_labels is not None and (yt < 0).any():  # was "training labels[0] = -1 is out of range"
        raise InputDataError(f"n_labels={n_labels} draws labels from a fully labelled y, but {int((yt < 0).sum())} "
                             "examples are unlabelled (-1); omit n_labels to use the labels as given")
    if n_labels is not None and (absent := absent_classes(yt, n_classes)):
        # Labels with gaps (0, 2, 4, 6) were "40 labels cannot be split evenly over 7 classes".
        raise InputDataError(f"y's labels run up to {n_classes - 1}, but class(es) {absent} have no example; number "
                             "the classes 0..K-1")
    idx = (balanced_split(yt, n_labels, n_classes=n_classes, seed=seed) if n_labels is not None
           else given_labels(yt, n_classes=n_classes))
    check_settings_keys(overrides)
    if idle := idle_settings(model, overrides):
        cause, keys = idle
        advice = " (M1's own settings are m1.*)" if cause == "m1" else ""
        them = "it" if len(keys) == 1 else "them"
        raise InputDataError(f"{IDLE_BECAUSE[cause]}, so {', '.join(sorted(keys))} would be ignored; "
                             f"drop {them}{advice}")
    check_patience_setting(overrides, has_valid=x_valid is not None)
    # [N, 1, 28, 28], torch's layout, are 28 x 28 images; np.shape, as x may be nested lists
    image_shape = without_single_channel(tuple(np.shape(x)[1:]))
    config = override(preset(preset_name, model=model, n_labels=len(idx), n_total=len(xt), image_shape=image_shape),
                      **overrides)
    device = resolve_device(device)
    if workdir is not None:
        check_fit_dir(workdir, config, seed=seed, labelled=idx, labels=yt[idx], resume=resume)
    elif resume:
        raise InputDataError("resume=True continues the fit interrupted in a workdir: give that workdir")
    data = split_data(xt, yt, idx, x_valid=xv, y_valid=yv, image_shape=image_shape)
    # As train_m1's: the directory is free once the call ends, however it ends.
    with RunDir(workdir, config, seed=seed, device=device) if workdir is not None else nullcontext() as rundir:
        if rundir is not None:
            save_split(rundir / "labels.csv", idx, yt[idx])
        return fit_data(data, config, n_classes=n_classes, device=device, seed=seed, rundir=rundir,
                        progress=progress, resume=resume)


# What a resumed fit may change: how long it trains.
FIT_LENGTHS = ("train.epochs", "m1.epochs", "train.time_budget_minutes")


def check_fit_dir(workdir: str | os.PathLike, config: FitConfig, *, seed: int, labelled: Tensor, labels: Tensor,
                  resume: bool) -> None:
    """Refuse a fit that would write over the run in ``workdir``, or resume one of other settings.

    A second fit in the same workdir wrote over the first one's checkpoints and history
    without a word, and an interrupted fit could not be continued from Python.

    Raises:
        InputDataError: ``workdir`` holds a run and ``resume`` is false; or ``resume`` and it
            holds no fit, or one of another seed, label split or settings (named).
    """
    if not resume:
        if holds_results(workdir):
            raise InputDataError(f"{workdir} already holds a run; continue an interrupted fit there with "
                                 "resume=True, give another workdir, or delete it to start over")
        return
    try:
        stored = existing_run_config(workdir, FitConfig, command="ssvae.fit")
    except InputDataError as err:  # its message speaks of the command line's --out
        raise InputDataError(f"resume=True: {workdir} holds another kind of run, not an ssvae.fit run") from err
    if stored is None or not (Path(workdir) / "labels.csv").is_file():
        raise InputDataError(f"resume=True: {workdir} holds no ssvae.fit run to continue")
    lengths = {key: _setting(config, key) for key in FIT_LENGTHS}
    differences = config_differences(config, override(stored, **lengths))
    stored_seed = stored_field(Path(workdir) / "run.json", "seed")
    if stored_seed != seed:
        differences.append(f"seed (stored {stored_seed!r}, given {seed!r})")
    if not matches_split(Path(workdir) / "labels.csv", labelled, labels):
        differences.append("the labelled examples (another y, n_labels or seed)")
    if differences:
        raise InputDataError(f"resume=True continues the fit in {workdir} as it was started, but these differ: "
                             f"{'; '.join(differences)}. Give them as before, or fit into another workdir")
    check_resume_length("train.epochs", lengths["train.epochs"], Path(workdir, "checkpoint.safetensors"))
    check_resume_length("m1.epochs", lengths["m1.epochs"], Path(workdir, "m1", "checkpoint.safetensors"))


def _setting(config: Any, key: str) -> Any:
    """The value of a dotted setting (``train.epochs``)."""
    for part in key.split("."):
        config = getattr(config, part)
    return config

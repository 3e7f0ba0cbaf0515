"""``vaelab fewlabel``: semi-supervised MNIST (or a user's images) with M1, M2 or M1+M2.

Draws ``--labels`` labels balanced over classes with ``--seed`` (or, with ``--labels``
omitted, uses the labels of ``y_train`` as given, -1 = unlabelled), trains the chosen
model (:func:`ssvae.api.fit_data`) with model selection on the validation set, and
writes into ``--out``:

* ``config.json``, ``run.json``, ``labels.csv`` (the labelled indices);
* ``history.csv`` (one row an epoch: loss terms, validation and test error) and, for
  M1 / M1+M2, ``m1/`` with M1's own run;
* ``checkpoint.safetensors`` (resumable) and ``model.safetensors`` (best validation);
* ``metrics.json``: test error at the best-validation epoch and the run's facts;
* with ``--self-train N``, ``pseudo_labels.csv`` (the first model's N surest predictions per
  class on the unlabelled images), ``stage1_metrics.json`` (the first model's figures) and
  ``self_train/``, the run directory of the second model, trained on the true labels and
  the pseudo-labels with the preset for that label count; ``metrics.json`` and the plots
  are then the second model's. ``--self-train N1 N2`` adds a round: ``self_train/`` then
  holds its own ``pseudo_labels.csv`` (the second model's N2 surest) and ``self_train/``
  (the third model), and so on; each stage directory has its ``metrics.json``, and
  ``ssvae.load_classifier(DIR)`` loads the last stage's model;
* ``samples.png`` (one column per class, the same z along each row), ``tsne.png``
  (t-SNE of the latent codes of test digits, coloured by class), ``reconstructions.png``
  and ``curves.png`` (training curves).

Ctrl-C leaves a resumable checkpoint; ``--resume DIR`` continues that run.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from pipelines.fewlabel_config import (MIN_TSNE_POINTS, TSNE_POINTS, FewLabelRunConfig, check_length_settings,
                                       fit_config_for, length_changes, parse_settings)
from ssvae.api import fit_data, split_data
from ssvae.classifier import FewLabelClassifier
from ssvae.data import NAMED_SOURCES, ImageDataset, load_dataset
from ssvae.labels import balanced_split, given_labels, load_split, matches_split, save_split
from ssvae.presets import MODELS, PRESETS, FitConfig, check_patience_setting, override
from ssvae.selftrain import SELF_TRAIN_DIR, labels_with, pseudo_labels
from vaecore.config import config_to_dict, read_json, read_run_config
from vaecore.errors import InputDataError
from vaecore.resume import (check_new_run_dir, check_resume, check_resume_length, check_same_data, resume_hint,
                            starts_over)
from vaecore.rundir import RunDir, write_json
from vaecore.runtime import THREADS_HELP, resolve_device

STAGE1_METRICS = "stage1_metrics.json"
PSEUDO_LABELS = "pseudo_labels.csv"


def _labelled_indices(config: FewLabelRunConfig, dataset: ImageDataset) -> torch.Tensor:
    y = dataset.train.y
    if config.labels is None:
        return given_labels(y, n_classes=dataset.n_classes)
    if (y < 0).any():
        raise InputDataError(f"--labels {config.labels} draws labels from a fully labelled y_train, but "
                             f"{int((y < 0).sum())} examples are unlabelled (-1); omit --labels to use them as given")
    return balanced_split(y, config.labels, n_classes=dataset.n_classes, seed=config.seed)


def _train(config: FewLabelRunConfig, dataset: ImageDataset, y: torch.Tensor, idx: torch.Tensor, workdir: Path,
           device: torch.device, *, resume: bool, changes: dict[str, Any] | None = None,
           data_record: dict[str, str] | None = None) -> tuple[FewLabelClassifier, dict[str, Any]]:
    """One model trained in ``workdir`` on the training labels ``y[idx]``; its figures.

    ``changes`` are dotted settings applied after the preset and ``--set`` (the
    self-training stage's shared M1).
    """
    stored = workdir / "fit_config.json"
    if resume and stored.is_file():
        # The settings the run started with, even if a preset has changed since; only
        # how long it runs may change.
        fit_config = override(read_run_config(FitConfig, stored, command="fewlabel", source=f"--resume {workdir}"),
                              **length_changes(config))
    else:
        fit_config = override(fit_config_for(config, n_labels=len(idx), n_total=len(dataset.train),
                                             image_shape=dataset.image_shape), **(changes or {}))
    if resume and (workdir / "labels.csv").is_file() and not matches_split(workdir / "labels.csv", idx, y[idx]):
        # Redrawn from the stored seed on the same data, the split is the run's own unless
        # the draw changed (another torch's randperm): resumed, it would train on other labels.
        raise InputDataError(f"the labelled examples drawn for this resume differ from the run's "
                             f"{workdir / 'labels.csv'} (another torch version draws them otherwise?): resumed, it "
                             "would train on other labels; resume where the run began, or start a new run")
    with RunDir(workdir, config, seed=config.seed, device=device, data=data_record) as rundir:
        rundir.write_json("fit_config.json", config_to_dict(fit_config))
        save_split(rundir / "labels.csv", idx, y[idx])
        valid, test = dataset.valid, dataset.test
        data = split_data(dataset.train.x, y, idx,
                          x_valid=None if valid is None else valid.x, y_valid=None if valid is None else valid.y,
                          x_test=test.x, y_test=test.y, image_shape=dataset.image_shape)
        clf = fit_data(data, fit_config, n_classes=dataset.n_classes, device=device, seed=config.seed,
                       rundir=rundir, progress=config.progress, resume=resume)

    metrics: dict[str, Any] = {
        "model": config.model, "preset": config.preset, "n_labels": int(len(idx)), "seed": config.seed,
        "device": str(device), "data": config.data, "train_seconds": clf.seconds, "resumed": resume,
    }
    if clf.result is not None:  # M2 / M1+M2: errors at the best-validation epoch
        r = clf.result
        metrics.update(test_error=r.test_error, valid_error=r.valid_error, best_epoch=r.best_epoch,
                       epochs_done=r.epochs_done, stopped_by_budget=r.stopped_by_budget,
                       stopped_by_patience=r.stopped_by_patience,
                       m2_seconds=r.seconds, final_test_error=float(r.history["test_error"].iloc[-1])
                       if len(r.history) else math.nan)
        if hasattr(clf.model, "active"):
            metrics["active_z1_dims"] = int(clf.model.active.numel())
        if clf.bayes_samples:
            # The kept model predicts by Bayes' rule as well; the epoch was chosen (and
            # history.csv scored) on the classifier alone, whose errors are kept beside.
            metrics.update(classifier_test_error=r.test_error, classifier_valid_error=r.valid_error,
                           test_error=clf.error(test.x, test.y),
                           valid_error=clf.error(valid.x, valid.y) if valid is not None else math.nan)
        metrics["bayes_samples"] = clf.bayes_samples
    else:  # M1: the classifier chosen on validation, scored once
        sel = clf.m1_selection
        metrics.update(test_error=clf.error(test.x, test.y),
                       valid_error=clf.error(valid.x, valid.y) if valid is not None else math.nan,
                       m1_classifier=f"{sel.kind}(C={sel.c:g})")
    return clf, metrics


def _self_train(config: FewLabelRunConfig, dataset: ImageDataset, idx: torch.Tensor, workdir: Path,
                device: torch.device, *, resume: bool, data_record: dict[str, str] | None = None,
                ) -> tuple[FewLabelClassifier, dict[str, Any]]:
    """Every stage of ``--self-train N1 [N2 ...]``: the run itself, then a model a round.

    The first stage is an ordinary run in ``workdir``; its figures go to
    ``stage1_metrics.json``. Round r labels the previous stage's ``N_r`` surest
    predictions per class (``pseudo_labels.csv`` in that stage's directory) and trains
    (:func:`train_on_pseudo_labels`) in a ``self_train/`` directory inside it. The last
    model gives the run's figures. A resumed run continues its deepest begun stage: a stage
    has begun once its ``fit_config.json`` exists, and then every earlier stage has
    finished and left its pseudo-labels.
    """
    if len(idx) == len(dataset.train):
        raise InputDataError(f"--self-train {' '.join(map(str, config.self_train))}: every training example is "
                             "labelled, none is left to pseudo-label")
    n_unlabelled, most = len(dataset.train) - len(idx), max(config.self_train)
    if most * dataset.n_classes >= n_unlabelled:
        # Refused now: after the first stage's training, pseudo-labels that took every
        # unlabelled example left the next model nothing to learn from without labels.
        raise InputDataError(f"--self-train {most} pseudo-labels up to {most} x {dataset.n_classes} classes = "
                             f"{most * dataset.n_classes} examples, which could be all {n_unlabelled} unlabelled ones; "
                             f"use at most {(n_unlabelled - 1) // dataset.n_classes} per class")
    dirs = [workdir]
    for _ in config.self_train:
        dirs.append(dirs[-1] / SELF_TRAIN_DIR)
    begun = 0  # the deepest stage that has begun (0: the first stage, or a fresh run)
    if resume:
        begun = max((r for r in range(1, len(dirs)) if (dirs[r] / "fit_config.json").is_file()), default=0)
    if begun:
        RunDir(workdir, config, seed=config.seed, device=device, data=data_record)  # this call's config.json and run.json
        first = read_json(workdir / STAGE1_METRICS)
    else:
        clf, first = _train(config, dataset, dataset.train.y, idx, workdir, device, resume=resume,
                            data_record=data_record)
        write_json(workdir / STAGE1_METRICS, first)
    stages = [first]
    for r, n in enumerate(config.self_train, start=1):
        if r < begun:  # finished in an earlier call
            stages.append(read_json(dirs[r] / "metrics.json"))
            continue
        if r == begun:
            pseudo_idx, pseudo_y = load_split(dirs[r - 1] / PSEUDO_LABELS)
        else:
            proba = clf.predict_proba(dataset.train.x, progress=config.progress)
            pseudo_idx, pseudo_y = pseudo_labels(proba, n, exclude=idx)
            save_split(dirs[r - 1] / PSEUDO_LABELS, pseudo_idx, pseudo_y)
        clf, metrics = train_on_pseudo_labels(config, dataset, idx, pseudo_idx, pseudo_y, first=first,
                                              first_dir=workdir, workdir=dirs[r], device=device,
                                              resume=resume and r == begun)
        write_json(dirs[r] / "metrics.json", metrics)
        stages.append(metrics)
    metrics.update(
        stage_test_errors=[m["test_error"] for m in stages], stage_valid_errors=[m["valid_error"] for m in stages],
        # Every stage's training; the rounds' M1 time is the first stage's, counted once.
        train_seconds=first["train_seconds"] + sum(m.get("m2_seconds", 0.0) for m in stages[1:]))
    return clf, metrics


def train_on_pseudo_labels(config: FewLabelRunConfig, dataset: ImageDataset, idx: torch.Tensor,
                           pseudo_idx: torch.Tensor, pseudo_y: torch.Tensor, *, first: dict[str, Any],
                           first_dir: Path, workdir: Path, device: torch.device,
                           resume: bool = False) -> tuple[FewLabelClassifier, dict[str, Any]]:
    """Self-training's second stage: a model on the true labels and the pseudo-labels.

    Args:
        config: The run's config (its preset and ``--set`` apply, at the larger label count).
        dataset: The run's data.
        idx: Indices `[n]` of the training examples with true labels.
        pseudo_idx, pseudo_y: Indices `[K]` and labels `[K]` of the pseudo-labelled ones.
        first: The first stage's ``metrics.json`` figures.
        first_dir: The first stage's run directory, whose M1 the second reuses (M1 never
            sees a label).
        workdir: The second stage's run directory.
        device: Where to train.
        resume: Continue the second stage's interrupted run in ``workdir``.

    Returns:
        The second model and its figures, with the first's beside them (``stage1_*``).
    """
    changes = {}
    if config.model == "m1m2":
        given = read_json(first_dir / "fit_config.json")["m1"]["checkpoint"]
        changes["m1.checkpoint"] = given or str(first_dir / "m1")
    y = labels_with(dataset.train.y, pseudo_idx, pseudo_y)
    clf, metrics = _train(config, dataset, y, torch.cat([idx, pseudo_idx]).sort().values, workdir, device,
                          resume=resume, changes=changes)
    truth = dataset.train.y[pseudo_idx]
    known = truth >= 0  # hidden labels, if the data has them: how good the pseudo-labels were
    metrics.update(
        n_labels=int(len(idx)), n_pseudo_labels=int(len(pseudo_idx)), self_train=config.self_train,
        pseudo_label_error=float((truth[known] != pseudo_y[known]).float().mean()) if known.any() else math.nan,
        stage1_test_error=first["test_error"], stage1_valid_error=first["valid_error"],
        # Both stages' training; the second's M1 time is the first's, counted once.
        train_seconds=first["train_seconds"] + metrics.get("m2_seconds", 0.0))
    return clf, metrics


def run(config: FewLabelRunConfig, workdir: str | os.PathLike, *, resume: bool = False) -> dict[str, Any]:
    """Train, select on validation, evaluate, plot; returns what ``metrics.json`` holds."""
    began = time.perf_counter()
    # A run stopped before its first checkpoint starts over with its stored settings (its
    # fit_config.json), and is no resumed run to metrics.json and the closing line.
    resumed = resume and not starts_over(workdir, Path(workdir) / "checkpoint.safetensors")
    if not resume:  # a resume's new --epochs rightly replaces a stored --set train.epochs
        check_length_settings(config)
        check_new_run_dir(workdir, FewLabelRunConfig, command="fewlabel", resumable=True)
    else:  # before this call's config.json replaces the stored one
        check_resume_length("--epochs", config.epochs, Path(workdir) / "checkpoint.safetensors")
        check_resume_length("--m1-epochs", config.m1_epochs, Path(workdir) / "m1" / "checkpoint.safetensors")
    device = resolve_device(config.device)
    data_record = check_same_data(config.data, named=NAMED_SOURCES, resumed_from=workdir if resume else None)
    dataset = load_dataset(config.data)
    check_patience_setting(parse_settings(config.settings), has_valid=dataset.valid is not None)
    idx = _labelled_indices(config, dataset)
    if not resume and (note := cpu_preset_note(config, device, len(dataset.train))):
        print(note)
    workdir = Path(workdir)
    if config.self_train:
        clf, metrics = _self_train(config, dataset, idx, workdir, device, resume=resume, data_record=data_record)
    else:
        clf, metrics = _train(config, dataset, dataset.train.y, idx, workdir, device, resume=resume,
                              data_record=data_record)
    metrics["resumed"] = resumed
    metrics["wall_seconds"] = time.perf_counter() - began  # this call's; train_seconds spans every call
    write_json(workdir / "metrics.json", metrics)  # before the plots: one that fails leaves the figures written
    if config.plots:
        from pipelines.fewlabel_plots import write_plots  # matplotlib only when plots are drawn

        # With --self-train the plots show the second stage's model.
        metrics["plots"] = write_plots(clf, dataset, workdir, tsne_points=config.tsne_points, seed=config.seed)
        metrics["wall_seconds"] = time.perf_counter() - began
        write_json(workdir / "metrics.json", metrics)
    return metrics


def cpu_preset_note(config: FewLabelRunConfig, device: torch.device, n_train: int) -> str | None:
    """A line for a new run of the ``default`` preset on a CPU, whose length nothing bounds.

    Its 100 M1 and 300 M2 epochs over MNIST take from under an hour to several on two
    cores (BENCHMARKS.md: 3-59 s an M2 epoch by model and labels), and nothing said so.
    ``None`` on a GPU, for small data, or where a length was given.
    """
    lengths = {"train.epochs", "m1.epochs", "train.time_budget_minutes"} & set(parse_settings(config.settings))
    if (device.type != "cpu" or config.preset != "default" or n_train < 10_000 or lengths
            or config.epochs is not None or config.m1_epochs is not None or config.time_budget_minutes is not None):
        return None
    epochs = {"m1": "100 M1 epochs", "m2": "300 M2 epochs"}.get(config.model, "100 M1 and 300 M2 epochs")
    return (f"note: the default preset is sized for a GPU ({epochs}); on a CPU, --preset fast stops after an hour, "
            "and --time-budget-minutes caps any preset")


def _from_args(args: argparse.Namespace) -> tuple[FewLabelRunConfig, Path, bool]:
    if args.resume is not None:
        directory = Path(args.resume).expanduser()
        if not (directory / "config.json").is_file():
            raise InputDataError(f"--resume {args.resume}: no config.json there (not a fewlabel run directory)")
        config = read_run_config(FewLabelRunConfig, directory / "config.json", command="fewlabel",
                                 source=f"--resume {args.resume}")
        # A resumed run keeps its settings; only how long it runs and where may change. Any
        # other flag set otherwise than the run's own would be ignored: refuse it instead.
        defaults = vars(add_parser(argparse.ArgumentParser().add_subparsers()).parse_args([]))
        # The lengths are the stored run's to check ('--epochs 0' was refused for the default
        # model, m1m2, whatever the run's was), and are not compared.
        lengths = {name: None for name in ("epochs", "m1_epochs", "time_budget_minutes")}
        check_resume(_config(argparse.Namespace(**{**vars(args), **lengths})), config,
                     _config(argparse.Namespace(**defaults)), keep=RESUME_SETTINGS, resume=args.resume)
        changes = {"progress": not args.no_progress}
        for name in ("device", "epochs", "m1_epochs", "time_budget_minutes"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        return replace(config, **changes), directory, True
    if args.out is None:
        raise InputDataError("--out DIR is required (or --resume DIR)")
    return _config(args), Path(args.out), False


# The fields of FewLabelRunConfig that a resumed run takes from the resuming call.
RESUME_SETTINGS = ("device", "epochs", "m1_epochs", "time_budget_minutes", "progress")


def _config(args: argparse.Namespace) -> FewLabelRunConfig:
    return FewLabelRunConfig(
        data=args.data, labels=args.labels, model=args.model, preset=args.preset, seed=args.seed,
        device=args.device or "auto", epochs=args.epochs, m1_epochs=args.m1_epochs,
        time_budget_minutes=args.time_budget_minutes, settings=tuple(args.set), self_train=tuple(args.self_train),
        tsne_points=args.tsne_points,
        plots=not args.no_plots, progress=not args.no_progress)


def _main(args: argparse.Namespace) -> None:
    config, workdir, resume = _from_args(args)
    metrics = run(config, workdir, resume=resume)
    # Say which epoch the figures come from and why training ended, so that a run cut short
    # by early stopping or the time budget is not mistaken for a finished one.
    after = metrics.get("epochs_done", 0) - metrics.get("best_epoch", 0)
    why = (f" (stopped early: no better validation error in the {after} epoch{'s' * (after != 1)} after it)"
           if metrics.get("stopped_by_patience")
           else " (stopped by the time budget)" if metrics.get("stopped_by_budget") else "")
    epoch = f" at epoch {metrics['best_epoch']} of {metrics['epochs_done']}{why}" if "best_epoch" in metrics else ""
    # A resumed call's own time says little about the run: give its training time in all too.
    took = f" (resumed; {metrics['train_seconds']:.0f} s of training in all)" if metrics["resumed"] else ""
    alone = (f"; the classifier alone {100 * metrics['classifier_test_error']:.2f}%"
             if "classifier_test_error" in metrics else "")
    pseudo = (f" and {metrics['n_pseudo_labels']} pseudo-labels (before self-training: test error "
              f"{100 * metrics['stage1_test_error']:.2f}%)" if "n_pseudo_labels" in metrics else "")
    valid = ("no validation set" if math.isnan(metrics["valid_error"])  # it printed 'valid nan%'
             else f"valid {100 * metrics['valid_error']:.2f}%")
    print(f"{metrics['model']} with {metrics['n_labels']} labels{pseudo}: test error {100 * metrics['test_error']:.2f}% "
          f"({valid}{alone}){epoch} in {metrics['wall_seconds']:.0f} s{took} on {metrics['device']}; "
          f"results in {workdir}")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``fewlabel`` to the ``vaelab`` command line."""
    p = subparsers.add_parser("fewlabel", help="semi-supervised classification with M1 / M2 / M1+M2",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist",
                   help="mnist, fixture, PATH.npz or a directory of the four MNIST IDX files (default: mnist)")
    p.add_argument("--labels", type=int, default=None,
                   help="labels to keep, balanced over classes (omit: use y_train's labels as given)")
    p.add_argument("--model", choices=MODELS, default="m1m2",
                   help="m1: classical classifiers on M1's features; m2; m1m2: M2 on M1's latents (default)")
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="default (GPU), fast (CPU, about an hour), paper (Kingma et al. 2014)")
    p.add_argument("--seed", type=int, default=0, help="seeds the label draw and training (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="M2 epochs (default: the preset's)")
    p.add_argument("--m1-epochs", type=int, default=None, help="M1 epochs (default: the preset's)")
    p.add_argument("--time-budget-minutes", type=float, default=None,
                   help="stop after the epoch in which the run's wall time passes this")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting, e.g. --set train.lr=1e-3 --set m2.hidden=(300,); each changes only "
                        "the setting it names (the preset chose the others, bayes_samples included, for its "
                        "own classifier)")
    p.add_argument("--self-train", type=int, nargs="+", default=(), metavar="N",
                   help="then label N unlabelled images per class with the model's surest predictions and "
                        "train a second model on the true labels and these (default: off); each further N "
                        "adds a round, labelling with the latest model")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--tsne-points", type=int, default=TSNE_POINTS,
                   help=f"test digits in the t-SNE plot (0: none; else at least {MIN_TSNE_POINTS})")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=None, help="run directory")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted run in DIR")
    p.set_defaults(func=_main, on_interrupt=lambda args: resume_hint("fewlabel", args.out or args.resume),
                   diverged_change="a smaller train.lr (M2) or m1.lr (M1), through --set",
                   memory_change="smaller batches, through --set (train.labelled_batch, train.unlabelled_batch, "
                                 "train.eval_batch_size, m1.batch_size)")
    return p

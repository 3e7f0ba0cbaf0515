"""``vaelab vae``: train the M1 VAE on MNIST and report test ELBO and log p(x).

The Burda et al. (2016) protocol: encoder and decoder MLPs of two hidden layers of 500
softplus units, z = 50, Bernoulli likelihood, dynamically binarized training digits,
Adam, batch 100; ``--objective iwae --k 50`` trains the importance-weighted bound.
Evaluation binarizes the test digits once with :func:`ssvae.data.fixed_binarize`
(seed ``test_binarize_seed``, default 0), reports the single-sample test ELBO on all of
them and log p(x) estimated with ``eval_samples`` (5,000) importance samples on the
first ``eval_limit`` of them.

A run directory holds ``config.json``, ``run.json``, ``history.csv`` (one row an epoch),
``checkpoint.safetensors`` (rewritten atomically every epoch and on Ctrl-C),
``metrics.json``, ``samples.png`` (decoded prior samples) and ``reconstructions.png``.
``--resume DIR`` continues the run in DIR to its own total of epochs (or ``--epochs`` in
total), with the settings stored in its ``config.json``; only the epochs, the device, the
progress bars and the evaluation settings may change (a bare checkpoint file, with no
``config.json`` beside it, continues with the settings given, refusing data, objective or
k other than those stored in it; a run stopped before its first checkpoint starts over).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ssvae.data import NAMED_SOURCES, fixed_binarize, load_dataset
from ssvae.m1 import OBJECTIVES, VAE, VAEConfig
from ssvae.train import BINARIZE_MODES, CHECKPOINT_NAME, LR_SCHEDULES, evaluate_log_px, evaluate_terms, fit_vae
from vaecore.checkpoint import stored_extra
from vaecore.config import read_run_config
from vaecore.errors import InputDataError, finite_at_least, integer_at_least
from vaecore.resume import (check_new_run_dir, check_resume, check_resume_length, check_same_data, resume_hint,
                            starts_over)
from vaecore.rundir import RunDir
from vaecore.runtime import THREADS_HELP, resolve_device, seed_everything

N_GRID = 100  # prior samples in samples.png
N_RECON = 50  # test digits in reconstructions.png
NEW_RUN_EPOCHS = 10  # a new run's epochs where none are given
# What a resumed run may change: how long and where it trains (the values given; the
# epochs where given, since the interrupted run's hint, 'vaelab vae --resume DIR', gives
# none and trained to the default 10 whatever the run's own total)...
RUN_SETTINGS = ("epochs", "device", "progress", "resume")
# ...and how it is evaluated (the values given where set, the stored ones otherwise).
EVAL_SETTINGS = ("eval_samples", "eval_limit", "eval_batch_size", "eval_chunk")


@dataclass(frozen=True)
class VAERunConfig:
    """Everything ``vaelab vae`` needs; written to ``config.json``.

    Attributes:
        data: ``mnist``, ``fixture`` or a path (.npz or directory of IDX files).
        epochs: Total training epochs (a resumed run trains the missing ones); ``None``:
            :data:`NEW_RUN_EPOCHS` for a new run, the run's own total for a resumed one.
        latent: Latent size z.
        hidden: Hidden widths of encoder (decoder reversed).
        activation: Hidden activation.
        objective, k: ``elbo`` or ``iwae`` with k samples per example.
        batch_size, lr, lr_schedule, lr_decay: Adam settings (see ``ssvae.train.learning_rate``).
        binarize: Training binarization: ``dynamic``, ``fixed`` or ``none``.
        train_on_valid: Train on train + valid (60k digits, as Burda et al.) instead of train.
        seed: Seed of initialisation, shuffling and sampling.
        device: ``auto``, ``cpu``, ``cuda``, ...
        eval_samples: Importance samples per test digit for log p(x).
        eval_limit: Estimate log p(x) on the first N test digits only (None: all).
        eval_batch_size: Test digits per log p(x) forward pass.
        eval_chunk: Importance samples per forward pass.
        test_binarize_seed: Seed of the fixed binarization of the test (and shown) digits.
        resume: Run directory (or checkpoint file) to continue from.
        progress: Show progress bars.
    """

    data: str = "mnist"
    epochs: int | None = None
    latent: int = 50
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "softplus"
    objective: str = "elbo"
    k: int = 1
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "exponential"
    lr_decay: float = 1.0
    binarize: str = "dynamic"
    train_on_valid: bool = False
    seed: int = 0
    device: str = "auto"
    eval_samples: int = 5000
    eval_limit: int | None = None
    eval_batch_size: int = 100
    eval_chunk: int = 200
    test_binarize_seed: int = 0
    resume: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputDataError(f"unknown objective {self.objective!r}; choose from {OBJECTIVES}")
        if self.binarize not in BINARIZE_MODES:
            raise InputDataError(f"unknown binarize mode {self.binarize!r}; choose from {BINARIZE_MODES}")
        if self.epochs is not None:
            integer_at_least("epochs", self.epochs, 0)
        for name in ("latent", "k", "batch_size", "eval_samples", "eval_batch_size", "eval_chunk"):
            integer_at_least(name, getattr(self, name), 1)
        if self.eval_limit is not None:  # None: all test images
            integer_at_least("eval_limit", self.eval_limit, 1)
        finite_at_least("lr", self.lr, 0, strict=True)  # NaN passed `lr <= 0`
        finite_at_least("lr_decay", self.lr_decay, 0, strict=True)  # 0 or NaN stopped training after epoch 1
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputDataError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {LR_SCHEDULES}")
        if self.lr_schedule == "burda" and self.lr_decay != 1.0:  # Burda's stages fix the rates
            raise InputDataError(f"lr_decay {self.lr_decay} would be ignored by the 'burda' schedule; drop it")


def _resume_checkpoint(resume: str) -> Path | None:
    """The checkpoint ``--resume`` continues; ``None``: a run to start over (:func:`starts_over`)."""
    path = Path(resume).expanduser()
    if path.is_dir() and starts_over(resume, path / CHECKPOINT_NAME):
        return None
    path = path / CHECKPOINT_NAME if path.is_dir() else path
    if not path.is_file():
        raise InputDataError(f"--resume {resume}: no checkpoint at {path}")
    return path


def _same_data(stored: str, given: str) -> bool:
    if stored in NAMED_SOURCES or given in NAMED_SOURCES:
        return stored == given
    # Two paths: a relative one stored by a run started elsewhere may not resolve from here.
    first, second = Path(stored).expanduser(), Path(given).expanduser()
    return stored == given or not first.exists() or not second.exists() or first.resolve() == second.resolve()


def _check_bare_checkpoint(config: VAERunConfig, checkpoint: Path) -> None:
    """Refuse data, an objective or a k other than those a bare checkpoint was trained with.

    They are stored in it (``run_config``), and were not read: a fixture model's checkpoint
    resumed without ``--data`` went on training on MNIST without a word.
    """
    stored = stored_extra(checkpoint).get("run_config")
    if not isinstance(stored, dict):  # a checkpoint of another loop (ssvae.fit_vae's own callers)
        return
    differ = []
    for name in ("data", "objective", "k"):
        given = getattr(config, name)
        if name in stored and not (_same_data(str(stored[name]), given) if name == "data" else stored[name] == given):
            differ.append(f"{name} (stored {stored[name]!r}, given {given!r})")
    if differ:
        raise InputDataError(f"--resume {config.resume}: the checkpoint was trained with other settings than given: "
                             f"{'; '.join(differ)}. Give its own")


def _resumed_config(config: VAERunConfig, checkpoint: Path) -> VAERunConfig:
    """The run's stored config with ``config``'s :data:`RUN_SETTINGS` and the :data:`EVAL_SETTINGS` it sets.

    A resume used to train with the defaults of every flag it did not repeat (on ``mnist``
    instead of the run's own data, had the architecture matched).
    """
    path = checkpoint.parent / "config.json"
    if not path.is_file():  # a bare checkpoint: the settings given are all there is
        _check_bare_checkpoint(config, checkpoint)
        return config
    stored = read_run_config(VAERunConfig, path, command="vae", source=f"--resume {config.resume}")
    default = VAERunConfig()
    check_resume(config, stored, default, keep=RUN_SETTINGS + EVAL_SETTINGS, resume=config.resume)
    changes = {name: getattr(config, name) for name in RUN_SETTINGS if getattr(config, name) is not None}
    changes |= {name: getattr(config, name) for name in EVAL_SETTINGS if getattr(config, name) != getattr(default, name)}
    return dataclasses.replace(stored, **changes)


def run(config: VAERunConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Train, evaluate and plot; returns the metrics also written to ``metrics.json``."""
    began = time.perf_counter()
    resume_from = _resume_checkpoint(config.resume) if config.resume else None
    if config.resume:
        config = _resumed_config(config, resume_from or Path(config.resume) / CHECKPOINT_NAME)
    if config.epochs is None:  # a new run, or a bare checkpoint resumed without --epochs
        config = dataclasses.replace(config, epochs=NEW_RUN_EPOCHS)
    if config.resume is None and config.epochs == 0:  # it wrote an untrained checkpoint and its metrics
        raise InputDataError("--epochs 0: a new run must train at least one epoch to have a model")
    if resume_from is not None:
        check_resume_length("--epochs", config.epochs, resume_from)
    if resume_from is None or Path(workdir).resolve() != resume_from.parent.resolve():  # a new directory
        check_new_run_dir(workdir, VAERunConfig, command="vae", resumable=(Path(workdir) / CHECKPOINT_NAME).is_file())
    data_record = check_same_data(config.data, named=NAMED_SOURCES,
                                  resumed_from=resume_from.parent if resume_from is not None else None)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    dataset = load_dataset(config.data)
    x_train = dataset.train.x
    if config.train_on_valid and dataset.valid is None:  # it trained on the training split alone without a word
        raise InputDataError(f"--train-on-valid: {config.data} has no validation split to train on")
    if config.train_on_valid:
        x_train = torch.cat([x_train, dataset.valid.x])
    valid = None if config.train_on_valid or dataset.valid is None else dataset.valid.x

    model = VAE(VAEConfig(x_dim=dataset.x_dim, z_dim=config.latent, hidden=tuple(config.hidden),
                          activation=config.activation, likelihood="bernoulli")).to(device)
    with RunDir(workdir, config, seed=config.seed, device=device, data=data_record) as rundir:
        if resume_from is None:
            rundir.truncate_history("epoch", 0)  # a fresh run in an old directory starts a fresh table
        history = fit_vae(
            model, x_train, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            lr_schedule=config.lr_schedule, lr_decay=config.lr_decay, binarize=config.binarize,
            objective=config.objective, k=config.k, valid=valid, device=device, rundir=rundir,
            progress=config.progress, resume_from=resume_from, seed=config.seed,
            extra={"run_config": {"data": config.data, "objective": config.objective, "k": config.k}},
        )
        # The run's training time, every call's epochs (as fewlabel's): this call's wall time
        # made a resumed run's total smaller than the sum of its epochs' times.
        train_seconds = float(history["seconds"].sum()) if len(history) else 0.0

        # Evaluation on a fixed (seeded) binarization of the test digits.
        x_test = fixed_binarize(dataset.test.x, config.test_binarize_seed).to(device)
        test_elbo = evaluate_terms(model, x_test, batch_size=max(config.eval_batch_size, 1000))["elbo"]
        x_eval = x_test[: config.eval_limit] if config.eval_limit else x_test
        log_px = evaluate_log_px(model, x_eval, n_samples=config.eval_samples, batch_size=config.eval_batch_size,
                                 chunk_size=config.eval_chunk, progress=config.progress)

        last = history.iloc[-1].to_dict() if len(history) else {}
        metrics: dict[str, Any] = {
            "test_elbo": float(test_elbo.mean()),
            "test_log_px": float(log_px.mean()),
            "test_nll": float(-log_px.mean()),
            "n_train": int(len(x_train)),
            "n_test_elbo": int(len(x_test)),
            "n_test_log_px": int(len(x_eval)),
            "eval_samples": config.eval_samples,
            "epochs": int(last.get("epoch", 0)),
            "objective": config.objective,
            "k": config.k,
            "train_elbo": last.get("train_elbo"),
            "valid_elbo": last.get("valid_elbo"),
            "mean_epoch_seconds": float(history["seconds"].mean()) if len(history) else None,
            "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - began,  # this call's
            "device": str(device),
        }
        rundir.write_json("metrics.json", metrics)  # before the plots: one that fails leaves the figures written

        from pipelines.plots import grid_shape, save_image_grid, save_reconstruction_grid  # matplotlib at the end only

        shape = grid_shape(dataset.image_shape, dataset.x_dim)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        save_image_grid(model.sample(N_GRID, generator=generator), rundir / "samples.png", shape,
                        title=f"p(x|z) means, z ~ N(0, I) (epoch {len(history)})")
        shown = x_test[:N_RECON]
        save_reconstruction_grid(shown, model.reconstruct(shown), rundir / "reconstructions.png", shape,
                                 title="test digits (odd rows) and reconstructions (even rows)")
        return metrics


def _config_from_args(args: argparse.Namespace) -> VAERunConfig:
    return VAERunConfig(
        data=args.data, epochs=args.epochs, latent=args.latent, hidden=tuple(args.hidden),
        activation=args.activation, objective=args.objective, k=args.k, batch_size=args.batch_size,
        lr=args.lr, lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, binarize=args.binarize,
        train_on_valid=args.train_on_valid, seed=args.seed, device=args.device,
        eval_samples=args.eval_samples, eval_limit=args.eval_limit, eval_batch_size=args.eval_batch_size,
        eval_chunk=args.eval_chunk, test_binarize_seed=args.test_binarize_seed, resume=args.resume,
        progress=not args.no_progress,
    )


def _main(args: argparse.Namespace) -> None:
    config = _config_from_args(args)
    out = args.out or config.resume
    if out is None:
        raise InputDataError("give --out DIR (or --resume DIR to continue a run in place)")
    if config.resume and Path(config.resume).is_file() and args.out is None:
        out = str(Path(config.resume).parent)
    metrics = run(config, out)
    table = pd.DataFrame([{key: metrics[key] for key in ("epochs", "objective", "k", "test_elbo", "test_nll",
                                                          "n_test_log_px", "wall_seconds", "device")}])
    print(table.to_string(index=False))
    print(f"wrote {out}/metrics.json, history.csv, checkpoint.safetensors, samples.png, reconstructions.png")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``vae`` subcommand."""
    defaults = VAERunConfig()
    p = subparsers.add_parser("vae", help="train a VAE (M1) on MNIST; report test ELBO and log p(x)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=defaults.data, help="mnist | fixture | PATH (.npz or IDX directory)")
    p.add_argument("--epochs", type=int, default=defaults.epochs,
                   help=f"total training epochs (default: {NEW_RUN_EPOCHS}; a resume: the run's own total)")
    p.add_argument("--latent", type=int, default=defaults.latent, help="latent size z")
    p.add_argument("--hidden", type=int, nargs="+", default=list(defaults.hidden), help="hidden widths")
    p.add_argument("--activation", default=defaults.activation)
    p.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective)
    p.add_argument("--k", type=int, default=defaults.k, help="samples per example (IWAE k)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=defaults.lr_schedule)
    p.add_argument("--lr-decay", type=float, default=defaults.lr_decay, help="per-epoch factor (exponential)")
    p.add_argument("--binarize", choices=BINARIZE_MODES, default=defaults.binarize)
    p.add_argument("--train-on-valid", action="store_true", help="train on train+valid (60k, as Burda et al.)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="importance samples for log p(x)")
    p.add_argument("--eval-limit", type=int, default=None, help="log p(x) on the first N test digits only")
    p.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    p.add_argument("--eval-chunk", type=int, default=defaults.eval_chunk, help="importance samples per pass")
    p.add_argument("--test-binarize-seed", type=int, default=defaults.test_binarize_seed)
    p.add_argument("--out", default=None, help="run directory (default: the --resume directory)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR (or from a checkpoint file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.set_defaults(func=_main, on_interrupt=lambda args: resume_hint("vae", args.out or args.resume),
                   diverged_change="a smaller --lr",
                   memory_change="a smaller --batch-size (a new run), or --eval-batch-size and --eval-chunk "
                                 "(which --resume may change)")
    return p

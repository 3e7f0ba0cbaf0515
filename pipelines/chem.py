"""``vaelab chem train|eval``: the molecule VAE on MOSES or any SMILES CSV.

``vaelab chem train --data moses|fixture|PATH.csv --out DIR`` checks the molecules
(bad ones are skipped and counted by reason, one summary line), builds the vocabulary,
computes logP / QED / SA (cached) for the property head, and trains with a linear KL
warm-up. DIR holds ``config.json``, ``run.json``, ``history.csv`` (one row an epoch),
``checkpoint.safetensors`` (resumable, rewritten every epoch and on Ctrl-C),
``model.safetensors`` (the final model, what :func:`chemvae.load` reads) and
``train.json`` (data summary, throughput) and ``curves.png`` (loss, KL and token accuracy
per epoch). ``--resume DIR`` continues a run to its own total of epochs (or ``--epochs``
in total) with the configuration stored in DIR; a run stopped before its first checkpoint
starts over.

``vaelab chem eval DIR`` reconstructs held-out test molecules (greedy decoding from the
posterior mean), decodes ``--n-samples`` prior samples, computes the MOSES metrics
(validity, unique@k, novelty, FCD, ...) and writes ``eval.json``, ``samples.csv`` (each
sample with its RDKit properties), ``prior_samples.png`` (an RDKit grid of valid samples)
and ``properties.png`` (logP, QED, SA and penalized logP of the valid samples against test
molecules; ``eval.json`` gives their Wasserstein-1 distances, ``W1 logP/Test`` etc.).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from chemvae.batches import MoleculeTensors, encode_tokens, property_stats, standardize
from chemvae.data import NAMED_SOURCES, DataSplits, check_molecules, load_splits
from chemvae.encoders import ENCODERS
from chemvae.model import ChemVAEConfig, MoleculeVAE
from chemvae.persistence import CHECKPOINT_FILE, MODEL_FILE, load, save_model
from chemvae.tokens import REPRESENTATIONS, Tokenizer, Vocabulary
from chemvae.train import fit, load_training_state
from pipelines.chem_config import (NEW_RUN_EPOCHS, RESUME_SETTINGS, ChemEvalConfig, ChemTrainConfig, check_warmup,
                                   unused_settings)
from vaecore.checkpoint import stored_scalar
from vaecore.config import read_run_config
from vaecore.datasets import cache_dir
from vaecore.errors import InputDataError
from vaecore.resume import (DATA_RECORD, check_new_run_dir, check_resume, check_resume_length, check_same_data,
                            data_digest, digest_change, resume_hint, starts_over)
from vaecore.rundir import RunDir
from vaecore.runtime import THREADS_HELP, flush_denormals, interruptible, resolve_device, seed_everything
from vaecore.schedules import make_schedule


def load_run_splits(config: ChemTrainConfig) -> DataSplits:
    """The train / valid / test splits a run's configuration names (its :data:`~pipelines.chem_config.SPLIT_FIELDS`)."""
    return load_splits(config.data, smiles_column=config.smiles_column, max_molecules=config.max_molecules,
                       valid_fraction=config.valid_fraction, test_fraction=config.test_fraction, seed=config.seed)


def check_run_data(config: ChemTrainConfig, run_dir: str | os.PathLike, *, reads: str, advice: str) -> None:
    """Refuse a trained run whose data file is gone or changed, saying what ``reads`` it and ``advice``.

    The loader said "no data file at PATH" alone, which names neither the run nor a way on.
    A file edited since the run was trained (its sha256 differs from the run's ``data.json``)
    splits otherwise: ten rows appended to a 1,000-row CSV put 56 of the 101 "test"
    molecules in the run's training split, and ``chem eval`` measured recon and FCD on them.
    """
    if config.data in NAMED_SOURCES:
        return
    if not Path(config.data).is_file():
        raise InputDataError(f"{reads} come from the run's training data, and there is no data file at "
                             f"{config.data} (moved?); {advice}")
    record = Path(run_dir) / DATA_RECORD  # absent for a run from before the record: not checked
    if record.is_file() and (change := digest_change(record, data_digest(config.data))):
        raise InputDataError(f"{reads} come from the run's training data, and {config.data} has changed since the "
                             f"run was trained ({change}), so its splits would differ; {advice}")


def cached_properties(smiles: list[str], n_jobs: int, *, progress: bool = True) -> pd.DataFrame:
    """:func:`chemvae.properties.compute_properties`, cached per machine by the SMILES list's hash."""
    from chemvae.properties import compute_properties

    return compute_properties(smiles, n_jobs=n_jobs, cache_dir=cache_dir() / "chemvae-properties", progress=progress)


def _property_values(smiles: list[str], names: tuple[str, ...], n_jobs: int, *, progress: bool) -> np.ndarray:
    """Properties `[N, P]` (NaN where RDKit fails) of the training and validation molecules."""
    table = cached_properties(smiles, n_jobs, progress=progress)  # the names were checked with the config
    return table[list(names)].to_numpy(dtype=np.float64)


def _ignored_fractions(config: ChemTrainConfig, splits: DataSplits) -> list[str]:
    """``--test-fraction`` / ``--valid-fraction`` given where the data bring that set themselves."""
    ignored = []
    if splits.test_source != "test_fraction" and config.test_fraction != ChemTrainConfig.test_fraction:
        where = "the official MOSES test file" if splits.test_source == "moses" else "the rows its split column marks test"
        ignored.append(f"--test-fraction {config.test_fraction} would be ignored: the test set of {config.data} is "
                       f"{where}")
    if splits.valid_source != "valid_fraction" and config.valid_fraction != ChemTrainConfig.valid_fraction:
        ignored.append(f"--valid-fraction {config.valid_fraction} would be ignored: the validation set of "
                       f"{config.data} is the rows its split column marks valid")
    return ignored


def stored_config(run_dir: str | os.PathLike) -> ChemTrainConfig:
    """The :class:`ChemTrainConfig` a ``chem train`` run directory was trained with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputDataError(f"{run_dir} is not a chem run directory (no config.json)")
    return read_run_config(ChemTrainConfig, path, command="chem train", source=str(run_dir))


def train(config: ChemTrainConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Train (or resume) a molecule VAE in ``workdir``; returns what ``train.json`` holds."""
    began = time.perf_counter()
    if config.resume is not None:  # keep the stored data/model settings, take the new run settings
        stored = stored_config(config.resume)
        check_resume(config, stored, ChemTrainConfig(), keep=RESUME_SETTINGS, resume=config.resume)
        config = dataclasses.replace(stored, **{name: getattr(config, name) for name in RESUME_SETTINGS
                                                if getattr(config, name) is not None})
    elif unused := unused_settings(config):  # a new run: settings it would ignore without a word
        these, them = ("this setting", "it") if len(unused) == 1 else ("these settings", "them")
        raise InputDataError(f"{these} would be ignored by this run: {'; '.join(unused)}. Drop {them}")
    else:
        check_warmup(config)
        if config.epochs == 0:  # it wrote an untrained model.safetensors and train.json, as a trained one
            raise InputDataError("--epochs 0: a new run must train at least one epoch to have a model")
    if config.epochs is None:  # a new run given no epochs (a resume has taken its own)
        config = dataclasses.replace(config, epochs=NEW_RUN_EPOCHS)
    if config.resume is None or Path(workdir).resolve() != Path(config.resume).resolve():  # a new directory
        check_new_run_dir(workdir, ChemTrainConfig, command="chem train",
                          resumable=(Path(workdir) / CHECKPOINT_FILE).is_file())
    data_record = check_same_data(config.data, named=NAMED_SOURCES, resumed_from=config.resume)
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    splits = load_run_splits(config)
    if config.resume is None and (ignored := _ignored_fractions(config, splits)):
        raise InputDataError(f"{'; '.join(ignored)}. Drop it")
    tokenizer = Tokenizer(config.model.representation)
    resume_path = Path(config.resume) / CHECKPOINT_FILE if config.resume else None
    if resume_path is not None and starts_over(config.resume, resume_path):
        resume_path = None
    if resume_path is not None and not resume_path.is_file():
        raise InputDataError(f"--resume {config.resume}: no {CHECKPOINT_FILE} there")
    if resume_path is not None:
        check_resume_length("--epochs", config.epochs, resume_path)

    checked = check_molecules(splits.train, tokenizer, max_length=config.model.max_length,
                              canonicalize=config.model.canonicalize, n_jobs=config.n_jobs, progress=config.progress)
    print(f"training data ({config.data}): {checked.summary()}")
    if not checked.indices:
        raise InputDataError(f"{config.data}: no usable molecule among {checked.total} ({checked.summary()})")
    vocab = load(resume_path).vocab if resume_path is not None else Vocabulary.build(checked.tokens)
    checked_valid = check_molecules(splits.valid, tokenizer, max_length=config.model.max_length, vocab=vocab,
                                    canonicalize=config.model.canonicalize, n_jobs=config.n_jobs,
                                    progress=config.progress)
    if resume_path is not None:  # the stored vocabulary may lack tokens of a changed file
        known = check_molecules(checked.smiles, tokenizer, max_length=config.model.max_length, vocab=vocab,
                                canonicalize=False, n_jobs=config.n_jobs, progress=config.progress)
        known.skipped.update(checked.skipped)
        known.total = checked.total
        checked = known

    values = _property_values(checked.smiles + checked_valid.smiles, config.model.property_names, config.n_jobs,
                              progress=config.progress)
    mean, std = property_stats(values[: len(checked.smiles)])
    length = config.model.max_length + 1
    compact = torch.int16 if len(vocab) < 2**15 else torch.long  # 4x less memory for the ids
    train_data = MoleculeTensors(checked.smiles, encode_tokens(checked.tokens, vocab, length, compact),
                                 standardize(values[: len(checked.smiles)], mean, std))
    valid_data = MoleculeTensors(checked_valid.smiles, encode_tokens(checked_valid.tokens, vocab, length, compact),
                                 standardize(values[len(checked.smiles):], mean, std))
    checked.tokens = checked_valid.tokens = []  # token lists of a large set take more memory than the ids

    model = MoleculeVAE(config.model, vocab)
    model.set_property_stats(mean, std)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total = steps_per_epoch * max(config.epochs, 1)
    warmup = {"kl_warmup_steps": int(config.kl_warmup_fraction * total),
              "kl_delay_steps": int(config.kl_delay_fraction * total)}
    if resume_path is not None:
        # A run resumed to more epochs keeps the warm-up it began with: refitted to the new
        # total, the KL weight fell back mid-run (2 epochs to beta 0.05, then 0.0375 in the 3rd
        # of 4). Checkpoints from before they were stored lack the step counts.
        warmup.update({k: v for k in warmup if (v := stored_scalar(resume_path, k)) is not None})
    schedule = make_schedule(config.kl_schedule, steps=warmup["kl_warmup_steps"], end=config.beta,
                             delay=warmup["kl_delay_steps"])
    with RunDir(workdir, config, seed=config.seed, device=device, data=data_record) as rundir:
        start_epoch, step = 0, 0
        if resume_path is not None:
            start_epoch, step = load_training_state(resume_path, model, optimizer, generator)
        rundir.truncate_history("epoch", start_epoch)

        with interruptible() as stop, flush_denormals():
            done = fit(model, train_data, valid_data, optimizer=optimizer, schedule=schedule, epochs=config.epochs,
                       batch_size=config.batch_size, generator=generator, rundir=rundir,
                       checkpoint_path=rundir / CHECKPOINT_FILE, start_epoch=start_epoch, step=step,
                       grad_clip=config.grad_clip, stop=stop, progress=config.progress, checkpoint_extra=warmup)
        if stop["stop"]:  # the checkpoint holds the last completed epoch ("interrupted" alone said neither)
            raise KeyboardInterrupt(f"interrupted in epoch {done + 1}; the checkpoint at {rundir / CHECKPOINT_FILE} "
                                    f"holds epoch {done}" if done else "interrupted in epoch 1, before its checkpoint")
        save_model(model, rundir / MODEL_FILE)
        history = rundir.history
        last = history.iloc[-1].to_dict() if len(history) else {}
        summary = {
            "epochs": done,
            "n_train": len(train_data),
            "n_valid": len(valid_data),
            "vocab_size": len(vocab),
            "skipped": dict(checked.skipped),
            "valid_skipped": dict(checked_valid.skipped),
            "data_summary": checked.summary(),
            "train_molecules_per_s": float(history["train_molecules_per_s"].mean()) if len(history) else None,
            "epoch_seconds": float(history["train_seconds"].mean()) if len(history) else None,
            **{k: last[k] for k in ("train_loss", "train_recon", "train_kl", "train_token_accuracy",
                                    "valid_loss", "valid_token_accuracy", "valid_property_mse") if k in last},
            "wall_seconds": time.perf_counter() - began,
            "device": str(device),
        }
        rundir.write_json("train.json", summary)
        from pipelines.chem_plots import save_training_curves  # matplotlib only when a run ends

        save_training_curves(history, rundir / "curves.png")
        return summary


def run(config: ChemTrainConfig | ChemEvalConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Train for a :class:`ChemTrainConfig`, evaluate for a :class:`ChemEvalConfig`."""
    if isinstance(config, ChemEvalConfig):
        from pipelines.chem_eval import evaluate  # chem_eval imports this module's helpers

        return evaluate(config, workdir)
    return train(config, workdir)


# ---------------------------------------------------------------------- command line
def _train_main(args: argparse.Namespace) -> None:
    architecture = {k: getattr(args, k) for k in ChemVAEConfig.__dataclass_fields__}
    for key in ("property_names", "property_hidden", "cnn_channels", "cnn_kernels"):
        architecture[key] = tuple(architecture[key])
    values = {k: getattr(args, k) for k in ChemTrainConfig.__dataclass_fields__ if hasattr(args, k) and k != "model"}
    config = ChemTrainConfig(**values, model=ChemVAEConfig(**architecture), progress=not args.no_progress)
    out = args.out or config.resume
    if out is None:
        raise InputDataError("give --out DIR (or --resume DIR to continue a run in place)")
    summary = run(config, out)
    keys = ("epochs", "n_train", "train_loss", "valid_token_accuracy", "train_molecules_per_s", "wall_seconds",
            "device")
    print(pd.DataFrame([{k: summary.get(k) for k in keys}]).to_string(index=False))
    print(f"wrote {out}/{MODEL_FILE}, {CHECKPOINT_FILE}, history.csv, train.json, curves.png")


def _eval_main(args: argparse.Namespace) -> None:
    config = ChemEvalConfig(run_dir=args.run_dir, n_samples=args.n_samples, n_recon=args.n_recon,
                            sample_method=args.sample_method, temperature=args.temperature,
                            compute_fcd=not args.no_fcd, batch_size=args.batch_size, n_jobs=args.n_jobs,
                            seed=args.seed, device=args.device, progress=not args.no_progress)
    result = run(config, args.out or args.run_dir)
    keys = ("recon_accuracy", "validity", "unique@10k", "novelty", "FCD/Test", "decoded_molecules_per_s")
    print(pd.DataFrame([{k: result.get(k) for k in keys}]).to_string(index=False))
    written = ["eval.json", "samples.csv"] + ["prior_samples.png"] * bool(result["n_drawn"])
    written += ["properties.png"] * ("W1 QED/Test" in result)  # drawn where the data have test molecules
    print(f"wrote {args.out or args.run_dir}/{', '.join(written)}")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``chem`` subcommand with its ``train`` and ``eval`` subcommands."""
    d, m = ChemTrainConfig(), ChemVAEConfig()
    p = subparsers.add_parser("chem", help="molecule VAE: train on SMILES, evaluate generation",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="chem_command", required=True, metavar="{train,eval}")

    t = sub.add_parser("train", help="train a molecule VAE")
    t.add_argument("--data", default=d.data, help="moses | fixture | PATH.csv | PATH.smi (one SMILES a line)")
    t.add_argument("--smiles-column", default=d.smiles_column)
    t.add_argument("--max-molecules", type=int, default=None, help="cap on training molecules")
    t.add_argument("--valid-fraction", type=float, default=d.valid_fraction)
    t.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="held out for test from a CSV without a split column (moses and CSVs with one have their own test set)")
    t.add_argument("--representation", choices=REPRESENTATIONS, default=m.representation)
    t.add_argument("--encoder", choices=sorted(ENCODERS), default=m.encoder)
    t.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"total training epochs (default: {NEW_RUN_EPOCHS}; a resume: the run's own total)")
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--grad-clip", type=float, default=d.grad_clip)
    t.add_argument("--beta", type=float, default=d.beta, help="final KL weight")
    t.add_argument("--kl-schedule", choices=("linear", "sigmoid", "none"), default=d.kl_schedule)
    t.add_argument("--kl-warmup-fraction", type=float, default=d.kl_warmup_fraction)
    t.add_argument("--kl-delay-fraction", type=float, default=d.kl_delay_fraction)
    for name in ("latent_dim", "max_length", "embedding_dim", "encoder_hidden", "encoder_layers", "graph_layers",
                 "decoder_hidden", "decoder_layers"):
        t.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(m, name))
    t.add_argument("--cnn-channels", type=int, nargs="+", default=list(m.cnn_channels))
    t.add_argument("--cnn-kernels", type=int, nargs="+", default=list(m.cnn_kernels))
    t.add_argument("--dropout", type=float, default=m.dropout)
    t.add_argument("--property-names", nargs="+", default=list(m.property_names))
    t.add_argument("--property-hidden", type=int, nargs="+", default=list(m.property_hidden))
    t.add_argument("--property-weight", type=float, default=m.property_weight)
    t.add_argument("--no-canonicalize", dest="canonicalize", action="store_false")
    t.add_argument("--n-jobs", type=int, default=d.n_jobs, help="worker processes (-1: all cores)")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N | mps")
    t.add_argument("--out", default=None, help="run directory (default: the --resume directory)")
    t.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    t.set_defaults(func=_train_main, on_interrupt=lambda args: resume_hint("chem train", args.out or args.resume),
                   diverged_change="a smaller --lr or --grad-clip", memory_change="a smaller --batch-size")

    e = sub.add_parser("eval", help="evaluate a trained run: reconstruction and prior-sample metrics")
    e.add_argument("run_dir", metavar="DIR")
    e.add_argument("--n-samples", type=int, default=10_000)
    e.add_argument("--n-recon", type=int, default=1000, help="test molecules to reconstruct")
    e.add_argument("--sample-method", choices=("sample", "greedy"), default="sample")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--no-fcd", action="store_true", help="skip the Frechet ChemNet distance")
    e.add_argument("--batch-size", type=int, default=1000)
    e.add_argument("--n-jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", default=None, help="where to write (default: DIR)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    e.set_defaults(func=_eval_main, memory_change="a smaller --batch-size")
    return p

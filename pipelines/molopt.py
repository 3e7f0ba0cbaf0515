"""``vaelab molopt``: optimize a molecular objective in a trained molecule VAE's latent space.

``vaelab molopt --model DIR --objective qed|plogp|sa|similarity:SMILES --method
bo|gradient|random --budget 500 --batch-size 10 --seed S --out OUT`` loads the model
(:func:`chemvae.load`), draws ``--n-init`` initial molecules from its training data
(read from ``DIR/config.json``; ``--init-data`` overrides it) for ``bo`` and
``gradient``, runs :func:`chemvae.search.optimize` with a progress bar showing the best
score so far, and writes to OUT:

* ``history.csv`` -- one row per proposed molecule (initial ones first, iteration 0);
* ``best.csv`` -- the ``--top-k`` best distinct valid molecules found by the search;
* ``iterations.csv`` -- per-iteration timings and diagnostics (trust-region length, ...);
* ``best_so_far.png`` -- best score against objective calls;
* ``top_molecules.png`` -- RDKit grid of the top 10 with their scores;
* ``summary.json`` -- best score and molecule, objective calls, valid fraction,
  failures by reason, wall time; plus ``config.json`` and ``run.json``;
* ``journal.csv`` -- every objective outcome, written as it comes. Run the same command
  again after an interruption: the search retraces its steps reading scores from the
  journal instead of calling the objective (``replayed`` in the summary), and goes on.

Objectives are maximized: ``sa`` is the negated SA score (``neg_sa``), and ``plogp`` is
the normalized penalized logP (JT-VAE constants); ``plogp_unnormalized`` is the other.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd
import rdkit  # noqa: F401  (8 ms) the search needs it: without it the command line offers a stub naming it

from vaecore.config import read_json
from vaecore.errors import InputDataError, finite_at_least, integer_at_least
from vaecore.resume import config_differences, existing_run_config, holds_results
from vaecore.rundir import RunDir, write_csv
from vaecore.runtime import THREADS_HELP, resolve_device, set_threads

if TYPE_CHECKING:  # imported lazily at run time: BoTorch is slow to import for `--help`
    from chemvae.search.bo_settings import BOSettings

METHODS = ("bo", "gradient", "random")
BO_ONLY = ("acquisition", "tr_length", "tr_length_min", "tr_hedge", "tr_hedge_points", "tr_restart", "head_mean")  # MoloptConfig fields that only method "bo" reads
INIT_METHODS = ("bo", "gradient")  # the methods that start from initial molecules (their proposers' uses_init)
JOURNAL_FILE = "journal.csv"  # where a search records every objective outcome (read back on a rerun)


@dataclass(frozen=True)
class MoloptConfig:
    """Everything ``vaelab molopt`` needs; written to ``config.json``.

    Attributes:
        model: A ``vaelab chem train`` run directory or model file.
        objective: ``qed``, ``plogp`` (normalized), ``plogp_unnormalized``, ``sa``
            (i.e. -SA) or ``similarity:SMILES``.
        method: ``bo``, ``gradient`` or ``random``.
        budget: Objective calls on new molecules.
        batch_size: Latents proposed per iteration.
        n_init: Initial training molecules for ``bo`` / ``gradient`` (not in the budget).
        init_data: Where initial molecules come from: ``moses``, ``fixture`` or a CSV;
            ``None``: the model's own training split (from its ``config.json``), or
            decoded prior samples if the model has none.
        acquisition: ``logei`` or ``ts`` (``bo`` only).
        tr_length, tr_length_min: Initial and smallest trust-region side for ``bo``, as a
            fraction of the search box (``None``: the defaults of
            :class:`~chemvae.search.bo.BOSettings`).
        tr_hedge: Initial side of a second trust region that proposes half of every batch,
            or ``tr_hedge_points`` of it (``bo`` only; ``None``: one region).
        tr_hedge_points: Proposals of the hedge region per batch (``None``: half, rounded down).
        tr_restart: Where a collapsed trust region restarts, ``incumbent`` or ``elsewhere``
            (``bo`` only; see :class:`~chemvae.search.bo.BOSettings`).
        head_mean: The GP's prior mean is the property head's estimate of the objective
            (``bo`` only; objectives the head can predict).
        prior_bound: Half-width of the search box in prior standard deviations (``bo``,
            ``gradient``; random search draws from the whole prior).
        top_k: Rows of ``best.csv``.
        threads: torch CPU threads (``None``: torch's default). On a busy machine one
            thread is often faster for GP algebra of this size than two.
        seed, device, progress: Run settings.
    """

    model: str
    objective: str = "qed"
    method: str = "bo"
    budget: int = 500
    batch_size: int = 10
    n_init: int = 500
    init_data: str | None = None
    acquisition: str = "logei"
    tr_length: float | None = None
    tr_length_min: float | None = None
    tr_hedge: float | None = None
    tr_hedge_points: int | None = None
    tr_restart: str = "incumbent"
    head_mean: bool = False
    prior_bound: float = 3.0
    top_k: int = 10
    threads: int | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputDataError(f"unknown method {self.method!r}; choose from {METHODS}")
        for name in ("budget", "batch_size", "top_k"):  # Python callers' 2.5 or NaN passed `< 1`
            integer_at_least(name, getattr(self, name), 1)
        integer_at_least("n_init", self.n_init, 0)
        if self.threads is not None:  # set_threads' own check, before the model is loaded
            integer_at_least("threads", self.threads, 1)
        finite_at_least("prior_bound", self.prior_bound, 0, strict=True)
        defaults = {f.name: f.default for f in fields(self)}
        if self.method != "bo":
            # A BO-only setting on another method would otherwise be silently ignored.
            given = {name: getattr(self, name) for name in BO_ONLY if getattr(self, name) != defaults[name]}
            if given:
                raise InputDataError(f"settings for method 'bo' only, given with method {self.method!r}: "
                                     + ", ".join(f"{k}={v!r}" for k, v in given.items()))
        init_given = [f"{name}={getattr(self, name)!r}" for name in ("n_init", "init_data")
                      if getattr(self, name) != defaults[name]]  # not the other one, which was not given
        if self.method not in INIT_METHODS and init_given:
            them = "it" if len(init_given) == 1 else "them"
            raise InputDataError(f"method {self.method!r} starts from no initial molecules, so "
                                 f"{' and '.join(init_given)} would be ignored; drop {them}")
        if self.n_init == 0 and self.init_data is not None:  # no initial molecule is drawn from it
            raise InputDataError(f"n_init=0 draws no initial molecules, so init_data={self.init_data!r} would be "
                                 "ignored; drop it")
        if self.method == "random" and self.prior_bound != defaults["prior_bound"]:  # was ignored without a word
            raise InputDataError(f"method 'random' decodes draws from the whole prior, so prior_bound="
                                 f"{self.prior_bound} would be ignored; drop it")
        self.bo_settings()  # bad trust-region settings fail here, before the model is loaded

    def bo_settings(self) -> BOSettings | None:
        """The :class:`~chemvae.search.bo.BOSettings` of a ``bo`` run (``None`` for other methods)."""
        if self.method != "bo":
            return None
        from chemvae.search.bo_settings import BOSettings

        overrides = {"length_init": self.tr_length, "length_min": self.tr_length_min, "hedge_length": self.tr_hedge,
                     "hedge_points": self.tr_hedge_points}
        return BOSettings(acquisition=self.acquisition, head_mean=self.head_mean, restart=self.tr_restart,
                          **{k: v for k, v in overrides.items() if v is not None})


def initial_pool(config: MoloptConfig) -> tuple[list[str] | None, str]:
    """Training SMILES to draw initial molecules from, and a description of the source."""
    from chemvae.data import NAMED_SOURCES, load_splits, read_smiles_csv

    if config.init_data is not None:
        if config.init_data in NAMED_SOURCES:
            return load_splits(config.init_data, seed=0).train, config.init_data
        return read_smiles_csv(config.init_data)["smiles"].tolist(), config.init_data
    stored = Path(config.model) / "config.json"
    if not stored.is_file():
        return None, "prior samples (the model directory has no config.json naming its data)"
    train_config = read_json(stored)
    if not isinstance(train_config, dict) or "data" not in train_config:
        return None, "prior samples (the model's config.json names no data)"
    from pipelines.chem import check_run_data, load_run_splits
    from pipelines.chem_config import SPLIT_FIELDS, ChemTrainConfig

    # Only the split's fields matter here: a config.json of another vaelab version still names its split.
    split_config = ChemTrainConfig(**{k: train_config[k] for k in SPLIT_FIELDS if k in train_config})
    check_run_data(split_config, config.model, reads="the initial molecules",
                   advice="give --init-data PATH.csv (or moses, fixture)")
    splits = load_run_splits(split_config)
    return splits.train, f"{train_config['data']} (the model's training split)"


def plot_best_so_far(result: Any, path: Path) -> None:
    """Best score against objective calls, every call's score as a dot, initial best dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.plots import save_figure

    trace = result.best_so_far()
    calls = result.searched[result.searched["new"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter(range(1, len(calls) + 1), calls["score"], s=6, alpha=0.35, color="gray", label="each call")
    # A step: the best holds until a call beats it (a line drew rises between calls that never happened).
    ax.step(trace["oracle_calls"], trace["best_score"], where="post", color="C0", lw=2,
            label=f"best so far ({result.method})")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # calls are whole
    if math.isfinite(result.best_init_score):
        ax.axhline(result.best_init_score, color="C3", ls="--", lw=1, label="best initial molecule")
    ax.set_xlabel("objective calls (new molecules)")
    ax.set_ylabel(result.objective)
    ax.set_title(f"{result.method} on {result.objective}")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path, dpi=120)


# What a rerun of a search in its directory may change: its budget (a larger one goes on
# from the journal) and how it runs. Any other change would overwrite the search's results
# with another search's.
RERUN_SETTINGS = ("budget", "top_k", "threads", "device", "progress")


def check_rerun(config: MoloptConfig, workdir: str | os.PathLike) -> None:
    """Refuse a search in a directory that holds another search, or another command's run.

    Rerunning a search's own command in its directory continues it (the journal); a search
    of other settings there overwrote the first one's results without a word (its journal's
    scores were read as the second one's, where they were of the same objective).

    Raises:
        InputDataError: Naming the settings that differ.
    """
    from chemvae.search.journal import has_records

    # Another command's results count too: a search given a trained model's directory as
    # --out wrote its config.json over the model's.
    begun = holds_results(workdir) or has_records(Path(workdir) / JOURNAL_FILE)
    stored = existing_run_config(workdir, MoloptConfig, command="molopt") if begun else None
    if stored is None:  # nothing there, or a search refused before its first objective call
        return
    if changed := config_differences(config, stored, keep=RERUN_SETTINGS):
        raise InputDataError(f"{workdir} already holds a search of other settings: {'; '.join(changed)}. Its own "
                             "command continues it; give this search another --out")


def run(config: MoloptConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Run one search; write the files listed in the module docstring; return the summary.

    Rerun in its directory (only :data:`RERUN_SETTINGS` may differ), a search reads the
    outcomes its journal recorded instead of calling the objective, and goes on.
    """
    from chemvae.objectives import get_objective
    from chemvae.persistence import load
    from chemvae.search import optimize
    from pipelines.chem_plots import save_molecule_grid

    check_rerun(config, workdir)
    set_threads(config.threads)
    device = resolve_device(config.device)
    objective = get_objective(config.objective)
    model = load(config.model, device=device)  # = chemvae.load
    pool, source = (None, "none (random search)") if config.method == "random" else initial_pool(config)
    with RunDir(workdir, config, seed=config.seed, device=device) as rundir:
        result = optimize(model, objective, method=config.method, budget=config.budget,
                          batch_size=config.batch_size, n_init=config.n_init, seed=config.seed, init_smiles=pool,
                          settings=config.bo_settings(), prior_bound=config.prior_bound, progress=config.progress,
                          journal=rundir / JOURNAL_FILE)

        write_csv(rundir / "history.csv", result.history)
        best = result.best(config.top_k)
        write_csv(rundir / "best.csv", best)
        write_csv(rundir / "iterations.csv", result.iterations)
        summary = {
            **result.summary(),
            "objective_description": getattr(objective, "description", ""),
            "init_source": source,
            "model": str(config.model),
            "device": str(device),
            "settings": result.settings,
        }
        rundir.write_json("summary.json", summary)  # before the plots: one that fails leaves the figures written
        plot_best_so_far(result, rundir / "best_so_far.png")
        top = best.head(10)
        summary["molecules_drawn"] = save_molecule_grid(top["smiles"].tolist(), rundir / "top_molecules.png", per_row=5,
                                                        size=260, legends=[f"#{r.rank}  {r.score:.4g}"
                                                                           for r in top.itertuples()])
        rundir.write_json("summary.json", summary)
        return summary


# ---------------------------------------------------------------------- command line
def config_defaults() -> SimpleNamespace:
    """:class:`MoloptConfig`'s defaults by field name, for the parsers.

    Not ``MoloptConfig(model="")``: its checks import BoTorch (for the ``bo`` settings),
    which added a second or more to every ``vaelab --help`` and every mistyped command.
    """
    return SimpleNamespace(**{f.name: f.default for f in fields(MoloptConfig)})


def add_bo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bo`` method's options to ``parser``; their ``dest`` are :data:`BO_ONLY`.

    Shared by ``vaelab molopt`` and ``bench/molopt.py``, so that the two accept the same
    settings under the same names; read them back with :func:`bo_options`.
    """
    d = config_defaults()
    parser.add_argument("--acquisition", choices=("logei", "ts"), default=d.acquisition, help="bo acquisition")
    # The defaults are BOSettings'; written out so that building the parser needs no BoTorch import.
    parser.add_argument("--tr-length", type=float, default=None,
                        help="bo: initial trust-region side, fraction of the search box (default 0.8)")
    parser.add_argument("--tr-length-min", type=float, default=None,
                        help="bo: trust-region side below which it restarts (default 0.0625)")
    parser.add_argument("--tr-hedge", type=float, default=None,
                        help="bo: start a second trust region of this side that proposes half of each batch "
                             "(default: one region)")
    parser.add_argument("--tr-hedge-points", type=int, default=None,
                        help="bo: proposals of the --tr-hedge region per batch (default: half the batch)")
    parser.add_argument("--tr-restart", choices=("incumbent", "elsewhere"), default=d.tr_restart,
                        help="bo: a collapsed trust region restarts around the same incumbent, or around the "
                             "best point outside the regions it collapsed in")
    parser.add_argument("--bo-head-mean", dest="head_mean", action="store_true",
                        help="bo: the GP's prior mean is the property head's estimate of the objective, "
                             "not a constant (qed, plogp, plogp_unnormalized, sa)")


def bo_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`BO_ONLY` fields of :class:`MoloptConfig` from options added by :func:`add_bo_arguments`."""
    return {name: getattr(args, name) for name in BO_ONLY}


def _main(args: argparse.Namespace) -> None:
    config = MoloptConfig(model=args.model, objective=args.objective, method=args.method, budget=args.budget,
                          batch_size=args.batch_size, n_init=args.n_init, init_data=args.init_data,
                          **bo_options(args), prior_bound=args.prior_bound, top_k=args.top_k,
                          threads=args.threads, seed=args.seed, device=args.device, progress=not args.no_progress)
    summary = run(config, args.out)
    keys = ("method", "objective", "best_score", "oracle_calls", "valid_fraction", "wall_seconds")
    print(pd.DataFrame([{k: summary[k] for k in keys}]).to_string(index=False))
    print(f"best: {summary['best_smiles']}  failures: {summary['failures']}")
    if summary["replayed"]:
        print(f"resumed: {summary['replayed']} objective outcomes read from {args.out}/{JOURNAL_FILE}")
    print(f"wrote {args.out}/history.csv, best.csv, summary.json, journal.csv, best_so_far.png, top_molecules.png")


def _on_interrupt(args: argparse.Namespace) -> str | None:
    """After Ctrl-C: a search goes on from its journal when its command runs again."""
    from chemvae.search.journal import has_records

    journal = Path(args.out) / JOURNAL_FILE
    return f"the same command again goes on from the outcomes recorded in {journal}" if has_records(journal) else None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``molopt`` subcommand."""
    d = config_defaults()
    p = subparsers.add_parser("molopt", help="optimize a molecular objective in a molecule VAE's latent space",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="vaelab chem train run directory (or model file)")
    p.add_argument("--objective", default=d.objective,
                   help="qed | plogp | plogp_unnormalized | sa (= -SA) | similarity:SMILES")
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--budget", type=int, default=d.budget, help="objective calls on new molecules")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--n-init", type=int, default=d.n_init, help="initial training molecules (bo, gradient)")
    p.add_argument("--init-data", default=None,
                   help="moses | fixture | PATH.csv | PATH.smi (default: the model's training data)")
    add_bo_arguments(p)
    p.add_argument("--prior-bound", type=float, default=d.prior_bound, help="search box half-width in prior stds")
    p.add_argument("--top-k", type=int, default=d.top_k, help="rows of best.csv")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main, on_interrupt=_on_interrupt, memory_change="a smaller --batch-size or --n-init")
    return p

"""Benchmark of latent-space molecule search: targets, comparison table, iteration timing.

Comparison (the issue's protocol)::

    python bench/molopt.py --model runs/chem --out runs/bench_molopt \
        [--objectives qed plogp] [--methods bo gradient random] [--seeds 0 1 2 3 4] \
        [--budget 500] [--batch-size 10] [--n-init 500] [--threads 2] [--jobs 1]

runs ``vaelab molopt`` (:func:`pipelines.molopt.run`) for every objective x method x
seed into ``OUT/runs/<objective>_<method>_s<seed>/`` (finished runs are reused and an
interrupted one replays its objective journal, so an interrupted benchmark continues where
it stopped), then writes ``OUT/results.csv``,
``OUT/results.md`` (mean +/- std per method and objective), one best-so-far figure per
objective, and prints the markdown table with the target checks: QED top-1 >= 0.94,
normalized penalized logP top-1 >= 5.30, and BO above random and gradient ascent in mean
best-so-far at 50, 100, 250 and 500 objective calls. ``OUT/comparison.csv`` gives BO's
lead over each other method paired by seed, with a 95% t-interval: whether a lead in the
means stands out from the spread between seeds.

Timing of one BO iteration (GP fit plus acquisition optimization, 1,000 training points,
d = 56, batch 10; target <= 10 s on 2 CPU cores)::

    python bench/molopt.py --timing [--threads 2] [--repeats 3] [--acquisition logei] [--device cuda]

uses synthetic latents and scores (the GP's cost does not depend on where they come
from) and prints one markdown row per iteration plus the median.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipelines.molopt import INIT_METHODS, MoloptConfig, add_bo_arguments, bo_options, check_rerun
from vaecore.errors import InputDataError, VaelabError, distinct, integer_at_least
from vaecore.runtime import set_threads

CHECKPOINTS = (50, 100, 250, 500)
TARGETS = {"qed": 0.94, "plogp": 5.30}


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (pandas' ``to_markdown`` needs tabulate)."""
    cells = [[str(c) for c in table.columns]] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in table.columns) + "|")
    return "\n".join(lines)


# ---------------------------------------------------------------------- timing
def timing(threads: int, repeats: int, acquisition: str, n: int = 1000, d: int = 56, q: int = 10,
           device: str = "cpu") -> pd.DataFrame:
    """Time ``repeats`` BO iterations on ``n`` synthetic points in ``d`` dimensions on ``device``.

    The data are drawn on the CPU (the same numbers on every device), then moved; the BO
    code follows their device. On a GPU the clock stops after a synchronize.
    """
    from chemvae.search.bo import BayesOpt
    from chemvae.search.bo_settings import BOSettings
    from chemvae.search.trust_region import search_bounds
    from vaecore.runtime import resolve_device

    set_threads(threads)
    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dev)
    w = (torch.randn(d, generator=g, dtype=torch.float64) * (torch.rand(d, generator=g) < 0.2)).to(dev)

    def f(z: torch.Tensor) -> torch.Tensor:  # smooth, a few relevant directions, like a property
        return torch.sin(z @ w / 2) - 0.05 * (z[:, :8] ** 2).sum(-1)

    box = search_bounds(x.new_zeros(d), x.new_ones(d), 3.0, x)
    bo = BayesOpt(box, q, BOSettings(acquisition=acquisition, max_train=n), seed=0)
    bo.initialize(x, f(x))
    rows = []
    for i in range(repeats):
        sync()
        start = time.perf_counter()
        z, info = bo.propose()
        sync()
        rows.append({"iteration": i + 1, "device": str(dev), "n_train": info["n_train"], "fit_s": info["fit_seconds"],
                     "acq_s": info["acq_seconds"], "total_s": time.perf_counter() - start})
        # Keep the training set at n points: drop the oldest, add the batch.
        bo.x, bo.y = torch.cat([bo.x[q:], z]), torch.cat([bo.y[q:], f(z)])
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- comparison
def _slug(name: str) -> str:
    """A file-name-safe version of an objective name (``similarity:SMILES`` has odd characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _run_one(job: dict) -> str:
    """Run one search (in a worker process); returns its directory."""
    set_threads(job.pop("threads"))
    from pipelines.molopt import run

    out = job.pop("out")
    run(MoloptConfig(**job), out)
    return out


def run_all(args: argparse.Namespace) -> list[Path]:
    jobs, dirs = [], []
    for objective in args.objectives:
        for method in args.methods:
            for seed in args.seeds:
                out = Path(args.out) / "runs" / f"{_slug(objective)}_{method}_s{seed}"
                dirs.append(out)
                job = {"model": args.model, "objective": objective, "method": method, "budget": args.budget,
                       "batch_size": args.batch_size, "seed": seed, "device": args.device,
                       "progress": args.jobs == 1, "threads": args.threads, "out": str(out)}
                if method in INIT_METHODS:  # random search refuses initial-molecule settings
                    job |= {"n_init": args.n_init, "init_data": args.init_data}
                if method == "bo":  # the other methods reject BO settings
                    job |= bo_options(args)
                summary = out / "summary.json"
                if summary.is_file() and json.loads(summary.read_text(encoding="utf-8"))["budget"] == args.budget:
                    # Finished earlier: reused, if it is this search (a run of other settings
                    # was read as this one's); another budget goes on from its journal.
                    check_rerun(MoloptConfig(**{k: v for k, v in job.items() if k != "out"}), out)
                    continue
                jobs.append(job)
    print(f"{len(dirs)} runs, {len(jobs)} to do", flush=True)
    if args.jobs == 1:
        for job in jobs:
            print(f"-> {job['out']}", flush=True)
            _run_one(job)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for out in pool.map(_run_one, jobs):
                print(f"done {out}", flush=True)
    return dirs


def best_so_far(run: Path, length: int) -> np.ndarray:
    """Best score after each of the first ``length`` objective calls of a finished run `[length]`.

    A search that stopped before its budget (``optimize`` stops after many iterations
    without a new molecule) keeps its final best for the calls it never made: a best so
    far cannot fall, and leaving those checkpoints out would drop exactly the runs that
    exhausted what the decoder offers near their optimum. A run without calls gives NaN.
    """
    history = pd.read_csv(run / "history.csv", keep_default_na=False, na_values={"score": [""]})
    calls = history[(history["iteration"] > 0) & history["new"].astype(str).str.lower().eq("true")]
    best = np.fmax.accumulate(calls["score"].to_numpy(dtype=float))
    if not len(best):
        return np.full(length, math.nan)
    return np.concatenate([best, np.full(max(length - len(best), 0), best[-1])])[:length]


def load_runs(dirs: list[Path], checkpoints: tuple[int, ...]) -> pd.DataFrame:
    """One row per run: objective, method, seed, top-1, best at each checkpoint, validity, time."""
    rows = []
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        best = best_so_far(d, max(checkpoints))
        row = {"objective": summary["objective"], "method": summary["method"], "seed": summary["settings"]["seed"],
               "top1": summary["best_score"], "valid_fraction": summary["valid_fraction"],
               "oracle_calls": summary["oracle_calls"], "wall_s": summary["wall_seconds"],
               "best_init": summary["best_init_score"]}
        row.update({f"best@{c}": float(best[c - 1]) for c in checkpoints})
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_std(values: pd.Series) -> str:
    """``mean ± std``, with decimals enough for two significant digits of the std (3 to 6).

    QED's seeds differ in the fourth decimal, which three decimals would round away.
    """
    values = values.dropna()
    if values.empty:
        return "n/a"
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    decimals = 3 if not std > 0 else min(max(3, 1 - math.floor(math.log10(std))), 6)
    return f"{values.mean():.{decimals}f} ± {std:.{decimals}f}"


def results_table(runs: pd.DataFrame, checkpoints: tuple[int, ...]) -> pd.DataFrame:
    """Mean +/- std over seeds per objective and method."""
    columns = ["top1"] + [f"best@{c}" for c in checkpoints] + ["valid_fraction", "wall_s"]
    rows = []
    for (objective, method), group in runs.groupby(["objective", "method"], sort=True):
        row = {"objective": objective, "method": method, "seeds": len(group)}
        row.update({c: _mean_std(group[c]) for c in columns})
        row["max top1"] = f"{group['top1'].max():.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def check_targets(runs: pd.DataFrame, checkpoints: tuple[int, ...]) -> list[str]:
    """Lines saying whether each target is met."""
    lines = []
    means = runs.groupby(["objective", "method"]).mean(numeric_only=True)
    for objective, target in TARGETS.items():
        if (objective, "bo") in means.index:
            got = means.loc[(objective, "bo"), "top1"]
            lines.append(f"{objective} BO mean top-1 {got:.3f} (target >= {target}): "
                         f"{'met' if got >= target else 'NOT met'}")
    for objective in sorted(runs["objective"].unique()):
        if (objective, "bo") not in means.index:
            continue
        for other in ("random", "gradient"):
            if (objective, other) not in means.index:
                continue
            wins = [bool(means.loc[(objective, "bo"), f"best@{c}"] > means.loc[(objective, other), f"best@{c}"])
                    for c in checkpoints]
            lines.append(f"{objective}: BO > {other} at {list(checkpoints)}: {wins} -> "
                         f"{'met' if all(wins) else 'NOT met'}")
    return lines


def paired_differences(runs: pd.DataFrame, checkpoints: tuple[int, ...]) -> pd.DataFrame:
    """BO minus each other method at each checkpoint, paired by seed, with a 95% t-interval.

    The targets compare means over seeds; with 5 seeds a mean lead of 1e-4 in QED is far
    inside the spread of the per-seed differences. This table says how far: the mean
    paired difference, Student's t-interval over the seeds both methods ran (NaN with
    fewer than two), and on how many of them BO was ahead.

    Returns:
        One row per objective, other method and checkpoint: ``seeds``, ``mean_diff``,
        ``ci_low``, ``ci_high``, ``bo_ahead``.
    """
    from scipy.stats import t

    rows = []
    for objective in sorted(runs["objective"].unique()):
        mine = runs[runs["objective"] == objective]
        bo = mine[mine["method"] == "bo"].set_index("seed")
        for other in ("gradient", "random"):
            theirs = mine[mine["method"] == other].set_index("seed")
            seeds = bo.index.intersection(theirs.index)
            if seeds.empty:  # no BO run, or none with a partner
                continue
            for c in checkpoints:
                diff = (bo.loc[seeds, f"best@{c}"] - theirs.loc[seeds, f"best@{c}"]).to_numpy(dtype=float)
                n, mean = len(diff), float(diff.mean())
                half = (float(t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan)
                rows.append({"objective": objective, "other": other, "checkpoint": c, "seeds": n, "mean_diff": mean,
                             "ci_low": mean - half, "ci_high": mean + half, "bo_ahead": int((diff > 0).sum())})
    columns = ["objective", "other", "checkpoint", "seeds", "mean_diff", "ci_low", "ci_high", "bo_ahead"]
    return pd.DataFrame(rows, columns=columns)  # the columns also when no BO run has a partner


def describe_differences(pairs: pd.DataFrame) -> list[str]:
    """One line per objective and other method, from :func:`paired_differences`."""
    lines = []
    for (objective, other), group in pairs.groupby(["objective", "other"], sort=True):
        parts = [f"@{r.checkpoint} {r.mean_diff:+.4g} "
                 + (f"[{r.ci_low:+.4g}, {r.ci_high:+.4g}]" if r.seeds > 1 else "(no interval from one seed)")
                 + f", ahead on {r.bo_ahead}/{r.seeds}" for r in group.itertuples()]
        lines.append(f"{objective}: BO - {other}, paired by seed (mean, 95% t-interval): " + "; ".join(parts))
    return lines


def mean_band(traces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1, as the table's; 0 for one run) over runs' best-so-far `[n]` each.

    The band was drawn with ddof=0, narrower than the table's ± std for the same runs.
    """
    n = min(len(t) for t in traces)
    stack = np.stack([t[:n] for t in traces])
    mean = np.nanmean(stack, 0)
    return mean, np.nanstd(stack, 0, ddof=1) if len(traces) > 1 else np.zeros_like(mean)


def plot_curves(out: Path, dirs: list[Path]) -> None:
    """Mean best-so-far (band: +/- std over seeds) per method, one figure per objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces: dict[tuple[str, str], list[np.ndarray]] = {}
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        traces.setdefault((summary["objective"], summary["method"]), []).append(
            best_so_far(d, summary["budget"]))
    for objective in sorted({k[0] for k in traces}):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for i, method in enumerate(("bo", "gradient", "random")):
            if (objective, method) not in traces:
                continue
            runs = traces[(objective, method)]
            mean, std = mean_band(runs)
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, color=f"C{i}", label=f"{method} (n={len(runs)})")
            ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        ax.set_xlabel("objective calls (new molecules)")
        ax.set_ylabel(f"best {objective} so far")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / f"best_so_far_{_slug(objective)}.png", dpi=120)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timing", action="store_true", help="time one BO iteration instead")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations (--timing)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per search")
    p.add_argument("--model", help="vaelab chem train run directory")
    p.add_argument("--out", default="runs/bench_molopt")
    p.add_argument("--objectives", nargs="+", default=["qed", "plogp"])
    p.add_argument("--methods", nargs="+", default=["bo", "gradient", "random"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--n-init", type=int, default=500)
    p.add_argument("--init-data", default=None, help="moses | fixture | PATH.csv (default: the model's data)")
    add_bo_arguments(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="searches run in parallel processes")
    args = p.parse_args(argv)
    try:  # 0 was a KeyError from an empty timing table, or the process pool's ValueError
        integer_at_least("repeats", args.repeats, 1)
        integer_at_least("jobs", args.jobs, 1)
        for name in ("objectives", "methods", "seeds"):  # a repeat ran once and counted twice in the tables
            distinct(f"--{name}", getattr(args, name))
    except InputDataError as err:
        p.error(str(err))

    if args.timing:
        try:
            table = timing(args.threads, args.repeats, args.acquisition, device=args.device)
        except InputDataError as err:  # a device this machine lacks: one line
            p.error(str(err))
        print(f"One BO iteration ({args.acquisition}, 1000 training points, d=56, q=10) on {table['device'].iloc[0]}, "
              f"{args.threads} torch threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:\n")
        print(markdown(table.round(2)))
        print(f"\nmedian: fit {statistics.median(table['fit_s']):.2f} s + acquisition "
              f"{statistics.median(table['acq_s']):.2f} s = {statistics.median(table['total_s']):.2f} s")
        return 0
    if not args.model:
        p.error("--model is required (or --timing)")
    checkpoints = tuple(c for c in CHECKPOINTS if c <= args.budget) or (args.budget,)
    try:
        dirs = run_all(args)
    except VaelabError as err:  # a bad model, objective or setting: one line, as vaelab molopt gives it
        p.error(str(err))
    runs = load_runs(dirs, checkpoints)
    out = Path(args.out)
    runs.to_csv(out / "results.csv", index=False)
    table = results_table(runs, checkpoints)
    checks = check_targets(runs, checkpoints)
    pairs = paired_differences(runs, checkpoints)
    pairs.to_csv(out / "comparison.csv", index=False)
    checks += describe_differences(pairs)
    stopped = runs[runs["oracle_calls"] < args.budget]
    if len(stopped):
        checks.append("stopped before the budget, final best carried forward: " + ", ".join(
            f"{r.objective} {r.method} seed {r.seed} ({r.oracle_calls} calls)" for r in stopped.itertuples()))
    text = (f"Latent-space search, budget {args.budget} new molecules, batch {args.batch_size}, "
            f"{args.n_init} initial molecules (bo, gradient), seeds {args.seeds}; bo: {args.acquisition}, "
            f"trust-region length {args.tr_length or 'default'} (min {args.tr_length_min or 'default'})"
            f"{f', hedge region {args.tr_hedge}' if args.tr_hedge else ''}"
            f"{f' ({args.tr_hedge_points} of each batch)' if args.tr_hedge and args.tr_hedge_points else ''}"
            f"{', restarts elsewhere' if args.tr_restart == 'elsewhere' else ''}"
            f"{', prior mean: the property head' if args.head_mean else ''}; "
            f"plogp is the normalized penalized logP (JT-VAE constants); mean ± std over seeds.\n\n"
            + markdown(table) + "\n\n" + "\n".join(f"- {line}" for line in checks) + "\n")
    (out / "results.md").write_text(text)
    plot_curves(out, dirs)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of few-label MNIST: test error of M2 / M1+M2 at 100 / 600 / 1000 / 3000 labels.

Usage::

    # GPU (the targets: M1+M2 <= 3.3/2.6/2.4/2.2 %, M2 <= 7.0/4.9/3.6/3.9 %, >= 3 seeds)
    python bench/fewlabel.py --models m1m2 m2 --labels 100 600 1000 3000 --seeds 0 1 2 \
        --device cuda --out runs/bench_fewlabel
    # CPU, one hour, 100 labels (target <= 5 %)
    python bench/fewlabel.py --models m1m2 --labels 100 --seeds 0 --preset fast --threads 2 \
        --time-budget-minutes 60 --device cpu --out runs/bench_fewlabel_cpu
    # ... then self-training on 4,000 pseudo-labels per class (about 6 more minutes)
    python bench/fewlabel.py --models m1m2 --labels 100 --seeds 0 --preset fast --threads 2 \
        --self-train 4000 --device cpu --out runs/bench_fewlabel_cpu_selftrain
    # Speed of one M2 training step at the preset's sizes (no data, no training run),
    # with and without flushing subnormal floats; --weights RUN_DIR times a trained M2
    python bench/fewlabel.py --step-timing --models m2 m1m2 --labels 100 --preset fast --threads 1
    # ... and compiled (``train.compile_mode`` of a run; reduce-overhead adds CUDA graphs)
    python bench/fewlabel.py --step-timing --models m1m2 --labels 100 --compile-mode reduce-overhead --device cuda

Every (model, labels, seed) is one ``vaelab fewlabel`` run (:func:`pipelines.fewlabel.run`)
in ``OUT/runs/<model>_<labels>_s<seed>/``; finished runs are reused, so an interrupted
benchmark continues where it stopped. With ``--share-m1`` (default) M1 is trained once
per seed and reused for every label count (M1 never sees a label); its training time
is then counted in the wall time of the first run of that seed only, while the
"train min incl. M1" column (and each run's time budget) counts it in every run. Writes ``OUT/runs.csv`` (one row a
run) and ``OUT/summary.csv`` / ``OUT/summary.md`` (mean +/- std over seeds, wall time,
device), and prints the markdown table with the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from pipelines.fewlabel import FewLabelRunConfig, run
from ssvae.presets import is_m1_setting, is_m2_setting
from ssvae.train_config import COMPILE_MODES
from vaecore.config import read_run_config
from vaecore.errors import InputDataError, VaelabError, distinct
from vaecore.resume import config_differences
from vaecore.runtime import set_threads
from vaecore.training import compiled_step

# Test-error targets (%), from the issue; the paper's figures for reference.
TARGETS = {"m1m2": {100: 3.3, 600: 2.6, 1000: 2.4, 3000: 2.2}, "m2": {100: 7.0, 600: 4.9, 1000: 3.6, 3000: 3.9}}
PAPER = {"m1m2": {100: 3.33, 600: 2.59, 1000: 2.40, 3000: 2.18}, "m2": {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92},
         "m1": {100: 11.82, 600: 5.72, 1000: 4.24, 3000: 3.49}}


def run_one(args: argparse.Namespace, model: str, labels: int, seed: int, out: Path,
            m1_dir: Path | None) -> dict:
    """One benchmark cell: reuse a finished run of these settings, else train it (resuming an interrupted one)."""
    settings = list(args.set)
    if m1_dir is not None:
        settings.append(f"m1.checkpoint={str(m1_dir / 'm1')!r}")
    # The grid's M2 options are for its models with an M2 (M1's classifier has none), its M1
    # options for those that train an M1 (pixel M2 has none, and a shared M1 is loaded): each
    # refuses the others'.
    m2, m1 = model != "m1", model != "m2" and m1_dir is None
    config = FewLabelRunConfig(data=args.data, labels=labels, model=model, preset=args.preset, seed=seed,
                               device=args.device, epochs=args.epochs if m2 else None,
                               m1_epochs=args.m1_epochs if m1 else None,
                               time_budget_minutes=args.time_budget_minutes if m2 else None,
                               settings=tuple(s for s in settings if (m2 or not is_m2_setting(s))
                                              and (m1 or not is_m1_setting(s) or s.startswith("m1.checkpoint="))),
                               self_train=tuple(args.self_train) if m2 else (), plots=not args.no_plots,
                               progress=not args.no_progress)
    if (out / "metrics.json").exists():
        # A finished run of other settings was reused as this one without a word.
        stored = read_run_config(FewLabelRunConfig, out / "config.json", command="fewlabel", source=str(out))
        if changed := config_differences(config, stored, keep=("device", "progress", "plots")):
            raise InputDataError(f"{out} holds a finished run of other settings: {'; '.join(changed)}. Give the "
                                 "grid another --out")
        return json.loads((out / "metrics.json").read_text())
    # An interrupted cell continues (one stopped before its first checkpoint starts over in place).
    return run(config, out, resume=(out / "config.json").exists())


def step_timing(args: argparse.Namespace, seconds: float = 10.0) -> pd.DataFrame:
    """Milliseconds per M2 training step (objective, backward, Adam), flushing subnormals or not.

    Fresh weights on random inputs of the preset's batch sizes: 784 pixels for ``m2``;
    for ``m1m2``, the 16 active z1 dimensions the MNIST runs kept (M1's sampling of z1
    is not included). With ``args.weights`` (the directory of a finished ``m2`` run), the
    trained M2 instead, on the first binarized images of ``args.data``: trained weights
    drive the decoder's outputs into subnormal floats, which the CPU handles slowly
    unless :func:`vaecore.runtime.flush_denormals` is on (training loops turn it on).
    Each cell runs 5 warm-up steps, then as many steps as fit in ``seconds``. With
    ``args.compile_mode``, the objective goes through ``torch.compile`` (its compile
    time is in the warm-up column), and only the flushing cell is timed. ``args.set``
    overrides apply to the fresh models (M2's architecture and training batch sizes).
    """
    from pipelines.fewlabel_config import parse_settings
    from ssvae.classifier import load_classifier
    from ssvae.data import load_dataset
    from ssvae.m2 import M2
    from ssvae.presets import override, preset
    from vaecore.runtime import flush_denormals, resolve_device

    device = resolve_device(args.device)
    if args.weights is not None:
        trained = load_classifier(args.weights).model
        if hasattr(trained, "m1"):
            raise SystemExit(f"--weights {args.weights}: an m1m2 run; step timing loads m2 runs only")
        labels = json.loads((Path(args.weights) / "config.json").read_text())["labels"]
        cells = [("m2 (trained)", labels, trained.m2)]
    else:
        cells = [(model, labels, None) for model in args.models if model != "m1" for labels in args.labels]
    rows = []
    for model, labels, weights in cells:
        fit = override(preset(args.preset, model=model.split()[0], n_labels=labels), **parse_settings(tuple(args.set)))
        n_l, n_u = min(fit.train.labelled_batch, labels), fit.train.unlabelled_batch
        # M1+M2's M2 sees 16 z1 values, and with convolutions the 784 pixels after them.
        context = 784 if model == "m1m2" and fit.m2.classifier_channels else 0
        if weights is None:
            x_dim = 16 + context if model == "m1m2" else 784
            x_l = torch.rand(n_l, x_dim, device=device).bernoulli()
            y_l = torch.arange(n_l, device=device) % fit.m2.n_classes
            x_u = torch.rand(n_u, x_dim, device=device).bernoulli()
        else:
            train = load_dataset(args.data).train
            generator = torch.Generator().manual_seed(0)
            x_l = train.x[:n_l].bernoulli(generator=generator).to(device)
            y_l = train.y[:n_l].to(device)
            x_u = train.x[n_l:n_l + n_u].bernoulli(generator=generator).to(device)
        # Compiled steps are timed as training runs them only: flushing subnormals.
        for flush in (False, True) if args.compile_mode is None else (True,):
            # Every cell starts from the same weights and a fresh Adam.
            # The random pixel inputs stand for MNIST's 28 x 28 images.
            image_shape = (28, 28) if fit.m2.classifier_channels else None
            m2 = (M2(replace(fit.m2, x_dim=x_l.shape[1] - context, image_shape=image_shape, context_dim=context))
                  if weights is None else copy.deepcopy(weights)).to(device)
            m2.train()
            optimizer = torch.optim.Adam(m2.parameters(), lr=fit.train.lr)

            def batch_loss(m2: M2 = m2) -> torch.Tensor:
                return m2.loss_terms(x_l, y_l, x_u, alpha=fit.train.alpha)["loss"]

            loss_of = batch_loss if args.compile_mode is None else compiled_step(
                batch_loss, args.compile_mode, static=(x_l, y_l, x_u))  # as train_m2 compiles its steps

            def step() -> None:
                loss = loss_of()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            with contextlib.ExitStack() as stack:
                if flush:
                    stack.enter_context(flush_denormals())
                warm = time.perf_counter()
                for _ in range(5):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                warm = time.perf_counter() - warm
                n, began = 0, time.perf_counter()
                while time.perf_counter() - began < seconds:
                    step()
                    n += 1
                if device.type == "cuda":
                    torch.cuda.synchronize()
            ms = 1000 * (time.perf_counter() - began) / n
            steps = (50_000 - labels) // n_u
            rows.append({"model": model, "n_labels": labels, "batch (labelled + unlabelled)": f"{n_l} + {n_u}",
                         "flush denormals": flush, "compile": args.compile_mode or "eager",
                         "warm-up s (5 steps)": warm, "device": str(device), "threads": torch.get_num_threads(),
                         "steps": n, "ms / step": ms, "s / epoch (M2 steps)": ms * steps / 1000})
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean +/- std of the test error (%) per model and label count, with times and targets."""
    rows = rows.assign(test_pct=100 * rows["test_error"], valid_pct=100 * rows["valid_error"],
                       minutes=rows["wall_seconds"] / 60, train_minutes=rows["train_seconds"] / 60)
    if "classifier_test_error" in rows:
        # Runs that predict by Bayes' rule (bayes_samples) also report the classifier alone.
        rows = rows.assign(alone_pct=100 * rows["classifier_test_error"].fillna(rows["test_error"]))
    if "stage1_test_error" in rows:
        # Self-trained runs (--self-train) also report their first model's error.
        rows = rows.assign(stage1_pct=100 * rows["stage1_test_error"].fillna(rows["test_error"]))
    g = rows.groupby(["model", "n_labels"])
    table = pd.DataFrame({
        "seeds": g.size(),
        "test error % (mean)": g["test_pct"].mean(),
        "± std": g["test_pct"].std(ddof=1).fillna(0.0),
        "valid error %": g["valid_pct"].mean(),
        "wall min / run": g["minutes"].mean(),
        "train min incl. M1": g["train_minutes"].mean(),
        "epochs": g["epochs_done"].mean() if "epochs_done" in rows else float("nan"),
        "device": g["device"].first(),
    }).reset_index()
    if "alone_pct" in rows:
        table.insert(4, "q(y|x) alone %", g["alone_pct"].mean().to_numpy())
    if "stage1_pct" in rows:
        table.insert(4, "before self-training %", g["stage1_pct"].mean().to_numpy())
    table["target %"] = [TARGETS.get(m, {}).get(n, float("nan")) for m, n in zip(table["model"], table["n_labels"])]
    table["paper %"] = [PAPER.get(m, {}).get(n, float("nan")) for m, n in zip(table["model"], table["n_labels"])]
    table["meets target"] = table["test error % (mean)"] <= table["target %"]
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' own ``to_markdown`` needs the optional ``tabulate``)."""
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def run_grid(args: argparse.Namespace) -> list[dict]:
    """Every (seed, model, labels) run of the benchmark, in that order; one record each."""
    out = Path(args.out)
    records = []
    for seed in args.seeds:
        first_m1: Path | None = None  # the run of this seed whose M1 the others reuse
        for model in args.models:
            for labels in args.labels:
                run_dir = out / "runs" / f"{model}_{labels}_s{seed}"
                reuse = first_m1 if (args.share_m1 and model in ("m1", "m1m2")) else None
                metrics = run_one(args, model, labels, seed, run_dir, reuse)
                if model in ("m1", "m1m2") and first_m1 is None and (run_dir / "m1").exists():
                    first_m1 = run_dir
                records.append({**metrics, "run": str(run_dir), "shared_m1": reuse is not None})
                print(f"{model} labels={labels} seed={seed}: test error {100 * metrics['test_error']:.2f}% "
                      f"({metrics['wall_seconds'] / 60:.1f} min)", flush=True)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--models", nargs="+", default=["m1m2", "m2"], choices=("m1", "m2", "m1m2"))
    p.add_argument("--labels", nargs="+", type=int, default=[100, 600, 1000, 3000])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--preset", default="default", choices=("default", "fast", "paper"))
    p.add_argument("--epochs", type=int, default=None, help="M2 epochs (default: the preset's)")
    p.add_argument("--m1-epochs", type=int, default=None)
    p.add_argument("--time-budget-minutes", type=float, default=None, help="per run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset override")
    p.add_argument("--self-train", type=int, nargs="+", default=(), metavar="N",
                   help="self-train every run on N pseudo-labels per class, a round each N "
                        "(vaelab fewlabel --self-train)")
    p.add_argument("--no-share-m1", dest="share_m1", action="store_false",
                   help="train M1 afresh in every run instead of once per seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default="runs/bench_fewlabel")
    p.add_argument("--step-timing", action="store_true", help="only time M2 training steps, then exit")
    p.add_argument("--compile-mode", default=None, choices=COMPILE_MODES,
                   help="with --step-timing: time the step compiled with torch.compile in this mode")
    p.add_argument("--weights", default=None, metavar="RUN_DIR",
                   help="with --step-timing: time the trained M2 of this finished m2 run on real images")
    args = p.parse_args()
    began = time.perf_counter()
    try:
        set_threads(args.threads)
        for name in ("models", "labels", "seeds"):  # a repeat ran once and counted twice in the table
            distinct(f"--{name}", getattr(args, name))
        if args.step_timing:
            print(to_markdown(step_timing(args)))
            return
        records = run_grid(args)
    except VaelabError as err:  # bad data or settings: one line, as vaelab fewlabel gives it
        p.error(str(err))
    out = Path(args.out)
    rows = pd.DataFrame(records)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "runs.csv", index=False)
    table = summarize(rows)
    table.to_csv(out / "summary.csv", index=False)
    markdown = to_markdown(table)
    (out / "summary.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\n{len(rows)} runs in {(time.perf_counter() - began) / 60:.1f} min; tables in {out}")


if __name__ == "__main__":
    main()

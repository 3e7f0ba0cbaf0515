"""Self-train finished few-label runs afresh: the second stage of ``--self-train N`` for several N.

Usage::

    python bench/selftrain_replay.py runs/bayes/preset_100_s0 runs/bayes/preset_100_s3 \
        --per-class 3000 4000 --threads 1 --out runs/selftrain_replay

For every finished ``vaelab fewlabel`` run (M2 or M1+M2) this scores the training images
once with the run's kept model (as the run predicts: by Bayes' rule where its
``bayes_samples`` says so), takes its N surest predictions per class on the unlabelled ones
(:func:`ssvae.selftrain.pseudo_labels`) and trains the second model exactly as ``vaelab
fewlabel --self-train N`` would (:func:`pipelines.fewlabel.train_on_pseudo_labels`), in
``OUT/<run name>_p<N>/``; the finished run is only read. Finished cells are reused, so an
interrupted replay continues. Writes ``OUT/replay.csv`` and prints a markdown table: per
run and N, the pseudo-labels' error (where the data has hidden labels), and the validation
and test errors before and after.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from fewlabel import to_markdown
from pipelines.fewlabel import FewLabelRunConfig, train_on_pseudo_labels
from ssvae.classifier import load_classifier
from ssvae.data import load_dataset
from ssvae.fewlabel import MODEL_NAME
from ssvae.labels import load_split
from ssvae.selftrain import pseudo_labels
from vaecore.config import read_run_config
from vaecore.errors import InputDataError
from vaecore.rundir import write_json
from vaecore.runtime import resolve_device, set_threads


def replay(run_dir: Path, per_class: list[int], out: Path, *, device: torch.device, progress: bool) -> list[dict]:
    """The second stage for each N on one finished run; one row of figures per N."""
    if not (run_dir / "metrics.json").is_file():
        raise InputDataError(f"{run_dir}: no metrics.json there (not a finished vaelab fewlabel run)")
    # A self-trained run's model.safetensors and labels.csv are its first model's.
    first_file = run_dir / "stage1_metrics.json"
    first = json.loads((first_file if first_file.is_file() else run_dir / "metrics.json").read_text(encoding="utf-8"))
    config = read_run_config(FewLabelRunConfig, run_dir / "config.json", command="fewlabel", source=str(run_dir))
    dataset = load_dataset(config.data)
    idx, _ = load_split(run_dir / "labels.csv")
    source = str(run_dir.resolve())
    proba = None  # scored once, and only if some cell is not finished
    rows = []
    for n in per_class:
        cell = out / f"{run_dir.name}_p{n}"
        if (cell / "metrics.json").exists():
            metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
            # Cells are named by the run's directory name: another run of that name (the
            # same cell of another grid) was reused as this one's replay without a word.
            if metrics.get("replay_of", source) != source:
                raise InputDataError(f"{cell} holds the replay of another run ({metrics['replay_of']}), not of "
                                     f"{source}; give this one another --out")
        else:
            # Its checks (an M1 run, a count below 0) before any scoring.
            stage = replace(config, self_train=n, device=str(device), plots=False, tsne_points=0, progress=progress)
            if proba is None:
                # The run's own first model (a directory would give a self-trained run's last stage).
                proba = load_classifier(run_dir / MODEL_NAME, device=device).predict_proba(dataset.train.x,
                                                                                          progress=progress)
            pseudo_idx, pseudo_y = pseudo_labels(proba, n, exclude=idx)
            _, metrics = train_on_pseudo_labels(stage, dataset, idx, pseudo_idx, pseudo_y, first=first,
                                                first_dir=run_dir, workdir=cell, device=device,
                                                resume=(cell / "checkpoint.safetensors").exists())
            write_json(cell / "metrics.json", {**metrics, "replay_of": source})
        rows.append({"run": str(run_dir), "per class": n, "pseudo-labels": metrics["n_pseudo_labels"],
                     "pseudo-label error %": 100 * metrics["pseudo_label_error"],
                     "before: valid %": 100 * first["valid_error"], "before: test %": 100 * first["test_error"],
                     "after: valid %": 100 * metrics["valid_error"], "after: test %": 100 * metrics["test_error"],
                     "best epoch": metrics.get("best_epoch"), "minutes": metrics.get("m2_seconds", 0.0) / 60})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished vaelab fewlabel run directories (M2 or M1+M2)")
    p.add_argument("--per-class", nargs="+", type=int, default=[4000], help="pseudo-labels per class (N)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path("runs/selftrain_replay"))
    args = p.parse_args()
    try:
        set_threads(args.threads)
        device = resolve_device(args.device)
        rows = [row for run_dir in args.runs
                for row in replay(run_dir, args.per_class, args.out, device=device, progress=args.progress)]
    except InputDataError as err:
        raise SystemExit(f"selftrain_replay: {err}") from None
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "replay.csv", index=False)
    print(to_markdown(table))


if __name__ == "__main__":
    main()

"""Errors of finished few-label runs' kept models: by their classifier, and by Bayes' rule.

Usage::

    python bench/bayes_replay.py runs/m1long/m1m2_100_s0_m1e150 runs/bigbatch/m1m2_100_s0_b500 --samples 16 64

Loads each run directory's kept model (``model.safetensors``: the epoch that training chose on
the classifier's validation error) and scores the run's own validation and test sets (its
``config.json`` names the data) twice over: with the classifier q(y|x) alone, and with
q(y|x) times the generative model's p(y|x) from importance-weighted bounds with k samples
(``FitConfig.bayes_samples``, :meth:`ssvae.m2.M2.bayes_logits`), for each ``--samples`` k.
Whatever a run's own setting was, both are scored, so runs made before ``bayes_samples``
existed can be compared. Prints a markdown table (errors in %, a mean row last) and writes
it as CSV with ``--csv``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fewlabel import to_markdown
from ssvae.classifier import FewLabelClassifier, load_classifier
from ssvae.data import ImageDataset, load_dataset
from ssvae.fewlabel import MODEL_NAME
from vaecore.errors import InputDataError
from vaecore.runtime import set_threads


def score(run: Path, dataset: ImageDataset, samples: list[int], device: str) -> dict[str, object]:
    """One table row: the run's best epoch and its errors (%) per predictor and split."""
    history = pd.read_csv(run / "history.csv") if (run / "history.csv").exists() else None
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8")) if (run / "metrics.json").exists() else {}
    row: dict[str, object] = {"run": str(run), "labels": metrics.get("n_labels", ""),
                              "best epoch": metrics.get("best_epoch", ""),
                              "epochs run": len(history) if history is not None else ""}
    model = load_classifier(run, device=device).model  # read once; each k below only predicts differently
    for k in [0, *samples]:
        clf = FewLabelClassifier(model, n_classes=model.m2.config.n_classes, bayes_samples=k)
        name = "classifier" if k == 0 else f"bayes k={k}"
        for split_name in ("valid", "test"):
            split = getattr(dataset, split_name)
            if split is not None:
                row[f"{name} {split_name}"] = 100 * clf.error(split.x, split.y)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="vaelab fewlabel run directories (M2 or M1+M2)")
    p.add_argument("--samples", type=int, nargs="+", default=[64], help="importance samples k, each >= 1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args()
    if any(k < 1 for k in args.samples):
        p.error(f"--samples must all be >= 1, got {args.samples}")
    try:
        set_threads(args.threads)
    except InputDataError as err:
        p.error(str(err))
    datasets: dict[str, ImageDataset] = {}
    rows = []
    for run in args.runs:
        if not (run / MODEL_NAME).exists() or not (run / "config.json").exists():
            p.error(f"{run} has no {MODEL_NAME} and config.json (is it an M2 / M1+M2 run directory?)")
        data = json.loads((run / "config.json").read_text(encoding="utf-8")).get("data")
        if data is None:
            p.error(f"{run}/config.json names no data set (is it a vaelab fewlabel run?)")
        try:
            if data not in datasets:
                datasets[data] = load_dataset(data)
            rows.append(score(run, datasets[data], args.samples, args.device))
        except InputDataError as err:
            p.error(f"{run}: {err}")
        print(f"scored {run}", flush=True)
    table = pd.DataFrame(rows)
    errors = [c for c in table.columns if c.endswith((" valid", " test"))]
    if len(table) > 1:
        mean = {**{c: "" for c in table.columns}, "run": "mean", **table[errors].mean().to_dict()}
        # The other columns as objects, so that epochs stay integers beside the mean row's blanks.
        table = pd.concat([table.astype({c: object for c in table.columns if c not in errors}),
                           pd.DataFrame([mean])], ignore_index=True)
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
    print(to_markdown(table))


if __name__ == "__main__":
    main()

"""bench/bayes_replay.py rescoring a tiny fixture run: it reproduces the run's own figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "m2.hidden=(16,)", "--set", "m2.z_dim=4", "--set", "m2.batch_norm=False",
        "--set", "train.labelled_batch=50", "--set", "train.unlabelled_batch=100", "--set", "train.ema_decay=None",
        "--set", "m1.vae.hidden=(32,)", "--set", "m1.vae.z_dim=6", "--m1-epochs", "1",
        "--device", "cpu", "--no-progress", "--no-plots"]


def test_bayes_replay_reproduces_a_runs_classifier_and_bayes_errors(tmp_path):
    run = tmp_path / "run"
    assert main(["fewlabel", "--data", "fixture", "--labels", "50", "--model", "m1m2", "--preset", "fast",
                 "--epochs", "2", *TINY, "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["bayes_samples"] == 64
    table = tmp_path / "table.csv"
    done = subprocess.run([sys.executable, "bench/bayes_replay.py", str(run), "--samples", "4", "64",
                           "--csv", str(table)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = pd.read_csv(table).iloc[0]
    assert row["best epoch"] == metrics["best_epoch"]
    # The classifier's errors are the ones training recorded; the product's, at the run's own
    # k, are drawn from the same fixed seed as the run's, so they match to the digit.
    assert row["classifier valid"] == pytest.approx(100 * metrics["classifier_valid_error"])
    assert row["classifier test"] == pytest.approx(100 * metrics["classifier_test_error"])
    assert row["bayes k=64 test"] == pytest.approx(100 * metrics["test_error"])
    assert row["bayes k=64 valid"] == pytest.approx(100 * metrics["valid_error"])
    assert {"bayes k=4 valid", "bayes k=4 test"} <= set(row.index)
    assert "| classifier valid |" in done.stdout

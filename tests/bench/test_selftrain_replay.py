"""bench/selftrain_replay.py on a tiny fixture run: it reproduces ``--self-train``'s second stage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "m2.hidden=(16,)", "--set", "m2.z_dim=4", "--set", "m2.batch_norm=False",
        "--set", "train.labelled_batch=50", "--set", "train.unlabelled_batch=100", "--set", "train.ema_decay=None",
        "--set", "m1.vae.hidden=(32,)", "--set", "m1.vae.z_dim=6", "--set", "bayes_samples=4", "--m1-epochs", "1",
        "--epochs", "2", "--device", "cpu", "--no-progress", "--no-plots"]


def test_selftrain_replay_reproduces_the_pipelines_second_stage(tmp_path):
    run = tmp_path / "run"
    assert main(["fewlabel", "--data", "fixture", "--labels", "50", "--model", "m1m2", "--preset", "fast",
                 *TINY, "--self-train", "20", "--out", str(run)]) == 0
    # the replay reads a finished run as the first stage: give it the first stage's figures
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "fit_config.json", "labels.csv", "model.safetensors"):
        (plain / name).write_bytes((run / name).read_bytes())
    (plain / "metrics.json").write_bytes((run / "stage1_metrics.json").read_bytes())
    shutil.copytree(run / "m1", plain / "m1")
    out = tmp_path / "replay"
    done = subprocess.run([sys.executable, "bench/selftrain_replay.py", str(plain), "--per-class", "20", "5",
                           "--threads", "1", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_csv(out / "replay.csv")
    assert table["per class"].tolist() == [20, 5]
    metrics = json.loads((run / "metrics.json").read_text())
    same = table.iloc[0]
    # the same pseudo-labels and the same M1, and so the same second model, epoch for epoch
    assert (pd.read_csv(out / "plain_p20" / "labels.csv").equals(pd.read_csv(run / "self_train" / "labels.csv")))
    assert same["pseudo-labels"] == metrics["n_pseudo_labels"]
    assert same["after: test %"] == pytest.approx(100 * metrics["test_error"])
    assert same["after: valid %"] == pytest.approx(100 * metrics["valid_error"])
    assert same["before: test %"] == pytest.approx(100 * metrics["stage1_test_error"])
    assert table.iloc[1]["pseudo-labels"] <= 50 and "| per class |" in done.stdout
    # Cells are named by the run's directory name: another run of that name is not given this one's replay.
    other = tmp_path / "other" / "plain"
    shutil.copytree(plain, other)
    again = subprocess.run([sys.executable, "bench/selftrain_replay.py", str(other), "--per-class", "20", "--threads",
                            "1", "--device", "cpu", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert (f"{out / 'plain_p20'} holds the replay of another run ({plain.resolve()}), not of {other.resolve()}"
            in again.stderr)

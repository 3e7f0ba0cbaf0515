"""``bench/fewlabel_parallel.sh`` end to end on the CPU and the committed fixture.

The script is what a lent GPU runs in its few minutes, so it must not break unseen: it once
imported a helper that had since been renamed, and every phase-B run would have failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.fewlabel import SELF_TRAIN_DIR, STAGE1_METRICS
from ssvae.api import m1_training_seconds

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("self_train", ["", "5 6"])  # none, or two rounds
def test_fewlabel_parallel_runs_both_phases_on_the_fixture(tmp_path, self_train):
    out, bench = tmp_path / "out", tmp_path / "bench"
    env = {**os.environ, "DEV": "cpu", "DATA": "fixture", "LABELS": "20", "SEEDS": "0", "M1_EPOCHS": "2",
           "T_A": "60", "T_END": "600", "M2_SET": "train.epochs=3", "PY": sys.executable, "OUT": str(out), "B": str(bench)}
    if self_train:
        env["SELF_TRAIN"] = self_train
    done = subprocess.run(["bash", "bench/fewlabel_parallel.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all done" in done.stdout and "data ok at" in done.stdout

    # Phase A: M1 finished its 2 epochs before T_A and left its checkpoint, sent back in $OUT.
    m1 = bench / "runs" / "m1_100_s0" / "m1"
    assert len(pd.read_csv(m1 / "history.csv")) == 2
    assert (out / "m1_s0.safetensors").stat().st_size > 0

    # Phase B: M1+M2 loaded that M1, with M2_SET's 3 epochs and a budget ending T_END seconds
    # after the script started, plus M1's own time (the budget counts M1's minutes).
    run = bench / "runs" / "m1m2_20_s0"
    config = json.loads((run / "config.json").read_text())
    assert config["settings"] == [f"m1.checkpoint='{m1}'", "train.epochs=3"]
    m1_seconds = m1_training_seconds(m1)
    assert m1_seconds > 0
    assert (m1_seconds + 600 - 300) / 60 <= config["time_budget_minutes"] <= (m1_seconds + 600) / 60
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3 and not metrics["stopped_by_budget"]
    assert metrics["n_labels"] == 20 and 0.0 <= metrics["test_error"] <= 1.0
    # train_seconds counts M1 once and every stage's M2: with self-training, the first stage's
    # figures are in stage1_metrics.json and each round's in its self_train/ directory.
    stage_m2_seconds = [metrics["m2_seconds"]]
    if self_train:
        stage_m2_seconds = [json.loads((run / STAGE1_METRICS).read_text())["m2_seconds"]]
        stage = run
        for _ in self_train.split():
            stage = stage / SELF_TRAIN_DIR
            stage_m2_seconds.append(json.loads((stage / "metrics.json").read_text())["m2_seconds"])
        assert stage_m2_seconds[-1] == metrics["m2_seconds"]
    assert metrics["train_seconds"] == pytest.approx(sum(stage_m2_seconds) + m1_seconds, abs=1.0)

    # The tables: one row per run (M1 ended in time, so its classifiers' run has one too),
    # and the summary the benchmark pastes into BENCHMARKS.md.
    runs = pd.read_csv(bench / "runs.csv").set_index("run")
    assert sorted(runs.index) == ["m1_100_s0", "m1m2_20_s0"]
    assert runs.loc["m1m2_20_s0", "test_error"] == metrics["test_error"]
    assert "| m1m2 | 20 |" in (bench / "summary.md").read_text()
    # M1+M2 below 600 labels predicts by Bayes' rule; the table keeps the classifier alone beside.
    assert metrics["bayes_samples"] == 64
    assert runs.loc["m1m2_20_s0", "classifier_test_error"] == metrics["classifier_test_error"]
    assert "q(y|x) alone %" in (bench / "summary.md").read_text()
    if self_train:  # the figures are the third model's, trained on 6 pseudo-labels per class as well
        # The second model's surest predictions: at most 6 per class (a class that this 3-epoch
        # model rarely predicts has fewer to give), all of them in pseudo_labels.csv.
        pseudo = pd.read_csv(run / "self_train" / "pseudo_labels.csv")
        assert config["self_train"] == [5, 6] and len(pseudo) == metrics["n_pseudo_labels"] >= 6
        assert pseudo["label"].value_counts().max() <= 6
        assert len(pd.read_csv(run / "self_train" / "self_train" / "history.csv")) == 3
        assert len(metrics["stage_test_errors"]) == 3 and (run / "stage1_metrics.json").is_file()
        assert runs.loc["m1m2_20_s0", "stage1_test_error"] == metrics["stage1_test_error"]
        assert "before self-training %" in (bench / "summary.md").read_text()
    assert (out / "results.tgz").stat().st_size > 0

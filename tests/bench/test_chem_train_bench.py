"""bench/chem_train.py end to end on the committed MOSES fixture: the settings reach the run, the table its targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_writes_its_table_against_the_targets(tmp_path):
    out = tmp_path / "bench_chem"
    done = subprocess.run([sys.executable, "bench/chem_train.py", "--data", "fixture", "--max-molecules", "120",
                           "--epochs", "1", "--batch-size", "64", "--decoder-hidden", "48", "--decoder-layers", "1",
                           "--kl-warmup-fraction", "0.5", "--beta", "0.2", "--n-samples", "30", "--n-recon", "20",
                           "--no-fcd", "--n-jobs", "1", "--threads", "1", "--device", "cpu", "--no-progress",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["model"]["decoder_hidden"], config["model"]["decoder_layers"]) == (48, 1)
    assert (config["kl_warmup_fraction"], config["beta"], config["max_molecules"]) == (0.5, 0.2, 120)

    table = pd.read_csv(out / "bench.csv")
    rows = table.set_index("metric")
    assert {"recon_accuracy", "validity", "unique@10k", "novelty", "FCD/Test"} <= set(rows.index)
    recon = rows.loc["recon_accuracy"]
    assert 0.0 <= recon["value"] <= 1.0 and recon["target"] == ">= 0.9"
    assert bool(recon["met"]) == (recon["value"] >= 0.9)
    assert pd.isna(rows.loc["FCD/Test", "met"])  # --no-fcd: no value, so neither met nor missed
    assert (table["n_train"] > 0).all() and (table["n_train"] <= 120).all()
    assert (table["n_samples"] == 30).all() and (table["device"] == "cpu").all()
    assert "recon_accuracy" in done.stdout and f"wrote {out / 'bench.csv'}" in done.stdout


def test_a_bad_setting_is_one_line_on_stderr(tmp_path):
    done = subprocess.run([sys.executable, "bench/chem_train.py", "--data", "fixture", "--decoder-layers", "0",
                           "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: decoder_layers must be an integer >= 1, got 0" in done.stderr


def test_a_bad_evaluation_setting_is_refused_before_training(tmp_path):
    # It was refused only once every epoch had trained (hours on MOSES).
    done = subprocess.run([sys.executable, "bench/chem_train.py", "--data", "fixture", "--n-samples", "0",
                           "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error: n_samples must be an integer >= 1, got 0" in done.stderr
    assert not (tmp_path / "b").exists()

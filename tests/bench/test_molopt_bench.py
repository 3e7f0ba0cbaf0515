"""bench/molopt.py: a bad setting is one line on stderr, not a traceback; best-so-far traces of finished runs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "data" / "fixtures" / "chemvae_tiny"


def test_an_objective_the_head_cannot_predict_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "bench/molopt.py", "--model", str(MODEL), "--objectives", "similarity:CCO",
                           "--methods", "bo", "--seeds", "0", "--budget", "5", "--n-init", "5", "--bo-head-mean",
                           "--threads", "1", "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "error: BO with head_mean (--bo-head-mean) needs an objective the property head can predict" in done.stderr


def test_a_missing_model_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "bench/molopt.py", "--model", str(tmp_path / "none"), "--objectives", "qed",
                           "--methods", "random", "--seeds", "0", "--budget", "5", "--threads", "1",
                           "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: no checkpoint at {tmp_path / 'none'}" in done.stderr


def test_a_finished_run_of_other_settings_is_not_reused(tmp_path):
    # A finished cell was reused whatever its settings: a run of batch 10 read as one of batch 2.
    command = [sys.executable, "bench/molopt.py", "--model", str(MODEL), "--objectives", "qed", "--methods", "random",
               "--seeds", "0", "--budget", "4", "--threads", "1", "--out", str(tmp_path / "b")]
    assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300).returncode == 0
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 runs, 0 to do" in again.stdout
    other = subprocess.run([*command, "--batch-size", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "qed_random_s0 already holds a search of other settings: batch_size (stored 10, given 2)" in other.stderr


@pytest.fixture
def bench(load_bench):
    return load_bench("molopt")


def test_a_run_that_stopped_early_keeps_its_final_best_at_later_checkpoints(tmp_path, bench):
    # Two initial molecules (not calls), then calls scoring 1, NaN (a failed evaluation), 3 and a duplicate.
    pd.DataFrame({"iteration": [0, 0, 1, 1, 2, 2], "new": [False, False, True, True, True, False],
                  "score": [9.0, 8.0, 1.0, math.nan, 3.0, 3.0]}).to_csv(tmp_path / "history.csv", index=False)
    trace = bench.best_so_far(tmp_path, 6)
    assert np.array_equal(trace, [1.0, 1.0, 3.0, 3.0, 3.0, 3.0])  # 3 calls made; the last best carried to 6
    assert np.array_equal(bench.best_so_far(tmp_path, 2), [1.0, 1.0])
    pd.DataFrame({"iteration": [0], "new": [False], "score": [9.0]}).to_csv(tmp_path / "history.csv", index=False)
    assert np.isnan(bench.best_so_far(tmp_path, 3)).all()  # no call at all: nothing to carry


def test_bo_is_compared_with_each_method_seed_by_seed(bench):
    # BO leads gradient ascent by 1, 2, 3 on seeds 0-2; seed 3 ran only BO and is left out.
    runs = pd.DataFrame({"objective": "qed", "method": ["bo"] * 4 + ["gradient"] * 3,
                         "seed": [0, 1, 2, 3, 0, 1, 2], "best@50": [1.0, 2.0, 3.0, 9.0, 0.0, 0.0, 0.0]})
    pairs = bench.paired_differences(runs, (50,))
    assert len(pairs) == 1  # no random runs: no row for them
    row = pairs.iloc[0]
    assert (row["other"], row["seeds"], row["mean_diff"], row["bo_ahead"]) == ("gradient", 3, 2.0, 3)
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) * std 1 / sqrt(3)
    assert math.isclose(row["ci_low"], 2.0 - half, rel_tol=1e-5) and math.isclose(row["ci_high"], 2.0 + half, rel_tol=1e-5)
    assert "ahead on 3/3" in bench.describe_differences(pairs)[0]
    alone = bench.paired_differences(runs[runs["method"] == "gradient"], (50,))  # a baseline-only benchmark
    assert alone.empty and "mean_diff" in alone.columns and bench.describe_differences(alone) == []
    one = bench.paired_differences(runs[runs["seed"] == 0], (50,))  # one seed: a mean, no interval
    assert math.isnan(one.iloc[0]["ci_low"])
    assert "@50 +1 (no interval from one seed), ahead on 1/1" in bench.describe_differences(one)[0]


def test_the_table_keeps_the_decimals_that_tell_seeds_apart(bench):
    mean_std = bench._mean_std
    assert mean_std(pd.Series([0.94791, 0.94767, 0.94820])) == "0.94793 ± 0.00027"
    assert mean_std(pd.Series([4.0, 5.5, 6.1])) == "5.200 ± 1.082"
    assert mean_std(pd.Series([0.9, 0.9])) == "0.900 ± 0.000" and mean_std(pd.Series([math.nan])) == "n/a"


@pytest.mark.filterwarnings("ignore:A not p.d.")  # 40 synthetic points in 4 dimensions: jitter is expected
def test_the_figures_band_is_the_tables_std(bench):
    traces = [np.array([0.1, 0.5, 0.7]), np.array([0.3, 0.4, 0.9, 0.95]), np.array([0.2, 0.6, 0.8])]
    mean, std = bench.mean_band(traces)
    columns = pd.DataFrame([t[:3] for t in traces])
    np.testing.assert_allclose(mean, columns.mean())
    np.testing.assert_allclose(std, columns.std())  # pandas' ddof=1, which the table uses
    assert bench.mean_band(traces[:1])[1].tolist() == [0.0, 0.0, 0.0]


def test_the_iteration_timing_runs_on_the_device_asked_for(bench):
    table = bench.timing(1, 1, "ts", n=40, d=4, q=2, device="cpu")
    assert list(table["device"]) == ["cpu"] and (table["total_s"] > 0).all() and table["n_train"].iloc[0] == 40
    done = subprocess.run([sys.executable, "bench/molopt.py", "--timing", "--device", "cuda:99"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: device 'cuda:99' was asked for but" in done.stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["--timing", "--repeats", "0"], "repeats must be an integer >= 1, got 0"),  # a KeyError from an empty table
    (["--model", "m", "--jobs", "0"], "jobs must be an integer >= 1, got 0"),  # the process pool's ValueError
    # Ran once and counted twice: a narrower paired interval from the same runs.
    (["--model", "m", "--seeds", "0", "1", "0"], "--seeds repeats [0]; give each once"),
    (["--model", "m", "--methods", "bo", "bo"], "--methods repeats ['bo']; give each once"),
])
def test_counts_below_one_are_refused_in_one_line(bench, flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(flags)
    assert stop.value.code == 2 and message in capsys.readouterr().err

"""bench/vae_mnist.py on the committed MNIST fixture: one row per run, appended to ``OUT/bench.csv``."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ssvae.data import load_dataset


@pytest.fixture
def bench(load_bench):
    return load_bench("vae_mnist")


def test_rows_name_their_data_and_count_its_training_digits(tmp_path, bench):
    argv = ["--data", "fixture", "--epochs", "1", "--eval-limit", "20", "--eval-samples", "8", "--threads", "1",
            "--device", "cpu", "--no-progress", "--out", str(tmp_path)]
    first = bench.main(argv).iloc[0]
    fixture = load_dataset("fixture")
    assert first["data"] == "fixture" and first["train_digits"] == len(fixture.train.x)
    assert (first["objective"], first["k"], first["nll_digits"], first["eval_samples"]) == ("elbo", 1, 20, 8)
    assert math.isfinite(first["test_nll"]) and first["test_nll"] > 0
    assert first["burda_nll"] is None  # the paper's MNIST figure is no anchor for other data
    second = bench.main([*argv[:-2], "--train-on-valid", "--out", str(tmp_path)]).iloc[0]
    assert second["train_digits"] == len(fixture.train.x) + len(fixture.valid.x)
    assert len(pd.read_csv(tmp_path / "bench.csv")) == 2  # appended, not overwritten


def test_a_resume_without_epochs_keeps_the_runs_own_total(tmp_path, bench):
    # --resume took --epochs' default, 1: a run of 2 epochs or more resumed without it was
    # refused as a resume to fewer epochs than done.
    argv = ["--data", "fixture", "--eval-limit", "5", "--eval-samples", "2", "--threads", "1", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path)]
    assert bench.main([*argv, "--epochs", "2"]).iloc[0]["epochs"] == 2
    assert bench.main([*argv, "--resume"]).iloc[0]["epochs"] == 2
    assert bench.main([*argv, "--resume", "--epochs", "3"]).iloc[0]["epochs"] == 3


def test_missing_data_is_one_line_naming_it(tmp_path, capsys, bench):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert f"error: data source '{tmp_path / 'nope.npz'}' is neither" in capsys.readouterr().err

"""bench/fewlabel.py's summary table: means over seeds, and the extra columns some runs bring."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def fewlabel(load_bench):
    return load_bench("fewlabel")


def test_summary_gives_the_first_models_error_of_self_trained_runs(fewlabel):
    base = {"valid_error": 0.03, "wall_seconds": 600.0, "train_seconds": 500.0, "epochs_done": 40, "device": "cpu"}
    rows = pd.DataFrame([
        {**base, "model": "m1m2", "n_labels": 100, "seed": 0, "test_error": 0.024, "stage1_test_error": 0.038},
        {**base, "model": "m1m2", "n_labels": 100, "seed": 1, "test_error": 0.022, "stage1_test_error": 0.040},
        {**base, "model": "m2", "n_labels": 600, "seed": 0, "test_error": 0.030, "stage1_test_error": float("nan")},
    ])
    table = fewlabel.summarize(rows).set_index(["model", "n_labels"])
    assert table.loc[("m1m2", 100), "test error % (mean)"] == pytest.approx(2.3)
    assert table.loc[("m1m2", 100), "before self-training %"] == pytest.approx(3.9)
    # a run without self-training is its own first model
    assert table.loc[("m2", 600), "before self-training %"] == pytest.approx(3.0)
    assert bool(table.loc[("m1m2", 100), "meets target"]) and table.loc[("m1m2", 100), "seeds"] == 2

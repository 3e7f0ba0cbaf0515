"""bench/patience_replay.py's replay follows train_m2's stopping rules."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ssvae.train_config import TrainConfig

HISTORY = pd.DataFrame({"epoch": [1, 2, 3, 4], "valid_error": [0.5, 0.4, 0.45, 0.46],
                        "test_error": [0.52, 0.41, 0.44, 0.47], "seconds": [60.0, 120.0, 180.0, 240.0]})


def test_an_m1_that_used_up_the_budget_still_gets_one_m2_epoch(load_bench):
    replay = load_bench("patience_replay").replay
    # train_m2 checks the budget only once it has a model to keep; the replay stopped at epoch 0 (NaN).
    stopped = replay(HISTORY, TrainConfig(epochs=10, time_budget_minutes=1.0), seconds_before=600.0)
    assert stopped == {"stop_epoch": 1, "best_epoch": 1, "test_error": 0.52, "minutes": 1.0}


def test_budget_and_patience_stop_where_the_loop_would(load_bench):
    replay = load_bench("patience_replay").replay
    # 2.5 min: epochs 1-3 start within it (their starts at 0, 1, 2 min), epoch 4 at 3 min does not.
    assert replay(HISTORY, TrainConfig(epochs=10, time_budget_minutes=2.5))["stop_epoch"] == 3
    by_patience = replay(HISTORY, TrainConfig(epochs=10, patience=2))
    assert by_patience["stop_epoch"] == 4 and by_patience["best_epoch"] == 2
    assert by_patience["test_error"] == pytest.approx(0.41)
    assert math.isnan(replay(HISTORY.iloc[:0], TrainConfig(epochs=10))["test_error"])

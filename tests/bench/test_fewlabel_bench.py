"""bench/fewlabel.py: bad data or settings end in one line on stderr, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaecore.errors import InputDataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad, message", [
    (["--data", "nope.npz"], "error: data source 'nope.npz' is neither 'mnist', 'fixture' nor an existing path"),
    (["--data", "fixture", "--labels", "0"], "error: number of labels must be a positive integer, got 0"),
    (["--data", "fixture", "--set", "m2.activation=swishy"], "error: unknown activation 'swishy'"),
    # Ran once and counted twice: "seeds 2, ± 0.00" from one run.
    (["--data", "fixture", "--seeds", "0", "1", "0"], "error: --seeds repeats [0]; give each once"),
])
def test_a_bad_setting_is_one_line_on_stderr(tmp_path, bad, message):
    done = subprocess.run([sys.executable, "bench/fewlabel.py", "--models", "m2", "--seeds", "0", "--no-progress",
                           *bad, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_the_grids_m2_options_are_left_out_of_its_m1_runs_and_m1_options_of_its_m2_runs(tmp_path, load_bench):
    # `vaelab fewlabel --model m1` refuses M2 options (they would be ignored); a grid over
    # m1 and M2 models gives them to its M2 runs only.
    import argparse
    import json

    fewlabel = load_bench("fewlabel")
    args = argparse.Namespace(
        data="fixture", preset="fast", device="cpu", epochs=3, m1_epochs=1, time_budget_minutes=30.0,
        set=["m1.vae.hidden=(16,)", "m1.vae.z_dim=4", "m2.hidden=(16,)", "train.lr=0.01"], self_train=(10,),
        no_plots=True, no_progress=True)
    metrics = fewlabel.run_one(args, "m1", 20, 0, tmp_path / "m1_run", None)
    assert metrics["model"] == "m1" and 0.0 <= metrics["test_error"] <= 1.0
    config = json.loads((tmp_path / "m1_run" / "config.json").read_text())
    assert config["epochs"] is None and config["time_budget_minutes"] is None and config["self_train"] == []
    assert config["settings"] == ["m1.vae.hidden=(16,)", "m1.vae.z_dim=4"]
    # and its M1 options to its runs with an M1: pixel M2 refuses them too
    args.epochs, args.self_train = 1, ()
    metrics = fewlabel.run_one(args, "m2", 20, 0, tmp_path / "m2_run", None)
    assert metrics["model"] == "m2" and 0.0 <= metrics["test_error"] <= 1.0
    config = json.loads((tmp_path / "m2_run" / "config.json").read_text())
    assert config["m1_epochs"] is None and config["settings"] == ["m2.hidden=(16,)", "train.lr=0.01"]
    # A finished cell is reused as it stands only for the settings it was run with.
    assert fewlabel.run_one(args, "m2", 20, 0, tmp_path / "m2_run", None) == metrics
    args.set = [*args.set[:-1], "train.lr=0.02"]
    with pytest.raises(InputDataError, match=r"m2_run holds a finished run of other settings: settings \(stored "
                                             r"\('m2.hidden=\(16,\)', 'train.lr=0.01'\), given .*'train.lr=0.02'\)"):
        fewlabel.run_one(args, "m2", 20, 0, tmp_path / "m2_run", None)
    # A run given the first run's M1 loads it, and refuses how to train one: those options stay out.
    metrics = fewlabel.run_one(args, "m1m2", 20, 0, tmp_path / "m1m2_run", tmp_path / "m1_run")
    assert metrics["model"] == "m1m2" and 0.0 <= metrics["test_error"] <= 1.0
    config = json.loads((tmp_path / "m1m2_run" / "config.json").read_text())
    assert config["m1_epochs"] is None
    assert config["settings"] == ["m2.hidden=(16,)", "train.lr=0.02", f"m1.checkpoint={str(tmp_path / 'm1_run' / 'm1')!r}"]

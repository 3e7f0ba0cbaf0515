"""bench/fewlabel.py: bad data or settings end in one line on stderr, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad, message", [
    (["--data", "nope.npz"], "error: data source 'nope.npz' is neither 'mnist', 'fixture' nor an existing path"),
    (["--data", "fixture", "--labels", "0"], "error: number of labels must be a positive integer, got 0"),
    (["--data", "fixture", "--set", "m2.activation=swishy"], "error: unknown activation 'swishy'"),
])
def test_a_bad_setting_is_one_line_on_stderr(tmp_path, bad, message):
    done = subprocess.run([sys.executable, "bench/fewlabel.py", "--models", "m2", "--seeds", "0", "--no-progress",
                           *bad, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr

"""bench/molopt.py on the committed tiny model: a bad setting is one line on stderr, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

"""One writing process per run directory: the lock RunDir holds while it lives."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaecore.runlock import LOCK_NAME, fcntl
from vaecore.rundir import RunDir

pytestmark = pytest.mark.skipif(fcntl is None, reason="no flock on this platform")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Config:
    name: str = "a"


def _other_process_opens(path: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from dataclasses import dataclass; from vaecore.rundir import RunDir\n"
            "@dataclass(frozen=True)\nclass Config:\n    name: str = 'b'\n"
            "RunDir(sys.argv[1], Config(), seed=0, device='cpu')")
    return subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_another_process_is_refused_while_a_run_dir_lives(tmp_path: Path) -> None:
    # Two commands given the same --out at once both wrote into it, and both ended "successfully".
    run = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")
    again = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")  # the same process: a resume, a second stage
    other = _other_process_opens(tmp_path / "r")
    assert other.returncode != 0
    assert f"{tmp_path / 'r'} is in use: process {os.getpid()} is writing a run there" in other.stderr
    assert '"name": "a"' in (tmp_path / "r" / "config.json").read_text()  # the other process wrote nothing
    del run
    gc.collect()
    assert _other_process_opens(tmp_path / "r").returncode != 0  # `again` still holds it
    del again
    gc.collect()
    freed = _other_process_opens(tmp_path / "r")
    assert freed.returncode == 0, freed.stderr
    assert '"name": "b"' in (tmp_path / "r" / "config.json").read_text()
    assert (tmp_path / "r" / LOCK_NAME).is_file()  # left behind, free: a killed run leaves nothing to clean


def test_close_frees_the_directory_while_the_run_dir_lives(tmp_path: Path) -> None:
    # The lock followed the object alone: a Python session that kept an interrupted call's
    # frames (a notebook's last traceback) kept the directory locked until it ended.
    run = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")
    assert _other_process_opens(tmp_path / "r").returncode != 0
    run.close()
    run.close()  # twice: nothing more
    assert _other_process_opens(tmp_path / "r").returncode == 0

"""One writing process per run directory: the lock RunDir holds while it lives."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaecore.errors import InputDataError
from vaecore.runlock import LOCK_NAME, fcntl
from vaecore.rundir import RunDir

pytestmark = pytest.mark.skipif(fcntl is None, reason="no flock on this platform")


@dataclass(frozen=True)
class Config:
    name: str = "a"


def test_another_process_is_refused_while_a_run_dir_lives(tmp_path: Path, opens_elsewhere) -> None:
    # Two commands given the same --out at once both wrote into it, and both ended "successfully".
    run = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")
    again = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")  # the same process: a resume, a second stage
    other = opens_elsewhere(tmp_path / "r")
    assert other.returncode != 0
    assert f"{tmp_path / 'r'} is in use: process {os.getpid()} is writing a run there" in other.stderr
    assert '"name": "a"' in (tmp_path / "r" / "config.json").read_text()  # the other process wrote nothing
    del run
    gc.collect()
    assert opens_elsewhere(tmp_path / "r").returncode != 0  # `again` still holds it
    del again
    gc.collect()
    freed = opens_elsewhere(tmp_path / "r")
    assert freed.returncode == 0, freed.stderr
    assert '"name": "b"' in (tmp_path / "r" / "config.json").read_text()
    assert (tmp_path / "r" / LOCK_NAME).is_file()  # left behind, free: a killed run leaves nothing to clean


def test_close_frees_the_directory_while_the_run_dir_lives(tmp_path: Path, opens_elsewhere) -> None:
    # The lock followed the object alone: a Python session that kept an interrupted call's
    # frames (a notebook's last traceback) kept the directory locked until it ended.
    run = RunDir(tmp_path / "r", Config(), seed=0, device="cpu")
    assert opens_elsewhere(tmp_path / "r").returncode != 0
    run.close()
    run.close()  # twice: nothing more
    assert opens_elsewhere(tmp_path / "r").returncode == 0


def test_a_with_block_frees_the_directory_however_it_ends(tmp_path: Path, opens_elsewhere) -> None:
    # Pipelines called from Python ('pipelines.vae.run(config, workdir)') kept their RunDir in
    # the frames of a failed call, which its traceback keeps alive, as a notebook keeps its
    # last one: 'vaelab vae --resume' from a terminal was refused as "in use" by a run long over.
    with pytest.raises(RuntimeError) as failed:
        with RunDir(tmp_path / "r", Config(), seed=0, device="cpu") as run:
            assert opens_elsewhere(tmp_path / "r").returncode != 0
            raise RuntimeError("the run failed")
    assert opens_elsewhere(tmp_path / "r").returncode == 0
    assert failed.tb is not None and run.path == tmp_path / "r"  # its frames and the RunDir live on


def test_a_run_dir_that_fails_to_start_holds_no_lock(tmp_path: Path, opens_elsewhere) -> None:
    # A damaged history.csv fails the start after the lock was taken, and the half-made
    # RunDir lived on in the traceback's frames, holding it.
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "history.csv").write_bytes(b"\x90\x00\xff")
    with pytest.raises(InputDataError, match="history.csv is damaged") as failed:
        RunDir(tmp_path / "r", Config(), seed=0, device="cpu")
    other = opens_elsewhere(tmp_path / "r")  # let in, it finds the same damage
    assert "history.csv is damaged" in other.stderr and "is in use" not in other.stderr, other.stderr
    assert failed.tb is not None

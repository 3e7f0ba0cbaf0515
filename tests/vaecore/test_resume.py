"""Reusing run directories: new runs, resumes and their data, refused where they would lose work."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vaecore.checkpoint import save_checkpoint
from vaecore.errors import InputDataError
from vaecore.resume import (DATA_RECORD, check_new_run_dir, check_resume, check_resume_length, check_same_data,
                            config_differences, data_digest, existing_run_config, holds_results, resume_conflicts,
                            starts_over)
from vaecore.rundir import RunDir


@dataclass(frozen=True)
class NetConfig:
    hidden: tuple[int, ...] = (500, 500)


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 2


@dataclass(frozen=True)
class JobConfig:
    name: str
    seed: int = 0
    net: NetConfig = NetConfig()
    fit: FitConfig | None = None


def test_resume_conflicts_name_what_a_resume_would_ignore() -> None:
    stored = JobConfig(name="a", net=NetConfig(hidden=(64,)), fit=FitConfig(epochs=5))
    baseline = JobConfig(name="a")
    # Repeating the run's own values, or leaving the defaults, is no conflict.
    assert resume_conflicts(stored, stored, baseline) == []
    assert resume_conflicts(baseline, stored, baseline) == []
    given = JobConfig(name="a", net=NetConfig(hidden=(32,)), fit=FitConfig(epochs=9), seed=3)
    assert resume_conflicts(given, stored, baseline, keep=("fit",)) == [
        "seed (stored 0, given 3)", "net.hidden (stored (64,), given (32,))"]
    check_resume(baseline, stored, baseline, keep=(), resume="runs/a")  # nothing to refuse
    with pytest.raises(InputDataError, match=r"--resume runs/a continues the run with its stored settings, but "
                                             r"these were given otherwise: seed \(stored 0, given 3\); "
                                             r"net.hidden \(stored"):
        check_resume(given, stored, baseline, keep=("fit",), resume="runs/a")


def test_a_new_run_is_not_started_in_a_runs_directory(tmp_path: Path) -> None:
    # A new run there overwrote some of the old run's files and left the rest beside its own.
    assert existing_run_config(tmp_path / "none", JobConfig, command="demo") is None
    check_new_run_dir(tmp_path / "none", JobConfig, command="demo", resumable=True)
    RunDir(tmp_path / "r", JobConfig(name="a"), seed=0, device="cpu")
    assert existing_run_config(tmp_path / "r", JobConfig, command="demo") == JobConfig(name="a")
    run = tmp_path / "r"
    # A config.json alone is a run refused or stopped before it had results: its directory may be taken.
    check_new_run_dir(run, JobConfig, command="demo", resumable=True)
    check_new_run_dir(run, FitConfig, command="train", resumable=True)
    assert not holds_results(run)
    (run / "m1").mkdir()
    (run / "m1" / "checkpoint.safetensors").write_bytes(b"")  # M1+M2's M1, one directory down
    assert holds_results(run)
    with pytest.raises(InputDataError, match=rf"^{run} already holds a demo run; continue it with --resume {run}, "
                                             "give another --out, or delete it to start over$"):
        check_new_run_dir(run, JobConfig, command="demo", resumable=True)
    with pytest.raises(InputDataError, match=rf"^{run} already holds a demo run; give another --out"):
        check_new_run_dir(run, JobConfig, command="demo", resumable=False)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.json").write_text('{"name": "a", "se')  # cut short: not another command's run
    with pytest.raises(InputDataError, match=rf"^{tmp_path / 'damaged'} holds a run whose config.json is damaged "
                                             r"\(Unterminated string"):
        existing_run_config(tmp_path / "damaged", JobConfig, command="demo")
    with pytest.raises(InputDataError, match=rf"^{run} already holds a run of another command \(its config.json is "
                                             r"not a train run's\); give another --out$"):
        check_new_run_dir(run, FitConfig, command="train", resumable=True)


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path: Path, capsys) -> None:
    # A run killed in its first epoch left its config.json alone, and --resume said only
    # "no checkpoint": its settings had to be typed again.
    run = tmp_path / "r"
    assert not starts_over(run, run / "checkpoint.safetensors")  # nothing there: not a run to start over
    RunDir(run, JobConfig(name="a"), seed=0, device="cpu")
    assert starts_over(run, run / "checkpoint.safetensors")
    assert capsys.readouterr().out == (f"--resume {run}: the run stopped before its first checkpoint; it starts over "
                                       "with its stored settings\n")
    (run / "checkpoint.safetensors").write_bytes(b"")
    assert not starts_over(run, run / "checkpoint.safetensors")  # a checkpoint: resumed from it
    (run / "checkpoint.safetensors").unlink()
    (run / "train.json").write_text("{}")  # results, their checkpoint deleted: never written over
    assert not starts_over(run, run / "checkpoint.safetensors")


def test_config_differences_name_every_field_that_differs_but_those_kept() -> None:
    given, stored = JobConfig(name="a", seed=3), JobConfig(name="b", net=NetConfig(hidden=(5,)))
    assert config_differences(given, stored, keep=("seed",)) == [
        "name (stored 'b', given 'a')", "net.hidden (stored (5,), given (500, 500))"]  # nested: by its leaf
    assert config_differences(given, given) == []


def test_a_resume_to_fewer_epochs_than_done_is_refused(tmp_path: Path) -> None:
    # It trained nothing and wrote the smaller number into config.json beside a model of more epochs.
    path = save_checkpoint(tmp_path / "c.safetensors", {"epoch": 4, "w": torch.ones(1)}, {})
    with pytest.raises(InputDataError, match=r"^--epochs 3 is below the 4 epochs this run has trained \(--epochs "
                                             r"counts them all\); give --epochs 4 or more$"):
        check_resume_length("--epochs", 3, path)
    check_resume_length("--epochs", 4, path)  # the same length: evaluated again, nothing trained
    check_resume_length("--epochs", None, path)  # the stored length
    check_resume_length("--epochs", 1, tmp_path / "none.safetensors")  # stopped before its first checkpoint


def test_check_same_data_records_a_files_digest_and_refuses_a_changed_one(tmp_path: Path) -> None:
    data = tmp_path / "mols.csv"
    data.write_text("smiles\nCCO\n")
    record = check_same_data(str(data), named=("fixture",), resumed_from=None)
    assert record == {"source": str(data), "sha256": data_digest(data)}
    RunDir(tmp_path / "run", JobConfig(name="m1"), seed=0, device="cpu", data=record)
    assert json.loads((tmp_path / "run" / DATA_RECORD).read_text()) == record
    assert check_same_data(str(data), named=("fixture",), resumed_from=tmp_path / "run") == record
    data.write_text("smiles\nCCN\n")
    with pytest.raises(InputDataError, match=r"mols.csv has changed since this run began \(sha256 "):
        check_same_data(str(data), named=("fixture",), resumed_from=tmp_path / "run")
    # Gone: the loader said only that the path was "neither 'mnist', 'fixture' nor an existing path".
    data.rename(tmp_path / "moved.csv")
    with pytest.raises(InputDataError, match="mols.csv, the data this run began on, is no longer there \\(moved\\?\\)"):
        check_same_data(str(data), named=("fixture",), resumed_from=tmp_path / "run")
    assert check_same_data(str(data), named=("fixture",), resumed_from=None) is None  # a new run: the loader's word
    # A folder's digest covers its files and their names; a named dataset has no record.
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "a").write_text("1")
    before = data_digest(folder)
    (folder / "a").rename(folder / "b")
    assert data_digest(folder) != before
    assert check_same_data("fixture", named=("fixture",), resumed_from=None) is None

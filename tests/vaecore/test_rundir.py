"""Run directories: config JSON round trips, run.json, history.csv."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch

from vaecore.checkpoint import save_checkpoint
from vaecore.errors import InputDataError
from vaecore.rundir import (DATA_RECORD, RunDir, check_field_value, check_new_run_dir, check_resume, check_resume_length,
                            check_same_data, config_differences, config_from_dict, config_to_dict, data_digest,
                            existing_run_config, holds_results, read_run_config, resume_conflicts, write_json)


@dataclass(frozen=True)
class EncoderConfig:
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "softplus"


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-4
    epochs: int = 2
    schedule: tuple[tuple[int, float], ...] = ((0, 0.0), (10, 1.0))


@dataclass(frozen=True)
class RunConfig:
    name: str
    encoder: EncoderConfig = EncoderConfig()
    train: TrainConfig | None = None
    tags: list[str] = field(default_factory=list)
    out: Path = Path("runs/x")


def test_nested_frozen_config_round_trip() -> None:
    config = RunConfig(
        name="m1", encoder=EncoderConfig(hidden=(64, 32)), train=TrainConfig(lr=1e-3), tags=["a", "b"]
    )
    data = config_to_dict(config)
    assert data["encoder"] == {"hidden": [64, 32], "activation": "softplus"}
    assert data["out"] == "runs/x"  # paths become strings, and paths again on the way back
    back = config_from_dict(RunConfig, json.loads(json.dumps(data)))
    assert back.encoder == config.encoder and back.train == config.train
    assert back.train.schedule == ((0, 0.0), (10, 1.0))  # nested tuples, hashable again
    assert isinstance(back.tags, list) and back.tags == ["a", "b"]
    assert back == config and isinstance(back.out, Path)
    hash(back.encoder)
    assert config_from_dict(RunConfig, {"name": "x", "train": None}).train is None


def test_unknown_and_missing_fields_are_named() -> None:
    with pytest.raises(InputDataError, match=r"unknown RunConfig field\(s\) \['z_dmi'\]"):
        config_from_dict(RunConfig, {"name": "x", "z_dmi": 3})
    with pytest.raises(InputDataError, match=r"unknown EncoderConfig field\(s\) \['hiden'\]"):
        config_from_dict(RunConfig, {"name": "x", "encoder": {"hiden": [3]}})
    with pytest.raises(InputDataError, match=r"lacks the required field\(s\) \['name'\]"):
        config_from_dict(RunConfig, {})
    with pytest.raises(TypeError, match="dataclass"):
        config_to_dict({"name": "x"})


@pytest.mark.parametrize(("cls", "name", "value"), [
    (TrainConfig, "lr", 1), (TrainConfig, "lr", 0.5), (TrainConfig, "epochs", 3),
    (TrainConfig, "schedule", ((0, 1.0),)), (RunConfig, "train", None), (RunConfig, "train", TrainConfig()),
    (EncoderConfig, "hidden", ()), (RunConfig, "tags", ["a"]),
])
def test_values_that_match_their_field_are_accepted(cls: type, name: str, value: object) -> None:
    check_field_value(cls, name, value)


@pytest.mark.parametrize(("cls", "name", "value", "match"), [
    (TrainConfig, "lr", "abc", "TrainConfig.lr expects float, got 'abc'"),
    (TrainConfig, "epochs", 2.5, "TrainConfig.epochs expects int, got 2.5"),
    (TrainConfig, "epochs", True, "expects int, got True"),
    (EncoderConfig, "hidden", (300, "a"), r"expects tuple\[int, \.\.\.\], got \(300, 'a'\)"),
    (TrainConfig, "schedule", ((0,),), "TrainConfig.schedule expects"),
    (RunConfig, "train", 3, "RunConfig.train expects"),
    (RunConfig, "tags", "a", "RunConfig.tags expects list"),
])
def test_values_of_the_wrong_type_are_named(cls: type, name: str, value: object, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        check_field_value(cls, name, value)


def test_values_read_back_are_checked_against_their_fields() -> None:
    # A hand-edited config.json, or one from another version, is named on loading rather
    # than failing later inside the model it configures.
    with pytest.raises(InputDataError, match="TrainConfig.epochs expects int, got '10'"):
        config_from_dict(RunConfig, {"name": "x", "train": {"epochs": "10"}})
    with pytest.raises(InputDataError, match=r"EncoderConfig.hidden expects tuple\[int, \.\.\.\], got \(300, 2.5\)"):
        config_from_dict(RunConfig, {"name": "x", "encoder": {"hidden": [300, 2.5]}})
    assert config_from_dict(TrainConfig, {"lr": 1}).lr == 1  # an int stands for a float


def test_resume_conflicts_name_what_a_resume_would_ignore() -> None:
    stored = RunConfig(name="a", encoder=EncoderConfig(hidden=(64,)), train=TrainConfig(epochs=5))
    baseline = RunConfig(name="a")
    # Repeating the run's own values, or leaving the defaults, is no conflict.
    assert resume_conflicts(stored, stored, baseline) == []
    assert resume_conflicts(baseline, stored, baseline) == []
    given = RunConfig(name="a", encoder=EncoderConfig(hidden=(32,)), train=TrainConfig(epochs=9), tags=["x"])
    assert resume_conflicts(given, stored, baseline, keep=("train",)) == [
        "encoder.hidden (stored (64,), given (32,))", "tags (stored [], given ['x'])"]
    check_resume(baseline, stored, baseline, keep=(), resume="runs/a")  # nothing to refuse
    with pytest.raises(InputDataError, match=r"--resume runs/a continues the run with its stored settings, but "
                                             r"these were given otherwise: encoder.hidden \(stored \(64,\), given"):
        check_resume(given, stored, baseline, keep=("train",), resume="runs/a")


def test_run_dir_files(tmp_path: Path) -> None:
    config = RunConfig(name="m1")
    run = RunDir(tmp_path / "run", config, seed=7, device=torch.device("cpu"))
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config_to_dict(config)
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == 7 and meta["device"] == "cpu"
    assert meta["versions"]["torch"] == torch.__version__ and "python" in meta["versions"]

    run.log({"epoch": 1, "loss": 2.5})
    table = run.log({"epoch": 2, "loss": 2.0, "kl": 0.5})  # a new column appears later
    on_disk = pd.read_csv(run / "history.csv")
    assert list(on_disk["epoch"]) == [1, 2] and list(on_disk["loss"]) == [2.5, 2.0]
    assert pd.isna(on_disk.loc[0, "kl"]) and on_disk.loc[1, "kl"] == 0.5
    assert len(table) == 2 and len(run.history) == 2
    run.write_json("metrics.json", {"best": 2.0})
    assert json.loads((run / "metrics.json").read_text()) == {"best": 2.0}
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temp files

    # A resume keeps what the earlier calls recorded (their devices and library versions): it overwrote them.
    again = RunDir(tmp_path / "run", config, seed=7, device="meta")
    meta2 = json.loads((again / "run.json").read_text())
    assert meta2["device"] == "meta" and meta2["earlier"] == [meta]
    third = json.loads((RunDir(tmp_path / "run", config, seed=7, device="cpu") / "run.json").read_text())
    assert [m["device"] for m in third["earlier"]] == ["cpu", "meta"] and "earlier" not in third["earlier"][1]
    # A file where the directory should be: it was FileExistsError from mkdir.
    (tmp_path / "a_file").write_text("")
    with pytest.raises(InputDataError, match="a_file is a file, not a directory to hold a run"):
        RunDir(tmp_path / "a_file", config, seed=7, device="cpu")
    with pytest.raises(InputDataError, match="cannot make the run directory .*a_file/run: Not a directory"):
        RunDir(tmp_path / "a_file" / "run", config, seed=7, device="cpu")
    # A directory without results (a run refused before it trained) is a fresh start.
    RunDir(tmp_path / "other", config, seed=1, device="cpu")
    assert "earlier" not in json.loads((RunDir(tmp_path / "other", config, seed=2, device="cpu") / "run.json").read_text())


def test_resume_keeps_history_and_truncates(tmp_path: Path) -> None:
    run = RunDir(tmp_path, RunConfig(name="m1"), seed=1, device="cpu")
    for epoch in range(1, 5):
        run.log({"epoch": epoch, "loss": 10.0 - epoch})
    resumed = RunDir(tmp_path, RunConfig(name="m1"), seed=1, device="cpu")
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    resumed.truncate_history("epoch", 2)  # the checkpoint was from epoch 2
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2]  # rewritten at once
    resumed.log({"epoch": 3, "loss": 6.5})
    assert list(pd.read_csv(tmp_path / "history.csv")["loss"]) == [9.0, 8.0, 6.5]


def test_write_json_is_sorted_and_handles_paths(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "x.json", {"b": Path("p"), "a": 1})
    assert path.read_text() == '{\n  "a": 1,\n  "b": "p"\n}\n'


def test_read_run_config_names_what_is_not_a_runs_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    write_json(path, config_to_dict(RunConfig(name="a")))
    assert read_run_config(RunConfig, path, command="demo", source="--resume d") == RunConfig(name="a")
    # Damaged JSON (fewlabel's resume raised the bare JSONDecodeError) and another class's config.
    path.write_text("{bad")
    with pytest.raises(InputDataError, match=r"--resume d: its config.json is not a demo run's \(Expecting property"):
        read_run_config(RunConfig, path, command="demo", source="--resume d")
    write_json(path, {"lr": 0.1, "epochs": 3})
    with pytest.raises(InputDataError, match=r"its config.json is not a demo run's \(unknown RunConfig field"):
        read_run_config(RunConfig, path, command="demo", source="--resume d")


def test_a_new_run_is_not_started_in_a_runs_directory(tmp_path: Path) -> None:
    # A new run there overwrote some of the old run's files and left the rest beside its own.
    assert existing_run_config(tmp_path / "none", RunConfig, command="demo") is None
    check_new_run_dir(tmp_path / "none", RunConfig, command="demo", resumable=True)
    RunDir(tmp_path / "r", RunConfig(name="a"), seed=0, device="cpu")
    assert existing_run_config(tmp_path / "r", RunConfig, command="demo") == RunConfig(name="a")
    run = tmp_path / "r"
    # A config.json alone is a run refused or stopped before it had results: its directory may be taken.
    check_new_run_dir(run, RunConfig, command="demo", resumable=True)
    check_new_run_dir(run, TrainConfig, command="train", resumable=True)
    assert not holds_results(run)
    (run / "m1").mkdir()
    (run / "m1" / "checkpoint.safetensors").write_bytes(b"")  # M1+M2's M1, one directory down
    assert holds_results(run)
    with pytest.raises(InputDataError, match=rf"^{run} already holds a demo run; continue it with --resume {run}, "
                                             "give another --out, or delete it to start over$"):
        check_new_run_dir(run, RunConfig, command="demo", resumable=True)
    with pytest.raises(InputDataError, match=rf"^{run} already holds a demo run; give another --out"):
        check_new_run_dir(run, RunConfig, command="demo", resumable=False)
    with pytest.raises(InputDataError, match=rf"^{run} already holds a run of another command \(its config.json is "
                                             r"not a train run's\); give another --out$"):
        check_new_run_dir(run, TrainConfig, command="train", resumable=True)


def test_config_differences_name_every_field_that_differs_but_those_kept() -> None:
    given, stored = RunConfig(name="a", tags=["x"]), RunConfig(name="b", encoder=EncoderConfig(hidden=(5,)))
    assert config_differences(given, stored, keep=("tags",)) == [
        "name (stored 'b', given 'a')", "encoder.hidden (stored (5,), given (500, 500))"]  # nested: by its leaf
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
    RunDir(tmp_path / "run", RunConfig(name="m1"), seed=0, device="cpu", data=record)
    assert json.loads((tmp_path / "run" / DATA_RECORD).read_text()) == record
    assert check_same_data(str(data), named=("fixture",), resumed_from=tmp_path / "run") == record
    data.write_text("smiles\nCCN\n")
    with pytest.raises(InputDataError, match=r"mols.csv has changed since this run began \(sha256 "):
        check_same_data(str(data), named=("fixture",), resumed_from=tmp_path / "run")
    # A folder's digest covers its files and their names; a named dataset has no record.
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "a").write_text("1")
    before = data_digest(folder)
    (folder / "a").rename(folder / "b")
    assert data_digest(folder) != before
    assert check_same_data("fixture", named=("fixture",), resumed_from=None) is None

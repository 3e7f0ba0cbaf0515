"""Configs to and from JSON: nested round trips, unknown, missing and mistyped fields named."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vaecore.config import check_field_value, config_from_dict, config_to_dict, read_json, read_run_config, stored_field
from vaecore.errors import InputDataError
from vaecore.rundir import write_json


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
    # Any stored config names its own file (a damaged fit_config.json was called config.json).
    (tmp_path / "fit_config.json").write_text("")
    with pytest.raises(InputDataError, match=r"^--resume d: its fit_config.json is not a demo run's \(Expecting"):
        read_run_config(RunConfig, tmp_path / "fit_config.json", command="demo", source="--resume d")


def test_a_stored_config_that_is_no_json_object_is_refused_by_name(tmp_path: Path) -> None:
    # A config.json of 5 or null failed in config_from_dict with "'int' object is not iterable"
    # (vaelab vae --resume and molopt's rerun ended in that traceback).
    for data, shown in ((5, "int 5"), (None, "NoneType None"), ([1, 2], "list [1, 2]")):
        with pytest.raises(InputDataError, match=rf"^a RunConfig is a JSON object of its fields, not {re.escape(shown)}$"):
            config_from_dict(RunConfig, data)
    path = tmp_path / "config.json"
    path.write_text("null")
    with pytest.raises(InputDataError, match=r"^--resume d: its config.json is not a demo run's \(a RunConfig is"):
        read_run_config(RunConfig, path, command="demo", source="--resume d")


def test_read_json_names_a_damaged_file(tmp_path: Path) -> None:
    # json's own message, "Expecting value: line 1 column 1 (char 0)", was all a command said.
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    path.write_text('{"a": ')
    with pytest.raises(InputDataError, match=rf"^{path} is damaged \(Expecting value"):
        read_json(path)
    path.write_bytes(b"\x90\xff")
    with pytest.raises(InputDataError, match=rf"^{path} is damaged \('utf-8' codec can't decode"):
        read_json(path)


def test_stored_field_is_none_where_the_file_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    assert stored_field(path, "seed") is None  # no file
    write_json(path, [1, 2])
    assert stored_field(path, "seed") is None  # no object
    write_json(path, {"seed": 3})
    assert stored_field(path, "seed") == 3 and stored_field(path, "device") is None
    path.write_text('{"seed": ')
    with pytest.raises(InputDataError, match="run.json is damaged"):
        stored_field(path, "seed")

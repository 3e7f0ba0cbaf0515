"""Run directories: config.json, run.json with earlier calls, history.csv."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from vaecore.config import config_to_dict
from vaecore.errors import InputDataError
from vaecore.rundir import RunDir, write_csv, write_json
from vaecore.runlock import LOCK_NAME


@dataclass(frozen=True)
class RunConfig:
    name: str


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
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == [LOCK_NAME]  # no temp files

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
    # A link to nowhere: mkdir said "cannot make the run directory link: File exists".
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "run")
    with pytest.raises(InputDataError, match=r"link is a link to .*/gone/run, which does not exist; make that "
                                             r"directory or give another directory"):
        RunDir(tmp_path / "link", config, seed=7, device="cpu")
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


def test_a_damaged_history_is_named(tmp_path: Path) -> None:
    # pandas' UnicodeDecodeError named no file ("vaelab vae: error: 'utf-8' codec can't decode ...").
    RunDir(tmp_path, RunConfig(name="m1"), seed=1, device="cpu").log({"epoch": 1})
    (tmp_path / "history.csv").write_bytes(b"\x90\xff binary")
    with pytest.raises(InputDataError, match=rf"^{tmp_path / 'history.csv'} is damaged \('utf-8' codec can't decode"):
        RunDir(tmp_path, RunConfig(name="m1"), seed=1, device="cpu")


def test_write_json_is_sorted_and_handles_paths(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "x.json", {"b": Path("p"), "a": 1})
    assert path.read_text() == '{\n  "a": 1,\n  "b": "p"\n}\n'


def test_write_csv_has_no_index_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1"], "score": [0.4, float("nan")]})
    path = write_csv(tmp_path / "out" / "t.csv", table)
    assert path.read_text() == "smiles,score\nCCO,0.4\nc1ccccc1,\n"
    write_csv(path, table.head(1))  # replaced whole
    assert pd.read_csv(path)["smiles"].tolist() == ["CCO"] and [p.name for p in path.parent.iterdir()] == ["t.csv"]

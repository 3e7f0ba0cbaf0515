"""Run directories: resolved config, seed, device, versions, metrics CSV, checkpoints.

Every run writes ``config.json`` (the frozen dataclass config, resolved), ``run.json``
(seed, device, library versions, start time, command line), ``history.csv`` (one row a
logging step, rewritten atomically through pandas) and its checkpoints and plots.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vaecore.checkpoint import atomic_write_bytes
from vaecore.config import config_to_dict
from vaecore.errors import InputDataError
from vaecore.resume import DATA_RECORD, holds_results
from vaecore.runlock import hold
from vaecore.runtime import library_versions


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Atomically write ``table`` as CSV without its index (a Ctrl-C leaves the old file or the new one)."""
    return atomic_write_bytes(path, table.to_csv(index=False).encode())


def make_run_dir(path: str | os.PathLike) -> Path:
    """Create the directory ``path`` (and its parents) for a run's files.

    Raises:
        InputDataError: ``path`` is a file, or cannot be made (a read-only place, a parent
            that is a file), naming it: the bare ``FileExistsError`` ended runs in a traceback.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputDataError(f"{path} is a file, not a directory to hold a run; give another directory")
    if path.is_symlink() and not path.exists():  # mkdir said only "File exists"
        raise InputDataError(f"{path} is a link to {os.readlink(path)}, which does not exist; make that directory "
                             "or give another directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputDataError(f"cannot make the run directory {path}: {err.strerror or err}") from err
    return path


class RunDir:
    """A run's directory and the files every run writes.

    Creating it locks the directory against other processes while the ``RunDir`` lives
    (:mod:`vaecore.runlock`) or until :meth:`close` (a ``with`` block closes it however the
    block ends), writes ``config.json`` and ``run.json`` and reads back an existing
    ``history.csv``, so that :meth:`log` appends to it. ``run.json`` describes this call
    (seed, device, library versions, start, command line); where the directory already holds
    the run's results (a resume, a rerun), it keeps what each earlier call recorded, oldest
    first, under ``earlier``: a run trained partly with other library versions or on another
    device says so.

    Args:
        path: Directory, created if missing.
        config: The run's frozen dataclass config.
        seed: The seed used.
        device: The device the run uses.
        data: The record of its local data (:func:`vaecore.resume.check_same_data`), written to
            :data:`DATA_RECORD`.
    """

    def __init__(self, path: str | os.PathLike, config: Any, *, seed: int, device: torch.device | str,
                 data: Mapping[str, str] | None = None) -> None:
        self.path = make_run_dir(path)
        self._lock = hold(self.path, self)  # before any write: another live process's run here is refused
        try:
            self._begin(config, seed=seed, device=device, data=data)
        except BaseException:
            self.close()  # a failed start's frames live on in its traceback, and would keep the lock
            raise

    def _begin(self, config: Any, *, seed: int, device: torch.device | str, data: Mapping[str, str] | None) -> None:
        """Write ``config.json``, the data record and ``run.json``; read back ``history.csv``."""
        self.config = config
        write_json(self.path / "config.json", config_to_dict(config))
        if data is not None:
            write_json(self.path / DATA_RECORD, dict(data))
        record: dict[str, Any] = {
            "seed": seed,
            "device": str(device),
            "versions": library_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
        }
        run_json = self.path / "run.json"
        if run_json.is_file() and holds_results(self.path):  # overwriting it lost the run's earlier calls
            try:
                before = json.loads(run_json.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                before = None  # a damaged record is not worth failing a resume for
            if isinstance(before, dict):
                record["earlier"] = [*before.pop("earlier", []), before]
        write_json(run_json, record)
        self._rows: list[dict[str, Any]] = []
        history = self.path / "history.csv"
        if history.exists() and history.stat().st_size > 0:  # resuming: keep what was logged
            try:
                self._rows = pd.read_csv(history).to_dict("records")
            except pd.errors.EmptyDataError:  # written before any column existed
                self._rows = []
            except (UnicodeDecodeError, pd.errors.ParserError) as err:  # pandas' message named no file
                raise InputDataError(f"{history} is damaged ({err}); move it aside to go on without the "
                                     "rows it held") from err

    def close(self) -> None:
        """Let other processes open the directory now, not when this object goes.

        A Python session that keeps an interrupted call's frames (a notebook's last
        traceback) would keep the directory locked until it ended.
        """
        if self._lock is not None:
            self._lock()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # however the run ends: its frames may outlive it in a kept traceback

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def log(self, row: Mapping[str, Any]) -> pd.DataFrame:
        """Append a row of metrics and rewrite ``history.csv``; returns the table."""
        self._rows.append(dict(row))
        return self._write_history()

    def truncate_history(self, column: str, last: int) -> None:
        """Drop logged rows with ``row[column] > last`` and rewrite ``history.csv``.

        Used when resuming from a checkpoint older than the last logged row, so that
        the steps logged after it are not duplicated.
        """
        self._rows = [r for r in self._rows if not r.get(column, last) > last]
        self._write_history()

    def _write_history(self) -> pd.DataFrame:
        table = pd.DataFrame(self._rows)
        write_csv(self.path / "history.csv", table)
        return table

    @property
    def history(self) -> pd.DataFrame:
        """The logged rows as a table."""
        return pd.DataFrame(self._rows)

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically write ``obj`` as JSON to ``name`` inside the run directory."""
        return write_json(self.path / name, obj)

"""Run directories: resolved config, seed, device, versions, metrics CSV, checkpoints.

Every run writes ``config.json`` (the frozen dataclass config, resolved), ``run.json``
(seed, device, library versions, start time, command line), ``history.csv`` (one row a
logging step, rewritten atomically through pandas) and its checkpoints and plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch

from vaecore.checkpoint import atomic_write_bytes, stored_scalar
from vaecore.datasets import sha256_file
from vaecore.errors import InputDataError
from vaecore.runtime import library_versions

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen dataclass config (possibly nested) as a JSON-able dict."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass config, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass named by ``hint`` (also inside ``Optional[...]`` / ``X | None``)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    candidates = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(candidates) == 1 and dataclasses.is_dataclass(candidates[0]):
        return candidates[0]
    return None


def _from_json(value: Any, hint: Any) -> Any:
    """JSON lists back to the tuples frozen configs hold (unless the field is a list), and
    strings back to the paths that :func:`config_to_dict` wrote as strings."""
    if isinstance(value, str) and Path in (hint, *typing.get_args(hint)):
        return Path(value)
    if isinstance(value, list):
        items = [_from_json(v, None) for v in value]
        return items if typing.get_origin(hint) is list or hint is list else tuple(items)
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` may stand in a field annotated ``hint`` (an int counts as a float)."""
    if hint is None or hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in args)
    if hint in (int, float):  # bool is an int subclass, but True is no epoch count
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args)))
    target = origin or hint  # list[int] -> list: isinstance refuses parameterized generics
    return isinstance(value, target) if isinstance(target, type) else True


def check_field_value(cls: type, name: str, value: Any) -> None:
    """Refuse a ``value`` that does not match the annotation of dataclass field ``cls.name``.

    Raises:
        InputDataError: Naming the field, the expected type and the value.
    """
    _refuse_unfit(cls, name, typing.get_type_hints(cls).get(name), value)


def _refuse_unfit(cls: type, name: str, hint: Any, value: Any) -> None:
    if not _fits(value, hint):
        plain = isinstance(hint, type) and not typing.get_args(hint)
        expected = hint.__name__ if plain else str(hint).replace("typing.", "")
        raise InputDataError(f"{cls.__name__}.{name} expects {expected}, got {value!r}")


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a dataclass config from :func:`config_to_dict`'s output.

    Nested dataclass fields (also ``Optional``) are rebuilt recursively and JSON lists
    become tuples.

    Raises:
        InputDataError: Naming any unknown or missing field, or a value of the wrong type
            (a hand-edited ``"epochs": "10"``), nested configs too.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputDataError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(fields)}")
    missing = sorted(
        name for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise InputDataError(f"{cls.__name__} config lacks the required field(s) {missing}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints.get(name)
        nested = _dataclass_in(hint)
        if nested is not None and isinstance(value, Mapping):
            value = config_from_dict(nested, value)
        else:
            value = _from_json(value, hint)
            _refuse_unfit(cls, name, hint, value)
        kwargs[name] = value
    return cls(**kwargs)


def read_run_config(cls: type[C], path: str | os.PathLike, *, command: str, source: str) -> C:
    """The ``cls`` config stored in a run's ``config.json`` at ``path``.

    Args:
        cls: The run config's dataclass.
        path: The ``config.json`` file (its existence is the caller's to check: what its
            absence means differs by command).
        command: The command whose runs store ``cls``, for the message (``"chem train"``).
        source: What the user named, for the message (``"--resume DIR"``).

    Raises:
        InputDataError: The file is not JSON, or not a ``cls`` (another command's run,
            a hand-edited value of the wrong type), naming ``source`` and ``command``.
    """
    try:
        return config_from_dict(cls, json.loads(Path(path).read_text(encoding="utf-8")))
    except (InputDataError, json.JSONDecodeError, UnicodeDecodeError) as err:  # another command's run, say
        raise InputDataError(f"{source}: its config.json is not a {command} run's ({err})") from err


def existing_run_config(workdir: str | os.PathLike, cls: type[C], *, command: str) -> C | None:
    """The ``cls`` config of the run already in ``workdir``, ``None`` if it holds none.

    Raises:
        InputDataError: ``workdir`` holds another command's run (or a damaged ``config.json``).
    """
    path = Path(workdir) / "config.json"
    if not path.is_file():
        return None
    try:
        return read_run_config(cls, path, command=command, source=str(workdir))
    except InputDataError as err:
        raise InputDataError(f"{workdir} already holds a run of another command (its config.json is not a "
                             f"{command} run's); give another --out") from err


# What a run leaves once it has trained or scored anything; a config.json alone is the
# trace of a run refused or stopped before that, and a new run may take its directory.
RESULT_FILES = ("metrics.json", "summary.json", "train.json")


def holds_results(workdir: str | os.PathLike) -> bool:
    """Whether ``workdir`` holds a run's results: :data:`RESULT_FILES` or a checkpoint
    (``*.safetensors``, also one directory down: M1+M2's ``m1/``)."""
    path = Path(workdir)
    return (any((path / name).is_file() for name in RESULT_FILES)
            or any(path.glob("*.safetensors")) or any(path.glob("*/*.safetensors")))


def check_new_run_dir(workdir: str | os.PathLike, cls: type, *, command: str, resumable: bool) -> None:
    """Refuse to start a new run in a directory that already holds a run's config and results.

    A new run there overwrote the old run's files with its own and left the others: a
    self-trained few-label run's later stages stayed, and ``ssvae.load_classifier`` loaded
    them as the new run's model; a ``vae`` run given a molecule model's directory replaced
    its checkpoint and config beside its weights.

    Args:
        workdir: Where the new run would write.
        cls: The command's run config, to tell its own runs from another command's.
        command: The command, for the message (``"fewlabel"``).
        resumable: Whether ``--resume workdir`` can continue a run of this command there.

    Raises:
        InputDataError: ``workdir`` holds a run; the message says what to do instead.
    """
    if not holds_results(workdir) or existing_run_config(workdir, cls, command=command) is None:
        return
    how = f"continue it with --resume {workdir}, " if resumable else ""
    raise InputDataError(f"{workdir} already holds a {command} run; {how}give another --out, or delete it to "
                         "start over")


# A run's record of the local data file it trains on, checked when the run is resumed.
DATA_RECORD = "data.json"


def data_digest(source: str | os.PathLike) -> str:
    """sha256 over a data file, or over a folder's files (an IDX folder), names included."""
    path = Path(source).expanduser()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else file.name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def check_same_data(source: str, *, named: Collection[str],
                    resumed_from: str | os.PathLike | None) -> dict[str, str] | None:
    """Refuse a resume whose local data changed; the record of the data for :class:`RunDir`.

    A run resumed after its CSV or ``.npz`` was edited trained on other molecules or
    images without a word (and drew its test split from them). Named datasets (``named``)
    are verified against the manifest instead. A run begun before this record existed is
    not checked, only recorded.

    Returns:
        ``{"source", "sha256"}`` to pass as ``RunDir(..., data=...)``, or ``None`` for a named
        dataset or a missing path (which the data loader reports).

    Raises:
        InputDataError: The data's sha256 differs from the one recorded where the run began.
    """
    if source in named or not Path(source).expanduser().exists():
        return None
    digest = data_digest(source)
    record = Path(resumed_from) / DATA_RECORD if resumed_from is not None else None
    if record is not None and record.is_file():
        stored = json.loads(record.read_text(encoding="utf-8")).get("sha256")
        if stored != digest:
            raise InputDataError(f"{source} has changed since this run began (sha256 {str(stored)[:12]}... then, "
                                 f"{digest[:12]}... now): resumed, it would train on other data. Put the run's data "
                                 "back, or start a new run with another --out")
    return {"source": str(source), "sha256": digest}


def resume_hint(command: str, workdir: str | os.PathLike | None) -> str | None:
    """After Ctrl-C: the command that continues the run in ``workdir``, if it left anything to continue."""
    if workdir is None or not holds_results(workdir):
        return None  # stopped before its first checkpoint: there is nothing to resume
    return f"continue with: vaelab {command} --resume {workdir}"


def config_differences(given: Any, stored: Any, *, keep: Collection[str] = ()) -> list[str]:
    """``"name (stored S, given G)"`` for each field of ``given`` unlike ``stored``'s, but those in ``keep``.

    For a run that is reused or continued as it stands (a finished benchmark cell, a
    search rerun in its directory): every difference matters, set by the user or not.
    Nested dataclass configs are compared field by field, their names dotted.
    """
    out: list[str] = []
    for f in dataclasses.fields(given):
        g, s = getattr(given, f.name), getattr(stored, f.name)
        if f.name in keep or g == s:
            continue
        if dataclasses.is_dataclass(g) and dataclasses.is_dataclass(s):
            out += [f"{f.name}.{item}" for item in config_differences(g, s)]
        else:
            out.append(f"{f.name} (stored {s!r}, given {g!r})")
    return out


def resume_conflicts(given: Any, stored: Any, baseline: Any, *, keep: Collection[str] = ()) -> list[str]:
    """The settings a resumed run would ignore: set in ``given`` away from ``baseline``, unlike ``stored``.

    A resumed run continues with the settings stored in its directory; a setting the user
    changed for the resume (``given`` differs from the command's ``baseline`` defaults and
    from ``stored``) would otherwise be dropped without a word. Repeating the original
    command's values is fine. Nested dataclass configs are compared field by field.

    Args:
        given: The config the resuming call asked for.
        stored: The run's stored config (same class).
        baseline: What ``given`` holds when nothing is set (the command's defaults).
        keep: Fields a resume may change (how long and where it runs), not compared.

    Returns:
        ``"name (stored S, given G)"`` for each conflict, nested names dotted.
    """
    out: list[str] = []
    for f in dataclasses.fields(given):
        if f.name in keep:
            continue
        g, s, b = getattr(given, f.name), getattr(stored, f.name), getattr(baseline, f.name)
        if all(dataclasses.is_dataclass(v) for v in (g, s, b)):
            out += [f"{f.name}.{item}" for item in resume_conflicts(g, s, b)]
        elif g != b and g != s:
            out.append(f"{f.name} (stored {s!r}, given {g!r})")
    return out


def check_resume(given: Any, stored: Any, baseline: Any, *, keep: Collection[str], resume: str | os.PathLike) -> None:
    """Refuse a resume that was given settings it would ignore (see :func:`resume_conflicts`).

    Raises:
        InputDataError: Naming each conflicting setting with its stored and given value.
    """
    if conflicts := resume_conflicts(given, stored, baseline, keep=keep):
        raise InputDataError(f"--resume {resume} continues the run with its stored settings, but these were "
                             f"given otherwise: {'; '.join(conflicts)}. Drop them, or start a new run with --out")


def check_resume_length(flag: str, epochs: int | None, checkpoint: str | os.PathLike) -> None:
    """Refuse a resume asked to train fewer epochs in all than its checkpoint has done.

    It trained nothing and wrote the smaller number into ``config.json`` beside a model of
    more epochs, and a later resume took that number.

    Args:
        flag: The option, for the message (``"--epochs"``).
        epochs: The total asked for (``None``: the stored one, not checked).
        checkpoint: The run's resumable checkpoint (its payload's ``epoch``).

    Raises:
        InputDataError: Naming both numbers.
    """
    done = stored_scalar(checkpoint, "epoch") if epochs is not None and Path(checkpoint).is_file() else None
    if isinstance(done, int) and epochs < done:
        raise InputDataError(f"{flag} {epochs} is below the {done} epochs this run has trained ({flag} counts them "
                             f"all); give {flag} {done} or more")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def make_run_dir(path: str | os.PathLike) -> Path:
    """Create the directory ``path`` (and its parents) for a run's files.

    Raises:
        InputDataError: ``path`` is a file, or cannot be made (a read-only place, a parent
            that is a file), naming it: the bare ``FileExistsError`` ended runs in a traceback.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputDataError(f"{path} is a file, not a directory to hold a run; give another directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputDataError(f"cannot make the run directory {path}: {err.strerror or err}") from err
    return path


class RunDir:
    """A run's directory and the files every run writes.

    Creating it writes ``config.json`` and ``run.json`` and reads back an existing
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
        data: The record of its local data (:func:`check_same_data`), written to
            :data:`DATA_RECORD`.
    """

    def __init__(self, path: str | os.PathLike, config: Any, *, seed: int, device: torch.device | str,
                 data: Mapping[str, str] | None = None) -> None:
        self.path = make_run_dir(path)
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
        atomic_write_bytes(self.path / "history.csv", table.to_csv(index=False).encode())
        return table

    @property
    def history(self) -> pd.DataFrame:
        """The logged rows as a table."""
        return pd.DataFrame(self._rows)

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically write ``obj`` as JSON to ``name`` inside the run directory."""
        return write_json(self.path / name, obj)

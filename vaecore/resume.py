"""Reusing a run directory: what a new run, a resume or a rerun may not silently change.

A new run refuses a directory that holds another run's results (:func:`check_new_run_dir`);
a resume refuses settings it would ignore (:func:`check_resume`), fewer epochs than it
has done (:func:`check_resume_length`) and a local data file that changed since the run
began (:func:`check_same_data`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

from vaecore.checkpoint import stored_scalar
from vaecore.config import config_from_dict, read_json, stored_field
from vaecore.datasets import sha256_file
from vaecore.errors import InputDataError

C = TypeVar("C")


def existing_run_config(workdir: str | os.PathLike, cls: type[C], *, command: str) -> C | None:
    """The ``cls`` config of the run already in ``workdir``, ``None`` if it holds none.

    Raises:
        InputDataError: ``workdir`` holds another command's run (or a damaged ``config.json``).
    """
    path = Path(workdir) / "config.json"
    if not path.is_file():
        return None
    try:  # a damaged file was called another command's run
        stored = read_json(path)
    except InputDataError as err:
        raise InputDataError(f"{workdir} holds a run whose config.json is damaged ({err.__cause__}); give another "
                             "--out") from err
    try:
        return config_from_dict(cls, stored)
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
        InputDataError: The data's sha256 differs from the one recorded where the run began,
            or the recorded file is gone (the loader said only that the path does not exist).
    """
    record = Path(resumed_from) / DATA_RECORD if resumed_from is not None else None
    if source in named:
        return None
    if not Path(source).expanduser().exists():
        if record is not None and record.is_file():
            raise InputDataError(f"{source}, the data this run began on, is no longer there (moved?): put it back to "
                                 "resume the run, or start a new run with another --out")
        return None
    digest = data_digest(source)
    if record is not None and (change := digest_change(record, digest)):
        raise InputDataError(f"{source} has changed since this run began ({change}): resumed, it would train on "
                             "other data. Put the run's data back, or start a new run with another --out")
    return {"source": str(source), "sha256": digest}


def digest_change(record: Path, digest: str) -> str | None:
    """``"sha256 1a2b... then, 3c4d... now"`` where a run's data record (``DIR/data.json``)
    holds another digest than ``digest``; ``None`` where it holds this one or does not exist.
    """
    if not record.is_file():
        return None
    stored = stored_field(record, "sha256")
    return None if stored == digest else f"sha256 {str(stored)[:12]}... then, {digest[:12]}... now"


def starts_over(resume: str | os.PathLike, checkpoint: Path) -> bool:
    """Whether ``--resume resume`` starts its run over: one stopped before its first checkpoint.

    A run killed in its first epoch (out of memory, a lost machine) leaves its
    ``config.json`` and nothing to continue; ``--resume`` said only that there was no
    checkpoint, and the run's settings had to be typed again. A directory with results but
    no checkpoint (deleted to save space) is not started over: that would overwrite them.
    Where it is, one line says so (here, so that the three commands word it alike).

    Args:
        resume: The ``--resume`` directory.
        checkpoint: The checkpoint a resume of it reads.
    """
    directory = Path(resume).expanduser()
    if checkpoint.is_file() or not (directory / "config.json").is_file() or holds_results(directory):
        return False
    print(f"--resume {resume}: the run stopped before its first checkpoint; it starts over with its stored settings")
    return True


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

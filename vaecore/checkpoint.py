"""Checkpoints as safetensors with a JSON config: atomic, and never unpickled.

A checkpoint is one ``.safetensors`` file. Its tensors are the flattened leaves of an
arbitrary payload (model ``state_dict``, optimizer state, RNG state); its string
metadata carries JSON documents: the model config, the payload's structure (non-tensor
leaves and where each tensor goes), free-form ``extra`` data such as a vocabulary, and
a sha256 of the tensors so that a corrupted data section is detected, not loaded.
Loading parses only JSON and raw tensor bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from vaecore.errors import CheckpointError, ConfigMismatchError, FileWriteError, InputDataError, cannot_write

FORMAT_VERSION = "1"
_TENSOR = "__tensor__"
_DICT = "__dict__"
_TUPLE = "__tuple__"
# Header sizes above this are not ours (ours are a few hundred kB at most); the bound
# also stops a garbage length from making us allocate gigabytes.
_MAX_HEADER_BYTES = 100 * 2**20
_MISSING = "<missing>"


def _flatten(obj: Any, tensors: dict[str, Tensor], prefix: str) -> Any:
    """Replace tensors by references into ``tensors``; keep JSON-able structure."""
    if isinstance(obj, Tensor):
        key = prefix or "tensor"
        if key in tensors:  # e.g. {"a.b": t} beside {"a": {"b": t}}, or keys 1 and "1"
            n = 1
            while f"{key}#{n}" in tensors:
                n += 1
            key = f"{key}#{n}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, Mapping):
        for k in obj:
            # JSON keeps these types exactly (as [key, value] pairs, since optimizer
            # state dicts have int keys); tuples would come back as unhashable lists.
            if k is not None and not isinstance(k, (bool, int, float, str)):
                raise TypeError(f"cannot store the dict key {k!r} ({type(k).__name__}) at {prefix!r} in a checkpoint")
        return {_DICT: [[k, _flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, tensors, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _DICT in obj:
            return {k: _unflatten(v, tensors) for k, v in obj[_DICT]}
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        raise InputDataError(f"unknown structure node with keys {sorted(obj)}")
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _unalias(tensors: dict[str, Tensor]) -> None:
    """Clone tensors that share storage with an earlier one (tied weights, views).

    safetensors refuses overlapping tensors; after loading, the copies are independent,
    which is what ``load_state_dict`` expects anyway.
    """
    seen: set[int] = set()
    for key, t in tensors.items():
        if t.numel() == 0:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            tensors[key] = t.clone()
        else:
            seen.add(ptr)


def _tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and raw bytes of CPU tensors, in key order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        digest.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
        digest.update(memoryview(raw.numpy()))
    return digest.hexdigest()


def _config_dict(config: Any) -> dict[str, Any]:
    """A config mapping or dataclass, JSON-normalised (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"a checkpoint config must be a mapping or a dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(dict(config), default=str))


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        payload: The payload as saved (tuples stay tuples, int dict keys stay ints).
        config: The stored config (JSON-normalised: tuples are lists).
        extra: The stored ``extra`` data.
    """

    payload: Any
    config: dict[str, Any]
    extra: dict[str, Any]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it.

    Readers see either the old file or the complete new one, never a partial write;
    missing parent directories are created. The temporary file lives in the destination's
    directory, so that the final ``os.replace`` is atomic, and is removed if anything fails.

    Raises:
        InputDataError: ``path`` is a directory.
        FileWriteError: The file could not be written (a full disk, a read-only place),
            naming it: a full disk's bare "[Errno 28] No space left on device" named none.
    """
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the whole write, beside the directory
        raise InputDataError(f"{path} is a directory; give the path of a file to write")
    # Named by its writer (host and process), so that a later write can tell a dead
    # writer's remnant from another live process's write in progress (below).
    tmp = path.parent / f".{path.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created here (exclusively) rather than by ``tempfile.mkstemp`` so that the final
        # file gets the usual umask permissions, not mkstemp's 0600.
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        # Where it was never made (a read-only place, a parent that is a file) the unlink
        # fails too, and its error ("Read-only file system: '.../.x.json.<hex>.tmp'") took
        # the place of the one that matters.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, FileExistsError) and path.parent.is_file():
            raise FileWriteError(f"cannot write {path}: {path.parent} is a file, not a directory") from err
        if isinstance(err, OSError):
            raise cannot_write(path, err) from err
        raise
    # A process killed mid-write (SIGKILL, out of memory) cannot remove its temporary file:
    # each such kill left a checkpoint-sized one in the run directory. This write removes
    # those of dead writers. Not every older one: processes started together (parallel
    # seeds filling a cold dataset cache) write the same file at once, and removing the
    # temporary file of one still in its fsync failed it (24 of 80 fetches, 8 at a time).
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        with contextlib.suppress(OSError):
            if _abandoned(stale.name[len(prefix):-len(".tmp")], stale.stat().st_mtime):
                stale.unlink()
    return path


_ABANDONED_AFTER = 24 * 3600.0  # seconds: another host's temporary file (a shared disk) is left this long


def _abandoned(tag: str, mtime: float) -> bool:
    """Whether the temporary file tagged ``HOST-PID-HEX`` is a dead writer's remnant.

    One of this host is when its process is gone; any other (another host's on a shared
    disk, or the untagged ones of earlier versions) once it is a day old.
    """
    host, _, pid = tag.rpartition("-")[0].rpartition("-")
    if host == socket.gethostname() and pid.isdigit() and os.name == "posix":  # Windows has no signal 0
        if int(pid) == os.getpid():
            return False  # this process's own, in another thread
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    return time.time() - mtime > _ABANDONED_AFTER


def save_checkpoint(
    path: str | os.PathLike,
    payload: Any,
    config: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``payload`` (nested dicts/lists/tuples of tensors and scalars).

    Tensors are moved to CPU; tensors sharing storage (tied weights) are stored as
    independent copies. Dict keys may be ``str``, ``int``, ``float``, ``bool`` or ``None``.

    Args:
        path: Destination, conventionally ``*.safetensors``; parent dirs are created.
        payload: E.g. ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``.
        config: The model's JSON-able config (a mapping or a dataclass), checked again
            at load time.
        extra: Other JSON-able data stored with it (vocabulary, label map, ...).

    Returns:
        ``path``.

    Raises:
        TypeError: If the payload holds something other than tensors, scalars,
            strings, ``None``, dicts, lists and tuples.
    """
    tensors: dict[str, Tensor] = {}
    structure = _flatten(payload, tensors, "")
    _unalias(tensors)
    metadata = {
        "vaelab_format": FORMAT_VERSION,
        "config": json.dumps(_config_dict(config), sort_keys=True),
        "structure": json.dumps(structure),
        "extra": json.dumps(dict(extra or {})),
        "tensors_sha256": _tensors_digest(tensors),
    }
    # Serialized in memory (ours are tens of MB at most) and written by atomic_write_bytes:
    # safetensors' own writer reported a full disk as a SafetensorError naming no file,
    # which ended runs in a traceback.
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def _read_metadata(path: Path) -> dict[str, str]:
    # The safetensors header is an 8-byte little-endian length then JSON; read it
    # ourselves so that a pickle or truncated file yields our own clear error.
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated or empty checkpoint ({size} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > _MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: not a safetensors checkpoint (bad header length {n}); "
                "pickled (torch.save) files are never loaded"
            )
        if n > size - 8:
            raise CheckpointError(f"{path}: truncated checkpoint (header of {n} bytes, file of {size})")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: corrupted checkpoint header: {err}") from err
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a vaelab checkpoint (no metadata in its header)")
    if meta.get("vaelab_format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a vaelab checkpoint (format {meta.get('vaelab_format')!r})")
    missing = [k for k in ("config", "structure", "extra", "tensors_sha256") if not isinstance(meta.get(k), str)]
    if missing:
        raise CheckpointError(f"{path}: corrupted checkpoint header (missing {missing})")
    return meta


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{where}.{k}" if where else str(k), out)
    elif a != b:
        out.append(f"{where}: checkpoint has {a!r}, model has {b!r}")


def config_mismatches(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Describe every field that differs between two configs (JSON-normalised).

    Nested configs are compared field by field and named with dotted paths
    (``encoder.hidden``); a field present on one side only shows as ``'<missing>'``.
    ``expected`` may also be a dataclass.
    """
    out: list[str] = []
    _diff(_config_dict(stored), _config_dict(expected), "", out)
    return out


def _header_entry(path: str | os.PathLike, key: str) -> Any:
    """One JSON document of a checkpoint's metadata, read from its header alone."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return json.loads(_read_metadata(path)[key])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupted checkpoint metadata: {err}") from err


def stored_scalar(path: str | os.PathLike, key: str) -> Any:
    """A top-level scalar of a checkpoint's payload (its ``epoch``, say), or ``None``.

    Read from the file's header alone: no tensor is loaded (a resume checks its length
    against the epochs done before it writes anything).

    Raises:
        CheckpointError: As :func:`load_checkpoint`, for a file that is no vaelab checkpoint.
    """
    structure = _header_entry(path, "structure")
    pairs = structure.get(_DICT, []) if isinstance(structure, dict) else []
    return next((v for k, v in pairs if k == key and not isinstance(v, (dict, list))), None)


def stored_extra(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's ``extra`` data, read from the file's header alone (no tensor loaded).

    Raises:
        CheckpointError: As :func:`load_checkpoint`, for a file that is no vaelab checkpoint.
    """
    extra = _header_entry(path, "extra")
    return extra if isinstance(extra, dict) else {}


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_config: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Only JSON and raw tensor bytes are parsed; nothing is ever unpickled.

    Args:
        path: The ``.safetensors`` file.
        expected_config: The config of the model it is loaded into (a mapping or a
            dataclass); if given, every field must match the stored one.
        device: Where the tensors go.

    Raises:
        CheckpointError: Missing, truncated, corrupted (header or tensor bytes) or
            non-safetensors (e.g. pickle) file.
        ConfigMismatchError: ``expected_config`` given and some field differs; the
            message names each field with both values.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    meta = _read_metadata(path)
    try:
        config = json.loads(meta["config"])
        structure = json.loads(meta["structure"])
        extra = json.loads(meta["extra"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupted checkpoint metadata: {err}") from err
    if expected_config is not None:
        diffs = config_mismatches(config, expected_config)
        if diffs:
            raise ConfigMismatchError(f"{path}: config mismatch: " + "; ".join(diffs))
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint: {err}") from err
    if _tensors_digest(tensors) != meta["tensors_sha256"]:
        raise CheckpointError(f"{path}: corrupted checkpoint: its tensor bytes do not match their sha256")
    if torch.device(device).type != "cpu":
        tensors = {k: t.to(device) for k, t in tensors.items()}
    try:
        payload = _unflatten(structure, tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupted checkpoint structure: {err}") from err
    return Checkpoint(payload=payload, config=config, extra=extra)

"""Frozen dataclass configs to and from JSON, each value read back checked against its field.

Every run writes its config as ``config.json`` (:func:`config_to_dict`); a resume, a rerun
or a loaded model reads it back with :func:`config_from_dict`, which refuses a field that is
unknown, missing or of the wrong type (a hand-edited ``"epochs": "10"``) by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from vaecore.errors import InputDataError, brief

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
            (a hand-edited ``"epochs": "10"``), nested configs too; ``data`` that is no JSON
            object (a damaged config.json of ``5`` or ``null`` failed in a TypeError).
    """
    if not isinstance(data, Mapping):
        raise InputDataError(f"a {cls.__name__} is a JSON object of its fields, not {type(data).__name__} "
                             f"{brief(data, 60)}")
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


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in the file at ``path``.

    Raises:
        InputDataError: The file is not JSON (damaged, cut short), naming it: json's own
            message ("Expecting value: line 1 column 1 (char 0)") named no file.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path} is damaged ({err})") from err


def stored_field(path: str | os.PathLike, key: str) -> Any:
    """``key``'s value in the JSON object stored at ``path``; ``None`` where the file is
    missing, holds no object (a hand-edited list) or lacks ``key``.

    Raises:
        InputDataError: A damaged file, as :func:`read_json`.
    """
    if not Path(path).is_file():
        return None
    record = read_json(path)
    return record.get(key) if isinstance(record, dict) else None


def read_run_config(cls: type[C], path: str | os.PathLike, *, command: str, source: str) -> C:
    """The ``cls`` config stored in a run's ``config.json`` (or ``fit_config.json``) at ``path``.

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
        raise InputDataError(f"{source}: its {Path(path).name} is not a {command} run's ({err})") from err

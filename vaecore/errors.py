"""Warnings and errors raised across vaelab.

Modelled on BoTorch's hierarchy: every error is a ``VaelabError`` *and* the builtin
exception a caller would naturally catch (``ValueError`` for bad input), so both
``except VaelabError`` and ``except ValueError`` work.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


class VaelabError(Exception):
    """Base class of every error raised by vaelab."""


class InputDataError(VaelabError, ValueError):
    """Input data (arrays, labels, SMILES, configs) that cannot be used."""


class ChecksumError(InputDataError):
    """A downloaded or local file whose sha256 differs from the manifest."""


class CheckpointError(VaelabError, RuntimeError):
    """A checkpoint that is missing, truncated, corrupted or not a safetensors file."""


class ConfigMismatchError(CheckpointError, ValueError):
    """A checkpoint whose stored config differs from the model it is loaded into."""


class FileWriteError(VaelabError, OSError):
    """A file that could not be written (a full disk, a read-only place, a quota); the message names it."""


class ObjectiveError(VaelabError, RuntimeError):
    """A user's objective that gave no score for any of the first molecules it was called on."""


class NonFiniteLossError(VaelabError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the step."""


class VaelabWarning(UserWarning):
    """Base class of every warning issued by vaelab."""


class InputDataWarning(VaelabWarning):
    """Input data was used but something about it was skipped or adjusted."""


class SearchWarning(VaelabWarning):
    """A latent-space search fell back to a simpler strategy (e.g. failed GP fit)."""


def cannot_write(path: object, err: OSError) -> FileWriteError:
    """The :class:`FileWriteError` for ``err`` met writing ``path``: "cannot write PATH: REASON".

    Errors of a write (as against an ``open``) carry no file name: a full disk said only
    "[Errno 28] No space left on device".
    """
    return FileWriteError(f"cannot write {path}: {err.strerror or err}")


def brief(value: object, limit: int = 100) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters with its length said.

    A bad input can be long (a cell of a damaged file, a file's whole text given as one
    SMILES): a 5,000-character string made a 5,000-character error line.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 3]}... ({len(value) if isinstance(value, (str, bytes)) else len(text)} characters)"


def integer_at_least(name: str, value: object, least: int) -> int:
    """``value`` as an ``int`` if it is an integer >= ``least`` (numpy integers included).

    Raises:
        InputDataError: A float, a bool, anything else, or a value below ``least``, named.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputDataError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def integers_at_least(name: str, values: Iterable[object], least: int) -> tuple[int, ...]:
    """Each of ``values`` checked by :func:`integer_at_least`, named ``name[i]`` (layer widths, kernel sizes).

    Raises:
        InputDataError: For the first value that is not an integer >= ``least``, naming its index.
    """
    return tuple(integer_at_least(f"{name}[{i}]", value, least) for i, value in enumerate(values))


def distinct(name: str, values: Sequence[T]) -> Sequence[T]:
    """``values`` if no value repeats (the seeds of a benchmark grid, its models, objectives).

    Raises:
        InputDataError: Naming the repeated values: a grid ran such a cell once and counted
            its figures once for each repeat (``--seeds 0 0``: "2 seeds, std 0.00").
    """
    seen: list[T] = []
    repeated: list[T] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.append(value)
    if repeated:
        raise InputDataError(f"{name} repeats {brief(repeated)}; give each once")
    return values


def finite_at_least(name: str, value: object, least: float, *, strict: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number >= ``least`` (> if ``strict``).

    NaN fails every comparison, so a plain ``value < least`` test lets it through; this
    one does not.

    Raises:
        InputDataError: A bool, a non-number, NaN, an infinity or a value out of range, named.
    """
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not ok or (value <= least if strict else value < least):
        raise InputDataError(f"{name} must be a finite number {'>' if strict else '>='} {least:g}, got {value!r}")
    return float(value)

"""Which training examples keep their label: the balanced, seeded few-label split.

The semi-supervised protocol of Kingma et al. (2014) keeps ``n`` labels of the 50,000
MNIST training images, ``n / C`` from each of the ``C`` classes, and hides the rest. The
split is a pure function of the labels and a seed (a CPU ``torch.Generator``), so it is
the same on every machine; the chosen indices are written to the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vaecore.errors import InputDataError, integer_at_least
from vaecore.rundir import write_csv
from vaecore.runtime import check_seed

UNLABELLED = -1
LABELS_FILE = "labels.csv"


def as_label_tensor(y: Tensor | np.ndarray | list[int], *, what: str = "labels") -> Tensor:
    """Labels as an int64 CPU tensor `[N]`, refusing non-integer values.

    Integer-valued floats (``3.0``) are accepted; ``2.5``, NaN or booleans are not.

    Raises:
        InputDataError: Not 1-D, not numeric, or a non-integer value (named in the message).
    """
    if isinstance(y, Tensor):
        t = y
    else:
        array = np.asarray(y)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):  # strings, objects
            raise InputDataError(f"{what} must be integers, got dtype {array.dtype}")
        t = torch.as_tensor(array)
    if t.dim() != 1:
        raise InputDataError(f"{what} must be a 1-D vector, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise InputDataError(f"{what} must be integers, got dtype {t.dtype}")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != t.round())
        if bad.any():
            first = int(bad.nonzero()[0])
            raise InputDataError(f"{what} must be integers; {what}[{first}] = {t[first].item()!r}")
    return t.detach().to("cpu", torch.int64)


def check_labels(y: Tensor, n_classes: int, *, what: str = "labels", allow_unlabelled: bool = True) -> Tensor:
    """Validate labels against ``n_classes``; returns them as int64 `[N]`.

    Raises:
        InputDataError: A label outside `[0, n_classes)` (or ``-1`` when
            ``allow_unlabelled``); the message names the first such value and its index.
    """
    y = as_label_tensor(y, what=what)
    low = UNLABELLED if allow_unlabelled else 0
    bad = (y < low) | (y >= n_classes)
    if bad.any():
        first = int(bad.nonzero()[0])
        allowed = f"0..{n_classes - 1}" + (" or -1 (unlabelled)" if allow_unlabelled else "")
        raise InputDataError(f"{what}[{first}] = {int(y[first])} is out of range; expected {allowed}")
    return y


def absent_classes(y: Tensor, n_classes: int) -> list[int]:
    """The classes of ``0..n_classes-1`` that no label of ``y`` `[N]` names (``-1`` names none)."""
    return (torch.bincount(y[y >= 0], minlength=n_classes)[:n_classes] == 0).nonzero().flatten().tolist()


def _check_every_class(counts: Tensor, what: str) -> None:
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise InputDataError(f"{what}: class(es) {empty} have no labelled example; every class needs at least one")


def balanced_split(y: Tensor | np.ndarray, n_labels: int, *, n_classes: int, seed: int) -> Tensor:
    """Draw ``n_labels / n_classes`` labelled examples of every class.

    Args:
        y: True labels of the training set, `[N]` (must all be known, i.e. >= 0).
        n_labels: Total number of labels to keep.
        n_classes: Number of classes C; ``n_labels`` must be a multiple of it.
        seed: Seed of the CPU generator that picks the examples.

    Returns:
        Sorted int64 indices into ``y``, `[n_labels]`.

    Raises:
        InputDataError: ``n_labels`` not a positive multiple of C, larger than a class
            holds, a class without examples, or labels out of range / non-integer.
    """
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels <= 0:
        raise InputDataError(f"number of labels must be a positive integer, got {n_labels!r}")
    integer_at_least("n_classes", n_classes, 1)  # 0 was a ZeroDivisionError just below
    if n_labels % n_classes:
        raise InputDataError(f"{n_labels} labels cannot be split evenly over {n_classes} classes; "
                             f"use a multiple of {n_classes}")
    y = check_labels(y, n_classes, what="training labels", allow_unlabelled=False)
    per_class = n_labels // n_classes
    counts = torch.bincount(y, minlength=n_classes)
    _check_every_class(counts, "training labels")
    short = [(c, int(counts[c])) for c in range(n_classes) if counts[c] < per_class]
    if short:
        c, have = short[0]
        raise InputDataError(f"{n_labels} labels need {per_class} per class but class {c} has only "
                             f"{have} training examples (at most {n_classes * int(counts.min())} labels possible)")
    generator = torch.Generator().manual_seed(check_seed(seed))  # int() made 2.5 seed 2
    chosen = []
    for c in range(n_classes):  # C is small (10): a loop over classes is clearer than tricks
        members = (y == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def given_labels(y: Tensor | np.ndarray, *, n_classes: int) -> Tensor:
    """Indices of the examples labelled in ``y`` (``-1`` = unlabelled), `[n]` sorted.

    Raises:
        InputDataError: No labels at all, a class without any label, or labels out of range.
    """
    y = check_labels(y, n_classes, what="training labels")
    idx = (y >= 0).nonzero().flatten()
    if len(idx) == 0:
        raise InputDataError("training labels: no example is labelled (all are -1)")
    _check_every_class(torch.bincount(y[idx], minlength=n_classes), "training labels")
    return idx


def save_split(path: str | os.PathLike, indices: Tensor, labels: Tensor) -> Path:
    """Write the labelled indices and their labels as CSV (``index,label``)."""
    table = pd.DataFrame({"index": indices.cpu().numpy(), "label": labels.cpu().numpy()})
    return write_csv(path, table)


def load_split(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read a split written by :func:`save_split`: (indices `[n]`, labels `[n]`)."""
    table = pd.read_csv(path)
    return (torch.tensor(table["index"].to_numpy(np.int64, copy=True)),
            torch.tensor(table["label"].to_numpy(np.int64, copy=True)))


def matches_split(path: str | os.PathLike, indices: Tensor, labels: Tensor) -> bool:
    """Whether the split stored at ``path`` (:func:`save_split`) holds these indices and labels."""
    stored_indices, stored_labels = load_split(path)
    return stored_indices.equal(indices.cpu()) and stored_labels.equal(labels.cpu())

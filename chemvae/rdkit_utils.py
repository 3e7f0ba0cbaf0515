"""Small RDKit helpers shared across chemvae: quiet parsing and canonical SMILES.

RDKit logs one line to stderr for every SMILES it cannot parse. A decoder that emits
thousands of invalid strings would bury everything else, so importing this module turns
RDKit's ``rdApp.*`` logs off for the whole process (worker processes import it too), and
:func:`quiet_rdkit` blocks them locally for code that re-enables logging.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from rdkit import Chem, RDLogger, rdBase
from tqdm.auto import tqdm

from vaecore.errors import InputDataError, brief, integer_at_least

T = TypeVar("T")
R = TypeVar("R")

# Why at import time: every process that parses SMILES imports this module first, so
# spawned worker processes are silenced as well as the parent.
RDLogger.DisableLog("rdApp.*")


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Block RDKit's log output inside the ``with`` block, whatever the global setting."""
    block = rdBase.BlockLogs()
    try:
        yield
    finally:
        del block  # BlockLogs restores the previous log state when destroyed


def smiles_list(smiles: Sequence[str], what: str) -> list:
    """``smiles`` as a list, refusing one bare string.

    A string is itself a sequence: ``"CCO"`` would silently become the three molecules
    ``C``, ``C`` and ``O``.

    Raises:
        InputDataError: ``smiles`` is a single string (``what`` names the argument).
    """
    if isinstance(smiles, str):
        raise InputDataError(f"{what} must be a sequence of SMILES strings, not one string {brief(smiles)}")
    return list(smiles)


def mol_from_smiles(smiles: Any) -> Chem.Mol | None:
    """Parse one SMILES string; return ``None`` (never raise) for anything unusable.

    Args:
        smiles: Usually a ``str``; ``None``, NaN, non-strings, empty strings and
            strings RDKit rejects (syntax or valence errors) all give ``None``.

    Returns:
        A sanitized ``rdkit.Chem.Mol`` with at least one atom, or ``None``.
    """
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    with quiet_rdkit():
        try:
            mol = Chem.MolFromSmiles(smiles)
        except Exception:  # RDKit raises only on pathological input; treat as invalid
            return None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def canonical_smiles(smiles: Any) -> str | None:
    """RDKit canonical (isomeric) SMILES of ``smiles``, or ``None`` if it does not parse."""
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    try:
        return Chem.MolToSmiles(mol)
    except Exception:
        return None


def _canonical_chunk(chunk: Sequence[Any]) -> list[str | None]:
    return [canonical_smiles(s) for s in chunk]


def canonicalize_all(smiles: Sequence[Any], *, n_jobs: int = 1, chunk_size: int = 5000,
                     progress: bool = True) -> list[str | None]:
    """:func:`canonical_smiles` of each element, in order, ``None`` where invalid.

    Args:
        smiles: ``N`` SMILES strings (anything else counts as invalid).
        n_jobs: Worker processes (see :func:`map_chunks`); worth it for large sets such
            as the 1.6M MOSES training SMILES (about 0.5 ms per molecule on one core).
        chunk_size: Strings per worker task.
        progress: Show a progress bar over the chunks.
    """
    return map_chunks(_canonical_chunk, smiles_list(smiles, "smiles"), n_jobs=n_jobs, chunk_size=chunk_size,
                      desc="canonicalize", progress=progress)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux, spawn elsewhere.

    Why fork: a spawned worker re-imports ``chemvae`` and with it torch (seconds per
    worker). Forking is safe here because workers only run RDKit and never touch the
    torch/OpenMP thread pools whose locks the parent may hold. macOS cannot fork safely.
    """
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def worker_count(n_jobs: int) -> int:
    """``n_jobs`` as a number of worker processes: ``-1`` means every core.

    Raises:
        InputDataError: ``n_jobs`` is not an integer >= 1 or -1 (named).
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or not (n_jobs >= 1 or n_jobs == -1):
        raise InputDataError(f"n_jobs must be an integer >= 1 or -1, got {n_jobs!r}")
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


def map_chunks(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    n_jobs: int = 1,
    chunk_size: int = 2000,
    desc: str | None = None,
    progress: bool = True,
) -> list[R]:
    """Apply a chunk-wise function over ``items`` in worker processes, keeping order.

    Args:
        fn: Module-level function (it must pickle) mapping a chunk to one result per item.
        items: The inputs.
        n_jobs: ``1`` runs here; ``k > 1`` uses ``k`` worker processes (forked on Linux); ``-1``
            uses every core.
        chunk_size: Items per task.
        desc: tqdm label; the bar shows only when there are several chunks.
        progress: Show the bar at all (a command's ``--no-progress``: the bars of data
            preparation filled the logs of such runs with carriage returns).

    Returns:
        ``[r for chunk in chunks for r in fn(chunk)]``.
    """
    chunk_size = integer_at_least("chunk_size", chunk_size, 1)
    n_jobs = worker_count(n_jobs)
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    bar = dict(total=len(chunks), desc=desc, unit="chunk", disable=not progress or desc is None or len(chunks) < 2)
    out: list[R] = []
    if n_jobs == 1 or len(chunks) < 2:
        for chunk in tqdm(chunks, **bar):
            out.extend(fn(chunk))
        return out
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(chunks)), mp_context=_worker_context()) as pool:
        for chunk_out in tqdm(pool.map(fn, chunks), **bar):
            out.extend(chunk_out)
    return out

"""Molecular properties with RDKit: logP, QED, SA score, ring penalty, penalized logP.

Penalized logP comes in two forms that papers mix up, so both are named explicitly:

* ``normalized`` (JT-VAE, Jin et al. 2018, and most later BO papers): each term is
  standardized with the mean/std measured on ZINC250k,
  ``(logP - 2.45777691) / 1.43341767 + (-SA + 3.05352042) / 0.83460587
  + (-cycle + 0.04861121) / 0.28746695``;
* ``unnormalized`` (Gomez-Bombarelli et al. 2018 style): ``logP - SA - cycle``.

``cycle`` is the ring penalty ``max(largest ring size - 6, 0)``. The SA score is
Ertl & Schuffenhauer's, from ``rdkit.Contrib.SA_Score`` shipped with RDKit.

:func:`compute_properties` evaluates a list of SMILES in worker processes, turns
unparsable strings into ``valid=False`` rows with NaN properties, and caches the table as
a CSV keyed by the sha256 of the input list.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen

from chemvae.rdkit_utils import map_chunks, mol_from_smiles, smiles_list
from vaecore.checkpoint import atomic_write_bytes
from vaecore.errors import InputDataError

PROPERTY_COLUMNS = ("logp", "qed", "sa", "ring_penalty", "plogp", "plogp_unnormalized")

# JT-VAE's standardization constants (mean, std over ZINC250k) for penalized logP.
LOGP_MEAN, LOGP_STD = 2.45777691, 1.43341767
SA_MEAN, SA_STD = -3.05352042, 0.83460587  # statistics of -SA
CYCLE_MEAN, CYCLE_STD = -0.04861121, 0.28746695  # statistics of -cycle

_SA_DIR = os.path.join(RDConfig.RDContribDir, "SA_Score")
if _SA_DIR not in sys.path:
    sys.path.append(_SA_DIR)
import sascorer  # noqa: E402  (rdkit.Contrib is not a package; it is found via sys.path)


class _NoObjectsUnpickler(pickle.Unpickler):
    """Unpickler that refuses every class or function: plain lists/ints/floats only."""

    def find_class(self, module: str, name: str):  # noqa: D102
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the SA fragment table")


def _load_sa_fragment_scores() -> None:
    """Fill ``sascorer``'s fragment table without unrestricted unpickling.

    ``sascorer.readFragmentScores`` calls ``pickle.load`` on ``fpscores.pkl.gz``; the file
    holds only nested lists of numbers, so we read it with an unpickler that can build
    nothing else and hand the same dictionary to ``sascorer``.
    """
    if sascorer._fscores is not None:
        return
    with gzip.open(os.path.join(_SA_DIR, "fpscores.pkl.gz")) as fh:
        rows = _NoObjectsUnpickler(fh).load()
    scores = {}
    for row in rows:
        for fragment_id in row[1:]:
            scores[fragment_id] = float(row[0])
    sascorer._fscores = scores


def _mol(mol: Chem.Mol) -> Chem.Mol:
    # RDKit's own message for a string or None is a Boost.Python signature dump.
    if not isinstance(mol, Chem.Mol):
        raise InputDataError(
            f"expected an RDKit molecule (chemvae.rdkit_utils.mol_from_smiles(smiles)), got {type(mol).__name__} {mol!r}"
        )
    return mol


def logp(mol: Chem.Mol) -> float:
    """Wildman-Crippen logP (``Crippen.MolLogP``)."""
    return float(Crippen.MolLogP(_mol(mol)))


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness in ``[0, 1]`` (``rdkit.Chem.QED.qed``)."""
    return float(QED.qed(_mol(mol)))


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility score in ``[1, 10]`` (1 = easy), Ertl & Schuffenhauer 2009."""
    _load_sa_fragment_scores()
    score = sascorer.calculateScore(_mol(mol))
    return float("nan") if score is None else float(score)


def ring_penalty(mol: Chem.Mol) -> float:
    """``max(largest ring size - 6, 0)``, the "cycle" term of penalized logP.

    Ring sizes come from RDKit's smallest set of smallest rings. JT-VAE's code (and codes
    copied from it) took the largest cycle of networkx's ``cycle_basis`` of the atom graph,
    a basis that need not be minimal: the two agree on plain and fused rings but not on
    every bridged or caged system (adamantane: 0 here, 2 there; 5 of the 2,000 fixture
    molecules differ). For such a molecule penalized logP here is higher than JT-VAE's, by
    the difference of the two ring terms (divided by 0.28746695 in the normalized form).
    """
    rings = _mol(mol).GetRingInfo().AtomRings()
    largest = max((len(ring) for ring in rings), default=0)
    return float(max(largest - 6, 0))


def penalized_logp(mol: Chem.Mol, *, normalized: bool = True) -> float:
    """Penalized logP: logP minus synthetic accessibility minus large rings.

    Args:
        mol: An RDKit molecule.
        normalized: ``True`` for JT-VAE's standardized sum of the three terms,
            ``False`` for the raw ``logP - SA - cycle``.
    """
    lp, sa, cycle = logp(mol), sa_score(mol), ring_penalty(mol)
    if not normalized:
        return lp - sa - cycle
    return (
        (lp - LOGP_MEAN) / LOGP_STD
        + (-sa - SA_MEAN) / SA_STD
        + (-cycle - CYCLE_MEAN) / CYCLE_STD
    )


def _row(smiles: object) -> tuple[bool, ...]:
    """``(valid, *PROPERTY_COLUMNS)`` for one SMILES; NaNs where it does not parse."""
    nan_row = (False,) + (math.nan,) * len(PROPERTY_COLUMNS)
    mol = mol_from_smiles(smiles)
    if mol is None:
        return nan_row
    try:
        lp, q, sa, cycle = logp(mol), qed(mol), sa_score(mol), ring_penalty(mol)
    except Exception:  # a molecule RDKit parses but a descriptor rejects counts as invalid
        return nan_row
    unnorm = lp - sa - cycle
    norm = (lp - LOGP_MEAN) / LOGP_STD + (-sa - SA_MEAN) / SA_STD + (-cycle - CYCLE_MEAN) / CYCLE_STD
    values = (lp, q, sa, cycle, norm, unnorm)
    if not all(math.isfinite(v) for v in values):
        return nan_row
    return (True,) + values


def _rows(chunk: Sequence[object]) -> list[tuple]:
    """Worker entry point: properties of one chunk (module-level so it pickles)."""
    return [_row(s) for s in chunk]


def smiles_checksum(smiles: Sequence[str]) -> str:
    """sha256 of the SMILES list (order matters), the key of the property cache."""
    digest = hashlib.sha256()
    for s in smiles:
        digest.update(str(s).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _cache_path(cache_dir: Path, smiles: Sequence[str]) -> Path:
    return Path(cache_dir) / f"properties-{smiles_checksum(smiles)}.csv.gz"


def read_property_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`compute_properties` (or the committed fixture).

    SMILES strings are kept verbatim: pandas' default NA spellings (``"NA"``, ``"None"``,
    ...) would otherwise turn some strings into NaN; only property columns read blanks
    as NaN.
    """
    frame = pd.read_csv(
        path, keep_default_na=False, na_values={c: [""] for c in PROPERTY_COLUMNS}, dtype={"smiles": str}
    )
    if "valid" in frame:
        frame["valid"] = frame["valid"].astype(str).str.lower().eq("true")
    for column in PROPERTY_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype(float)
    return frame


def compute_properties(
    smiles: Sequence[str],
    *,
    n_jobs: int = 1,
    cache_dir: Path | None = None,
    chunk_size: int = 2000,
    progress: bool = True,
) -> pd.DataFrame:
    """Property table of a list of SMILES, computed in parallel and cached.

    Args:
        smiles: ``N`` SMILES strings; invalid entries (unparsable, empty, non-strings)
            are kept as rows with ``valid=False`` and NaN properties.
        n_jobs: Worker processes; ``1`` computes in this process, ``-1`` uses every core.
        cache_dir: If given, the table is read from / written to
            ``cache_dir/properties-<sha256 of the SMILES list>.csv.gz``.
        chunk_size: SMILES per task sent to a worker.
        progress: Show a progress bar over the chunks.

    Returns:
        DataFrame with ``N`` rows in input order and columns ``smiles``, ``valid`` (bool)
        and :data:`PROPERTY_COLUMNS` (float, NaN where invalid).
    """
    smiles = [s if isinstance(s, str) else "" for s in smiles_list(smiles, "smiles")]  # None/NaN/numbers: invalid
    path = _cache_path(cache_dir, smiles) if cache_dir is not None else None
    if path is not None and path.exists():
        cached = read_property_table(path)
        # The name is a hash; checking the content guards against a truncated file.
        if len(cached) == len(smiles) and cached["smiles"].tolist() == smiles:
            return cached

    rows = map_chunks(_rows, smiles, n_jobs=n_jobs, chunk_size=chunk_size, desc="properties", progress=progress)
    table = pd.DataFrame(rows, columns=("valid",) + PROPERTY_COLUMNS)
    table.insert(0, "smiles", smiles)
    table["valid"] = table["valid"].astype(bool)
    table[list(PROPERTY_COLUMNS)] = table[list(PROPERTY_COLUMNS)].astype(np.float64)

    if path is not None:
        buffer = io.BytesIO()
        table.to_csv(buffer, index=False, compression="gzip")
        atomic_write_bytes(path, buffer.getvalue())  # readers never see a half-written cache
    return table

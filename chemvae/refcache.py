"""Reference statistics of a test set, computed once and cached on disk.

MOSES's test sets hold 176k molecules each; their ChemNet moments, fingerprints, BRICS
fragments and scaffolds take tens of minutes on a CPU, and every ``vaelab chem eval``
needs the same ones. :func:`cached_reference_stats` keys them by the SMILES themselves,
the fingerprint size and the RDKit version, and stores them as a compressed ``.npz`` of
plain arrays (fingerprint bits packed 8 to a byte), read back with
``allow_pickle=False``: a cache file can never run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rdkit

from chemvae.metrics import FP_BITS, ReferenceStats, reference_stats
from vaecore.checkpoint import atomic_write_bytes
from vaecore.errors import InputDataWarning


def reference_key(smiles: Sequence[str], *, compute_fcd: bool) -> str:
    """A digest of everything the statistics depend on: the SMILES, FCD or not, RDKit."""
    digest = hashlib.sha256()
    digest.update(f"v1 fp{FP_BITS} fcd{int(compute_fcd)} rdkit{rdkit.__version__}\n".encode())
    for s in smiles:
        digest.update(s.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def _counter_arrays(prefix: str, counts: Counter) -> dict[str, np.ndarray]:
    keys = list(counts)
    return {f"{prefix}_keys": np.array(keys, dtype=str), f"{prefix}_counts": np.array([counts[k] for k in keys],
                                                                                        dtype=np.int64)}


def save_reference_stats(stats: ReferenceStats, path: str | os.PathLike) -> Path:
    """Write ``stats`` atomically as a compressed ``.npz`` of plain arrays."""
    arrays = {"n_valid": np.array(stats.n_valid), "fingerprint_bits": np.array(stats.fingerprints.shape[1]),
              "fingerprints": np.packbits(stats.fingerprints.astype(bool), axis=1),
              **_counter_arrays("fragments", stats.fragments), **_counter_arrays("scaffolds", stats.scaffolds)}
    if stats.chemnet is not None:
        arrays["chemnet_mean"], arrays["chemnet_cov"] = stats.chemnet
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_reference_stats(path: str | os.PathLike) -> ReferenceStats:
    """Read what :func:`save_reference_stats` wrote (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        bits = int(f["fingerprint_bits"])
        fingerprints = np.unpackbits(f["fingerprints"], axis=1, count=bits).astype(np.uint8)
        chemnet = (f["chemnet_mean"], f["chemnet_cov"]) if "chemnet_mean" in f.files else None
        return ReferenceStats(
            n_valid=int(f["n_valid"]), fingerprints=fingerprints,
            fragments=Counter(dict(zip(f["fragments_keys"].tolist(), f["fragments_counts"].tolist()))),
            scaffolds=Counter(dict(zip(f["scaffolds_keys"].tolist(), f["scaffolds_counts"].tolist()))),
            chemnet=chemnet)


def cached_reference_stats(
    smiles: Sequence[str], *, cache_dir: str | os.PathLike, compute_fcd: bool = True, device: str = "cpu",
    n_jobs: int = 1,
) -> ReferenceStats:
    """:func:`chemvae.metrics.reference_stats` of ``smiles``, from ``cache_dir`` when stored.

    A cache file that cannot be read is recomputed (with a warning) and replaced.

    Args:
        smiles: The reference SMILES (e.g. MOSES test), `M` of them.
        cache_dir: Folder of the ``<key>.npz`` files.
        compute_fcd, device, n_jobs: As for :func:`chemvae.metrics.reference_stats`.
    """
    path = Path(cache_dir) / f"{reference_key(smiles, compute_fcd=compute_fcd)}.npz"
    if path.is_file():
        try:
            return load_reference_stats(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(f"recomputing unreadable reference statistics {path}: {err}", InputDataWarning,
                          stacklevel=2)
    stats = reference_stats(smiles, compute_fcd=compute_fcd, device=device, n_jobs=n_jobs)
    if compute_fcd and stats.chemnet is None:
        return stats  # FCD was asked for but unavailable: do not store an incomplete entry
    save_reference_stats(stats, path)
    return stats

"""Reconstruction and generation metrics for molecule generators, as MOSES defines them.

The definitions follow MOSES (Polykovskiy et al. 2020, ``molsets`` 0.3.1) without importing
it; only RDKit, torch and (for FCD) ``fcd_torch`` are used:

* **validity**: fraction of strings RDKit parses and sanitizes (empty strings are invalid).
* **unique@k**: among the first ``k`` *valid* molecules, the fraction of distinct
  canonical SMILES.
* **novelty**: fraction of the distinct valid canonical molecules absent from ``train``.
* **IntDiv_p**: ``1 - mean_i (mean_j T(i, j)^p)^(1/p)`` over all ordered pairs of valid
  generated molecules, self-pairs included; ``T`` is the Tanimoto similarity of Morgan
  fingerprints (radius 2, 1024 bits).
* **SNN**: mean over generated molecules of the largest Tanimoto similarity to ``ref``.
* **Frag** / **Scaf**: cosine similarity of the count vectors of BRICS fragments /
  Bemis-Murcko scaffolds (scaffolds with fewer than two rings are dropped, as in MOSES).
* **FCD**: Frechet distance between Gaussians fitted to ChemNet activations
  (:mod:`chemvae.fcd`, on fcd_torch).

Generated sets are reduced to their valid molecules (duplicates kept) before every metric
except validity, exactly as MOSES's ``get_all_metrics`` does.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

from chemvae.fcd import FCDUnavailableError, Moments, chemnet_moments, chemnet_statistics, fcd, frechet_distance
from chemvae.rdkit_utils import canonical_smiles, canonicalize_all, mol_from_smiles, smiles_list
from vaecore.errors import InputDataError, InputDataWarning, brief, finite_at_least, integer_at_least

__all__ = [
    "FCDUnavailableError",
    "ReferenceStats",
    "chemnet_statistics",
    "fcd",
    "frag_similarity",
    "generation_metrics",
    "internal_diversity",
    "morgan_fingerprints",
    "novelty",
    "reconstruction_accuracy",
    "reference_stats",
    "scaffold_similarity",
    "snn",
    "unique_at_k",
    "validity",
]

FP_RADIUS, FP_BITS = 2, 1024  # MOSES's Morgan fingerprint for SNN and IntDiv
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)


# --------------------------------------------------------------------------- helpers
def _nonempty(smiles: Sequence, what: str) -> list:
    smiles = smiles_list(smiles, what)
    if not smiles:
        raise InputDataError(f"{what} is empty; a metric needs at least one SMILES")
    return smiles


def _valid_canonical(smiles: Sequence) -> list[str]:
    """Canonical SMILES of the valid entries, in input order, duplicates kept."""
    return [c for c in canonicalize_all(smiles, progress=False) if c is not None]  # no bar inside a metric


def _valid_mols(smiles: Sequence) -> tuple[list[str], list[Chem.Mol]]:
    """Canonical SMILES and molecules of the valid entries (each string parsed once)."""
    canonical, mols = [], []
    for s in smiles:
        mol = s if isinstance(s, Chem.Mol) else mol_from_smiles(s)
        if mol is not None:
            canonical.append(Chem.MolToSmiles(mol))
            mols.append(mol)
    return canonical, mols


def _as_mols(items: Sequence) -> list[Chem.Mol]:
    return _valid_mols(items)[1]


def _nan_with_warning(message: str) -> float:
    warnings.warn(message, InputDataWarning, stacklevel=3)
    return math.nan


def morgan_fingerprints(smiles: Sequence[str | Chem.Mol]) -> np.ndarray:
    """Morgan bit vectors (radius 2, 1024 bits) of valid SMILES or molecules, as MOSES's.

    Returns:
        `[N, 1024]` ``uint8`` array; invalid SMILES raise :class:`InputDataError`.
    """
    smiles = smiles_list(smiles, "smiles")  # one string would be fingerprinted letter by letter
    rows = np.zeros((len(smiles), FP_BITS), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = s if isinstance(s, Chem.Mol) else mol_from_smiles(s)
        if mol is None:
            raise InputDataError(f"cannot fingerprint invalid SMILES {brief(s)}")
        rows[i] = _MORGAN.GetFingerprintAsNumPy(mol)
    return rows


def _mean_tanimoto(
    ref_fps: np.ndarray, gen_fps: np.ndarray, *, agg: str, p: int = 1, device: str = "cpu", batch_size: int = 4096
) -> np.ndarray:
    """Per generated molecule, the max or power mean of its Tanimoto similarity to ``ref``.

    Args:
        ref_fps: `[M, F]` bit fingerprints.
        gen_fps: `[N, F]` bit fingerprints.
        agg: ``"max"`` (SNN) or ``"mean"`` (IntDiv, then ``(mean T^p)^(1/p)``).

    Returns:
        `[N]` float64 array.
    """
    n = gen_fps.shape[0]
    best = np.zeros(n)
    total = np.zeros(n)
    # float32 is exact here: the dot products are integer counts <= F = 1024.
    gen_all = torch.as_tensor(gen_fps, dtype=torch.float32, device=device)
    for j in range(0, ref_fps.shape[0], batch_size):
        ref = torch.as_tensor(ref_fps[j : j + batch_size], dtype=torch.float32, device=device)
        for i in range(0, n, batch_size):
            gen = gen_all[i : i + batch_size]
            both = ref @ gen.T  # `[m, n]` common on-bits
            union = ref.sum(1, keepdim=True) + gen.sum(1)[None, :] - both
            sim = torch.where(union > 0, both / union.clamp_min(1), torch.ones_like(both))  # 0/0 := 1, as MOSES
            sim = sim.double().cpu().numpy()
            if agg == "max":
                best[i : i + len(gen)] = np.maximum(best[i : i + len(gen)], sim.max(0))
            else:
                best[i : i + len(gen)] += (sim**p).sum(0)
                total[i : i + len(gen)] += sim.shape[0]
    if agg == "mean":
        best = (best / total) ** (1.0 / p)
    return best


def _fragments(mols: Sequence[Chem.Mol]) -> Counter:
    """Counts of BRICS fragment SMILES over all molecules (a molecule adds each occurrence)."""
    counts: Counter = Counter()
    for mol in mols:
        counts.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split("."))
    return counts


def _scaffolds(mols: Sequence[Chem.Mol], min_rings: int = 2) -> Counter:
    """Counts of Bemis-Murcko scaffold SMILES with at least ``min_rings`` rings."""
    counts: Counter = Counter()
    for mol in mols:
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
        except (ValueError, RuntimeError):
            continue
        scaffold_smiles = Chem.MolToSmiles(scaffold)
        if scaffold_smiles and scaffold.GetRingInfo().NumRings() >= min_rings:
            counts[scaffold_smiles] += 1
    return counts


def _cosine(ref_counts: Counter, gen_counts: Counter) -> float:
    """Cosine similarity of two count dictionaries (missing keys count 0); NaN if either is empty."""
    if not ref_counts or not gen_counts:
        return math.nan
    keys = sorted(set(ref_counts) | set(gen_counts))
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
    gen = np.array([gen_counts.get(k, 0) for k in keys], dtype=np.float64)
    return float(ref @ gen / (np.linalg.norm(ref) * np.linalg.norm(gen)))


# --------------------------------------------------------------------------- metrics
def reconstruction_accuracy(inputs: Sequence[str], decoded: Sequence[str | None]) -> float:
    """Fraction of inputs whose decoding is the same molecule (canonical exact match).

    Args:
        inputs: ``N`` valid SMILES (e.g. held-out test molecules).
        decoded: ``N`` decoded strings (greedy decoding from the posterior mean); invalid
            or ``None`` entries count as misses.
    """
    inputs, decoded = _nonempty(inputs, "inputs"), smiles_list(decoded, "decoded")
    if len(inputs) != len(decoded):
        raise InputDataError(f"{len(inputs)} inputs but {len(decoded)} decoded strings")
    hits = 0
    for source, output in zip(inputs, decoded):
        target = canonical_smiles(source)
        if target is None:
            raise InputDataError(f"input SMILES {brief(source)} is not a valid molecule")
        hits += canonical_smiles(output) == target
    return hits / len(inputs)


def validity(smiles: Sequence[str | None]) -> float:
    """Fraction of entries RDKit parses and sanitizes (``None``/empty are invalid)."""
    smiles = _nonempty(smiles, "smiles")
    return sum(mol_from_smiles(s) is not None for s in smiles) / len(smiles)


def unique_at_k(smiles: Sequence[str | None], k: int) -> float:
    """unique@k: distinct canonical SMILES among the first ``k`` valid ones, as a fraction.

    Warns (:class:`InputDataWarning`) and uses what there is when fewer than ``k`` are valid.
    """
    k = integer_at_least("k", k, 1)  # a fractional k failed as a slice index
    return _unique_fraction(_valid_canonical(_nonempty(smiles, "smiles")), k)


def _unique_fraction(valid: list[str], k: int) -> float:
    """unique@k of an already valid, canonical list."""
    if not valid:
        return _nan_with_warning(f"unique@{k}: no valid molecules")
    if len(valid) < k:
        warnings.warn(f"unique@{k} computed on only {len(valid)} valid molecules", InputDataWarning, stacklevel=3)
    first = valid[:k]
    return len(set(first)) / len(first)


def novelty(
    gen: Sequence[str | None], train: Sequence[str], *, train_is_canonical: bool = False, n_jobs: int = 1
) -> float:
    """Fraction of the distinct valid generated molecules that are not in ``train``.

    Args:
        gen: Generated SMILES (invalid entries are ignored).
        train: Training SMILES. They are canonicalized with this RDKit unless
            ``train_is_canonical`` (MOSES compares against the raw file, canonicalized by
            the RDKit of 2019; about 0.05% of its strings differ from today's canonical form).
        n_jobs: Worker processes for canonicalizing ``train``.
    """
    return _novelty(set(_valid_canonical(_nonempty(gen, "gen"))), train, train_is_canonical, n_jobs)


def _novelty(distinct: set[str], train: Sequence[str], train_is_canonical: bool, n_jobs: int) -> float:
    if not distinct:
        return _nan_with_warning("novelty: no valid molecules")
    train = smiles_list(train, "train")
    train_set = (set(train) if train_is_canonical
                 else set(canonicalize_all(train, n_jobs=n_jobs, progress=False)) - {None})
    return len(distinct - train_set) / len(distinct)


def internal_diversity(gen: Sequence[str | None], p: int = 1, *, device: str = "cpu") -> float:
    """IntDiv_p = ``1 - mean_i (mean_j T(i, j)^p)^(1/p)`` over the valid generated molecules.

    Raises:
        InputDataError: ``p`` is not a finite number > 0 (MOSES reports p = 1 and 2).
    """
    finite_at_least("p", p, 0, strict=True)  # p = 0 divided by zero
    valid = _as_mols(_nonempty(gen, "gen"))
    if not valid:
        return _nan_with_warning("internal diversity: no valid molecules")
    fps = morgan_fingerprints(valid)
    return float(1.0 - _mean_tanimoto(fps, fps, agg="mean", p=p, device=device).mean())


def snn(gen: Sequence[str | None], ref: Sequence[str], *, device: str = "cpu") -> float:
    """Similarity to nearest neighbour: mean over valid ``gen`` of the max Tanimoto to ``ref``."""
    valid = _as_mols(_nonempty(gen, "gen"))
    ref_valid = _as_mols(_nonempty(ref, "ref"))
    if not valid or not ref_valid:
        return _nan_with_warning("SNN: no valid molecules")
    best = _mean_tanimoto(morgan_fingerprints(ref_valid), morgan_fingerprints(valid), agg="max", device=device)
    return float(best.mean())


def frag_similarity(gen: Sequence[str | None], ref: Sequence[str]) -> float:
    """Frag: cosine similarity of BRICS-fragment count vectors of ``gen`` and ``ref``."""
    return _cosine(_fragments(_as_mols(_nonempty(ref, "ref"))), _fragments(_as_mols(_nonempty(gen, "gen"))))


def scaffold_similarity(gen: Sequence[str | None], ref: Sequence[str]) -> float:
    """Scaf: cosine similarity of Bemis-Murcko scaffold count vectors (>= 2 rings, as MOSES)."""
    return _cosine(_scaffolds(_as_mols(_nonempty(ref, "ref"))), _scaffolds(_as_mols(_nonempty(gen, "gen"))))


# --------------------------------------------------------------------------- all at once
@dataclass(frozen=True)
class ReferenceStats:
    """Everything the reference-set metrics need, computed once per reference set.

    Attributes:
        n_valid: Number of valid reference molecules.
        fingerprints: `[M, 1024]` Morgan bits (SNN).
        fragments: BRICS fragment counts (Frag).
        scaffolds: Murcko scaffold counts (Scaf).
        chemnet: ChemNet ``(mean, cov)`` (FCD), or ``None`` if not computed.
    """

    n_valid: int
    fingerprints: np.ndarray
    fragments: Counter
    scaffolds: Counter
    chemnet: Moments | None = None


def _chemnet_or_warn(valid: list[str], device: str, n_jobs: int, what: str) -> Moments | None:
    """ChemNet moments of ``valid``, or None with a warning: a missing fcd_torch or too
    few molecules must not cost the other metrics of an evaluation."""
    try:
        return chemnet_moments(valid, device=device, n_jobs=n_jobs)
    except (FCDUnavailableError, InputDataError) as err:
        warnings.warn(f"{what} skipped: {err}", InputDataWarning, stacklevel=3)
        return None


def reference_stats(
    ref: Sequence[str], *, compute_fcd: bool = True, device: str = "cpu", n_jobs: int = 1
) -> ReferenceStats:
    """Precompute :class:`ReferenceStats` for ``ref`` (e.g. MOSES test, 176k molecules).

    FCD statistics are skipped with a warning when fcd_torch is missing.
    """
    valid, mols = _valid_mols(_nonempty(ref, "ref"))
    if not valid:
        raise InputDataError("the reference set has no valid molecules")
    chemnet = _chemnet_or_warn(valid, device, n_jobs, "FCD statistics") if compute_fcd else None
    return ReferenceStats(len(valid), morgan_fingerprints(mols), _fragments(mols), _scaffolds(mols), chemnet)


def _k_label(k: int) -> str:
    return f"{k // 1000}k" if k % 1000 == 0 else str(k)


def generation_metrics(
    gen: Sequence[str | None],
    *,
    train: Sequence[str],
    test: Sequence[str] | ReferenceStats | None,
    test_scaffolds: Sequence[str] | ReferenceStats | None = None,
    compute_fcd: bool = True,
    device: str = "cpu",
    ks: Sequence[int] = (1000, 10000),
    train_is_canonical: bool = False,
    n_jobs: int = 1,
) -> dict[str, float]:
    """MOSES-style metrics of generated SMILES (e.g. decoded prior samples).

    Args:
        gen: Generated SMILES, invalid ones included (they lower ``validity`` only).
        train: Training SMILES, for novelty (see :func:`novelty` for ``train_is_canonical``).
        test: Test SMILES or their precomputed :class:`ReferenceStats`; ``None``: there are
            no test molecules (a small data set's split), and the ``/Test`` entries are NaN.
        test_scaffolds: Optional scaffold-split test set, giving the ``/TestSF`` entries.
        compute_fcd: Compute FCD (slow on CPU: ChemNet and a 512 x 512 matrix square root).
            When off, FCD entries are NaN; when fcd_torch is missing or fewer than two
            molecules are valid, they are NaN with a warning.
        device: Torch device for ChemNet and the Tanimoto matrices.
        ks: The ``k`` of each ``unique@k``.
        n_jobs: Worker processes for canonicalizing ``train`` and loading ChemNet batches.

    Returns:
        ``validity``, ``unique@1k``, ``unique@10k``, ``novelty``, ``intdiv``, ``intdiv2`` and
        ``FCD/Test``, ``SNN/Test``, ``Frag/Test``, ``Scaf/Test`` (plus ``/TestSF``).
    """
    if isinstance(ks, (str, int)):  # a bare 10000 is not a list of them
        raise InputDataError(f"ks must be a sequence of integers, got {ks!r}")
    ks = [integer_at_least("k in ks", k, 1) for k in ks]
    gen = _nonempty(gen, "gen")
    valid, mols = _valid_mols(gen)
    metrics = {"validity": len(valid) / len(gen)}
    if not valid:
        warnings.warn("no valid generated molecules; the other metrics are NaN", InputDataWarning, stacklevel=2)
    for k in ks:
        metrics[f"unique@{_k_label(k)}"] = _unique_fraction(valid, k) if valid else math.nan
    metrics["novelty"] = _novelty(set(valid), train, train_is_canonical, n_jobs) if valid else math.nan

    fps = morgan_fingerprints(mols) if valid else None
    for p, name in ((1, "intdiv"), (2, "intdiv2")):
        intdiv = (1.0 - _mean_tanimoto(fps, fps, agg="mean", p=p, device=device).mean()) if valid else math.nan
        metrics[name] = float(intdiv)

    gen_chemnet = _chemnet_or_warn(valid, device, n_jobs, "FCD") if compute_fcd else None
    gen_fragments, gen_scaffolds = _fragments(mols), _scaffolds(mols)

    references = {"Test": test} if test_scaffolds is None else {"Test": test, "TestSF": test_scaffolds}
    for label, ref in references.items():
        if ref is None:
            metrics.update({f"{name}/{label}": math.nan for name in ("FCD", "SNN", "Frag", "Scaf")})
            continue
        if not isinstance(ref, ReferenceStats):
            ref = reference_stats(ref, compute_fcd=gen_chemnet is not None, device=device, n_jobs=n_jobs)
        have_fcd = gen_chemnet is not None and ref.chemnet is not None
        if gen_chemnet is not None and ref.chemnet is None:
            warnings.warn(f"FCD/{label} skipped: the reference statistics have no ChemNet part",
                          InputDataWarning, stacklevel=2)
        metrics[f"FCD/{label}"] = frechet_distance(ref.chemnet, gen_chemnet) if have_fcd else math.nan
        metrics[f"SNN/{label}"] = (
            float(_mean_tanimoto(ref.fingerprints, fps, agg="max", device=device).mean()) if valid else math.nan
        )
        metrics[f"Frag/{label}"] = _cosine(ref.fragments, gen_fragments)
        metrics[f"Scaf/{label}"] = _cosine(ref.scaffolds, gen_scaffolds)
    return metrics

"""Objectives for latent-space search: callables from a list of SMILES to a list of floats.

Every objective here is *maximized* and returns one float per input string, ``NaN``
for a string RDKit cannot parse. Search code (:mod:`chemvae.search`) accepts any
callable with that signature; the built-ins add a name and, where the VAE's property
head predicts what the objective needs, a differentiable *surrogate* that gradient
ascent climbs in latent space.

Built-ins:

* :data:`qed` -- drug-likeness in ``[0, 1]`` (best known on ZINC: 0.948).
* :data:`penalized_logp` -- **normalized** penalized logP (JT-VAE constants, see
  :func:`chemvae.properties.penalized_logp`); :data:`penalized_logp_unnormalized` is
  ``logP - SA - cycle`` under its own name.
* :data:`sa` -- the **negated** SA score, ``-SA`` in ``[-10, -1]``: SA is lower for
  molecules that are easier to make, so maximizing ``-SA`` favours easy molecules. Its
  name is ``neg_sa`` wherever results are written; :data:`neg_sa` is the same object.
* :func:`similarity` -- Tanimoto similarity to a target on Morgan bit fingerprints
  (radius 2, 2048 bits).

Surrogates (used by ``method="gradient"``) take the property head's de-standardized
predictions ``{"logp": [...], "qed": [...], "sa": [...]}`` and return the objective's
estimate `[...]`: qed -> the ``qed`` output; -SA -> minus the ``sa`` output; penalized
logP -> the same formula on the ``logp`` and ``sa`` outputs with the ring penalty taken
as 0 (the head has no ring output, and the ring penalty is 0 for almost all ZINC/MOSES
molecules). Similarity has no surrogate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from torch import Tensor

from chemvae import properties
from chemvae.rdkit_utils import canonical_smiles, mol_from_smiles, smiles_list
from vaecore.errors import InputDataError, integer_at_least

Surrogate = Callable[[Mapping[str, Tensor]], Tensor]


class MoleculeObjective:
    """A named objective scoring each molecule with an RDKit function.

    Args:
        name: Short name used in tables and file names (``qed``, ``plogp``, ...).
        score: Maps one RDKit molecule to a float (higher is better).
        description: One line for summaries.
        surrogate: Optional head-based estimate of the objective (see module docstring).
        surrogate_properties: Property-head columns the surrogate reads.

    Calling the objective on ``N`` SMILES returns ``N`` floats, ``NaN`` for strings that
    do not parse; exceptions of ``score`` propagate (the search oracle counts them).
    """

    def __init__(self, name: str, score: Callable[[Chem.Mol], float], *, description: str = "",
                 surrogate: Surrogate | None = None, surrogate_properties: tuple[str, ...] = ()) -> None:
        self.name = name
        self.score = score
        self.description = description
        self.surrogate = surrogate
        self.surrogate_properties = tuple(surrogate_properties)

    def __call__(self, smiles: Sequence[str]) -> list[float]:
        out = []
        for s in smiles_list(smiles, f"the input of objective {self.name!r}"):
            mol = mol_from_smiles(s)
            out.append(math.nan if mol is None else float(self.score(mol)))
        return out

    def __repr__(self) -> str:
        return f"MoleculeObjective({self.name!r})"


# ---------------------------------------------------------------------- built-ins
def _plogp_surrogate(p: Mapping[str, Tensor]) -> Tensor:
    # Ring penalty taken as 0: the head has no ring output (see the module docstring).
    return ((p["logp"] - properties.LOGP_MEAN) / properties.LOGP_STD
            + (-p["sa"] - properties.SA_MEAN) / properties.SA_STD
            + (0.0 - properties.CYCLE_MEAN) / properties.CYCLE_STD)


qed = MoleculeObjective(
    "qed", properties.qed, description="QED drug-likeness in [0, 1]",
    surrogate=lambda p: p["qed"], surrogate_properties=("qed",))

penalized_logp = MoleculeObjective(
    "plogp", lambda mol: properties.penalized_logp(mol, normalized=True),
    description="penalized logP, normalized with JT-VAE's ZINC250k constants",
    surrogate=_plogp_surrogate, surrogate_properties=("logp", "sa"))

penalized_logp_unnormalized = MoleculeObjective(
    "plogp_unnormalized", lambda mol: properties.penalized_logp(mol, normalized=False),
    description="penalized logP, unnormalized: logP - SA - ring penalty",
    surrogate=lambda p: p["logp"] - p["sa"], surrogate_properties=("logp", "sa"))

sa = MoleculeObjective(
    "neg_sa", lambda mol: -properties.sa_score(mol),
    description="negated SA score (-SA in [-10, -1]; higher = easier to synthesize)",
    surrogate=lambda p: -p["sa"], surrogate_properties=("sa",))
neg_sa = sa

_MORGAN_CACHE: dict[tuple[int, int], Any] = {}


def _morgan(mol: Chem.Mol, radius: int, n_bits: int) -> Any:
    key = (radius, n_bits)
    if key not in _MORGAN_CACHE:
        _MORGAN_CACHE[key] = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    return _MORGAN_CACHE[key].GetFingerprint(mol)


def similarity(target_smiles: str, *, radius: int = 2, n_bits: int = 2048) -> MoleculeObjective:
    """Tanimoto similarity to ``target_smiles`` on Morgan bit fingerprints, in ``[0, 1]``.

    Raises:
        InputDataError: If the target does not parse or holds a blank, ``radius`` is
            not an integer >= 0 or ``n_bits`` not one >= 1 (RDKit's errors for those are
            an overflow, an index error and a Boost signature dump).
    """
    radius, n_bits = integer_at_least("radius", radius, 0), integer_at_least("n_bits", n_bits, 1)
    if isinstance(target_smiles, str) and len(target_smiles.split()) > 1:
        # RDKit reads what follows the first blank as the molecule's name: 'CC O' was 'CC'.
        raise InputDataError(f"similarity target {target_smiles!r} holds a blank; RDKit would read only "
                             f"{target_smiles.split()[0]!r}")
    target = mol_from_smiles(target_smiles)
    if target is None:
        raise InputDataError(f"similarity target {target_smiles!r} is not a valid SMILES")
    target_fp = _morgan(target, radius, n_bits)

    def score(mol: Chem.Mol) -> float:
        return float(DataStructs.TanimotoSimilarity(target_fp, _morgan(mol, radius, n_bits)))

    name = f"similarity:{canonical_smiles(target_smiles)}"
    return MoleculeObjective(name, score, description=f"Tanimoto similarity (Morgan r={radius}, {n_bits} bits) "
                                                      f"to {target_smiles}")


_BY_NAME: dict[str, MoleculeObjective] = {
    "qed": qed,
    "plogp": penalized_logp,
    "penalized_logp": penalized_logp,
    "plogp_unnormalized": penalized_logp_unnormalized,
    "sa": sa,
    "neg_sa": sa,
}


def get_objective(spec: str) -> MoleculeObjective:
    """The objective a command-line string names.

    Args:
        spec: ``qed``, ``plogp`` (normalized), ``plogp_unnormalized``, ``sa`` (= ``neg_sa``,
            i.e. -SA) or ``similarity:SMILES``.

    Raises:
        InputDataError: Unknown name or invalid similarity target.
    """
    if not isinstance(spec, str):
        raise InputDataError(f"an objective is named by a string, got {spec!r}")
    if spec.startswith("similarity:"):
        return similarity(spec.split(":", 1)[1])
    if spec not in _BY_NAME:
        raise InputDataError(f"unknown objective {spec!r}; choose from {sorted(_BY_NAME)} or similarity:SMILES")
    return _BY_NAME[spec]


def objective_name(objective: Callable[[Sequence[str]], Sequence[Any]]) -> str:
    """``objective.name`` when it has one, else the function's ``__name__`` (or its type)."""
    return str(getattr(objective, "name", None) or getattr(objective, "__name__", None)
               or type(objective).__name__)

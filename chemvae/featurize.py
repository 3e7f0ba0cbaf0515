"""RDKit molecules to torch-geometric graphs for the graph encoder.

A SMILES string is one of many spellings of a molecule; the graph built here depends
only on the molecule. Every feature is read off the RDKit molecule with hydrogens
implicit (``MolFromSmiles`` removes explicit ``[H]`` atoms) and counted per heavy atom,
so randomized SMILES of one molecule give the same graph up to a node permutation.

Atom features (one-hot blocks, concatenated, `[ATOM_FEATURE_DIM]`): element (MOSES
elements + "other"), heavy-atom degree 0..5+, formal charge -2..+2 + "other",
aromaticity bit, total hydrogen count 0..4+, ring-membership bit.
Bond features (`[BOND_FEATURE_DIM]`): type (single/double/triple/aromatic + "other"),
conjugation bit, ring bit. Each bond becomes two directed edges carrying the same
attributes, the undirected-graph convention of torch-geometric.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from rdkit import Chem
from torch import Tensor
from torch_geometric.data import Batch, Data

from chemvae.rdkit_utils import quiet_rdkit, smiles_list
from vaecore.errors import InputDataError, brief

# Every element in MOSES plus H (a molecule such as "[H][H]" keeps its hydrogens);
# anything else shares one "other" slot so unseen elements still featurize.
ELEMENTS: tuple[str, ...] = ("C", "N", "O", "F", "S", "Cl", "Br", "I", "P", "B", "Si", "Se", "H")
MAX_DEGREE = 5  # degrees >= 5 share the last slot
FORMAL_CHARGES: tuple[int, ...] = (-2, -1, 0, 1, 2)  # others share an extra slot
MAX_HYDROGENS = 4  # counts >= 4 share the last slot
BOND_TYPES: tuple[Chem.BondType, ...] = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)  # dative, quadruple, ... share an extra slot


def _blocks(widths: dict[str, int]) -> dict[str, slice]:
    """Consecutive column ranges for named one-hot blocks."""
    slices, start = {}, 0
    for name, width in widths.items():
        slices[name] = slice(start, start + width)
        start += width
    return slices


# Column ranges of each feature block, for reading features back (tests, inspection).
ATOM_FEATURE_SLICES: dict[str, slice] = _blocks(
    {
        "element": len(ELEMENTS) + 1,
        "degree": MAX_DEGREE + 1,
        "formal_charge": len(FORMAL_CHARGES) + 1,
        "aromatic": 1,
        "num_hs": MAX_HYDROGENS + 1,
        "in_ring": 1,
    }
)
BOND_FEATURE_SLICES: dict[str, slice] = _blocks({"bond_type": len(BOND_TYPES) + 1, "conjugated": 1, "in_ring": 1})
ATOM_FEATURE_DIM = ATOM_FEATURE_SLICES["in_ring"].stop  # 33
BOND_FEATURE_DIM = BOND_FEATURE_SLICES["in_ring"].stop  # 7

_ELEMENT_INDEX = {symbol: i for i, symbol in enumerate(ELEMENTS)}
_CHARGE_INDEX = {charge: i for i, charge in enumerate(FORMAL_CHARGES)}
_BOND_INDEX = {bond_type: i for i, bond_type in enumerate(BOND_TYPES)}

# Named as in chemvae.data.SKIP_REASONS where the cases coincide (a non-string cell is
# "empty" there too; RDKit's valence and sanitization failures are "unparsable" here).
SKIP_REASONS: tuple[str, ...] = ("empty", "unparsable", "no_atoms")


_ATOM = ATOM_FEATURE_SLICES
_BOND = BOND_FEATURE_SLICES


def atom_columns(atom: Chem.Atom) -> list[int]:
    """Columns of the hot entries in one atom's feature row (length ``ATOM_FEATURE_DIM``).

    Building rows from hot-column lists, not Python float lists, makes featurization
    about twice as fast; it runs on every training batch.
    """
    columns = [
        _ATOM["element"].start + _ELEMENT_INDEX.get(atom.GetSymbol(), len(ELEMENTS)),
        _ATOM["degree"].start + min(atom.GetDegree(), MAX_DEGREE),
        _ATOM["formal_charge"].start + _CHARGE_INDEX.get(atom.GetFormalCharge(), len(FORMAL_CHARGES)),
        _ATOM["num_hs"].start + min(atom.GetTotalNumHs(), MAX_HYDROGENS),
    ]
    if atom.GetIsAromatic():
        columns.append(_ATOM["aromatic"].start)
    if atom.IsInRing():
        columns.append(_ATOM["in_ring"].start)
    return columns


def bond_columns(bond: Chem.Bond) -> list[int]:
    """Columns of the hot entries in one bond's feature row (length ``BOND_FEATURE_DIM``)."""
    columns = [_BOND["bond_type"].start + _BOND_INDEX.get(bond.GetBondType(), len(BOND_TYPES))]
    if bond.GetIsConjugated():
        columns.append(_BOND["conjugated"].start)
    if bond.IsInRing():
        columns.append(_BOND["in_ring"].start)
    return columns


def _rows_from_columns(columns: list[list[int]], width: int, dtype: torch.dtype) -> Tensor:
    """A `[len(columns), width]` 0/1 matrix with ones at the listed columns of each row."""
    rows = [i for i, cols in enumerate(columns) for _ in cols]
    out = torch.zeros(len(columns), width, dtype=dtype)
    out[rows, [c for cols in columns for c in cols]] = 1
    return out


def mol_to_graph(mol: Chem.Mol, dtype: torch.dtype = torch.float32) -> Data:
    """Featurize an RDKit molecule.

    Args:
        mol: A sanitized molecule with at least one atom.
        dtype: dtype of the 0/1 feature tensors: a float dtype, or ``torch.uint8`` for
            compact storage (the encoder casts to its own dtype, exactly).

    Returns:
        ``Data`` with ``x`` `[N, ATOM_FEATURE_DIM]`, ``edge_index`` `[2, 2E]` (long; each
        bond in both directions) and ``edge_attr`` `[2E, BOND_FEATURE_DIM]`.

    Raises:
        InputDataError: If the molecule has no atoms.
    """
    if mol.GetNumAtoms() == 0:
        raise InputDataError("molecule has no atoms")
    x = _rows_from_columns([atom_columns(atom) for atom in mol.GetAtoms()], ATOM_FEATURE_DIM, dtype)
    sources: list[int] = []
    targets: list[int] = []
    edge_columns: list[list[int]] = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        columns = bond_columns(bond)
        sources += [i, j]
        targets += [j, i]
        edge_columns += [columns, columns]
    edge_index = torch.tensor([sources, targets], dtype=torch.long).reshape(2, -1)
    edge_attr = _rows_from_columns(edge_columns, BOND_FEATURE_DIM, dtype)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr, num_nodes=x.shape[0])


def _parse(smiles: object) -> tuple[Chem.Mol | None, str | None]:
    """Parse one SMILES; return the molecule or the reason it is skipped."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None, "empty"
    with quiet_rdkit():  # invalid SMILES are expected input, not worth a log line
        try:
            mol = Chem.MolFromSmiles(smiles)
        except Exception:  # RDKit raises only on pathological input; treat as invalid
            mol = None
    if mol is None:
        return None, "unparsable"
    if mol.GetNumAtoms() == 0:
        return None, "no_atoms"
    return mol, None


def smiles_to_graph(smiles: str, dtype: torch.dtype = torch.float32) -> Data:
    """Featurize one SMILES string (see :func:`mol_to_graph`).

    Raises:
        InputDataError: Naming the SMILES and the reason it cannot be featurized.
    """
    mol, reason = _parse(smiles)
    if mol is None:
        raise InputDataError(f"cannot featurize SMILES {brief(smiles)}: {reason}")
    return mol_to_graph(mol, dtype)


def featurize(
    smiles: Sequence[object], dtype: torch.dtype = torch.float32
) -> tuple[list[Data], list[int], Counter[str]]:
    """Featurize a list of SMILES, skipping and counting the ones that fail.

    Args:
        smiles: SMILES strings (anything else, e.g. NaN, is skipped as ``"empty"``).
        dtype: dtype of the 0/1 feature tensors (see :func:`mol_to_graph`).

    Returns:
        ``(graphs, kept, skipped)``: one ``Data`` per usable SMILES, the indices into
        ``smiles`` of those, and a ``Counter`` of skip reasons (:data:`SKIP_REASONS`:
        ``"empty"``, ``"unparsable"``, ``"no_atoms"``).
    """
    graphs: list[Data] = []
    kept: list[int] = []
    skipped: Counter[str] = Counter()
    for index, item in enumerate(smiles_list(smiles, "smiles")):  # "CCO" would be three one-atom graphs
        mol, reason = _parse(item)
        if mol is None:
            skipped[reason] += 1
            continue
        graphs.append(mol_to_graph(mol, dtype))
        kept.append(index)
    return graphs, kept, skipped


def collate(graphs: Sequence[Data]) -> Batch:
    """Batch graphs with torch-geometric's own batching (node offsets, ``batch`` vector).

    Raises:
        InputDataError: If ``graphs`` is empty (a batch needs at least one molecule).
    """
    if len(graphs) == 0:
        raise InputDataError("cannot batch an empty list of molecule graphs")
    return Batch.from_data_list(list(graphs))

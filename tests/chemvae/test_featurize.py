"""Tests for chemvae.featurize: graphs of hand-made molecules, their features, skip counting, batching."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from rdkit import Chem

from chemvae.featurize import (
    ATOM_FEATURE_DIM,
    ATOM_FEATURE_SLICES,
    BOND_FEATURE_DIM,
    BOND_FEATURE_SLICES,
    ELEMENTS,
    collate,
    featurize,
    mol_to_graph,
    smiles_to_graph,
)
from vaecore.errors import InputDataError


def block(row: torch.Tensor, name: str, slices=ATOM_FEATURE_SLICES) -> int:
    """Index of the hot entry of one one-hot block (or the bit itself for width 1)."""
    values = row[slices[name]]
    if values.numel() == 1:
        return int(values.item())
    assert values.sum().item() == 1.0, f"block {name} is not one-hot: {values}"
    return int(values.argmax().item())


@pytest.mark.parametrize(
    ("smiles", "num_atoms", "num_bonds"),
    [("C", 1, 0), ("CCO", 3, 2), ("c1ccccc1", 6, 6), ("CC(=O)O", 4, 3), ("C1CC2CCC1C2", 7, 8), ("[Na+].[Cl-]", 2, 0)],
)
def test_atom_and_bond_counts(smiles: str, num_atoms: int, num_bonds: int) -> None:
    data = smiles_to_graph(smiles)
    assert data.x.shape == (num_atoms, ATOM_FEATURE_DIM)
    assert data.num_nodes == num_atoms
    # Each bond is stored once per direction, with identical attributes.
    assert data.edge_index.shape == (2, 2 * num_bonds)
    assert data.edge_attr.shape == (2 * num_bonds, BOND_FEATURE_DIM)
    assert data.edge_index.dtype == torch.long
    forward = {(int(i), int(j)): row for (i, j), row in zip(data.edge_index.T.tolist(), data.edge_attr)}
    for (i, j), row in forward.items():
        assert torch.equal(forward[(j, i)], row)


def test_benzene_features() -> None:
    data = smiles_to_graph("c1ccccc1")
    for row in data.x:
        assert block(row, "element") == ELEMENTS.index("C")
        assert block(row, "degree") == 2
        assert block(row, "aromatic") == 1
        assert block(row, "num_hs") == 1
        assert block(row, "in_ring") == 1
    for row in data.edge_attr:
        assert block(row, "bond_type", BOND_FEATURE_SLICES) == 3  # aromatic
        assert block(row, "conjugated", BOND_FEATURE_SLICES) == 1
        assert block(row, "in_ring", BOND_FEATURE_SLICES) == 1


def test_atom_feature_values() -> None:
    # Acetonitrile: methyl C (3 H, degree 1), nitrile C (0 H, degree 2), N (0 H); one
    # single and one triple bond, neither in a ring.
    data = smiles_to_graph("CC#N")
    assert [block(r, "num_hs") for r in data.x] == [3, 0, 0]
    assert [block(r, "degree") for r in data.x] == [1, 2, 1]
    assert [block(r, "element") for r in data.x] == [ELEMENTS.index(e) for e in "CCN"]
    assert sorted(block(r, "bond_type", BOND_FEATURE_SLICES) for r in data.edge_attr) == [0, 0, 2, 2]
    assert all(block(r, "in_ring", BOND_FEATURE_SLICES) == 0 for r in data.edge_attr)
    # Ammonium: charge +1 (slot of +1 in -2..+2), 4 hydrogens (the 4+ slot), degree 0.
    (nh4,) = smiles_to_graph("[NH4+]").x
    assert block(nh4, "formal_charge") == 3
    assert block(nh4, "num_hs") == 4
    assert block(nh4, "degree") == 0
    # Unseen elements and charges share the "other" slots.
    na, cl = smiles_to_graph("[Na+].[Cl-]").x
    assert block(na, "element") == len(ELEMENTS)
    assert block(cl, "element") == ELEMENTS.index("Cl")
    assert block(cl, "formal_charge") == 1
    assert block(smiles_to_graph("[Fe+3]").x[0], "formal_charge") == 5


def test_explicit_hydrogens_are_counted_not_nodes() -> None:
    implicit = smiles_to_graph("OC")  # same atom order as the explicit-H SMILES
    explicit = smiles_to_graph("[H]OC([H])([H])[H]")
    assert torch.equal(implicit.x, explicit.x)
    assert torch.equal(implicit.edge_attr, explicit.edge_attr)


def test_featurize_skips_and_counts() -> None:
    smiles = ["CCO", "", "C1CC", None, "not a smiles", "c1ccccc1", "   "]
    graphs, kept, skipped = featurize(smiles)
    assert kept == [0, 5]
    assert [g.num_nodes for g in graphs] == [3, 6]
    assert skipped == Counter({"unparsable": 2, "empty": 3})
    with pytest.raises(InputDataError, match="C1CC"):
        smiles_to_graph("C1CC")
    with pytest.raises(InputDataError, match="no atoms"):
        mol_to_graph(Chem.Mol())
    with pytest.raises(InputDataError, match="not one string 'CCO'"):
        featurize("CCO")  # was three one-atom graphs: C, C and O


def test_dtype_and_batching() -> None:
    graphs, _, _ = featurize(["CCO", "C", "c1ccccc1"], dtype=torch.float64)
    assert graphs[0].x.dtype == torch.float64 and graphs[0].edge_attr.dtype == torch.float64
    batch = collate(graphs)
    assert batch.num_graphs == 3
    assert batch.batch.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2, 2]
    # torch-geometric offsets the edges of later graphs by the nodes before them.
    assert batch.edge_index[:, 4:].min().item() == 4
    with pytest.raises(InputDataError):
        collate([])

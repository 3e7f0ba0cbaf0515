"""Tests for chemvae.featurize and chemvae.graph: graphs of hand-made molecules, skip
counting, SMILES-order invariance of the posterior mean, and a tiny training run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

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
from chemvae.graph import GraphEncoder
from vaecore import DiagonalGaussianHead
from vaecore.errors import InputDataError

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "moses_small.csv"


# Molecules covering rings, aromatic N-H, charges, halogens, S, triple bonds.
MOLECULES = [
    "CC(=O)Nc1ccc(O)cc1",
    "c1ccc2[nH]ccc2c1",
    "C[N+](C)(C)CC(=O)[O-]",
    "FC(F)(F)c1ccc(Cl)cc1Br",
    "CS(=O)(=O)N1CCC(C#N)CC1",
]


def block(row: torch.Tensor, name: str, slices=ATOM_FEATURE_SLICES) -> int:
    """Index of the hot entry of one one-hot block (or the bit itself for width 1)."""
    values = row[slices[name]]
    if values.numel() == 1:
        return int(values.item())
    assert values.sum().item() == 1.0, f"block {name} is not one-hot: {values}"
    return int(values.argmax().item())


# --------------------------------------------------------------------------- featurization


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


# --------------------------------------------------------------------------- encoder


def posterior_means(encoder: GraphEncoder, head: DiagonalGaussianHead, smiles: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return head(encoder(GraphEncoder.prepare(smiles))).mean


def test_encoder_shapes_dtype_and_batch_independence() -> None:
    torch.manual_seed(0)
    encoder = GraphEncoder(hidden=32, num_layers=3, out_features=24)
    features = encoder(GraphEncoder.prepare(MOLECULES))
    assert features.shape == (len(MOLECULES), 24)
    assert torch.isfinite(features).all()
    # A molecule's features do not depend on the other molecules in its batch.
    alone = encoder(GraphEncoder.prepare(MOLECULES[2:3]))
    torch.testing.assert_close(alone, features[2:3], atol=1e-5, rtol=1e-5)
    # The module's dtype wins over the featurization dtype (the 0/1 cast is exact), so
    # compact uint8 features give the same result.
    compact = encoder(collate(featurize(MOLECULES, dtype=torch.uint8)[0]))
    assert torch.equal(compact, features)
    assert encoder.double()(GraphEncoder.prepare(MOLECULES)).dtype == torch.float64
    with pytest.raises(InputDataError, match="xyz"):
        GraphEncoder.prepare(["CCO", "xyz"])


def test_randomized_smiles_give_same_posterior_mean() -> None:
    torch.manual_seed(0)
    encoder = GraphEncoder(hidden=64, num_layers=4).eval()
    head = DiagonalGaussianHead(encoder.out_features, 8)
    for smiles in MOLECULES:
        mol = Chem.MolFromSmiles(smiles)
        variants = [smiles] + [Chem.MolToSmiles(mol, doRandom=True) for _ in range(6)]
        assert len(set(variants)) > 2, "randomized SMILES should differ as strings"
        means = posterior_means(encoder, head, variants)
        assert (means - means[0]).abs().max().item() < 1e-4, variants
    # A different molecule gets a different mean: invariance is not a constant encoder.
    means = posterior_means(encoder, head, MOLECULES)
    assert torch.cdist(means, means).fill_diagonal_(1.0).min().item() > 1e-3


def test_atom_permutation_invariance() -> None:
    # Reproducible version of the check above: renumber atoms by a seeded permutation.
    torch.manual_seed(1)
    encoder = GraphEncoder(hidden=32, num_layers=3).double()
    head = DiagonalGaussianHead(encoder.out_features, 4).double()
    for smiles in MOLECULES:
        mol = Chem.MolFromSmiles(smiles)
        order = torch.randperm(mol.GetNumAtoms()).tolist()
        permuted = Chem.RenumberAtoms(mol, order)
        batch = Batch.from_data_list([mol_to_graph(mol), mol_to_graph(permuted)])
        assert not torch.equal(batch[0].x, batch[1].x) or smiles == "C"
        means = head(encoder(batch)).mean
        torch.testing.assert_close(means[0], means[1], atol=1e-10, rtol=0)


def test_tiny_training_run_learns_logp() -> None:
    # Encoder + linear head regress standardized logP of 96 fixture molecules.
    table = pd.read_csv(FIXTURE).head(96)
    torch.manual_seed(0)
    batch = GraphEncoder.prepare(table["smiles"].tolist())
    target = torch.tensor(table["logp"].to_numpy(), dtype=torch.float32)
    target = (target - target.mean()) / target.std()
    encoder = GraphEncoder(hidden=32, num_layers=3)
    readout = torch.nn.Linear(encoder.out_features, 1)
    optimizer = torch.optim.Adam([*encoder.parameters(), *readout.parameters()], lr=3e-3)
    losses = []
    for _ in range(80):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(readout(encoder(batch)).squeeze(-1), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert losses[-1] < 0.3  # well below the variance (1.0) of the standardized target


# --------------------------------------------------------------------------- in the VAE


def tiny_graph_vae(smiles: list[str]):
    """A small ``MoleculeVAE(encoder="graph")`` whose vocabulary covers ``smiles``."""
    from chemvae.data import check_molecules
    from chemvae.model import ChemVAEConfig, MoleculeVAE
    from chemvae.tokens import Tokenizer, Vocabulary

    # canonicalize=False: the model sees each string as given, so the encoder, not
    # RDKit canonicalization, is what makes two spellings agree.
    config = ChemVAEConfig(encoder="graph", latent_dim=8, max_length=80, embedding_dim=16, encoder_hidden=32,
                           graph_layers=3, decoder_hidden=64, decoder_layers=1, property_hidden=(16,),
                           canonicalize=False)
    checked = check_molecules(smiles, Tokenizer("smiles"), max_length=config.max_length, canonicalize=False)
    return MoleculeVAE(config, Vocabulary.build(checked.tokens)), checked


def test_vae_encode_is_invariant_to_smiles_spelling() -> None:
    torch.manual_seed(0)
    variants = []
    for smiles in MOLECULES:
        mol = Chem.MolFromSmiles(smiles)
        variants += [smiles] + [Chem.MolToSmiles(mol, doRandom=True) for _ in range(3)]
    model, _ = tiny_graph_vae(variants)
    means = model.encode(variants).view(len(MOLECULES), 4, -1)
    assert (means - means[:, :1]).abs().max().item() < 1e-4
    assert isinstance(model.encoder.net, GraphEncoder)


def test_tiny_vae_training_run_learns() -> None:
    from chemvae.batches import MoleculeTensors, encode_tokens
    from chemvae.train import train_epoch

    table = pd.read_csv(FIXTURE).head(64)
    torch.manual_seed(0)
    model, checked = tiny_graph_vae(table["smiles"].tolist())
    props = table[list(model.property_names)].to_numpy()
    data = MoleculeTensors(
        smiles=checked.smiles,
        tokens=encode_tokens(checked.tokens, model.vocab, model.config.max_length + 1),
        properties=torch.as_tensor((props - props.mean(0)) / props.std(0), dtype=torch.float32),
    )
    initial = model.encoder.net.embed.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    rows = []
    step = 0
    for _ in range(6):
        step, row = train_epoch(model, data, optimizer, lambda _s: 0.1, step=step, batch_size=16,
                                generator=generator, progress=False)
        rows.append(row)
    assert rows[-1]["train_recon"] < 0.8 * rows[0]["train_recon"], [r["train_recon"] for r in rows]
    # The graph encoder is trained jointly: its weights moved from initialization.
    assert not torch.allclose(model.encoder.net.embed.weight, initial)

"""Tests for chemvae.graph: the graph encoder's shapes and dtypes, SMILES-order invariance of
the posterior mean, and tiny training runs (featurization: test_featurize.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from chemvae.featurize import collate, featurize, mol_to_graph
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

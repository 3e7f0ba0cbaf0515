"""Tests for chemvae.encoders: the contract every registered encoder keeps, and each one's own checks."""

from __future__ import annotations

import pytest
import torch

from chemvae.batches import encode_tokens, token_lengths
from chemvae.data import check_molecules
from chemvae.encoders import ENCODERS, CNNEncoder, GRUEncoder, build_encoder, check_encoder
from chemvae.model import ChemVAEConfig
from chemvae.tokens import Tokenizer, Vocabulary
from vaecore.errors import InputDataError

MOLECULES = ["CC(=O)Nc1ccc(O)cc1", "C", "c1ccc2[nH]ccc2c1", "CS(=O)(=O)N1CCC(C#N)CC1", "OCCO"]
SMALL = dict(max_length=40, embedding_dim=8, encoder_hidden=12, graph_layers=2)


def _encoder(name: str):
    torch.manual_seed(0)
    config = ChemVAEConfig(encoder=name, **SMALL)
    checked = check_molecules(MOLECULES, Tokenizer("smiles"), max_length=config.max_length)
    vocab = Vocabulary.build(checked.tokens)
    tokens = encode_tokens(checked.tokens, vocab, config.max_length + 1)
    return build_encoder(config, len(vocab)).eval(), checked.smiles, tokens


def _features(encoder, smiles: list[str], tokens: torch.Tensor) -> torch.Tensor:
    """What the model does with a batch: cut it to its longest molecule, prepare, encode."""
    lengths = token_lengths(tokens)
    tokens = tokens[:, : int(lengths.max())]
    with torch.no_grad():
        return encoder(encoder.prepare(smiles, tokens, lengths))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_keeps_the_contract(name):
    encoder, smiles, tokens = _encoder(name)
    assert isinstance(encoder, ENCODERS[name])
    features = _features(encoder, smiles, tokens)
    assert features.shape == (len(smiles), encoder.out_features)
    assert torch.isfinite(features).all()
    # A molecule's features do not depend on the others in its batch, nor on how far the
    # batch was padded (one carbon alone is a batch of two positions).
    alone = _features(encoder, smiles[1:2], tokens[1:2])
    torch.testing.assert_close(alone, features[1:2], atol=1e-5, rtol=1e-5)
    # Different molecules, different features: not a constant encoder.
    assert torch.cdist(features, features).fill_diagonal_(1.0).min() > 1e-4


def test_out_features_are_the_configured_widths():
    assert _encoder("cnn")[0].out_features == SMALL["encoder_hidden"]
    assert _encoder("gru")[0].out_features == 2 * SMALL["encoder_hidden"]  # both directions


def test_check_encoder_names_the_registered_ones():
    assert check_encoder("gru") == "gru"
    with pytest.raises(InputDataError, match=r"unknown encoder 'transformer'; choose from \['cnn', 'graph', 'gru'\]"):
        check_encoder("transformer")


def test_the_cnn_refuses_more_tokens_than_it_was_built_for():
    encoder, _, tokens = _encoder("cnn")
    assert isinstance(encoder, CNNEncoder)
    longer = torch.cat([tokens, torch.full((len(tokens), 5), Vocabulary.pad_index)], dim=1)
    # Padding by a negative amount cut the molecules' ends off and encoded the rest.
    with pytest.raises(InputDataError, match="at most max_length \\+ 1 = 41 tokens per molecule, got a batch of 46"):
        encoder(longer)


def test_the_gru_reads_each_molecule_to_its_length_and_refuses_lengths_beyond_the_batch():
    encoder, smiles, tokens = _encoder("gru")
    assert isinstance(encoder, GRUEncoder)
    lengths = token_lengths(tokens)
    full = encoder((tokens, lengths))
    shorter = encoder((tokens, lengths.clamp_max(2)))  # the same ids read only to their second token
    assert not torch.allclose(full[0], shorter[0])
    torch.testing.assert_close(full[1], shorter[1])  # "C" and <eos>: two tokens either way
    with pytest.raises(InputDataError, match="length 42 is above the batch's 41 token positions"):
        encoder((tokens, lengths + 41 - int(lengths.max()) + 1))

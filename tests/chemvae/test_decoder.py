"""Tests of chemvae.decoder: shapes, teacher forcing, and z entering every step."""

import torch

from chemvae.decoder import GRUDecoder
from chemvae.tokens import Vocabulary


def _decoder() -> GRUDecoder:
    torch.manual_seed(0)
    return GRUDecoder(vocab_size=12, embedding_dim=6, latent_dim=4, hidden=8, num_layers=2)


def test_shapes_and_stepwise_decoding_equals_teacher_forcing():
    decoder = _decoder()
    z, inputs = torch.randn(3, 4), torch.randint(4, 12, (3, 5))
    logits, state = decoder(z, inputs)
    assert logits.shape == (3, 5, 12) and state.shape == (2, 3, 8)
    # feeding one token at a time and carrying the state gives the same logits
    step_state, steps = None, []
    for t in range(5):
        out, step_state = decoder(z, inputs[:, t : t + 1], step_state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), logits)


def test_z_reaches_every_step_not_only_the_initial_state():
    decoder = _decoder()
    inputs = torch.full((2, 4), Vocabulary.bos_index)
    z = torch.randn(2, 4)
    state = decoder.initial_state(z)
    same_state_other_z, _ = decoder(z + 1.0, inputs, state)
    logits, _ = decoder(z, inputs, state)
    assert not torch.allclose(logits, same_state_other_z)

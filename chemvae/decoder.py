"""The molecule VAE's decoder: an autoregressive GRU over tokens conditioned on z.

z enters twice, as in Gómez-Bombarelli et al. (2018): through the initial state and
concatenated to every input embedding, so that a long sequence cannot forget it.
Generation (greedy or sampled, token by token) lives in
:meth:`chemvae.model.MoleculeVAE.decode`, which owns the vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from chemvae.tokens import Vocabulary


class GRUDecoder(nn.Module):
    """Autoregressive GRU over tokens, conditioned on z at the initial state and every step.

    Args:
        vocab_size: ``V``.
        embedding_dim: Token embedding width ``E``.
        latent_dim: ``d``.
        hidden: GRU width ``H``.
        num_layers: GRU layers ``L``.
        dropout: Dropout between GRU layers.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, latent_dim: int, hidden: int,
                 num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_layers, self.hidden = num_layers, hidden
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=Vocabulary.pad_index)
        self.init_state = nn.Linear(latent_dim, num_layers * hidden)
        self.gru = nn.GRU(embedding_dim + latent_dim, hidden, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab_size)

    def initial_state(self, z: Tensor) -> Tensor:
        """z `[N, d]` to the GRU state `[L, N, H]`."""
        h = torch.tanh(self.init_state(z))
        return h.view(z.shape[0], self.num_layers, self.hidden).transpose(0, 1).contiguous()

    def forward(self, z: Tensor, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits for each position given the previous tokens (teacher forcing).

        Args:
            z: Latents `[N, d]`.
            inputs: Previous-token ids `[N, T]` (``<bos>`` first).
            state: GRU state `[L, N, H]`; by default :meth:`initial_state` of z.

        Returns:
            Logits `[N, T, V]` and the final state `[L, N, H]`.
        """
        if state is None:
            state = self.initial_state(z)
        x = self.embed(inputs)
        x = torch.cat([x, z.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        out, state = self.gru(x, state)
        return self.out(out), state

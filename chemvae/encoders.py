"""Molecule encoders: a batch of molecules to features `[B, h]`.

Every encoder is an ``nn.Module`` registered in :data:`ENCODERS` under its
``--encoder`` name, with one small contract, so that :class:`chemvae.model.MoleculeVAE`
never needs to know which one it holds:

* ``__init__(self, config: ChemVAEConfig, vocab_size: int)`` builds it from the model
  config (an encoder that does not read tokens ignores ``vocab_size``);
* ``out_features: int`` is the width ``h`` of its output; the model puts a
  ``vaecore.DiagonalGaussianHead(out_features, latent_dim)`` after it;
* ``prepare(self, smiles: list[str], tokens: Tensor, lengths: Tensor) -> inputs`` turns
  a batch into whatever ``forward`` reads. ``smiles`` are the (canonical) SMILES strings,
  ``tokens`` the token ids `[B, T]` (``<eos>``-terminated, ``<pad>``-padded) on the
  model's device, ``lengths`` `[B]` their non-padding counts on the host (counting them
  from ``tokens`` would make a GPU wait for the host); a SMILES encoder returns the ids,
  a graph encoder builds graphs from the strings;
* ``forward(self, inputs) -> Tensor`` returns features `[B, out_features]`.

To add an encoder, write such a class and add it to :data:`ENCODERS`; ``--encoder NAME``
then works in the CLI, and checkpoints record the name in their config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from chemvae.tokens import Vocabulary
from vaecore.errors import InputDataError

if TYPE_CHECKING:  # the model module imports this one
    from chemvae.model import ChemVAEConfig


class CNNEncoder(nn.Module):
    """1D convolutions over token embeddings, as in Gómez-Bombarelli et al. (2018).

    The sequence is padded to the full ``max_length + 1`` positions, passed through
    ``len(cnn_channels)`` valid (unpadded) convolutions with ReLU, flattened, and mapped
    by a dense ReLU layer to ``encoder_hidden`` features.
    """

    def __init__(self, config: ChemVAEConfig, vocab_size: int) -> None:
        super().__init__()
        self.length = config.max_length + 1
        self.embed = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=Vocabulary.pad_index)
        layers: list[nn.Module] = []
        width, channels = self.length, config.embedding_dim
        for out_channels, kernel in zip(config.cnn_channels, config.cnn_kernels):
            layers += [nn.Conv1d(channels, out_channels, kernel), nn.ReLU()]
            width, channels = width - kernel + 1, out_channels
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(width * channels, config.encoder_hidden), nn.ReLU())
        self.out_features = config.encoder_hidden

    def prepare(self, smiles: Sequence[str], tokens: Tensor, lengths: Tensor) -> Tensor:
        return tokens

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids `[B, T]` (T <= max_length + 1) to features `[B, encoder_hidden]`.

        Raises:
            InputDataError: If T > max_length + 1 (padding by a negative amount cut the
                molecules' ends off without a word).
        """
        if tokens.shape[1] > self.length:
            raise InputDataError(f"the CNN encoder reads at most max_length + 1 = {self.length} tokens per molecule, "
                                 f"got a batch of {tokens.shape[1]}")
        # Pad back to the fixed length the dense layer was built for.
        tokens = nn.functional.pad(tokens, (0, self.length - tokens.shape[1]), value=Vocabulary.pad_index)
        x = self.embed(tokens).transpose(1, 2)  # [B, E, T]: channels first for Conv1d
        return self.dense(self.convs(x))


class GRUEncoder(nn.Module):
    """Bidirectional GRU over token embeddings; features are the last layer's final states.

    Sequences are packed so that padding never enters the backward direction: a
    molecule's features do not depend on the other molecules in its batch.
    """

    def __init__(self, config: ChemVAEConfig, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=Vocabulary.pad_index)
        self.gru = nn.GRU(
            config.embedding_dim,
            config.encoder_hidden,
            num_layers=config.encoder_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
        )
        self.out_features = 2 * config.encoder_hidden

    def prepare(self, smiles: Sequence[str], tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return tokens, lengths

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        """Token ids `[B, T]` and their host lengths `[B]` to features `[B, 2 * encoder_hidden]`.

        Raises:
            InputDataError: If a length is above T (torch's message spoke of a ``start``
                and a dimension size).
        """
        tokens, lengths = inputs
        if len(lengths) and int(lengths.max()) > tokens.shape[1]:  # host lengths: no device sync
            raise InputDataError(f"a molecule's length {int(lengths.max())} is above the batch's {tokens.shape[1]} "
                                 "token positions")
        packed = pack_padded_sequence(self.embed(tokens), lengths.clamp_min(1), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.gru(packed)  # h: [layers * 2, B, H]
        return torch.cat([h[-2], h[-1]], dim=-1)  # forward and backward states of the top layer


class GraphMoleculeEncoder(nn.Module):
    """Message passing over the molecular graph (:class:`chemvae.graph.GraphEncoder`).

    Reads the SMILES strings, not the tokens, so it sees each molecule whatever its
    string representation. Uses ``encoder_hidden`` as node width and ``graph_layers``.
    """

    def __init__(self, config: ChemVAEConfig, vocab_size: int) -> None:
        super().__init__()
        from chemvae.graph import GraphEncoder  # torch_geometric is slow to import: only when used

        self.net = GraphEncoder(hidden=config.encoder_hidden, num_layers=config.graph_layers)
        self.out_features = self.net.out_features

    def prepare(self, smiles: Sequence[str], tokens: Tensor, lengths: Tensor) -> Any:
        return self.net.prepare(list(smiles)).to(tokens.device)

    def forward(self, inputs: Any) -> Tensor:
        return self.net(inputs)


ENCODERS: dict[str, type[nn.Module]] = {
    "cnn": CNNEncoder,
    "gru": GRUEncoder,
    "graph": GraphMoleculeEncoder,
}


def check_encoder(name: str) -> str:
    """``name`` if it is a key of :data:`ENCODERS`; :class:`~chemvae.model.ChemVAEConfig` checks it when made.

    Raises:
        InputDataError: For an unknown name; the message lists the registered ones.
    """
    if name not in ENCODERS:
        raise InputDataError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    return name


def build_encoder(config: ChemVAEConfig, vocab_size: int) -> nn.Module:
    """The encoder named by ``config.encoder`` (see :func:`check_encoder`)."""
    return ENCODERS[check_encoder(config.encoder)](config, vocab_size)

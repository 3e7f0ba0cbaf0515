"""Graph encoder: edge-aware message passing over the molecular graph.

A SMILES encoder sees one of many strings for a molecule; this encoder sees the
molecule itself (see :mod:`chemvae.featurize`). GINE layers (Hu et al. 2020, "Strategies
for Pre-training Graph Neural Networks") pass messages that mix neighbour states with
bond features; residual connections with per-node LayerNorm keep several layers
trainable; sum- and mean-pooling, concatenated, give one feature vector per molecule.
Every step is permutation-equivariant up to the pooling, which is invariant, so two
SMILES of one molecule give the same features up to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, global_add_pool, global_mean_pool

from chemvae.featurize import ATOM_FEATURE_DIM, BOND_FEATURE_DIM, collate, featurize
from vaecore.errors import InputDataError
from vaecore.nets import mlp


class GraphEncoder(nn.Module):
    """Molecular graphs to features `[B, out_features]`.

    Follow it with ``vaecore.DiagonalGaussianHead(encoder.out_features, d)`` for a
    diagonal-Gaussian posterior.

    Args:
        hidden: Node-state width ``h``.
        num_layers: Number of GINE message-passing layers.
        out_features: Width of the molecule features; defaults to ``hidden``.
        activation: Nonlinearity name understood by :func:`vaecore.nets.mlp`.
    """

    def __init__(
        self,
        hidden: int = 128,
        num_layers: int = 4,
        out_features: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise InputDataError(f"num_layers must be >= 1, got {num_layers}")
        self.hidden = hidden
        self.num_layers = num_layers
        self.out_features = hidden if out_features is None else out_features
        self.embed = nn.Linear(ATOM_FEATURE_DIM, hidden)
        # train_eps: let each layer learn how much of the node's own state to keep.
        self.convs = nn.ModuleList(
            GINEConv(mlp(hidden, [hidden], hidden, activation=activation), train_eps=True, edge_dim=BOND_FEATURE_DIM)
            for _ in range(num_layers)
        )
        # LayerNorm, not BatchNorm: a molecule's features must not depend on which other
        # molecules share its batch, nor on train/eval mode.
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        # Sum-pooling grows with molecule size (tens of atoms); normalizing the pooled
        # vector keeps the initial posterior scales sane while the sum/mean ratio still
        # carries the size.
        self.pool_norm = nn.LayerNorm(2 * hidden)
        self.readout = mlp(2 * hidden, [self.out_features], activation=activation)

    @staticmethod
    def prepare(smiles: Sequence[str], dtype: torch.dtype = torch.float32) -> Batch:
        """Featurize and batch SMILES for :meth:`forward` (on CPU; move with ``.to``).

        Raises:
            InputDataError: If any SMILES cannot be featurized; filter the data first
                with :func:`chemvae.featurize.featurize`, which skips and counts them.
        """
        graphs, kept, skipped = featurize(smiles, dtype)
        if skipped:
            kept_set = set(kept)
            bad = [s for i, s in enumerate(smiles) if i not in kept_set][:5]
            raise InputDataError(f"cannot featurize {sum(skipped.values())} SMILES ({dict(skipped)}), e.g. {bad!r}")
        return collate(graphs)

    def forward(self, batch: Batch) -> Tensor:
        """Encode a batch of graphs.

        Args:
            batch: A ``torch_geometric.data.Batch`` with ``x`` `[N, ATOM_FEATURE_DIM]`,
                ``edge_index`` `[2, E]`, ``edge_attr`` `[E, BOND_FEATURE_DIM]` and
                ``batch`` `[N]`, on the module's device.

        Returns:
            Molecule features `[B, out_features]`, ``B = batch.num_graphs``.
        """
        # Features are one-hot, so casting to the parameters' dtype is exact; this lets
        # one featurized batch serve float32 and float64 models alike.
        dtype = self.embed.weight.dtype
        edge_attr = batch.edge_attr.to(dtype)
        h = self.embed(batch.x.to(dtype))
        for conv, norm in zip(self.convs, self.norms):
            # Post-norm residual block; the nonlinearity sits inside each GINE MLP.
            h = norm(h + conv(h, batch.edge_index, edge_attr))
        size = batch.num_graphs
        pooled = torch.cat(
            [global_add_pool(h, batch.batch, size=size), global_mean_pool(h, batch.batch, size=size)], dim=-1
        )
        return self.readout(self.pool_norm(pooled))

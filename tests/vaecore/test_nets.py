"""The MLP builder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaecore.nets import mlp


def test_mlp_layers_and_shapes() -> None:
    net = mlp(5, (8, 4), 3, activation="relu")
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert net(torch.zeros(2, 7, 5)).shape == (2, 7, 3)  # any leading dims, e.g. `[S, B]`
    assert mlp(5, (8,))(torch.zeros(2, 5)).shape == (2, 8)  # no output layer
    assert mlp(5, (), 2)(torch.zeros(2, 5)).shape == (2, 2)
    bn = mlp(5, (8,), 2, batch_norm=True)
    assert isinstance(bn[1], nn.BatchNorm1d)


def test_mlp_unknown_activation_is_named() -> None:
    with pytest.raises(ValueError, match="'swish'"):
        mlp(2, (3,), activation="swish")

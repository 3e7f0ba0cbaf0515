"""Small network builders shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None = None,
    *,
    activation: str = "softplus",
    batch_norm: bool = False,
) -> nn.Sequential:
    """Build ``Linear -> act`` blocks, optionally followed by a final linear layer.

    Args:
        in_features: Size of the last input dimension.
        hidden: Widths of the hidden layers, each followed by the activation.
        out_features: If given, a final ``Linear`` without activation.
        activation: One of ``softplus``, ``relu``, ``elu``, ``tanh``, ``gelu``.
        batch_norm: Insert ``BatchNorm1d`` before each activation (inputs must be 2-D).

    Returns:
        The network, mapping `[..., in_features]` to `[..., out_features or hidden[-1]]`.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_ACTIVATIONS[activation]())
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)

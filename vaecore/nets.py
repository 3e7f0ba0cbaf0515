"""Small network builders shared by the models.

:func:`first_layer_share` and :func:`finish_first_layer` split a first layer, so that the
share of an input that is paired with many others (M2: an example with each class) is
computed once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecore.errors import InputDataError, InputDataWarning, integer_at_least, integers_at_least

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def check_activation(name: str) -> str:
    """``name`` if it names an activation :func:`mlp` can build; for configs, which are made before their nets.

    Raises:
        InputDataError: An unknown name (a ``ValueError``), naming it and the known ones.
    """
    if name not in _ACTIVATIONS:
        raise InputDataError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return name


def _activation(name: str) -> nn.Module:
    """A fresh activation layer by name (see :func:`check_activation`)."""
    return _ACTIVATIONS[check_activation(name)]()


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
    _activation(activation)  # an unknown name fails here even when there is no hidden layer
    # torch builds a zero-width Linear without complaint; a negative width fails in its init.
    integer_at_least("in_features", in_features, 1)
    integers_at_least("hidden", hidden, 1)
    if out_features is not None:
        integer_at_least("out_features", out_features, 1)
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_activation(activation))
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def without_single_channel(image_shape: Sequence[int]) -> tuple[int, ...]:
    """``image_shape`` without a one-value channel axis: `(1, 28, 28)` and `(28, 28, 1)` -> `(28, 28)`.

    The flat pixels are the same in either layout, so nothing moves; read as `(H, W)`,
    convolutions and translations run along rows and columns whichever end held it.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 3 and shape[0] == 1 and min(shape[1:]) > 1:
        return shape[1:]
    if len(shape) == 3 and shape[2] == 1:
        return shape[:2]
    return shape


def looks_channels_first(image_shape: Sequence[int]) -> bool:
    """Whether a 3-D ``image_shape`` looks like `(channels, rows, columns)`, torch's layout.

    True when the first axis holds 1, 3 or 4 values (grey, RGB, RGBA) and the other two
    more than 4 each, as images do and channels do not.
    """
    shape = tuple(int(s) for s in image_shape)
    return len(shape) == 3 and shape[0] in (1, 3, 4) and min(shape[1:]) > 4


def warn_if_channels_first(image_shape: Sequence[int]) -> None:
    """Warn when ``image_shape`` :func:`looks_channels_first`.

    Images are read channels last, `(rows, columns, channels)`, as arrays of images are
    usually stored; torch's `(3, 32, 32)` would be read as 3 rows of 32 columns with 32
    channels, and convolutions and translations would run along the wrong axes.

    Warns:
        InputDataWarning: Naming the shape and how it is read.
    """
    shape = tuple(int(s) for s in image_shape)
    if looks_channels_first(shape):
        warnings.warn(f"image shape {shape} looks channels-first; it is read as {shape[0]} rows x {shape[1]} "
                      f"columns x {shape[2]} channels. Store images as [N, rows, columns, channels] "
                      "(np.moveaxis(x, 1, -1))", InputDataWarning, stacklevel=3)


class ImageView(nn.Module):
    """Flat rows `[B, D]` as images `[B, channels, rows, columns]`.

    Args:
        image_shape: One image's shape: `(rows, columns)` or `(rows, columns, channels)`
            (channels last, as arrays of images are usually stored).
    """

    def __init__(self, image_shape: Sequence[int]) -> None:
        super().__init__()
        if len(image_shape) not in (2, 3):
            raise InputDataError(f"image_shape must be (rows, columns) or (rows, columns, channels), got {tuple(image_shape)}")
        warn_if_channels_first(image_shape)
        self.image_shape = tuple(image_shape)

    def forward(self, x: Tensor) -> Tensor:
        images = x.reshape(len(x), *self.image_shape)
        return images.unsqueeze(1) if len(self.image_shape) == 2 else images.permute(0, 3, 1, 2)


class ConvNet(nn.Module):
    """Strided convolutions on flattened images, then :func:`mlp`.

    Each convolution has stride 2 (it halves rows and columns, rounding up) in place of
    a pooling layer: a stride-1 convolution computes 4 times as many outputs, and
    pooling then drops 3 of every 4. Inputs may carry ``extra_features`` after the
    pixels (e.g. an auxiliary latent); they skip the convolutions and join their
    flattened output at the MLP.

    Args:
        image_shape: One image's shape, `(rows, columns)` or `(rows, columns, channels)`.
        channels: Output channels of each convolution.
        hidden, out_features, activation, batch_norm: As in :func:`mlp`, for the layers
            after the convolutions (``BatchNorm2d`` after each convolution when set).
        kernel_size: Odd side of the square kernels (padded to keep the halving exact).
        extra_features: Number of inputs after the `prod(image_shape)` pixels.

    Maps `[B, prod(image_shape) + extra_features]` to `[B, out_features or hidden[-1]]`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        out_features: int | None = None,
        *,
        activation: str = "softplus",
        batch_norm: bool = False,
        kernel_size: int = 5,
        extra_features: int = 0,
    ) -> None:
        super().__init__()
        _activation(activation)  # fail before building anything
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputDataError(f"kernel_size must be odd and positive, got {kernel_size}")
        view = ImageView(image_shape)
        self.pixels, self.extra_features = math.prod(view.image_shape), extra_features
        layers: list[nn.Module] = [view]
        width = 1 if len(view.image_shape) == 2 else view.image_shape[2]
        rows, cols = view.image_shape[:2]
        for c in channels:
            layers.append(nn.Conv2d(width, c, kernel_size, stride=2, padding=kernel_size // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(_activation(activation))
            width, rows, cols = c, math.ceil(rows / 2), math.ceil(cols / 2)
        self.convolutions = nn.Sequential(*layers, nn.Flatten())
        self.head = mlp(width * rows * cols + extra_features, hidden, out_features,
                        activation=activation, batch_norm=batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        features = self.convolutions(x[:, :self.pixels])
        if self.extra_features:
            features = torch.cat([features, x[:, self.pixels:]], -1)
        return self.head(features)


def apply_flat(net: nn.Module, h: Tensor) -> Tensor:
    """Run ``net`` on `[..., k]` by flattening the leading dims (``BatchNorm1d`` wants 2-D)."""
    lead = h.shape[:-1]
    out = net(h.reshape(-1, h.shape[-1]))
    return out.reshape(*lead, out.shape[-1])


# A network whose first layer acts on [u, v] computes W [u; v] + b = (W_u u + b) + W_v v.
# Split this way, a costly share (M2: the pixels u) is computed once per example and reused
# by every v it is paired with (M2: the C enumerated labels), instead of once per pair.


def first_layer_share(net: nn.Sequential, u: Tensor, width: int) -> Tensor:
    """W_u u + b of ``net``'s first ``nn.Linear`` for its first ``width`` inputs.

    Args:
        net: A network whose first module is an ``nn.Linear`` on `[u, v]`.
        u: The first ``width`` inputs, `[B, width]`.
        width: Size of ``u``.

    Returns:
        The share, `[B, H]`; finish with :func:`finish_first_layer`.

    Raises:
        InputDataError: ``u`` is not ``width`` wide, or ``width`` exceeds the first layer's inputs.
    """
    first = _split_layer(net, u, width, side=0)
    return F.linear(u, first.weight[:, :width], first.bias)


def finish_first_layer(net: nn.Sequential, share: Tensor, v: Tensor, width: int) -> Tensor:
    """``net`` on `[u, v]` from :func:`first_layer_share` `[..., H]` and the other inputs ``v`` `[..., k]`.

    Raises:
        InputDataError: ``v`` is not as wide as the first layer's inputs after the first ``width``.
    """
    first = _split_layer(net, v, width, side=1)
    return apply_flat(net[1:], share + F.linear(v, first.weight[:, width:]))


def _split_layer(net: nn.Sequential, part: Tensor, width: int, side: int) -> nn.Linear:
    """``net``'s first layer, after checking that ``part`` is its side (0: ``u``, the first ``width`` inputs; 1: ``v``)."""
    first = net[0]
    if not isinstance(first, nn.Linear) or not 0 <= width <= first.in_features:
        raise InputDataError(f"a split first layer needs an nn.Linear with at least width={width} inputs, got {first}")
    name, expected = ("u", width) if side == 0 else ("v", first.in_features - width)
    if part.shape[-1] != expected:  # shapes only: no device sync in a training step
        raise InputDataError(f"{name} has {part.shape[-1]} features; the first layer ({first.in_features} inputs, "
                             f"split at width={width}) expects {expected}")
    return first

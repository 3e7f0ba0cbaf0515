"""The network builders: MLPs and strided convolutions on flattened images."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from vaecore.errors import InputDataWarning
from vaecore.nets import (ConvNet, ImageView, apply_flat, finish_first_layer, first_layer_share, mlp,
                          without_single_channel)


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((4, (8, 0), 2), r"hidden\[1\] must be an integer >= 1, got 0"),  # torch accepts a zero-width layer
        ((4, (-3,), 2), r"hidden\[0\] must be an integer >= 1, got -3"),
        ((0, (3,), 2), "in_features must be an integer >= 1, got 0"),
        ((4, (3,), 0), "out_features must be an integer >= 1, got 0"),
        ((4, (2.5,), 2), r"hidden\[0\] must be an integer >= 1, got 2.5"),
    ],
)
def test_mlp_sizes_are_checked(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mlp(*args)


def test_a_single_channel_axis_is_dropped():
    assert without_single_channel((1, 28, 28)) == (28, 28) == without_single_channel((28, 28, 1))
    assert without_single_channel((28, 28, 3)) == (28, 28, 3) and without_single_channel((28, 28)) == (28, 28)
    assert without_single_channel((1, 1, 5)) == (1, 1, 5)  # no image axes to keep: as it is


def test_image_view_puts_channels_first():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # channels last
    out = ImageView((3, 4, 5))(x.reshape(2, -1))
    assert out.shape == (2, 5, 3, 4)
    assert out[1, 2, 0, 3] == x[1, 0, 3, 2]
    assert ImageView((3, 4))(x[:, :, :, 0].reshape(2, -1)).shape == (2, 1, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # channels last, or no channel axis: no warning
        for shape in ((3, 4), (32, 32, 3), (3, 3, 3), (28, 28, 1), (3, 4, 5), (4, 30, 3)):
            ImageView(shape)
    for shape in ((3, 32, 32), (1, 28, 28)):  # torch's layout would be read as 32 or 28 channels
        with pytest.warns(InputDataWarning, match=rf"image shape \({shape[0]}, {shape[1]}, {shape[2]}\) looks "
                                                  rf"channels-first; it is read as {shape[0]} rows"):
            ImageView(shape)


@pytest.mark.parametrize("shape,flat", [((28, 28), 32 * 7 * 7), ((7, 9, 3), 32 * 2 * 3)])
def test_conv_net_halves_the_image_per_convolution(shape, flat):
    net = ConvNet(shape, (16, 32), (8,), 3, batch_norm=True)
    x = torch.rand(4, math.prod(shape))
    assert net(x).shape == (4, 3)
    assert net.convolutions(x).shape == (4, flat)  # 7 rows -> 4 -> 2: halved, rounding up


def test_conv_net_passes_extra_features_around_the_convolutions():
    net = ConvNet((6, 6), (4,), (), 2, extra_features=3).eval()
    x = torch.rand(5, 36 + 3)
    expected = net.head(torch.cat([net.convolutions(x[:, :36]), x[:, 36:]], -1))
    assert torch.equal(net(x), expected)
    moved = x.clone()
    moved[:, 36:] += 1.0  # the extra features reach the output
    assert not torch.allclose(net(moved), net(x))


def test_conv_net_names_bad_settings():
    with pytest.raises(ValueError, match="kernel_size must be odd and positive, got 4"):
        ConvNet((8, 8), (4,), (), 2, kernel_size=4)
    with pytest.raises(ValueError, match=r"image_shape must be .* got \(64,\)"):
        ConvNet((64,), (4,), (), 2)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_split_first_layer_equals_the_network_on_the_concatenation(batch_norm: bool) -> None:
    torch.manual_seed(0)
    net = mlp(5 + 3, (8, 6), 2, batch_norm=batch_norm)  # training mode: batch statistics
    u, v = torch.rand(4, 5), torch.rand(4, 3)
    share = first_layer_share(net, u, 5)
    assert share.shape == (4, 8)
    assert torch.allclose(finish_first_layer(net, share, v, 5), net(torch.cat([u, v], -1)), atol=1e-5)
    # One share per u serves several v: `[K, B, H]` from a broadcast `[B, H]`.
    vs = torch.rand(3, 4, 3)
    out = finish_first_layer(net.eval(), share.expand(3, 4, 8), vs, 5)
    assert out.shape == (3, 4, 2)
    assert torch.allclose(out[1], net(torch.cat([u, vs[1]], -1)), atol=1e-5)


def test_apply_flat_keeps_the_leading_dims() -> None:
    net = mlp(3, (4,), 2, batch_norm=True)
    h = torch.rand(5, 6, 3)
    out = apply_flat(net, h)
    assert out.shape == (5, 6, 2)
    assert torch.allclose(out.reshape(30, 2), net(h.reshape(30, 3)))


def test_a_split_first_layer_names_mismatched_sizes() -> None:
    net = mlp(5 + 3, (4,), 2)
    with pytest.raises(ValueError, match=r"u has 6 features; the first layer \(8 inputs, split at width=5\) expects 5"):
        first_layer_share(net, torch.zeros(2, 6), 5)
    share = first_layer_share(net, torch.zeros(2, 5), 5)
    with pytest.raises(ValueError, match=r"v has 4 features; .* expects 3"):
        finish_first_layer(net, share, torch.zeros(2, 4), 5)
    with pytest.raises(ValueError, match="at least width=9 inputs"):
        first_layer_share(net, torch.zeros(2, 9), 9)

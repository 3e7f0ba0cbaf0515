"""Tests of ssvae.m1: the M1 VAE's architecture, shapes and loss terms (its training loop: test_train.py)."""

from __future__ import annotations

import pytest
import torch

from ssvae.m1 import VAE, VAEConfig
from vaecore.errors import InputDataError

SMALL = VAEConfig(z_dim=4, hidden=(32,))


def test_default_config_is_burda_architecture() -> None:
    model = VAE(VAEConfig())
    linears = [m for m in model.encoder_net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 500)]
    assert isinstance(model.encoder_net[1], torch.nn.Softplus)
    assert model.decoder_net[-1].out_features == 784 and model.encoder_head.latent_dim == 50


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"z_dim": 0}, "z_dim must be an integer >= 1, got 0"),
    ({"hidden": (500, 0)}, r"hidden\[1\] must be an integer >= 1, got 0"),  # the message named the whole config
    ({"x_dim": 2.5}, "x_dim must be an integer >= 1, got 2.5"),
    ({"activation": "relux"}, r"unknown activation 'relux'; choose from \['elu', 'gelu', 'relu', 'softplus', 'tanh'\]"),
])
def test_bad_sizes_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        VAEConfig(**kwargs)


def test_encoder_decoder_shapes() -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    x = torch.rand(5, 784).bernoulli()
    q = model.encoder(x)
    assert q.batch_shape == (5,) and q.event_shape == (4,) and q.has_rsample
    p = model.decoder(q.rsample((3,)))
    assert p.batch_shape == (3, 5) and p.event_shape == (784,)
    assert p.log_prob(x).shape == (3, 5)
    assert model.posterior_mean(x).shape == (5, 4)
    assert model.sample(7).shape == (7, 784) and 0 <= model.sample(2).min() <= model.sample(2).max() <= 1
    assert model.reconstruct(x).shape == (5, 784)
    assert model.sample(0).shape == (0, 784)
    for n in (-1, 2.5):  # -1 was torch's "negative dimension" error
        with pytest.raises(InputDataError, match=f"n must be an integer >= 0, got {n}"):
            model.sample(n)


def test_loss_terms_elbo_and_iwae() -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    x = torch.rand(64, 784).bernoulli()
    terms = model.loss_terms(x, beta=0.5)
    assert terms["loss"].shape == () and all(terms[k].shape == (64,) for k in ("bound", "elbo", "kl", "log_likelihood"))
    assert torch.allclose(terms["elbo"], terms["log_likelihood"] - terms["kl"])
    assert torch.allclose(terms["bound"], terms["log_likelihood"] - 0.5 * terms["kl"])
    assert (terms["kl"] >= 0).all()
    iwae = model.loss_terms(x, objective="iwae", k=50)
    assert iwae["loss"].shape == () and iwae["elbo"].shape == (64,) and iwae["loss"].requires_grad
    # The 50-sample bound is tighter than the ELBO (averaged over a batch: robust to noise).
    assert iwae["elbo"].mean() > terms["elbo"].mean()
    with pytest.raises(ValueError, match="objective"):
        model.loss_terms(x, objective="vimco")


def test_gaussian_likelihood_variant() -> None:
    model = VAE(VAEConfig(x_dim=6, z_dim=2, hidden=(8,), likelihood="gaussian"))
    assert model.decoder_net[-1].out_features == 12  # mean and log-variance per feature
    assert model.loss_terms(torch.randn(3, 6))["elbo"].shape == (3,)

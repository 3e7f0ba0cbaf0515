"""M1+M2: active z1 dimensions, the frozen M1, fresh z1 draws, decoding through M1, pixels for q(y|.)."""

from __future__ import annotations

import torch

from ssvae.m1 import VAE, VAEConfig
from ssvae.m1m2 import M1M2, active_dimensions
from ssvae.m2_config import M2Config

D, Z1 = 20, 6


def _m1() -> VAE:
    torch.manual_seed(0)
    m1 = VAE(VAEConfig(x_dim=D, z_dim=Z1, hidden=(16,)))
    with torch.no_grad():  # dims 1 and 4 ignore x: their posterior mean is constant
        m1.encoder_head.loc.weight[[1, 4]] = 0.0
        m1.encoder_head.loc.weight[[0, 2, 3, 5]] *= 10.0
    return m1


def test_active_dimensions_drop_constant_posterior_means():
    x = torch.rand(300, D)
    assert active_dimensions(_m1(), x).tolist() == [0, 2, 3, 5]
    # a threshold above every std still keeps the most variable dimension
    assert len(active_dimensions(_m1(), x, threshold=1e9)) == 1


def test_rows_sample_and_mean_over_active_dims():
    m1 = _m1()
    model = M1M2(m1, M2Config(n_classes=3, z_dim=2, hidden=(8,), likelihood="gaussian"), torch.tensor([0, 2, 3, 5]))
    assert model.m2.config.x_dim == 4
    x = torch.rand(7, D)
    rows = model.rows(x)
    q = m1.encoder(x)
    assert rows.shape == (7, 8)
    assert torch.allclose(model.mean(rows), q.mean[:, [0, 2, 3, 5]])
    draws = torch.stack([model.sample(rows) for _ in range(4000)])  # fresh z1 every call
    assert not torch.equal(draws[0], draws[1])
    assert torch.allclose(draws.mean(0), q.mean[:, [0, 2, 3, 5]], atol=0.1)
    assert torch.allclose(draws.std(0), q.stddev[:, [0, 2, 3, 5]], rtol=0.1)


def test_m1_stays_frozen_while_m2_trains():
    model = M1M2(_m1(), M2Config(n_classes=3, z_dim=2, hidden=(8,), likelihood="gaussian"),
                 torch.tensor([0, 2, 3, 5]))
    model.train()
    assert not model.m1.training
    before = {k: v.clone() for k, v in model.m1.state_dict().items()}
    opt = torch.optim.Adam(model.m2.parameters(), lr=1e-2)
    rows = model.rows(torch.rand(12, D))
    terms = model.m2.loss_terms(model.sample(rows[:3]), torch.tensor([0, 1, 2]), model.sample(rows[3:]), alpha=1.0)
    terms["loss"].backward()
    opt.step()
    assert all(p.grad is None for p in model.m1.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.m1.state_dict().items())


def test_generate_and_reconstruct_decode_through_m1():
    model = M1M2(_m1(), M2Config(n_classes=3, z_dim=2, hidden=(8,), likelihood="gaussian"),
                 torch.tensor([0, 2, 3, 5]))
    pixels = model.generate(torch.tensor([0, 1, 2]), torch.zeros(3, 2))
    assert pixels.shape == (3, D) and ((pixels >= 0) & (pixels <= 1)).all()
    assert model.reconstruct(torch.rand(5, D)).shape == (5, D)
    assert model.logits(torch.rand(5, D)).shape == (5, 3)
    assert model.latent(torch.rand(5, D)).shape == (5, 4)


def test_a_convolutional_classifier_gets_the_pixels_after_z1():
    m1, active = _m1(), torch.tensor([0, 2, 3, 5])
    model = M1M2(m1, M2Config(n_classes=3, z_dim=2, hidden=(8,), likelihood="gaussian", classifier_channels=(2,),
                              image_shape=(4, 5)), active)
    assert (model.m2.config.x_dim, model.m2.config.context_dim) == (4, D)
    x = torch.rand(7, D)
    rows, q = model.rows(x), m1.encoder(x)
    assert rows.shape == (7, 2 * 4 + D)
    assert torch.allclose(model.mean(rows), torch.cat([q.mean[:, active], x], -1))
    draw = model.sample(rows)
    assert torch.equal(draw[:, 4:], x) and not torch.allclose(draw[:, :4], q.mean[:, active])
    assert model.latent(x).shape == (7, 4) and model.reconstruct(x).shape == (7, D)
    assert model.logits(x).shape == (7, 3)
    terms = model.m2.loss_terms(draw[:3], torch.tensor([0, 1, 2]), model.sample(rows[3:]), alpha=1.0)
    terms["loss"].backward()
    assert model.m2.classifier.convolutions[1].weight.grad.abs().sum() > 0

"""Diagonal-Gaussian posteriors and the standard-normal prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaecore.errors import InputDataError
from vaecore.posteriors import LOG_SCALE_MAX, LOG_SCALE_MIN, DiagonalGaussianHead, StandardNormalPrior, diagonal_gaussian


def test_diagonal_gaussian_shapes_and_clamp() -> None:
    loc = torch.zeros(3, 4)
    log_scale = torch.tensor([-50.0, 0.0, 1.0, 50.0]).expand(3, 4)
    q = diagonal_gaussian(loc, log_scale)
    assert q.batch_shape == (3,) and q.event_shape == (4,) and q.has_rsample
    scale = q.base_dist.scale[0]
    torch.testing.assert_close(scale.log(), torch.tensor([LOG_SCALE_MIN, 0.0, 1.0, LOG_SCALE_MAX]))
    assert q.rsample((5,)).shape == (5, 3, 4)
    assert diagonal_gaussian(loc, torch.zeros(4)).batch_shape == (3,)  # one log_scale shared by the batch
    with pytest.raises(InputDataError, match=r"loc \[3, 4\] and log_scale \[3, 5\] do not broadcast"):
        diagonal_gaussian(loc, torch.zeros(3, 5))
    with pytest.raises(InputDataError, match="latent_dim must be an integer >= 1, got 0"):
        StandardNormalPrior(0)
    with pytest.raises(InputDataError, match="latent_dim must be an integer >= 1, got 0"):
        DiagonalGaussianHead(8, 0)  # torch builds zero-width layers without complaint
    with pytest.raises(InputDataError, match="in_features must be an integer >= 1, got 2.0"):
        DiagonalGaussianHead(2.0, 3)


def test_head_and_prior_follow_the_module() -> None:
    torch.manual_seed(0)
    head = DiagonalGaussianHead(6, 2).double()
    q = head(torch.randn(5, 6, dtype=torch.float64))
    assert q.batch_shape == (5,) and q.event_shape == (2,) and q.mean.dtype == torch.float64
    prior = StandardNormalPrior(2).double()
    p = prior()
    assert p.batch_shape == () and p.event_shape == (2,) and p.mean.dtype == torch.float64
    assert prior.state_dict() == {}  # constants, not checkpointed
    # KL against N(0, I) matches the closed form 0.5 * sum(mu^2 + s^2 - 1 - log s^2).
    mu, s = q.base_dist.loc, q.base_dist.scale
    expected = 0.5 * (mu**2 + s**2 - 1 - (s**2).log()).sum(-1)
    torch.testing.assert_close(kl_divergence(q, p), expected)
    z = torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(p.log_prob(z), torch.tensor(-math.log(2 * math.pi), dtype=torch.float64))
    assert isinstance(p, Independent) and isinstance(p.base_dist, Normal)

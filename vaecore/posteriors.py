"""Reparameterized diagonal-Gaussian posteriors and the standard-normal prior.

Encoders in vaelab are callables ``x -> Distribution`` whose result has batch shape
`[B]`, event shape `[d]` and ``has_rsample``; this module provides the head that turns
features into such a distribution and the prior it is usually compared against.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from vaecore.errors import InputDataError, integer_at_least

# Bounds on log sigma: below exp(-7) ~ 1e-3 the KL term's log(sigma) explodes under
# float32, above exp(5) the sample is noise; both only happen when training diverges.
LOG_SCALE_MIN = -7.0
LOG_SCALE_MAX = 5.0


def diagonal_gaussian(loc: Tensor, log_scale: Tensor) -> Independent:
    """A diagonal Gaussian with batch shape `loc.shape[:-1]` and event shape `[d]`.

    Args:
        loc: Means, `[..., d]`.
        log_scale: Log standard deviations, `[..., d]`; clamped to
            `[LOG_SCALE_MIN, LOG_SCALE_MAX]`.
    """
    try:  # shapes only: nothing is read back from the device
        torch.broadcast_shapes(loc.shape, log_scale.shape)  # a shared log_scale `[d]` is fine
    except RuntimeError as err:
        raise InputDataError(f"loc {list(loc.shape)} and log_scale {list(log_scale.shape)} do not broadcast") from err
    scale = log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).exp()
    # No value validation: a NaN from a diverging network must reach the loss and the
    # NaN guard (which names the step) rather than raise here.
    return Independent(Normal(loc, scale, validate_args=False), 1)


class DiagonalGaussianHead(nn.Module):
    """Linear map from features `[..., h]` to a diagonal Gaussian over `[..., d]`.

    Args:
        in_features: Feature size ``h``.
        latent_dim: Latent size ``d``.
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = integer_at_least("latent_dim", latent_dim, 1)
        integer_at_least("in_features", in_features, 1)
        self.loc = nn.Linear(in_features, latent_dim)
        self.log_scale = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> Independent:
        return diagonal_gaussian(self.loc(h), self.log_scale(h))


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over `[d]`, following the device and dtype of the module.

    Stored as buffers so ``model.to(device)`` moves it with the model; calling it
    returns a distribution with batch shape `[]` and event shape `[d]`.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = integer_at_least("latent_dim", latent_dim, 1)
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)

"""A TuRBO-style trust region in latent space (Eriksson et al., 2019).

The region is a box around the incumbent (the latent of the best molecule so far among
latents that decode to a valid molecule, see :meth:`~chemvae.search.bo.BayesOpt.initialize`) whose
side, in the coordinates of the search box scaled to `[0, 1]^d`, is ``length`` times a
per-dimension weight taken from the GP's ARD lengthscales (long lengthscale -> the
objective varies slowly along that axis -> the box may be wider there). The weights have
geometric mean 1, so ``length`` sets the region's volume.

After each batch: a batch that beats the incumbent (the centre's score, see
``BOSettings.restart``) is a success, anything else a failure;
``success_tolerance`` successes in a row double the length (up to ``length_max``),
``failure_tolerance`` failures in a row halve it; below ``length_min`` it restarts at
``length_init``, keeping the data, since restarting the data is pointless when the latent
space is fixed; around the same incumbent, or elsewhere (``BOSettings.restart``). One rule
is not TuRBO's: a batch whose proposals all decode to molecules already known doubles the
length at once, because the region is then smaller than the decoder's resolution and
shrinking it would only repeat them. The search box itself is the prior's bulk (see
:func:`search_bounds`), so the region never leaves the part of latent space the decoder
was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaecore.errors import InputDataError, finite_at_least, integer_at_least


@dataclass
class TrustRegion:
    """Trust-region state (mutable; updated after every batch).

    Attributes:
        dim: Latent size ``d``.
        batch_size: Proposals per batch ``q``.
        length: Current side length (fraction of the search box).
        length_init, length_min, length_max: Restart, collapse and growth limits
            (TuRBO's 0.8, 0.5**7 and 1.6).
        success_tolerance: Successes in a row that double the length.
        failure_tolerance: Failures in a row that halve it; ``None``:
            ``ceil(max(4 / q, d / q))`` as in BoTorch's TuRBO-1.
        improvement: Relative margin a batch must beat the incumbent by to count as success.
    """

    dim: int
    batch_size: int
    length: float = 0.8
    length_init: float = 0.8
    length_min: float = 0.5**7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int | None = None
    improvement: float = 1e-3
    success_counter: int = 0
    failure_counter: int = 0
    restarts: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "batch_size", "success_tolerance"):
            integer_at_least(f"TrustRegion.{name}", getattr(self, name), 1)
        if self.failure_tolerance is not None:
            integer_at_least("TrustRegion.failure_tolerance", self.failure_tolerance, 1)
        if not (0 < self.length_min < self.length_init <= self.length_max < math.inf
                and self.length_min <= self.length <= self.length_max):
            raise InputDataError(
                "trust-region lengths must satisfy 0 < length_min < length_init <= length_max and "
                f"length_min <= length <= length_max, got length {self.length}, length_init {self.length_init}, "
                f"length_min {self.length_min}, length_max {self.length_max}"
            )
        finite_at_least("TrustRegion.improvement", self.improvement, 0)
        if self.failure_tolerance is None:
            self.failure_tolerance = math.ceil(max(4.0 / self.batch_size, self.dim / self.batch_size))

    def update(self, batch_best: float, incumbent: float, *, only_duplicates: bool = False) -> None:
        """Grow, shrink or restart after a batch whose best new score is ``batch_best``.

        Args:
            batch_best: Best finite score among the batch's new molecules (``-inf`` if none).
            incumbent: Best score before the batch (``-inf`` if none).
            only_duplicates: Every proposal decoded to an already known molecule. The
                region is then narrower than the decoder's resolution (its map from z to
                molecules is piecewise constant), and shrinking it further would only repeat
                the incumbent; so it doubles (up to ``length_max``) instead, and the
                success and failure counters restart.
        """
        if only_duplicates:
            self.length = min(2.0 * self.length, self.length_max)
            self.success_counter = self.failure_counter = 0
            return
        # Without an incumbent (-inf: no initial molecule scored) any score is a success;
        # -inf + margin * inf would be NaN, and every comparison with it false.
        threshold = incumbent if math.isinf(incumbent) else incumbent + self.improvement * abs(incumbent)
        if batch_best > threshold:
            self.success_counter += 1
            self.failure_counter = 0
        else:
            self.success_counter = 0
            self.failure_counter += 1
        if self.success_counter >= self.success_tolerance:
            self.length = min(2.0 * self.length, self.length_max)
            self.success_counter = 0
        elif self.failure_counter >= self.failure_tolerance:
            self.length /= 2.0
            self.failure_counter = 0
        if self.length < self.length_min:
            self.length = self.length_init
            self.restarts += 1

    def bounds(self, center: Tensor, box: Tensor, lengthscales: Tensor | None = None,
               length: float | None = None) -> Tensor:
        """The region `[2, d]` around ``center`` `[d]`, clipped to ``box`` `[2, d]`.

        Args:
            center: The incumbent's latent `[d]`.
            box: The search box `[2, d]` (lower, upper).
            lengthscales: ARD lengthscales `[d]` in box-scaled units; ``None``: a cube.
            length: Side to use instead of the current ``length``.
        """
        if lengthscales is None:
            weights = torch.ones_like(center)
        else:
            weights = lengthscales.detach().reshape(-1).to(center)
            weights = weights / weights.mean()
            weights = weights / weights.log().mean().exp()  # geometric mean 1: length sets the volume
        half = weights * (self.length if length is None else length) / 2.0 * (box[1] - box[0])
        lower = torch.maximum(center - half, box[0])
        upper = torch.minimum(center + half, box[1])
        return torch.stack([lower, upper])


def search_bounds(prior_loc: Tensor, prior_scale: Tensor, n_std: float, data: Tensor | None = None) -> Tensor:
    """The search box `[2, d]`: the prior's bulk, ``loc +- n_std * scale``.

    Widened per dimension to cover ``data`` `[n, d]` (the encoded initial molecules),
    whose latents can lie outside the prior's bulk when the KL weight was small; the
    incumbent must lie inside the box for the trust region to be well defined.
    """
    lower, upper = prior_loc - n_std * prior_scale, prior_loc + n_std * prior_scale
    if data is not None and len(data):
        lower = torch.minimum(lower, data.min(0).values)
        upper = torch.maximum(upper, data.max(0).values)
    return torch.stack([lower, upper])

"""M1+M2: M2 stacked on the latent space z1 of a frozen, unsupervised M1 VAE.

M1 (:class:`ssvae.m1.VAE`) is trained first on all training images and then frozen.
Its posterior q(z1|x) is computed once per training image and stored as (mean, log
std) rows; M2 is trained on z1 ~ q(z1|x) drawn afresh for every batch, with a Gaussian
p(z1|y,z2) of learned diagonal variance (:class:`vaecore.likelihoods.GaussianLikelihood`).
At test time M2's classifier sees the posterior means. As in the original code only the
*active* z1 dimensions are kept: those whose posterior mean varies across images
(standard deviation > 0.1); the others carry no information about x.

With ``M2Config.classifier_channels`` M2's classifier is a convolutional net on the
pixels, q(y|x, z1): the pixels ride along after z1 as M2's context (``context_dim``),
seen by q(y|.) only, while p(z1|y,z2) still models z1 alone.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ssvae.m1 import VAE
from ssvae.m2 import M2
from ssvae.m2_config import M2Config

# Posterior-mean standard deviation below which a z1 dimension counts as inactive.
ACTIVE_THRESHOLD = 0.1


@torch.no_grad()
def active_dimensions(m1: VAE, x: Tensor, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 2000) -> Tensor:
    """Indices of the z1 dimensions whose posterior mean has std > ``threshold`` over ``x``.

    Args:
        m1: A trained VAE.
        x: Images `[N, D]` (the original code used 1,000 unlabelled training images).
        threshold: The std cut-off.

    Returns:
        Sorted int64 indices `[a]` on ``x``'s device; never empty (the most variable
        dimension is kept if none passes).
    """
    means = torch.cat([m1.posterior_mean(xb) for xb in x.split(batch_size)])
    std = means.std(0)
    keep = (std > threshold).nonzero().flatten()
    return keep if len(keep) else std.argmax().reshape(1)


class M1M2(nn.Module):
    """A frozen M1 followed by an M2 over its active latent dimensions.

    Args:
        m1: The trained M1 (frozen here: no gradients, eval mode).
        m2_config: M2's architecture; ``x_dim`` is replaced by the number of active
            dimensions and ``likelihood`` should be ``gaussian``. With
            ``classifier_channels`` (and ``image_shape`` of M1's pixels) the classifier
            also sees the pixels, and ``context_dim`` is set to their number.
        active: Indices of the kept z1 dimensions, `[a]`.
    """

    kind = "m1m2"

    def __init__(self, m1: VAE, m2_config: M2Config, active: Tensor) -> None:
        super().__init__()
        self.m1 = m1.eval().requires_grad_(False)
        self.register_buffer("active", active.detach().to(torch.int64).clone())
        context = m1.config.x_dim if m2_config.classifier_channels else 0
        self.m2 = M2(replace(m2_config, x_dim=int(active.numel()), context_dim=context))

    def train(self, mode: bool = True) -> M1M2:
        super().train(mode)
        self.m1.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def rows(self, x: Tensor) -> Tensor:
        """q(z1|x) over the active dims as rows `[N, 2a (+ D)]`: (mean, log std (, pixels)).

        The pixels only when M2's classifier sees them (``context_dim``). Computed once
        for a data set; :meth:`sample` and :meth:`mean` read them.
        """
        q = self.m1.encoder(x)
        parts = [q.mean[:, self.active], q.stddev[:, self.active].log()]
        return torch.cat(parts + [x] if self.m2.config.context_dim else parts, -1)

    def _split(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rows as (mean `[B, a]`, log std `[B, a]`, pixels `[B, D]` or `[B, 0]`)."""
        a = self.m2.config.x_dim
        return rows[:, :a], rows[:, a:2 * a], rows[:, 2 * a:]

    def sample(self, rows: Tensor) -> Tensor:
        """z1 ~ q(z1|x) for rows `[B, 2a (+ D)]`: a fresh draw every call, `[B, a (+ D)]`.

        The pixels, if any, follow unchanged.
        """
        loc, log_scale, pixels = self._split(rows)
        return torch.cat([loc + log_scale.exp() * torch.randn_like(loc), pixels], -1)

    def mean(self, rows: Tensor) -> Tensor:
        """The posterior mean of z1 (test-time input of M2), then any pixels, `[B, a (+ D)]`."""
        loc, _, pixels = self._split(rows)
        return torch.cat([loc, pixels], -1)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits for pixels `[B, D]`, `[B, C]`."""
        return self.m2.logits(self.mean(self.rows(x)))

    def bayes_logits(self, x: Tensor, *, k: int, seed: int | None = None) -> Tensor:
        """:meth:`ssvae.m2.M2.bayes_logits` at the posterior mean of z1, for pixels `[B, D]`, `[B, C]`."""
        return self.m2.bayes_logits(self.mean(self.rows(x)), k=k, seed=seed)

    @torch.no_grad()
    def generate(self, y: Tensor, z2: Tensor) -> Tensor:
        """Pixels of M1's decoder at the mean of p(z1|y,z2), `[B, D]`.

        z1's inactive dimensions are set to 0, their prior mean.
        """
        z1_active = self.m2.generate(y, z2)
        z1 = z1_active.new_zeros(z1_active.shape[0], self.m1.config.z_dim)
        z1[:, self.active] = z1_active
        return self.m1.decoder(z1).mean

    @torch.no_grad()
    def latent(self, x: Tensor) -> Tensor:
        """The code shown in t-SNE plots: E q(z1|x) over the active dims, `[B, a]`."""
        return self._split(self.rows(x))[0]

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """x -> E q(z1|x) -> (y_hat, E q(z2|z1,y_hat)) -> mean p(z1|y_hat,z2) -> M1 decoder, `[B, D]`."""
        inputs = self.mean(self.rows(x))
        return self.generate(self.m2.logits(inputs).argmax(-1), self.m2.encode(inputs))

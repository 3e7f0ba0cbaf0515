"""M1+M2: M2 stacked on the latent space z1 of a frozen, unsupervised M1 VAE.

M1 (:class:`ssvae.m1.VAE`) is trained first on all training images and then frozen.
Its posterior q(z1|x) is computed once per training image and stored as (mean, log
std) rows; M2 is trained on z1 ~ q(z1|x) drawn afresh for every batch, with a Gaussian
p(z1|y,z2) of learned diagonal variance (:class:`vaecore.likelihoods.GaussianLikelihood`).
At test time M2's classifier sees the posterior means. As in the original code only the
*active* z1 dimensions are kept: those whose posterior mean varies across images
(standard deviation > 0.1); the others carry no information about x.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ssvae.m1 import VAE
from ssvae.m2 import M2, M2Config

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
            dimensions and ``likelihood`` should be ``gaussian``.
        active: Indices of the kept z1 dimensions, `[a]`.
    """

    kind = "m1m2"

    def __init__(self, m1: VAE, m2_config: M2Config, active: Tensor) -> None:
        super().__init__()
        self.m1 = m1.eval().requires_grad_(False)
        self.register_buffer("active", active.detach().to(torch.int64).clone())
        self.m2 = M2(replace(m2_config, x_dim=int(active.numel())))

    def train(self, mode: bool = True) -> M1M2:
        super().train(mode)
        self.m1.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def rows(self, x: Tensor) -> Tensor:
        """q(z1|x) over the active dims as rows `[N, 2a]`: (mean, log std).

        Computed once for a data set; :meth:`sample` and :meth:`mean` read them.
        """
        q = self.m1.encoder(x)
        return torch.cat([q.mean[:, self.active], q.stddev[:, self.active].log()], -1)

    def sample(self, rows: Tensor) -> Tensor:
        """z1 ~ q(z1|x) for rows `[B, 2a]`: a fresh draw every call, `[B, a]`."""
        loc, log_scale = rows.chunk(2, dim=-1)
        return loc + log_scale.exp() * torch.randn_like(loc)

    def mean(self, rows: Tensor) -> Tensor:
        """The posterior mean of z1 (test-time input of the classifier), `[B, a]`."""
        return rows.chunk(2, dim=-1)[0]

    def logits(self, x: Tensor) -> Tensor:
        """Class logits for pixels `[B, D]`, `[B, C]`."""
        return self.m2.logits(self.mean(self.rows(x)))

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
        return self.mean(self.rows(x))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """x -> E q(z1|x) -> (y_hat, E q(z2|z1,y_hat)) -> mean p(z1|y_hat,z2) -> M1 decoder, `[B, D]`."""
        z1 = self.latent(x)
        y = self.m2.logits(z1).argmax(-1)
        return self.generate(y, self.m2.encode(z1, y))

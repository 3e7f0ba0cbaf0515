"""M1 (Kingma et al. 2014): a VAE whose posterior means serve as features.

The same model is the Burda et al. (2016) baseline: encoder and decoder MLPs of two
hidden layers of 500 softplus units, z of 50 dimensions, a Bernoulli likelihood on
binarized pixels, trained on the ELBO (k = 1) or the IWAE bound (k > 1). Its objective
goes through :func:`vaecore.elbo` / :func:`vaecore.iwae_bound`; this module only builds
the networks and names the loss terms. Training lives in :mod:`ssvae.train`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

# The training loop lives in ssvae.train; re-exported because callers think of it as M1's.
from ssvae.train import fit_vae
from vaecore.bounds import elbo, iwae_bound, log_marginal_likelihood
from vaecore.checkpoint import load_checkpoint
from vaecore.config import config_from_dict
from vaecore.errors import CheckpointError, InputDataError, integer_at_least, integers_at_least
from vaecore.likelihoods import check_feature_likelihood, make_likelihood
from vaecore.nets import check_activation, mlp
from vaecore.posteriors import DiagonalGaussianHead, StandardNormalPrior
from vaecore.runtime import resolve_device

__all__ = ["OBJECTIVES", "VAE", "VAEConfig", "fit_vae", "load_vae"]

OBJECTIVES = ("elbo", "iwae")


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of an M1 VAE.

    Attributes:
        x_dim: Flattened input size D.
        z_dim: Latent size d.
        hidden: Encoder hidden widths; the decoder uses them reversed.
        activation: Hidden activation (see :func:`vaecore.nets.mlp`).
        likelihood: ``bernoulli`` (binary pixels) or ``gaussian``.
    """

    x_dim: int = 784
    z_dim: int = 50
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "softplus"
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        check_feature_likelihood(self.likelihood)  # "categorical" failed in the model's constructor
        integer_at_least("x_dim", self.x_dim, 1)
        integer_at_least("z_dim", self.z_dim, 1)
        integers_at_least("hidden", self.hidden, 1)
        check_activation(self.activation)


class VAE(nn.Module):
    """q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) from ``config.likelihood``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.likelihood = make_likelihood(config.likelihood)
        features = config.hidden[-1] if config.hidden else config.x_dim
        self.encoder_net = mlp(config.x_dim, config.hidden, activation=config.activation)
        self.encoder_head = DiagonalGaussianHead(features, config.z_dim)
        self.decoder_net = mlp(
            config.z_dim,
            tuple(reversed(config.hidden)),
            config.x_dim * self.likelihood.params_per_feature,
            activation=config.activation,
        )
        self.prior = StandardNormalPrior(config.z_dim)

    def encoder(self, x: Tensor) -> Distribution:
        """q(z|x): batch `[B]`, event `[z_dim]`, for x `[B, x_dim]`."""
        return self.encoder_head(self.encoder_net(x))

    def decoder(self, z: Tensor) -> Distribution:
        """p(x|z): batch `z.shape[:-1]` (e.g. `[S, B]`), event `[x_dim]`, for z `[..., z_dim]`."""
        return self.likelihood(self.decoder_net(z))

    def loss_terms(
        self, x: Tensor, *, objective: str = "elbo", k: int = 1, beta: float | Tensor = 1.0
    ) -> dict[str, Tensor]:
        """The training loss and its per-example parts.

        Args:
            x: Binarized (or grey-level) data, `[B, x_dim]`.
            objective: ``elbo`` (k-sample Monte Carlo ELBO) or ``iwae`` (k-sample
                importance-weighted bound).
            k: Number of posterior samples.
            beta: KL weight of the ELBO objective (warm-up); ignored by ``iwae``.

        Returns:
            ``loss``: scalar to minimize (negative mean of the bound trained on);
            ``bound``: that bound per example, `[B]` (beta-weighted ELBO or IWAE-k);
            ``elbo``: for ``elbo`` the true (beta = 1) ELBO, for ``iwae`` the IWAE-k
            bound (also a lower bound on log p(x)), `[B]`;
            ``kl``: KL(q(z|x) || p(z)), `[B]` (not differentiated under ``iwae``);
            ``log_likelihood`` (``elbo`` only): E_q log p(x|z), `[B]`.
        """
        if objective == "elbo":
            terms = elbo(x, self.encoder, self.decoder, self.prior, n_samples=k, beta=beta)
            return {
                "loss": terms.loss(),
                "bound": terms.elbo,
                "elbo": terms.log_likelihood - terms.kl,
                "kl": terms.kl,
                "log_likelihood": terms.log_likelihood,
            }
        if objective == "iwae":
            seen: list[Distribution] = []

            def encoder(inputs: Tensor) -> Distribution:
                # Keep q(z|x) from the bound's own forward pass to report its KL.
                seen.append(self.encoder(inputs))
                return seen[-1]

            bound = iwae_bound(x, encoder, self.decoder, self.prior, k=k)
            with torch.no_grad():
                kl = kl_divergence(seen[0], self.prior())
            return {"loss": -bound.mean(), "bound": bound, "elbo": bound, "kl": kl}
        raise InputDataError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")

    def posterior_mean(self, x: Tensor) -> Tensor:
        """E_q[z|x], the M1 features, `[B, z_dim]`."""
        return self.encoder(x).mean

    @torch.no_grad()
    def log_marginal_likelihood(self, x: Tensor, *, n_samples: int = 5000, chunk_size: int = 500) -> Tensor:
        """Importance-sampled log p(x) with q(z|x) as proposal, `[B]`."""
        return log_marginal_likelihood(
            x, self.encoder, self.decoder, self.prior, n_samples=n_samples, chunk_size=chunk_size
        )

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean of p(x|z) at z = E_q[z|x] (pixel probabilities for Bernoulli), `[B, x_dim]`."""
        return self.decoder(self.posterior_mean(x)).mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Means of p(x|z) for n prior draws z ~ p(z), `[n, x_dim]`.

        Args:
            n: Number of samples.
            generator: Optional generator on the model's device, for repeatable grids.
        """
        n = integer_at_least("n", n, 0)  # -1 was torch's "negative dimension" error
        loc = self.prior.loc
        z = torch.randn((n, self.config.z_dim), generator=generator, device=loc.device, dtype=loc.dtype)
        return self.decoder(z).mean


def load_vae(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> VAE:
    """Rebuild a trained :class:`VAE` from a checkpoint written by :func:`fit_vae`.

    Args:
        path: A ``checkpoint.safetensors`` file (or the run directory holding one).
        device: Where to put the model (``auto`` accepted; an absent device is named).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.safetensors")
    ckpt = load_checkpoint(path, device="cpu")
    try:
        config = config_from_dict(VAEConfig, ckpt.config)
    except InputDataError as err:  # a chem or few-label model: name the file and what it is not
        raise CheckpointError(f"{path} is not an M1 VAE checkpoint of vaelab vae / fit_vae ({err})") from err
    model = VAE(config)
    model.load_state_dict(ckpt.payload["model"])
    return model.to(resolve_device(device)).eval()

"""Evidence lower bounds and marginal-likelihood estimates: the one bound implementation.

Every model in vaelab computes its training objective here. The contract:

* ``encoder(x)`` returns a reparameterizable distribution q(z|x) with batch shape `[B]`
  and event shape `[d]`;
* ``decoder(z)`` takes z `[S, B, d]` and returns p(x|z) with batch shape `[S, B]`;
* ``prior`` is p(z): a distribution with event shape `[d]`, or a zero-argument callable
  (e.g. :class:`~vaecore.posteriors.StandardNormalPrior`) returning one, so that it can
  live on the model's device.

Conditional models (M2's q(z|x,y), p(x|y,z)) pass closures that bind the condition.
All functions follow the device and dtype of their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaecore.errors import InputDataError, finite_at_least, integer_at_least

Encoder = Callable[[Tensor], Distribution]
Decoder = Callable[[Tensor], Distribution]
PriorLike = Distribution | Callable[[], Distribution]


def _resolve_prior(prior: PriorLike) -> Distribution:
    return prior if isinstance(prior, Distribution) else prior()


def _encode(encoder: Encoder, x: Tensor) -> Distribution:
    if x.dim() == 0 or x.shape[0] == 0:  # torch failed later, on a reshape inside log_prob
        raise InputDataError(f"x holds no examples (shape {list(x.shape)}): the bounds are per example `[B]`, B >= 1")
    q = encoder(x)
    if not isinstance(q, Distribution) or not q.has_rsample:
        # Without rsample the bound has no pathwise gradient; fail here, not deep in torch.
        raise TypeError(f"the encoder must return a reparameterizable Distribution, got {q!r}")
    return q


def _check_prior(prior: Distribution, q: Distribution) -> Distribution:
    # A prior that forgets ``Independent`` (event `[]`, batch `[d]`) gives a KL or log p(z)
    # per dimension, `[B, d]`, which broadcasts against `[B]` terms without an error when B = d.
    if prior.event_shape != q.event_shape:
        raise InputDataError(
            f"the prior's event shape {list(prior.event_shape)} differs from the posterior's "
            f"{list(q.event_shape)}; wrap per-dimension distributions in torch.distributions.Independent"
        )
    return prior


def _check_log_prob(log_p: Tensor, z: Tensor, q: Distribution) -> Tensor:
    # A decoder that forgets ``Independent`` returns `[S, B, D]`; without this check the
    # per-feature terms would silently broadcast against the `[B]` KL.
    expected = z.shape[:1] + q.batch_shape
    if log_p.shape != expected:
        raise InputDataError(
            f"decoder(z).log_prob(x) has shape {list(log_p.shape)}, expected [S, *batch] = "
            f"{list(expected)}; the decoder's distribution needs batch shape z.shape[:-1] "
            "(wrap per-feature distributions in torch.distributions.Independent)"
        )
    return log_p


@dataclass(frozen=True)
class ELBOTerms:
    """Per-example terms of the (beta-weighted) ELBO.

    Attributes:
        elbo: `log_likelihood - beta * kl`, `[B]`.
        log_likelihood: Monte Carlo E_q[log p(x|z)], averaged over samples, `[B]`.
        kl: KL(q(z|x) || p(z)), analytic where ``torch.distributions`` has it, else
            the Monte Carlo estimate on ``z`` (see :func:`kl_term`), `[B]`.
        z: The reparameterized samples used, `[S, B, d]`.
        posterior: q(z|x), batch shape `[B]`.
    """

    elbo: Tensor
    log_likelihood: Tensor
    kl: Tensor
    z: Tensor
    posterior: Distribution

    def loss(self) -> Tensor:
        """Negative mean ELBO, the scalar to minimize."""
        return -self.elbo.mean()


def kl_term(posterior: Distribution, prior: Distribution, z: Tensor | None = None) -> Tensor:
    """KL(q || p) per example, `[B]`.

    Uses the analytic ``torch.distributions.kl_divergence`` when registered for the pair,
    otherwise the Monte Carlo estimate ``mean_s [log q(z_s) - log p(z_s)]`` on ``z``
    `[S, B, d]` (one reparameterized draw from q if not given). The estimate is unbiased
    and differentiable; pass the ELBO's own samples so both terms share them.

    Args:
        posterior: q(z|x), batch `[B]`, event `[d]`.
        prior: p(z), event `[d]`, batch broadcastable to `[B]`.
        z: Optional samples from ``posterior``, `[S, B, d]`.
    """
    try:
        return kl_divergence(posterior, prior)
    except NotImplementedError:
        if z is None:
            z = posterior.rsample((1,))
        return (posterior.log_prob(z) - prior.log_prob(z)).mean(0)


def elbo(
    x: Tensor,
    encoder: Encoder,
    decoder: Decoder,
    prior: PriorLike,
    *,
    n_samples: int = 1,
    beta: float | Tensor = 1.0,
) -> ELBOTerms:
    """The evidence lower bound E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    Args:
        x: Data, `[B, ...]`.
        encoder: ``x -> q(z|x)``, batch `[B]`, event `[d]`.
        decoder: ``z [S, B, d] -> p(x|z)``, batch `[S, B]`.
        prior: p(z), event `[d]`, or a callable returning it.
        n_samples: Number S of reparameterized samples for the likelihood term.
        beta: KL weight (1 gives the true ELBO; warm-up schedules pass < 1): a number, a
            one-element tensor or one weight per example `[B]`.

    Returns:
        :class:`ELBOTerms` with `[B]` tensors.

    Raises:
        TypeError: If the encoder's distribution has no ``rsample``.
        InputDataError: If ``x`` holds no examples, ``n_samples`` is not an integer >= 1, a
            number ``beta`` is negative or not finite, a tensor ``beta`` is neither one weight
            nor `[B]`, the prior's event shape is not the posterior's, or the decoder's
            ``log_prob`` is not `[S, B]`.
    """
    n_samples = integer_at_least("n_samples", n_samples, 1)
    # A negative weight would reward a large KL without any error; a tensor beta is left
    # unchecked because reading it back would synchronize with the device every step.
    if not isinstance(beta, Tensor):
        finite_at_least("beta", beta, 0)
    q = _encode(encoder, x)
    p = _check_prior(_resolve_prior(prior), q)
    z = q.rsample((n_samples,))
    log_likelihood = _check_log_prob(decoder(z).log_prob(x), z, q).mean(0)
    kl = kl_term(q, p, z)
    if isinstance(beta, Tensor) and beta.numel() != 1 and beta.shape != kl.shape:  # a shape: no device read
        raise InputDataError(f"beta must be one weight, or one per example `[B]` = {list(kl.shape)}; got a tensor of "
                             f"shape {list(beta.shape)}")
    return ELBOTerms(
        elbo=log_likelihood - beta * kl, log_likelihood=log_likelihood, kl=kl, z=z, posterior=q
    )


def _gaussian_draws(posterior: Distribution, noise: Tensor, k: int) -> Tensor:
    """``mean + stddev * noise`` `[k, B, d]` for a diagonal-Gaussian posterior and standard-normal ``noise``."""
    base = posterior.base_dist if isinstance(posterior, Independent) else posterior
    if not isinstance(base, Normal):
        raise InputDataError(f"noise reparameterizes a diagonal Gaussian posterior (Normal, or Independent of one); "
                             f"got {type(base).__name__}")
    if noise.dim() != 3 or noise.shape[0] != k or noise.shape[-1] != posterior.event_shape[-1]:
        raise InputDataError(f"noise must be [k, 1 or B, d] = [{k}, 1, {posterior.event_shape[-1]}], "
                             f"got {list(noise.shape)}")
    return posterior.mean + posterior.stddev * noise


def log_importance_weights(
    x: Tensor, posterior: Distribution, decoder: Decoder, prior: Distribution, k: int, noise: Tensor | None = None
) -> Tensor:
    """log w_s = log p(x|z_s) + log p(z_s) - log q(z_s|x) for z_s ~ q, `[k, B]`.

    Args:
        x: Data, `[B, ...]`.
        posterior: q(z|x), batch `[B]`, event `[d]`; the samples are reparameterized.
        decoder: ``z [k, B, d] -> p(x|z)``, batch `[k, B]`.
        prior: p(z), event `[d]`.
        k: Number of samples.
        noise: Standard-normal draws `[k, 1 or B, d]` for a diagonal-Gaussian posterior,
            ``z = mean + stddev * noise``, instead of fresh ones (see :func:`iwae_bound`).
    """
    _check_prior(prior, posterior)
    z = posterior.rsample((k,)) if noise is None else _gaussian_draws(posterior, noise, k)
    log_px = _check_log_prob(decoder(z).log_prob(x), z, posterior)
    return log_px + prior.log_prob(z) - posterior.log_prob(z)


def iwae_bound(
    x: Tensor, encoder: Encoder, decoder: Decoder, prior: PriorLike, *, k: int, noise: Tensor | None = None
) -> Tensor:
    """The importance-weighted bound log (1/k) sum_s w_s (Burda et al. 2016), `[B]`.

    Differentiable (reparameterized); k = 1 is the single-sample ELBO. Tightens
    monotonically in expectation as k grows and converges to log p(x).

    Args:
        x: Data, `[B, ...]`.
        encoder, decoder, prior: As in :func:`elbo`.
        k: Number of importance samples, drawn in one pass (`[k, B, d]`).
        noise: Standard-normal draws `[k, 1, d]` (or `[k, B, d]`) to reparameterize a
            diagonal-Gaussian posterior with. Given `[k, 1, d]`, every example uses the same
            draws (common random numbers), so its estimate does not depend on the others in
            the batch or on their order; fresh draws made a classifier's answer for an
            image change with the images scored beside it.

    Raises:
        InputDataError: ``noise`` for a posterior other than a diagonal Gaussian, or of
            another shape.
    """
    k = integer_at_least("k", k, 1)
    log_w = log_importance_weights(x, _encode(encoder, x), decoder, _resolve_prior(prior), k, noise)
    return log_w.logsumexp(0) - math.log(k)


@torch.no_grad()
def log_marginal_likelihood(
    x: Tensor,
    encoder: Encoder,
    decoder: Decoder,
    prior: PriorLike,
    *,
    n_samples: int = 5000,
    chunk_size: int = 500,
) -> Tensor:
    """Importance-sampled estimate of log p(x) with q(z|x) as proposal, `[B]`.

    This is the IWAE bound with k = ``n_samples``, evaluated without gradients: a
    consistent estimate that approaches log p(x) from below (in expectation) as
    ``n_samples`` grows. The samples are processed ``chunk_size`` at a time and combined
    with a running ``logaddexp``, so memory is that of one chunk whatever ``n_samples``
    is. Put modules with dropout or batch norm in eval mode first.

    Args:
        x: Data, `[B, ...]`.
        encoder, decoder, prior: As in :func:`elbo`.
        n_samples: Total importance samples (5000 is the usual MNIST protocol).
        chunk_size: Samples per forward pass; the last chunk may be smaller.
    """
    n_samples, chunk_size = integer_at_least("n_samples", n_samples, 1), integer_at_least("chunk_size", chunk_size, 1)
    q = _encode(encoder, x)
    p = _resolve_prior(prior)
    total: Tensor | None = None
    for start in range(0, n_samples, chunk_size):
        k = min(chunk_size, n_samples - start)
        chunk = log_importance_weights(x, q, decoder, p, k).logsumexp(0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
    assert total is not None
    return total - math.log(n_samples)

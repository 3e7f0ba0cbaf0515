"""Bounds against a model whose log p(x) and posterior are known exactly.

Probabilistic PCA: z ~ N(0, I_d), x | z ~ N(W z + mu, sigma^2 I_D), so
p(x) = N(mu, W W^T + sigma^2 I) and p(z | x) = N(M^-1 W^T (x - mu), sigma^2 M^-1) with
M = W^T W + sigma^2 I. The decoder uses vaecore's own GaussianLikelihood.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from vaecore import GaussianLikelihood, NonFiniteLossError, StandardNormalPrior, elbo, iwae_bound
from vaecore.bounds import kl_term, log_importance_weights, log_marginal_likelihood
from vaecore.posteriors import diagonal_gaussian
from vaecore.runtime import check_finite

D, d, SIGMA = 5, 2, 0.7
F64 = torch.float64


class PPCA:
    """A linear-Gaussian model with closed-form marginal and posterior."""

    def __init__(self, seed: int = 0, dtype: torch.dtype = F64) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, d, generator=g, dtype=dtype)
        self.mu = torch.randn(D, generator=g, dtype=dtype)
        self.logvar = torch.full((D,), 2 * math.log(SIGMA), dtype=dtype)
        self.likelihood = GaussianLikelihood()
        self.dtype = dtype

    def decoder(self, z: Tensor) -> Distribution:
        mean = z @ self.W.T + self.mu
        return self.likelihood(torch.cat([mean, self.logvar.expand_as(mean)], dim=-1))

    def sample_x(self, n: int, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, d, generator=g, dtype=self.dtype)
        return z @ self.W.T + self.mu + SIGMA * torch.randn(n, D, generator=g, dtype=self.dtype)

    def log_px(self, x: Tensor) -> Tensor:
        cov = self.W @ self.W.T + SIGMA**2 * torch.eye(D, dtype=self.dtype)
        return MultivariateNormal(self.mu, covariance_matrix=cov).log_prob(x)

    def posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.W.T @ self.W + SIGMA**2 * torch.eye(d, dtype=self.dtype)
        mean = torch.linalg.solve(m, self.W.T @ (x - self.mu).T).T
        return mean, SIGMA**2 * torch.linalg.inv(m)

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        mean, cov = self.posterior_params(x)
        return MultivariateNormal(mean, covariance_matrix=cov.expand(x.shape[0], d, d))

    def imperfect_posterior(self, x: Tensor, shift: float = 0.3, widen: float = 1.5) -> Independent:
        """A diagonal Gaussian with a shifted mean and too-wide scales."""
        mean, cov = self.posterior_params(x)
        log_scale = (widen * cov.diagonal().sqrt()).log().expand_as(mean)
        return diagonal_gaussian(mean + shift, log_scale)


def standard_mvn(dtype: torch.dtype = F64) -> MultivariateNormal:
    return MultivariateNormal(torch.zeros(d, dtype=dtype), covariance_matrix=torch.eye(d, dtype=dtype))


def standard_diag(dtype: torch.dtype = F64) -> Independent:
    return Independent(Normal(torch.zeros(d, dtype=dtype), torch.ones(d, dtype=dtype)), 1)


# --------------------------------------------------------------------------- KL term


def test_analytic_kl_agrees_with_monte_carlo() -> None:
    torch.manual_seed(0)
    q = diagonal_gaussian(torch.randn(4, 3, dtype=F64), 0.5 * torch.randn(4, 3, dtype=F64))
    p = Independent(Normal(torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)), 1)
    analytic = kl_term(q, p)
    assert analytic.shape == (4,)
    z = q.sample((50_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    mc, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((analytic - mc).abs() < 5 * stderr + 1e-9), (analytic, mc, stderr)
    # The analytic branch ignores z: identical with and without samples.
    torch.testing.assert_close(kl_term(q, p, z[:3]), analytic)


def test_analytic_kl_full_covariance_agrees_with_monte_carlo() -> None:
    model = PPCA()
    x = model.sample_x(3, seed=1)
    q, p = model.exact_posterior(x), standard_mvn()
    analytic = kl_term(q, p)
    z = q.sample((50_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    stderr = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((analytic - log_ratio.mean(0)).abs() < 5 * stderr)


def mixture_prior() -> MixtureSameFamily:
    locs = torch.tensor([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.5]], dtype=F64)
    scales = torch.tensor([[0.6, 0.8], [0.7, 0.5], [1.0, 0.6]], dtype=F64)
    return MixtureSameFamily(
        Categorical(logits=torch.tensor([0.0, 0.5, -0.3], dtype=F64)), Independent(Normal(locs, scales), 1)
    )


def grid_kl(q: Independent, p: Distribution, half_width: float = 8.0, n: int = 401) -> Tensor:
    """KL(q || p) per batch element by trapezoid integration on a 2-D grid, `[B]`."""
    t = torch.linspace(-half_width, half_width, n, dtype=F64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 1, 2)  # `[n*n, 1, 2]`
    log_q, log_p = q.log_prob(grid), p.log_prob(grid)  # `[n*n, B]`
    integrand = (log_q.exp() * (log_q - log_p)).reshape(n, n, -1)
    return torch.trapezoid(torch.trapezoid(integrand, t, dim=0), t, dim=0)


def test_kl_without_registered_pair_uses_monte_carlo_and_agrees_in_expectation() -> None:
    torch.manual_seed(0)
    q = diagonal_gaussian(
        torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 1.0]], dtype=F64),
        torch.tensor([[0.0, -0.5], [-0.7, -0.2], [0.2, -1.0]], dtype=F64),
    )
    prior = mixture_prior()
    with pytest.raises(NotImplementedError):  # the premise: torch has no analytic KL here
        kl_divergence(q, prior)
    reference = grid_kl(q, prior)

    one_sample = kl_term(q, prior)  # no z given: a single fresh sample
    assert one_sample.shape == (3,) and one_sample.dtype == F64
    assert not torch.equal(one_sample, kl_term(q, prior)), "an MC estimate should vary between calls"

    z = q.sample((40_000,))
    log_ratio = q.log_prob(z) - prior.log_prob(z)
    estimate = kl_term(q, prior, z)
    torch.testing.assert_close(estimate, log_ratio.mean(0))
    stderr = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((estimate - reference).abs() < 5 * stderr + 1e-4), (estimate, reference)


def test_elbo_monte_carlo_kl_uses_the_elbo_samples() -> None:
    torch.manual_seed(1)
    prior = mixture_prior()
    x = torch.randn(4, 3, dtype=F64)
    W = torch.randn(3, 2, dtype=F64)

    def encoder(x: Tensor) -> Distribution:
        return diagonal_gaussian(x[:, :2], x[:, 1:] * 0.1)

    def decoder(z: Tensor) -> Distribution:
        return Independent(Normal(z @ W.T, 1.0), 1)

    terms = elbo(x, encoder, decoder, prior, n_samples=7)
    q = terms.posterior
    torch.testing.assert_close(terms.kl, (q.log_prob(terms.z) - prior.log_prob(terms.z)).mean(0))
    torch.testing.assert_close(terms.elbo, terms.log_likelihood - terms.kl)


# --------------------------------------------------------------------------- ELBO


def test_elbo_with_exact_posterior_equals_log_px_monte_carlo_kl() -> None:
    # q = p(z|x) makes log p(x|z) + log p(z) - log q(z|x) = log p(x) for every z, so the
    # MC-KL ELBO (which shares its samples with the likelihood term) is exact per sample.
    model = PPCA()
    x = model.sample_x(16, seed=2)
    with pytest.raises(NotImplementedError):
        kl_divergence(model.exact_posterior(x), standard_diag())
    terms = elbo(x, model.exact_posterior, model.decoder, standard_diag(), n_samples=3)
    torch.testing.assert_close(terms.elbo, model.log_px(x), rtol=0, atol=1e-10)


def test_elbo_with_exact_posterior_equals_log_px_analytic_kl() -> None:
    model = PPCA()
    x = model.sample_x(16, seed=3)
    q = model.exact_posterior(x)
    torch.manual_seed(0)
    terms = elbo(x, model.exact_posterior, model.decoder, standard_mvn(), n_samples=1)
    torch.testing.assert_close(terms.kl, kl_divergence(q, standard_mvn()))
    # Same samples: likelihood term minus analytic KL vs the per-sample identity.
    log_lik = model.decoder(terms.z).log_prob(x).mean(0)
    torch.testing.assert_close(terms.log_likelihood, log_lik)
    # In expectation the analytic-KL ELBO is exact too; the MC error of the likelihood
    # term shrinks as 1/sqrt(S).
    torch.manual_seed(1)
    many = elbo(x, model.exact_posterior, model.decoder, standard_mvn(), n_samples=20_000)
    assert (many.elbo - model.log_px(x)).abs().max() < 0.05


def test_elbo_shapes_and_beta() -> None:
    model = PPCA()
    x = model.sample_x(6, seed=4)
    torch.manual_seed(0)
    terms = elbo(x, model.imperfect_posterior, model.decoder, StandardNormalPrior(d).double(), n_samples=5, beta=0.25)
    assert terms.z.shape == (5, 6, d)
    for t in (terms.elbo, terms.log_likelihood, terms.kl):
        assert t.shape == (6,) and t.dtype == F64
    torch.testing.assert_close(terms.elbo, terms.log_likelihood - 0.25 * terms.kl)
    torch.testing.assert_close(terms.loss(), -terms.elbo.mean())
    assert torch.all(terms.kl > 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_follow_input_dtype(dtype: torch.dtype) -> None:
    model = PPCA(dtype=dtype)
    x = model.sample_x(4, seed=5)
    prior = StandardNormalPrior(d).to(dtype)
    terms = elbo(x, model.imperfect_posterior, model.decoder, prior, n_samples=2)
    assert {terms.elbo.dtype, terms.kl.dtype, terms.z.dtype} == {dtype}
    assert iwae_bound(x, model.imperfect_posterior, model.decoder, prior, k=3).dtype == dtype
    assert log_marginal_likelihood(x, model.imperfect_posterior, model.decoder, prior, n_samples=5, chunk_size=2).dtype == dtype


def test_outputs_follow_input_device() -> None:
    # The meta device fails on any tensor the library would create on a fixed device.
    dev = torch.device("meta")
    W = torch.zeros(D, d, device=dev, dtype=F64)
    likelihood = GaussianLikelihood()
    x = torch.zeros(3, D, device=dev, dtype=F64)

    def encoder(x: Tensor) -> Distribution:
        return diagonal_gaussian(x[:, :d], x[:, d : 2 * d])

    def decoder(z: Tensor) -> Distribution:
        mean = z @ W.T
        return likelihood(torch.cat([mean, mean], -1))

    prior = StandardNormalPrior(d).to(device=dev, dtype=F64)
    terms = elbo(x, encoder, decoder, prior, n_samples=2)
    assert terms.elbo.device == dev and terms.elbo.shape == (3,)
    assert iwae_bound(x, encoder, decoder, prior, k=4).device == dev
    assert log_marginal_likelihood(x, encoder, decoder, prior, n_samples=5, chunk_size=2).device == dev


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_outputs_on_cuda() -> None:
    model = PPCA()
    x = model.sample_x(4, seed=6).cuda()
    model.W, model.mu, model.logvar = model.W.cuda(), model.mu.cuda(), model.logvar.cuda()
    prior = StandardNormalPrior(d).to(device="cuda", dtype=F64)
    assert elbo(x, lambda x: diagonal_gaussian(x[:, :d], x[:, d:2 * d]), model.decoder, prior).elbo.is_cuda


# --------------------------------------------------------------------------- IWAE / log p(x)


def test_log_marginal_likelihood_converges_to_exact_with_chunking() -> None:
    model = PPCA()
    x = model.sample_x(16, seed=7)
    exact = model.log_px(x)
    prior = standard_diag()
    torch.manual_seed(0)
    # The proposal is deliberately off, so a plain ELBO is visibly below log p(x).
    gap = exact - elbo(x, model.imperfect_posterior, model.decoder, prior, n_samples=2000).elbo
    assert gap.mean() > 1.0

    chunks: list[int] = []

    def decoder(z: Tensor) -> Distribution:
        chunks.append(z.shape[0])
        return model.decoder(z)

    estimate = log_marginal_likelihood(
        x, model.imperfect_posterior, decoder, prior, n_samples=3001, chunk_size=256
    )
    assert chunks == [256] * 11 + [185]  # memory-bounded: never more than one chunk at once
    assert estimate.shape == (16,) and not estimate.requires_grad
    error = (estimate - exact).abs()
    assert error.mean() < 0.04 and error.max() < 0.15, error  # vs an ELBO gap of ~1.8 nats
    few = log_marginal_likelihood(x, model.imperfect_posterior, model.decoder, prior, n_samples=30, chunk_size=7)
    assert (few - exact).abs().mean() > error.mean()  # converging: more samples, less error


def test_iwae_bound_increases_with_k_and_stays_below_exact() -> None:
    model = PPCA()
    x = model.sample_x(256, seed=8)
    exact = model.log_px(x).mean()

    def poor_posterior(x: Tensor) -> Independent:
        return model.imperfect_posterior(x, shift=0.5, widen=0.7)

    torch.manual_seed(0)
    ks = (1, 4, 16, 64)
    # Average over 256 examples x 2 repeats: the bound is monotone in expectation only.
    means = [
        torch.stack([iwae_bound(x, poor_posterior, model.decoder, standard_diag(), k=k) for _ in range(2)]).mean()
        for k in ks
    ]
    gaps = [(exact - m).item() for m in means]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] > 0, gaps
    assert gaps[0] > 2 * gaps[-1], gaps  # it really tightens, not merely by noise


def test_iwae_with_k_1_is_the_single_sample_elbo() -> None:
    model = PPCA()
    x = model.sample_x(5, seed=9)
    prior = standard_diag()
    torch.manual_seed(3)
    bound = iwae_bound(x, model.imperfect_posterior, model.decoder, prior, k=1)
    torch.manual_seed(3)
    log_w = log_importance_weights(x, model.imperfect_posterior(x), model.decoder, prior, 1)
    assert log_w.shape == (1, 5)
    torch.testing.assert_close(bound, log_w[0])


def test_iwae_and_lml_exact_for_exact_posterior() -> None:
    model = PPCA()
    x = model.sample_x(8, seed=10)
    exact = model.log_px(x)
    torch.testing.assert_close(iwae_bound(x, model.exact_posterior, model.decoder, standard_mvn(), k=5), exact)
    torch.testing.assert_close(
        log_marginal_likelihood(x, model.exact_posterior, model.decoder, standard_mvn(), n_samples=7, chunk_size=3),
        exact,
    )


# --------------------------------------------------------------------------- gradients


def _toy_objective(which: str):
    x = torch.tensor([[0.3, -1.2, 0.5], [1.0, 0.2, -0.4]], dtype=F64)
    prior = StandardNormalPrior(2).double()

    def objective(loc: Tensor, log_scale: Tensor, W: Tensor) -> Tensor:
        torch.manual_seed(0)  # same noise every call, so finite differences are meaningful

        def decoder(z: Tensor) -> Distribution:
            mean = z @ W.T
            return GaussianLikelihood()(torch.cat([mean, torch.full_like(mean, -0.5)], -1))

        def encoder(_: Tensor) -> Distribution:
            return diagonal_gaussian(loc, log_scale)

        if which == "iwae":
            return iwae_bound(x, encoder, decoder, prior, k=3)
        terms = elbo(x, encoder, decoder, prior, n_samples=3)
        return terms.log_likelihood if which == "likelihood" else terms.elbo

    return objective


@pytest.mark.parametrize("which", ["likelihood", "elbo", "iwae"])
def test_gradients_agree_with_finite_differences(which: str) -> None:
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(2, 2, dtype=F64, generator=g, requires_grad=True)
    log_scale = (0.3 * torch.randn(2, 2, dtype=F64, generator=g)).requires_grad_()
    W = torch.randn(3, 2, dtype=F64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_toy_objective(which), (loc, log_scale, W))


def test_likelihood_gradient_flows_through_the_sample() -> None:
    # E_q[log p(x|z)] depends on q only through z: a nonzero gradient proves rsample is used.
    loc = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    log_scale = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    W = torch.ones(3, 2, dtype=F64)
    _toy_objective("likelihood")(loc, log_scale, W).sum().backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0
    assert log_scale.grad is not None and log_scale.grad.abs().sum() > 0


# --------------------------------------------------------------------------- errors


def test_bad_arguments_are_refused() -> None:
    model = PPCA()
    x = model.sample_x(3, seed=11)
    q, dec, prior = model.imperfect_posterior, model.decoder, standard_diag()
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 0"):
        elbo(x, q, dec, prior, n_samples=0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 2.5"):
        elbo(x, q, dec, prior, n_samples=2.5)  # torch.Size() refused it with a TypeError
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got -0.5"):
        elbo(x, q, dec, prior, beta=-0.5)  # would reward a large KL without any error
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got nan"):
        elbo(x, q, dec, prior, beta=math.nan)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        iwae_bound(x, q, dec, prior, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got True"):
        iwae_bound(x, q, dec, prior, k=True)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        log_marginal_likelihood(x, q, dec, prior, chunk_size=0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 10.5"):
        log_marginal_likelihood(x, q, dec, prior, n_samples=10.5)
    # A tensor beta (a schedule's value on the device) is taken as it is, or one per example.
    assert elbo(x, q, dec, prior, beta=torch.tensor(0.5, dtype=F64)).elbo.shape == (3,)
    per_example = elbo(x, q, dec, prior, beta=torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    torch.testing.assert_close(per_example.elbo, per_example.log_likelihood - torch.tensor([0.0, 0.5, 1.0],
                                                                                           dtype=F64) * per_example.kl)
    with pytest.raises(ValueError, match=r"beta must be one weight, or one per example `\[B\]` = \[3\]; got a "
                                         r"tensor of shape \[2\]"):  # was torch's broadcasting error
        elbo(x, q, dec, prior, beta=torch.ones(2, dtype=F64))
    # A batch of no examples: torch failed on a reshape inside log_prob.
    for bound in (lambda x: elbo(x, q, dec, prior), lambda x: iwae_bound(x, q, dec, prior, k=2),
                  lambda x: log_marginal_likelihood(x, q, dec, prior, n_samples=4)):
        with pytest.raises(ValueError, match=r"x holds no examples \(shape \[0, 5\]\)"):
            bound(x[:0])


def test_decoder_without_event_dims_is_named() -> None:
    model = PPCA()
    x = model.sample_x(3, seed=12)

    def per_pixel_decoder(z: Tensor) -> Distribution:
        return model.decoder(z).base_dist  # forgot Independent: batch `[S, B, D]`

    with pytest.raises(ValueError, match=r"shape \[2, 3, 5\], expected .*\[2, 3\]"):
        elbo(x, model.imperfect_posterior, per_pixel_decoder, standard_diag(), n_samples=2)
    with pytest.raises(ValueError, match="Independent"):
        iwae_bound(x, model.imperfect_posterior, per_pixel_decoder, standard_diag(), k=2)


def test_shared_noise_makes_each_examples_iwae_estimate_its_own() -> None:
    # Fresh draws give an example other draws in another batch; shared ones `[k, 1, d]` do not.
    model = PPCA()
    x = model.sample_x(4, seed=14)
    noise = torch.randn(6, 1, d, generator=torch.Generator().manual_seed(3), dtype=F64)
    together = iwae_bound(x, model.imperfect_posterior, model.decoder, standard_diag(), k=6, noise=noise)
    alone = torch.cat([iwae_bound(x[i:i + 1], model.imperfect_posterior, model.decoder, standard_diag(), k=6,
                                  noise=noise) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    q = model.imperfect_posterior(x)
    z = q.mean + q.stddev * noise  # the reparameterization, by hand
    log_w = model.decoder(z).log_prob(x) + standard_diag().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(together, log_w.logsumexp(0) - math.log(6))
    with pytest.raises(ValueError, match=r"noise must be \[k, 1 or B, d\] = \[6, 1, 2\], got \[5, 1, 2\]"):
        iwae_bound(x, model.imperfect_posterior, model.decoder, standard_diag(), k=6, noise=noise[:5])
    with pytest.raises(ValueError, match="diagonal Gaussian posterior .* got MultivariateNormal"):
        iwae_bound(x, model.exact_posterior, model.decoder, standard_mvn(), k=6, noise=noise)


def test_prior_without_event_dims_is_named() -> None:
    # B = d = 2: the per-dimension KL `[2, 2]` would broadcast against the `[2]` likelihood.
    model = PPCA()
    x = model.sample_x(d, seed=13)
    per_dim_prior = Normal(torch.zeros(d, dtype=F64), torch.ones(d, dtype=F64))  # forgot Independent
    with pytest.raises(ValueError, match=r"prior's event shape \[\] differs from the posterior's \[2\].*Independent"):
        elbo(x, model.imperfect_posterior, model.decoder, per_dim_prior)
    with pytest.raises(ValueError, match="Independent"):
        iwae_bound(x, model.imperfect_posterior, model.decoder, per_dim_prior, k=2)
    with pytest.raises(ValueError, match="Independent"):
        log_marginal_likelihood(x, model.imperfect_posterior, model.decoder, per_dim_prior, n_samples=4)


def test_non_reparameterizable_encoder_is_refused() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="reparameterizable"):
        elbo(x, lambda x: Categorical(logits=x), lambda z: Normal(z, 1.0), standard_diag(torch.float32))


def test_nan_reaches_the_guard_which_names_the_step() -> None:
    model = PPCA()
    x = model.sample_x(3, seed=13)

    def diverged(x: Tensor) -> Distribution:
        loc, _ = model.posterior_params(x)
        return diagonal_gaussian(loc * float("nan"), torch.zeros_like(loc))

    loss = elbo(x, diverged, model.decoder, StandardNormalPrior(d).double()).loss()  # no exception here
    assert torch.isnan(loss)
    with pytest.raises(NonFiniteLossError, match="step 12"):
        check_finite(loss, step=12)

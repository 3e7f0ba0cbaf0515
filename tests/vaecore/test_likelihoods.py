"""Likelihood objects against direct computations, with `[S, B]` batch shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, Normal

from vaecore.likelihoods import (
    GAUSSIAN_LOGVAR_MAX,
    GAUSSIAN_LOGVAR_MIN,
    BernoulliLikelihood,
    CategoricalSequenceLikelihood,
    GaussianLikelihood,
    MaskedSequenceCategorical,
    FEATURE_LIKELIHOODS,
    check_feature_likelihood,
    make_likelihood,
)

S, B, D = 3, 4, 6


def test_bernoulli_matches_cross_entropy_and_torch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(S, B, D)
    x = torch.randint(0, 2, (B, D)).float()
    dist = BernoulliLikelihood()(logits)
    assert dist.batch_shape == (S, B) and dist.event_shape == (D,)
    log_p = dist.log_prob(x)
    assert log_p.shape == (S, B)
    expected = -F.binary_cross_entropy_with_logits(logits, x.expand(S, B, D), reduction="none").sum(-1)
    torch.testing.assert_close(log_p, expected)
    torch.testing.assert_close(log_p, Bernoulli(logits=logits).log_prob(x).sum(-1))
    torch.testing.assert_close(dist.mean, torch.sigmoid(logits))


def test_bernoulli_image_event_dims_and_grey_levels() -> None:
    torch.manual_seed(1)
    logits = torch.randn(S, B, 2, 3)
    dist = BernoulliLikelihood(event_dims=2)(logits)
    assert dist.batch_shape == (S, B) and dist.event_shape == (2, 3)
    grey = torch.rand(B, 2, 3)  # grey levels: the non-normalized cross-entropy, no error
    expected = -F.binary_cross_entropy_with_logits(logits, grey.expand(S, B, 2, 3), reduction="none").sum((-1, -2))
    torch.testing.assert_close(dist.log_prob(grey), expected)


def test_gaussian_matches_normal_density() -> None:
    torch.manual_seed(2)
    mean, logvar = torch.randn(S, B, D, dtype=torch.float64), torch.randn(S, B, D, dtype=torch.float64)
    x = torch.randn(B, D, dtype=torch.float64)
    lik = make_likelihood("gaussian")
    assert lik.params_per_feature == 2
    dist = lik(torch.cat([mean, logvar], -1))
    assert dist.batch_shape == (S, B) and dist.event_shape == (D,)
    log_p = dist.log_prob(x)
    assert log_p.shape == (S, B) and log_p.dtype == torch.float64
    torch.testing.assert_close(log_p, Normal(mean, (0.5 * logvar).exp()).log_prob(x).sum(-1))
    closed_form = -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum(-1)
    torch.testing.assert_close(log_p, closed_form)


def test_gaussian_logvar_clamp_holds_the_documented_range() -> None:
    assert f"[{GAUSSIAN_LOGVAR_MIN}, {GAUSSIAN_LOGVAR_MAX}]" in GaussianLikelihood.__doc__
    logvar = torch.tensor([-100.0, -9.3, -9.2, 0.0, 4.6, 4.7, 100.0])
    mean = torch.zeros_like(logvar)
    dist = GaussianLikelihood()(torch.cat([mean, logvar]))
    variance = dist.base_dist.scale**2
    assert torch.all(variance >= math.exp(GAUSSIAN_LOGVAR_MIN) * (1 - 1e-5))
    assert torch.all(variance <= math.exp(GAUSSIAN_LOGVAR_MAX) * (1 + 1e-5))
    torch.testing.assert_close(variance.log(), logvar.clamp(GAUSSIAN_LOGVAR_MIN, GAUSSIAN_LOGVAR_MAX))
    # An extreme log-variance still gives a finite density far from the mean.
    assert torch.isfinite(dist.log_prob(torch.full_like(mean, 50.0)))


def test_gaussian_refuses_odd_parameter_count() -> None:
    with pytest.raises(ValueError, match=r"even last dim.*\[2, 5\]"):
        GaussianLikelihood()(torch.zeros(2, 5))


def test_gaussian_nan_does_not_raise_in_constructor() -> None:
    # NaNs must reach the loss (and the NaN guard naming the step), not fail validation.
    dist = GaussianLikelihood()(torch.full((2, 4), float("nan")))
    assert torch.isnan(dist.log_prob(torch.zeros(2, 2))).all()


def _loop_log_prob(logits: torch.Tensor, x: torch.Tensor, pad: int) -> torch.Tensor:
    """Direct per-position sum with torch's Categorical, `[S, B]`."""
    out = torch.zeros(logits.shape[:2], dtype=logits.dtype)
    for s in range(logits.shape[0]):
        for b in range(logits.shape[1]):
            for t in range(logits.shape[2]):
                if x[b, t] != pad:
                    out[s, b] += Categorical(logits=logits[s, b, t]).log_prob(x[b, t])
    return out


@pytest.mark.parametrize("pad", [0, -1])
def test_masked_categorical_matches_loop_and_ignores_padding(pad: int) -> None:
    torch.manual_seed(3)
    T, V = 5, 7
    logits = torch.randn(S, B, T, V, dtype=torch.float64, requires_grad=True)
    x = torch.randint(1, V, (B, T))
    lengths = torch.tensor([5, 3, 1, 0])
    x[torch.arange(T) >= lengths[:, None]] = pad
    lik = make_likelihood("categorical", pad_index=pad)
    dist = lik(logits)
    assert isinstance(dist, MaskedSequenceCategorical)
    assert dist.batch_shape == (S, B) and dist.event_shape == (T,)
    log_p = dist.log_prob(x)
    assert log_p.shape == (S, B)
    torch.testing.assert_close(log_p, _loop_log_prob(logits.detach(), x, pad))
    assert torch.all(log_p[:, 3] == 0)  # an all-padding sequence has probability one

    # Padding positions are ignored whatever the logits there, even -inf.
    is_pad = (x == pad)[None, :, :, None].expand_as(logits)
    for garbage in (100 * torch.randn_like(logits), torch.full_like(logits, -math.inf)):
        wild = torch.where(is_pad, garbage, logits.detach())
        torch.testing.assert_close(CategoricalSequenceLikelihood(pad)(wild).log_prob(x), log_p.detach())
    # ... and they get no gradient.
    log_p.sum().backward()
    assert torch.all(logits.grad[is_pad] == 0) and torch.all(torch.isfinite(logits.grad))
    assert logits.grad[~is_pad].abs().sum() > 0


def test_masked_categorical_with_minus_inf_logit_on_padding_class_is_finite() -> None:
    # With pad index 0 a naive ``log_prob * mask`` would give -inf * 0 = NaN here.
    logits = torch.zeros(1, 1, 3, 4)
    logits[..., 2, 0] = -math.inf
    x = torch.tensor([[1, 2, 0]])
    log_p = MaskedSequenceCategorical(logits, pad_index=0).log_prob(x)
    torch.testing.assert_close(log_p, torch.tensor([[2 * -math.log(4)]]))


def test_masked_categorical_padding_with_all_minus_inf_logits_has_finite_gradient() -> None:
    # A decoder masking every class at padding positions (a -inf bias there): the value was
    # finite, but the normalization's NaN reached the gradient through ``where``.
    logits = torch.randn(2, 3, 4)
    logits[1, 2] = -math.inf
    logits.requires_grad_(True)
    x = torch.tensor([[1, 2, 3], [0, 2, -1]])
    log_p = MaskedSequenceCategorical(logits, pad_index=-1).log_prob(x)
    expected = sum(logits[i, t].log_softmax(-1)[x[i, t]] for i in range(2) for t in range(3) if x[i, t] != -1)
    torch.testing.assert_close(log_p.sum(), expected)
    log_p.sum().backward()
    assert torch.all(torch.isfinite(logits.grad)) and torch.all(logits.grad[1, 2] == 0)


def test_masked_categorical_helpers_and_errors() -> None:
    torch.manual_seed(4)
    logits = torch.randn(B, 5, 7)
    logits[..., 0] = -10.0  # the pad class is never the argmax
    dist = MaskedSequenceCategorical(logits, pad_index=0)
    assert dist.sample().shape == (B, 5) and dist.sample((S,)).shape == (S, B, 5)
    torch.testing.assert_close(dist.mode, logits.argmax(-1))
    target = logits.argmax(-1)
    target[:, 3:] = 0  # padding: wrong "predictions" there do not count
    target[0, 1] = (target[0, 1] % 6) + 1  # one real miss in the first sequence
    acc = dist.token_accuracy(target)
    assert acc.shape == (B,)
    torch.testing.assert_close(acc, torch.tensor([2 / 3, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="sequence length"):
        dist.log_prob(torch.zeros(B, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must be an integer tensor, got dtype torch.float32"):
        dist.log_prob(torch.full((B, 5), 2.7))  # long() would have scored token 2
    assert dist.log_prob(target.int()).shape == (B,)  # any integer dtype


def test_event_dims_are_checked() -> None:
    with pytest.raises(ValueError, match="event_dims must be an integer >= 0, got -1"):
        BernoulliLikelihood(event_dims=-1)
    with pytest.raises(ValueError, match="event_dims must be an integer >= 0, got 1.5"):
        GaussianLikelihood(event_dims=1.5)
    # 0 keeps every feature in the batch shape; the bound then names the mismatch.
    assert BernoulliLikelihood(event_dims=0)(torch.zeros(B, D)).batch_shape == (B, D)


def test_make_likelihood_names_unknown_kind() -> None:
    with pytest.raises(ValueError, match="'poisson'"):
        make_likelihood("poisson")
    assert isinstance(make_likelihood("bernoulli"), BernoulliLikelihood)
    with pytest.raises(TypeError):
        make_likelihood("categorical")  # needs pad_index


def test_feature_likelihoods_are_the_vector_ones() -> None:
    for name in FEATURE_LIKELIHOODS:
        check_feature_likelihood(name)
        assert make_likelihood(name).params_per_feature in (1, 2)
    with pytest.raises(ValueError, match="for feature vectors, got 'categorical'"):
        check_feature_likelihood("categorical")

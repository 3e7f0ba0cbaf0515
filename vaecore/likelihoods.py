"""Likelihood objects: map decoder outputs to ``torch.distributions`` over x.

A decoder in vaelab is a callable ``z -> Distribution``; it is usually a network
followed by one of these objects. Each object turns the network's raw output with
leading shape `[S, B]` (any number of leading dims) into a distribution whose batch
shape is exactly those leading dims, so ``log_prob(x)`` with x `[B, ...]` broadcasts to
`[S, B]`.

The distributions are built with ``validate_args=False``: their parameters come from a
network and are valid by construction, and a NaN must reach the training loop's NaN
guard (:func:`vaecore.runtime.check_finite`, which names the step) instead of failing
inside a constructor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal, constraints

from vaecore.errors import InputDataError, integer_at_least

# Clamp range of the Gaussian log-variance: exp(-9.2) ~ 1e-4 variance keeps log p finite
# for near-constant pixels/features; exp(4.6) ~ 100 is far beyond unit-scaled data.
GAUSSIAN_LOGVAR_MIN = -9.2
GAUSSIAN_LOGVAR_MAX = 4.6


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(logits_i)).

    ``forward(logits)`` with logits `[..., D]` returns a distribution with batch shape
    `[...]` and event shape `[D]`. Event dims beyond one (images `[..., H, W]`) are set
    with ``event_dims``.
    """

    def __init__(self, event_dims: int = 1) -> None:
        super().__init__()
        self.event_dims = integer_at_least("event_dims", event_dims, 0)

    @property
    def params_per_feature(self) -> int:
        """How many network outputs each data feature needs."""
        return 1

    def forward(self, logits: Tensor) -> Distribution:
        # validate_args=False: dynamic binarization gives {0,1} floats, but users may
        # evaluate grey-level data as a (non-normalized) cross-entropy, as in the paper.
        return Independent(Bernoulli(logits=logits, validate_args=False), self.event_dims)


class GaussianLikelihood(nn.Module):
    """p(x|z) = N(x; mu, diag(exp(logvar))) with a learned, clamped log-variance.

    ``forward(params)`` splits the last dim of `[..., 2D]` into mean `[..., D]` (first
    half) and log-variance `[..., D]` (second half); the log-variance is clamped to
    `[GAUSSIAN_LOGVAR_MIN, GAUSSIAN_LOGVAR_MAX]` = `[-9.2, 4.6]`, i.e. the variance to
    about `[1e-4, 100]`. Gradients do not flow through the clamp where it is active.
    With ``event_dims`` > 1 (images `[..., H, 2W]`) it is still the last dim that is split.
    """

    def __init__(self, event_dims: int = 1) -> None:
        super().__init__()
        self.event_dims = integer_at_least("event_dims", event_dims, 0)

    @property
    def params_per_feature(self) -> int:
        return 2

    def forward(self, params: Tensor) -> Distribution:
        if params.shape[-1] % 2:
            raise InputDataError(f"GaussianLikelihood needs an even last dim [..., 2D], got {list(params.shape)}")
        mean, logvar = params.chunk(2, dim=-1)
        std = (0.5 * logvar.clamp(GAUSSIAN_LOGVAR_MIN, GAUSSIAN_LOGVAR_MAX)).exp()
        return Independent(Normal(mean, std, validate_args=False), self.event_dims)


class MaskedSequenceCategorical(Distribution):
    """Token-wise categorical over sequences `[..., T]` ignoring padding positions.

    ``log_prob(x)`` sums ``log softmax(logits)[x_t]`` over the positions where
    ``x_t != pad_index``; padding positions contribute exactly 0 whatever the logits
    there (even -inf), and ``pad_index`` need not be a valid class (e.g. -1). Batch
    shape is `logits.shape[:-2]`, event shape `[T]`.

    Args:
        logits: `[..., T, V]` unnormalized log-probabilities.
        pad_index: Token id that marks padding.
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.nonnegative_integer
    has_rsample = False

    def __init__(self, logits: Tensor, pad_index: int) -> None:
        self.logits = logits
        self.pad_index = pad_index
        self._token = Categorical(logits=logits, validate_args=False)
        super().__init__(
            batch_shape=logits.shape[:-2], event_shape=logits.shape[-2:-1], validate_args=False
        )

    def log_prob(self, value: Tensor) -> Tensor:
        """Sum of token log-probabilities over non-padding positions.

        Args:
            value: Token ids `[..., T]`, broadcastable against the batch shape.

        Returns:
            `broadcast(value.shape[:-1], batch_shape)`, e.g. `[S, B]` for value `[B, T]`.
        """
        if value.is_floating_point() or value.is_complex():
            # ``long()`` would truncate 2.7 to token 2 without a word.
            raise InputDataError(f"token ids must be an integer tensor, got dtype {value.dtype}")
        value = value.long()
        if value.shape[-1:] != self.event_shape:
            raise InputDataError(f"sequence length {value.shape[-1:]} does not match the logits' {self.event_shape}")
        mask = value != self.pad_index
        # Padding positions get logits 0 before the softmax: logits all -inf there would
        # normalize to NaN, whose gradient ``where`` below passes on even though it drops the
        # value. They gather at a valid class, then ``where`` drops them (not ``* mask``:
        # -inf * 0 would be NaN).
        logits = torch.where(mask.unsqueeze(-1), self.logits, torch.zeros((), dtype=self.logits.dtype,
                                                                          device=self.logits.device))
        per_token = Categorical(logits=logits, validate_args=False).log_prob(value.masked_fill(~mask, 0))
        return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)

    def token_accuracy(self, value: Tensor) -> Tensor:
        """Fraction of non-pad positions whose argmax equals the target, `[...]`."""
        mask = value != self.pad_index
        hits = (self.logits.argmax(-1) == value) & mask
        return hits.sum(-1).to(self.logits.dtype) / mask.sum(-1).clamp_min(1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self._token.sample(sample_shape)

    @property
    def mode(self) -> Tensor:
        return self.logits.argmax(-1)


class CategoricalSequenceLikelihood(nn.Module):
    """p(x|z) = prod_t Cat(x_t; softmax(logits_t)) over non-padding tokens.

    ``forward(logits)`` with logits `[..., T, V]` returns a
    :class:`MaskedSequenceCategorical` with batch shape `[...]`.
    """

    def __init__(self, pad_index: int) -> None:
        super().__init__()
        self.pad_index = pad_index

    def forward(self, logits: Tensor) -> MaskedSequenceCategorical:
        return MaskedSequenceCategorical(logits, self.pad_index)


_BY_NAME: dict[str, type[nn.Module]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "categorical": CategoricalSequenceLikelihood,
}


# The likelihoods of fixed-size feature vectors (pixels, features): "categorical" is over
# token sequences and needs a pad index, so a model of vectors cannot use it.
FEATURE_LIKELIHOODS = ("bernoulli", "gaussian")


def check_feature_likelihood(name: str) -> None:
    """Refuse a likelihood name that a model of feature vectors cannot use.

    Raises:
        InputDataError: ``name`` is not in :data:`FEATURE_LIKELIHOODS`.
    """
    if name not in FEATURE_LIKELIHOODS:
        raise InputDataError(f"likelihood must be one of {FEATURE_LIKELIHOODS} for feature vectors, got {name!r}")


def make_likelihood(name: str, **kwargs: int) -> nn.Module:
    """The one place a config string becomes a likelihood object.

    Args:
        name: ``bernoulli``, ``gaussian`` or ``categorical`` (needs ``pad_index``).
        kwargs: Passed to the likelihood's constructor.
    """
    if name not in _BY_NAME:
        raise InputDataError(f"unknown likelihood {name!r}; choose from {sorted(_BY_NAME)}")
    return _BY_NAME[name](**kwargs)

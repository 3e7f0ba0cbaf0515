"""vaecore: the shared ELBO / reparameterization core of vaelab.

Knows nothing of MNIST or molecules: posteriors, priors and likelihoods built on
``torch.distributions``, the ELBO and importance-weighted bounds, marginal-likelihood
estimation, KL schedules, device / seed / checkpoint / run-directory helpers, and
model-agnostic training helpers (:mod:`vaecore.training`: weight averaging, compiled steps).
"""

from vaecore.bounds import ELBOTerms, elbo, iwae_bound, kl_term, log_importance_weights, log_marginal_likelihood
from vaecore.errors import (
    CheckpointError,
    ChecksumError,
    ConfigMismatchError,
    InputDataError,
    InputDataWarning,
    NonFiniteLossError,
    ObjectiveError,
    SearchWarning,
    VaelabError,
    VaelabWarning,
)
from vaecore.likelihoods import (
    BernoulliLikelihood,
    CategoricalSequenceLikelihood,
    GaussianLikelihood,
    MaskedSequenceCategorical,
    make_likelihood,
)
from vaecore.nets import mlp
from vaecore.posteriors import DiagonalGaussianHead, StandardNormalPrior, diagonal_gaussian

__all__ = [
    "BernoulliLikelihood",
    "CategoricalSequenceLikelihood",
    "CheckpointError",
    "ChecksumError",
    "ConfigMismatchError",
    "DiagonalGaussianHead",
    "ELBOTerms",
    "GaussianLikelihood",
    "InputDataError",
    "InputDataWarning",
    "MaskedSequenceCategorical",
    "NonFiniteLossError",
    "ObjectiveError",
    "SearchWarning",
    "StandardNormalPrior",
    "VaelabError",
    "VaelabWarning",
    "diagonal_gaussian",
    "elbo",
    "iwae_bound",
    "kl_term",
    "log_importance_weights",
    "log_marginal_likelihood",
    "make_likelihood",
    "mlp",
]

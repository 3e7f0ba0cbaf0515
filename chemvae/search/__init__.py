"""Latent-space molecule search with BoTorch: Bayesian optimization, gradient ascent, random.

>>> import chemvae
>>> from chemvae import objectives, search
>>> model = chemvae.load("runs/chem")
>>> result = search.optimize(model, objectives.qed, method="bo", budget=500, seed=0)
>>> result.best(10)            # the 10 best distinct valid molecules found
>>> result.history             # one row per proposed molecule
>>> search.optimize(model, objectives.qed, journal="qed.journal.csv")  # resumable: see journal

Modules: :mod:`~chemvae.search.loop` (:func:`optimize`, shared by all methods),
:mod:`~chemvae.search.oracle` (dedup, failures, budget) with its
:mod:`~chemvae.search.journal` (objective outcomes on disk, replayed on resume),
:mod:`~chemvae.search.bo` with its :mod:`~chemvae.search.gp`,
:mod:`~chemvae.search.acquisition` and :mod:`~chemvae.search.trust_region`,
:mod:`~chemvae.search.gradient`,
:mod:`~chemvae.search.surrogate` (the property head's estimate of an objective, climbed by
gradient ascent and optionally BO's prior mean), :mod:`~chemvae.search.random`,
:mod:`~chemvae.search.result`.
"""

from chemvae.search.bo import BayesOpt
from chemvae.search.bo_settings import BOSettings
from chemvae.search.gradient import GradientAscent, GradientSettings
from chemvae.search.journal import ScoreJournal
from chemvae.search.loop import METHODS, optimize
from chemvae.search.oracle import Evaluation, Oracle
from chemvae.search.random import RandomSearch
from chemvae.search.result import SearchResult
from chemvae.search.trust_region import TrustRegion

__all__ = [
    "METHODS",
    "BOSettings",
    "BayesOpt",
    "Evaluation",
    "GradientAscent",
    "GradientSettings",
    "Oracle",
    "RandomSearch",
    "ScoreJournal",
    "SearchResult",
    "TrustRegion",
    "optimize",
]

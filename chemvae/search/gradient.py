"""Gradient ascent on the VAE's property head, with a prior penalty (the ``gradient`` method).

The property head, trained jointly with the VAE, predicts z-scored logP, QED and SA
from z. An objective with a *surrogate* (see :mod:`chemvae.objectives`: qed, -SA and
both penalized logPs) maps those predictions to an estimate ``s(z)`` of itself
(:class:`~chemvae.search.surrogate.HeadSurrogate`). The search climbs

    f(z) = (s(z) - m) / sd  +  prior_weight * log p(z)

where ``m, sd`` standardize ``s`` over the initial latents (so ``prior_weight`` means the
same for every objective) and ``log p`` is the VAE prior's log-density: far from the
prior's bulk the decoder was never trained and the head extrapolates, so the penalty
keeps the path where both are reliable.

``f`` is wrapped as a BoTorch ``GenericDeterministicModel``; its ``PosteriorMean`` is
climbed by ``optimize_acqf`` with ``gen_candidates_torch`` (Adam), ``steps_per_round``
steps at a time from each of ``batch_size`` trajectories. After every round the current
points are decoded and scored with the *true* objective, so the path is sampled as it
goes. A trajectory that yields no new molecule for ``patience`` rounds restarts from the
next-best initial molecule (then from prior samples).

Objectives without a surrogate (``similarity``, arbitrary callables) raise
:class:`~vaecore.errors.InputDataError`: a property head cannot predict them, and a
surrogate fitted on the fly would be Bayesian optimization under another name.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.acquisition.analytic import PosteriorMean
from botorch.exceptions.warnings import OptimizationWarning
from botorch.generation.gen import gen_candidates_torch
from botorch.models.deterministic import GenericDeterministicModel
from botorch.optim import optimize_acqf
from torch import Tensor, nn

from chemvae.search.acquisition import check_box
from chemvae.search.oracle import Evaluation
from chemvae.search.surrogate import HeadSurrogate, frozen
from vaecore.errors import finite_at_least, integer_at_least


@dataclass(frozen=True)
class GradientSettings:
    """Settings of :class:`GradientAscent`.

    Attributes:
        prior_weight: Weight of ``log p(z)`` against the standardized surrogate.
        lr: Adam step size in latent units.
        steps_per_round: Adam steps between two decodings of the path.
        patience: Rounds without a new molecule before a trajectory restarts.
    """

    prior_weight: float = 0.05
    lr: float = 0.1
    steps_per_round: int = 5
    patience: int = 3

    def __post_init__(self) -> None:
        finite_at_least("GradientSettings.prior_weight", self.prior_weight, 0)
        finite_at_least("GradientSettings.lr", self.lr, 0, strict=True)  # a NaN step passed `lr <= 0`
        integer_at_least("GradientSettings.steps_per_round", self.steps_per_round, 1)
        integer_at_least("GradientSettings.patience", self.patience, 1)


class GradientAscent:
    """Latent gradient ascent on the property head (the ``gradient`` method).

    Args:
        model: The VAE (``property_tensor``, ``property_names``, ``prior``).
        objective: An objective with a ``surrogate`` (see :func:`check_surrogate`).
        box: Search box `[2, d]` the path is clamped to (float64).
        batch_size: Trajectories advanced per round.
        settings: :class:`GradientSettings`.
    """

    name = "gradient"
    uses_init = True
    uses_decodable = False

    def __init__(self, model: nn.Module, objective: Any, box: Tensor, batch_size: int,
                 settings: GradientSettings = GradientSettings()) -> None:
        self.model = model
        self.head = HeadSurrogate(model, objective)
        self.box = check_box(box)
        self.q = integer_at_least("batch_size", batch_size, 1)
        self.settings = settings
        self.prior = model.prior()
        self.starts: list[Tensor] = []  # unused starting latents, best first
        self.current = box.new_zeros(0, box.shape[-1])
        self.stale = [0] * batch_size
        self.restarts = 0

    def surrogate_value(self, x: Tensor) -> Tensor:
        """Standardized surrogate `[...]` at latents `[..., d]` (differentiable)."""
        return self.head(x)

    def climb_target(self, x: Tensor) -> Tensor:
        """``f(x)`` `[..., q, 1]` for `[..., q, d]`: surrogate plus the prior penalty."""
        log_prior = self.prior.log_prob(x.to(self.prior.mean.dtype)).to(x.dtype)
        return (self.surrogate_value(x) + self.settings.prior_weight * log_prior).unsqueeze(-1)

    # ------------------------------------------------------------------ data
    def initialize(self, z: Tensor, scores: Tensor, decodable: Tensor | None = None) -> None:
        """Start trajectories at the best initial latents `[n, d]` (by true score `[n]`).

        ``decodable`` (see :meth:`BayesOpt.initialize <chemvae.search.bo.BayesOpt.initialize>`) is
        not used (``uses_decodable`` is false, so the loop does not decode the initial latents):
        a climb leaves its start at once, whatever the start decodes to.
        """
        z = z.to(self.box)
        if len(z):
            self.head.standardize_on(z)
            order = torch.argsort(scores.to(self.box), descending=True, stable=True)
            self.starts = [z[i] for i in order.tolist()]
        self.current = torch.stack([self._next_start() for _ in range(self.q)])

    def _next_start(self) -> Tensor:
        if self.starts:
            return self.starts.pop(0)
        self.restarts += 1
        return self.prior.sample().to(self.box).clamp(self.box[0], self.box[1])

    def observe(self, z: Tensor, evaluations: Sequence[Evaluation]) -> None:
        """Restart trajectories that produced no new molecule for ``patience`` rounds."""
        for i, ev in enumerate(evaluations):
            self.stale[i] = 0 if ev.new else self.stale[i] + 1
            if self.stale[i] >= self.settings.patience:
                self.current[i] = self._next_start()
                self.stale[i] = 0

    # ------------------------------------------------------------------ proposals
    def propose(self) -> tuple[Tensor, dict[str, Any]]:
        """Advance every trajectory ``steps_per_round`` Adam steps; return the points `[q, d]`."""
        if len(self.current) == 0:  # no initial data: start from prior samples
            self.current = torch.stack([self._next_start() for _ in range(self.q)])
        s = self.settings
        t0 = time.perf_counter()
        acq = PosteriorMean(GenericDeterministicModel(self.climb_target, num_outputs=1))
        with frozen(self.model), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            z, values = optimize_acqf(
                acq, bounds=self.box, q=1, num_restarts=len(self.current),
                batch_initial_conditions=self.current.unsqueeze(1), return_best_only=False,
                gen_candidates=gen_candidates_torch,
                options={"optimizer_options": {"lr": s.lr},
                         "stopping_criterion_options": {"maxiter": s.steps_per_round}})
        z = z.detach().squeeze(1)
        moved = (z - self.current).norm(dim=-1)
        self.current = z.clone()
        info = {"acq_seconds": time.perf_counter() - t0, "mean_step": float(moved.mean()),
                "mean_target": float(values.mean()) if torch.is_tensor(values) else math.nan,
                "restarts": self.restarts}
        return z, info

"""Bayesian optimization in a VAE's latent space: exact GP, qLogEI or Thompson, trust region.

Each iteration:

1. **Training set.** Latents with a known finite score (the encoded initial molecules,
   then every proposal whose molecule was scored or looked up). Above ``max_train``
   points it is subsampled: the best half plus a seeded random draw of the rest, so
   memory and time stay bounded however long the search runs.
2. **GP.** A ``SingleTaskGP`` of :mod:`chemvae.search.gp`: hyperparameters fitted on a
   subset of ``fit_points`` (best plus random), warm-started from the previous iteration,
   then the GP conditioned on the whole training set.
   A failed fit is retried from fresh hyperparameters; a second failure falls back to
   random proposals in the trust region with a :class:`~vaecore.errors.SearchWarning`.
3. **Proposals** (:mod:`chemvae.search.acquisition`). ``qLogExpectedImprovement``
   (default) maximized with ``optimize_acqf`` for a joint batch of ``q`` points, or
   Thompson sampling (``MaxPosteriorSampling`` over TuRBO's perturbed Sobol candidates),
   always inside the trust region of :mod:`chemvae.search.trust_region`. With
   ``hedge_length``, a second region of another size around the same incumbent proposes
   the second half of the batch. The incumbent is the best point whose latent decodes
   to a valid molecule: an encoded initial molecule whose latent the decoder turns into
   an invalid string is data for the GP but never the centre. With
   ``restart="elsewhere"`` the centre leaves the regions in which a trust region
   collapsed (:meth:`BayesOpt.center`).

With ``head_mean``, the GP's prior mean is the VAE's property head
(:class:`~chemvae.search.surrogate.SurrogateMean`) instead of a constant.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gpytorch
import numpy as np
import torch
from botorch.exceptions.warnings import BotorchWarning, OptimizationWarning
from botorch.models import SingleTaskGP
from scipy.stats import chi2
from torch import Tensor

from chemvae.search.acquisition import check_box, logei_batch, thompson_batch, uniform_batch
from chemvae.search.bo_settings import BOSettings
from chemvae.search.gp import conditioned_gp, fit_hyperparameters, lengthscales, subsample
from chemvae.search.oracle import Evaluation
from chemvae.search.surrogate import HeadSurrogate, frozen
from chemvae.search.trust_region import TrustRegion
from vaecore.errors import InputDataError, SearchWarning, integer_at_least


class BayesOpt:
    """Trust-region Bayesian optimization over latents (the ``bo`` method).

    Args:
        box: Search box `[2, d]` (float64, on the device the search runs on).
        batch_size: Proposals per iteration ``q``.
        settings: :class:`BOSettings`.
        seed: Seed of the subsampling generator and of the Sobol / QMC streams.
        prior_loc, prior_scale: Mean and std `[d]` of the prior (default: standard normal),
            for the radial bound of ``settings.radius_quantile``.
        head: The property head's estimate of the objective, the GP's prior mean when
            ``settings.head_mean`` (required then, ignored otherwise).

    Raises:
        InputDataError: ``box`` is not a search box (see
            :func:`~chemvae.search.acquisition.check_box`), ``batch_size`` is not an integer
            >= 1, or the settings cannot propose ``batch_size`` points (Thompson sampling
            from fewer candidates, a hedge region without room in the batch).
    """

    name = "bo"
    uses_init = True
    uses_decodable = True  # the loop tells initialize() which initial latents decode to a valid molecule

    def __init__(self, box: Tensor, batch_size: int, settings: BOSettings = BOSettings(), seed: int = 0,
                 prior_loc: Tensor | None = None, prior_scale: Tensor | None = None,
                 head: HeadSurrogate | None = None) -> None:
        if settings.head_mean and head is None:
            raise InputDataError("BOSettings.head_mean needs the property head's surrogate (head=...)")
        batch_size = integer_at_least("batch_size", batch_size, 1)
        if settings.acquisition == "ts" and settings.ts_candidates < batch_size:  # failed every iteration
            raise InputDataError(f"BOSettings.ts_candidates ({settings.ts_candidates}) must be at least batch_size "
                                 f"({batch_size}): Thompson sampling picks the batch among the candidates")
        self.head = head if settings.head_mean else None
        self.box = check_box(box)
        d = box.shape[-1]
        self.prior_loc = box.new_zeros(d) if prior_loc is None else prior_loc.to(box)
        self.prior_scale = box.new_ones(d) if prior_scale is None else prior_scale.to(box)
        self.radius = (math.inf if settings.radius_quantile is None
                       else math.sqrt(float(chi2.ppf(settings.radius_quantile, d))))
        self.q = batch_size
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.x = box.new_zeros(0, d)
        self.y = box.new_zeros(0)
        self.decodable = torch.zeros(0, dtype=torch.bool, device=box.device)  # see initialize()
        # (initial length, smallest length, proposals per batch) of each trust region: the main
        # one proposes the whole batch, or its first half when a hedge region takes the second.
        regions = [(settings.length_init, settings.length_min, batch_size)]
        if settings.hedge_length is not None:
            if batch_size < 2:
                raise InputDataError(f"hedge_length needs batch_size >= 2, got {batch_size}")
            hedge_q = batch_size // 2 if settings.hedge_points is None else settings.hedge_points
            if not 1 <= hedge_q < batch_size:
                raise InputDataError(f"hedge_points must satisfy 1 <= hedge_points < batch_size ({batch_size}), "
                                     f"got {hedge_q}")
            hedge_min = settings.length_min * settings.hedge_length / settings.length_init
            regions = [(settings.length_init, settings.length_min, batch_size - hedge_q),
                       (settings.hedge_length, hedge_min, hedge_q)]
        self.regions = [
            TrustRegion(d, q, length=length, length_init=length, length_min=length_min,
                        length_max=settings.length_max, success_tolerance=settings.success_tolerance,
                        failure_tolerance=settings.failure_tolerance)
            for length, length_min, q in regions
        ]
        self.warm: dict[str, Tensor] | None = None
        self.fallbacks = 0
        # restart="elsewhere": regions `[k, 2, d]` a trust region collapsed in, and the ARD
        # lengthscales of the last fit, which shaped the region being left.
        self.taboo = box.new_zeros(0, 2, d)
        self.lengthscales: Tensor | None = None

    @property
    def tr(self) -> TrustRegion:
        """The main trust region (the only one without ``hedge_length``)."""
        return self.regions[0]

    # ------------------------------------------------------------------ data
    def initialize(self, z: Tensor, scores: Tensor, decodable: Tensor | None = None) -> None:
        """Add data: latents `[n, d]`, finite scores `[n]`, and flags `[n]` (default: all true).

        ``decodable`` says whether a latent decodes to a valid molecule. Every scored
        proposal does; the latent of an encoded initial molecule may not. Only such points
        can be the incumbent that the trust region centres on: around a latent that
        decodes to an invalid string, the proposals may all decode to that string.
        The latent need not decode to the molecule its score belongs to: with a decoder
        that reconstructs a third of its inputs, that would rule out the best initial
        molecules, whose latents mostly decode to valid neighbours of similar score.
        """
        if self.head is not None and not len(self.x):  # the head is standardized on the initial latents
            self.head.standardize_on(z)
        if decodable is None:
            decodable = torch.ones(len(z), dtype=torch.bool)
        if not len(z) == len(scores) == len(decodable):
            raise InputDataError(f"initialize needs one score and one decodable flag per latent, got "
                                 f"{len(z)} latents, {len(scores)} scores, {len(decodable)} flags")
        self.x = torch.cat([self.x, z.to(self.box)])
        self.y = torch.cat([self.y, scores.to(self.box)])
        self.decodable = torch.cat([self.decodable, decodable.to(self.decodable)])

    def _eligible(self) -> Tensor:
        """Points `[n]` that may be the centre: decodable ones (every point if none is)."""
        return self.decodable if bool(self.decodable.any()) else torch.ones_like(self.decodable)

    def _best(self, among: Tensor) -> int:
        """Index of the best point among those flagged in ``among`` `[n]`."""
        return int(self.y.masked_fill(~among, -math.inf).argmax())

    def incumbent(self) -> int | None:
        """Index of the best decodable point (the best point if none is); ``None`` without data."""
        return self._best(self._eligible()) if len(self.y) else None

    def center(self) -> int | None:
        """Index of the trust regions' centre; ``None`` without data.

        The incumbent, unless ``restart="elsewhere"`` has made its neighbourhood taboo: then
        the best decodable point outside every taboo region (the incumbent if none is).
        That may be the same molecule at another latent (the search keeps the latent of
        every proposal, duplicates included): in four QED runs every restart landed on
        one. Ruling such points out as well was tried and did not help (BENCHMARKS.md).
        """
        best = self.incumbent()
        if best is None or not len(self.taboo):
            return best
        x = self.x.unsqueeze(0)
        inside = ((x >= self.taboo[:, :1]) & (x <= self.taboo[:, 1:])).all(-1).any(0)
        allowed = self._eligible() & ~inside
        return self._best(allowed) if bool(allowed.any()) else best

    def observe(self, z: Tensor, evaluations: Sequence[Evaluation]) -> None:
        """Add proposals with a known score; update the trust region with the new ones."""
        center = self.center()
        reference = -math.inf if center is None else float(self.y[center])  # what a batch must beat
        restarts = [region.restarts for region in self.regions]
        keep = [i for i, ev in enumerate(evaluations) if ev.ok]
        if keep:
            self.initialize(z[keep], torch.tensor([evaluations[i].score for i in keep], dtype=torch.float64))
        start = 0
        for region in self.regions:  # each region learns from the proposals it made
            part, start = evaluations[start:start + region.batch_size], start + region.batch_size
            new_scores = [ev.score for ev in part if ev.new and ev.ok]
            only_duplicates = bool(part) and all(ev.status == "duplicate" for ev in part)
            region.update(max(new_scores, default=-math.inf), reference, only_duplicates=only_duplicates)
        if self.settings.restart == "elsewhere" and center is not None:
            for region, before in zip(self.regions, restarts):
                if region.restarts > before:  # the region it collapsed in, at its initial size
                    left = region.bounds(self.x[center], self.box, self.lengthscales, length=region.length_init)
                    self.taboo = torch.cat([self.taboo, left.unsqueeze(0)])

    # ------------------------------------------------------------------ proposals
    def propose(self) -> tuple[Tensor, dict[str, Any]]:
        """The next batch of latents `[q, d]` and diagnostics for the iteration log."""
        z, info = self._propose()
        z, info["pulled_in"] = self.into_bulk(z)
        return z, info

    def into_bulk(self, z: Tensor) -> tuple[Tensor, int]:
        """Pull latents `[n, d]` beyond the prior-radius bound back onto it; also return how many."""
        u = (z - self.prior_loc) / self.prior_scale
        r = u.norm(dim=-1, keepdim=True)
        factor = (self.radius / r).clamp(max=1.0)
        return self.prior_loc + u * factor * self.prior_scale, int((factor < 1).sum())

    def _propose(self) -> tuple[Tensor, dict[str, Any]]:
        s = self.settings
        info: dict[str, Any] = {"tr_length": self.tr.length, "tr_restarts": self.tr.restarts,
                                "n_data": len(self.y), "fallback": False}
        if len(self.regions) > 1:
            info.update(tr_length_hedge=self.regions[1].length, tr_restarts_hedge=self.regions[1].restarts)
        if s.restart == "elsewhere":
            info["taboo"] = len(self.taboo)
        if len(self.y) < 2:  # nothing to fit a GP to yet
            info["fallback"] = True
            return uniform_batch(self.box, self.q), info
        idx = subsample(self.y, s.max_train, self.rng)
        x, y = self.x[idx], self.y[idx]
        info["n_train"] = len(y)
        center_idx = self.center()
        center = self.x[center_idx]
        # qLogEI's improvement is over the best score, or over the centre's once a restart
        # has moved it elsewhere: there the overall best is out of reach, every candidate's
        # EI is vanishingly small, and qLogEI would chase variance instead of the region's
        # best (TuRBO restarts with the region's own data for the same reason).
        best_f = y.max() if center_idx == self.incumbent() else self.y[center_idx]
        t0 = time.perf_counter()
        # Exact Cholesky up to the largest training set: gpytorch switches to CG/Lanczos
        # above 800 points by default, which is slower here and not deterministic.
        head_frozen = contextlib.nullcontext() if self.head is None else frozen(self.head.model)
        with gpytorch.settings.max_cholesky_size(max(s.max_train, s.ts_candidates) + 1), head_frozen:
            gp = self._fit(x, y, info)
            info["fit_seconds"] = time.perf_counter() - t0
            if gp is not None and self.head is not None:  # how much the fit trusts the head (0: not at all)
                info["head_weight"] = float(gp.mean_module.weight.detach())
            self.lengthscales = None if gp is None else lengthscales(gp)
            t1 = time.perf_counter()
            parts: list[Tensor] = []
            for region in self.regions:
                q = region.batch_size
                bounds = region.bounds(center, self.box, self.lengthscales) if s.trust_region else self.box
                if gp is None:
                    parts.append(uniform_batch(bounds, q))
                    continue
                pending = torch.cat(parts) if parts else None
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", OptimizationWarning)
                        warnings.simplefilter("ignore", BotorchWarning)
                        if s.acquisition == "ts":
                            parts.append(thompson_batch(gp, bounds, center, q, n_candidates=s.ts_candidates,
                                                        rng=self.rng))
                        else:
                            parts.append(logei_batch(gp, bounds, best_f, q, pending=pending,
                                                     mc_samples=s.mc_samples, num_restarts=s.num_restarts,
                                                     raw_samples=s.raw_samples, maxiter=s.acq_maxiter,
                                                     rng=self.rng))
                except Exception as err:  # noqa: BLE001 - a numerical failure must not end the search
                    warnings.warn(f"acquisition optimization failed ({type(err).__name__}: {err}); "
                                  "proposing random points in the trust region", SearchWarning, stacklevel=2)
                    info["fallback"] = True
                    self.fallbacks += 1
                    parts.append(uniform_batch(bounds, q))
            info["acq_seconds"] = time.perf_counter() - t1
        return torch.cat(parts).detach(), info

    def _fit(self, x: Tensor, y: Tensor, info: dict[str, Any]) -> SingleTaskGP | None:
        """The GP conditioned on ``x, y``; ``None`` after two failed fits."""
        fit_idx = subsample(y, self.settings.fit_points, self.rng)
        # First from the previous fit's hyperparameters, then once from BoTorch's defaults.
        for attempt, warm in enumerate((self.warm, None)):
            try:
                params = fit_hyperparameters(x[fit_idx], y[fit_idx], self.box, warm_start=warm,
                                             maxiter=self.settings.fit_maxiter, head=self.head)
                self.warm = params
                return conditioned_gp(x, y, self.box, params, self.head)
            except Exception as err:  # noqa: BLE001 - retried, then a counted fallback
                info[f"fit_error_{attempt}"] = f"{type(err).__name__}: {err}"[:200]
        self.warm = None
        self.fallbacks += 1
        info["fallback"] = True
        warnings.warn(f"GP fit failed twice ({info.get('fit_error_1')}); proposing random points "
                      "in the trust region this iteration", SearchWarning, stacklevel=3)
        return None

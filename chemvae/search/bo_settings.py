"""Settings of Bayesian optimization in the latent space (:class:`~chemvae.search.bo.BayesOpt`).

Every setting is checked when the settings are made, before a search begins: one that
cannot propose a batch would otherwise fail inside BoTorch at every iteration, and the
search fall back to random proposals throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaecore.errors import InputDataError, integer_at_least

ACQUISITIONS = ("logei", "ts")
RESTARTS = ("incumbent", "elsewhere")


@dataclass(frozen=True)
class BOSettings:
    """Settings of :class:`~chemvae.search.bo.BayesOpt` (defaults meet 10 s per iteration at n = 1000, q = 10).

    Attributes:
        acquisition: ``logei`` (qLogExpectedImprovement) or ``ts`` (Thompson sampling).
        max_train: Most points the GP is conditioned on (best half plus random rest).
        fit_points: Points the hyperparameters are fitted on each iteration.
        fit_maxiter: L-BFGS iterations of a hyperparameter fit.
        num_restarts, raw_samples, acq_maxiter: ``optimize_acqf`` settings.
        mc_samples: Quasi-MC samples of qLogEI.
        ts_candidates: Candidate points for Thompson sampling.
        length_init, length_min, length_max, success_tolerance, failure_tolerance:
            Trust-region settings (see :class:`~chemvae.search.trust_region.TrustRegion`).
            Lengths are fractions of the search box (6 prior stds wide by default), so
            TuRBO's 0.8 is a region 4.8 stds wide per dimension: it finds the extreme
            molecules penalized logP rewards, but its first proposals decode to molecules
            unrelated to the incumbent. Near an objective's ceiling (QED) a region of 0.1
            with ``length_min`` 1/128 finds better molecules sooner (BENCHMARKS.md). With
            the default 0.8, ``length_min`` is 1/16 rather than TuRBO's 1/128: the decoder is
            piecewise constant, and in a much smaller region every proposal decodes to the
            incumbent, so the search would only count failures until the restart.
        hedge_length: If set, a second trust region around the same incumbent, started at
            this length, proposes the second half of every batch (pending on the first
            half, so qLogEI does not repeat it), and grows or shrinks on its own results.
            Its ``length_min`` keeps the main region's ratio to ``length_init``. Why: a
            small region finds the best molecules near good known ones sooner (QED), a
            large one the extreme molecules far from them (penalized logP), and no single
            length suits both. On the CPU models of BENCHMARKS.md a 0.1 hedge helped
            penalized logP on the tuning seeds, but not on the SELFIES model's protocol
            seeds, and not QED against 0.1 alone: off by default.
        hedge_points: Proposals of the hedge region per batch (default: half the batch,
            rounded down); the main region proposes the rest. One of ten (Thompson, 0.8,
            head mean, restarts elsewhere) kept BO above gradient ascent at every checkpoint
            on penalized logP (24 seeds); on QED level at 50 calls, ahead after (60 seeds).
        trust_region: ``False`` searches the whole box (plain BO, for ablations).
        radius_quantile: If set, proposals farther from the prior's mode than this
            quantile of the prior's radius (``sqrt`` of a chi-squared with ``d`` degrees of
            freedom) are pulled back radially onto that sphere. A box's corners lie far
            outside the prior's typical set in high dimension (a corner of ``[-2, 2]^56`` is
            at radius 15, the typical set at 7.5), where the decoder emits more invalid
            strings; but off by default, because there it also finds the extreme molecules
            that objectives such as penalized logP reward (on the fixture model: mean top-1
            5.4 without, 3.9 with the 0.999 bound, 100 calls, 4 seeds vs 2).
        head_mean: The GP's prior mean is ``a * s(z) + b``, with ``s`` the property head's
            estimate of the objective (standardized over the initial latents) and ``a, b``
            fitted with the other hyperparameters, instead of a constant. Only for
            objectives with a head surrogate (those gradient ascent accepts). Why: far from
            its data a constant-mean GP predicts the mean, so early batches explore blindly
            where gradient ascent already climbs the head. On penalized logP it did best with
            ``acquisition="ts"``, whose candidates change ~20 coordinates of the incumbent for
            the head to rank, where qLogEI moves all of them (one KL-0.2 SMILES model, after 50
            calls: 4.83 with Thompson over 5 seeds, 3.53 with qLogEI over 3); on QED neither
            beat gradient ascent at every checkpoint (BENCHMARKS.md). Off by default.
        restart: Where a trust region that shrank below ``length_min`` starts again.
            ``"incumbent"``: around the same best point. ``"elsewhere"``: the region it
            collapsed in (at its initial size) becomes taboo, and the centre moves to the
            best decodable point outside every taboo region (back to the incumbent if none
            is left), as TuRBO restarts away from an exhausted local optimum; trust-region
            successes, and qLogEI's improvements, are then counted against the centre's
            score, not the overall best.
            Why: near an objective's ceiling (QED) one run restarted 12 times around the
            same molecule in 500 calls without finding a better one. On one KL-0.2 SMILES
            model it lifted QED (qLogEI, length 0.1, head mean) above gradient ascent at every
            checkpoint, by about 1e-4 over 5 seeds; on penalized logP (Thompson, 0.8, head
            mean) it lowered the mean at 500 calls (10.7 against 11.4) (BENCHMARKS.md). Off
            by default.
    """

    acquisition: str = "logei"
    max_train: int = 1000
    fit_points: int = 256
    fit_maxiter: int = 50
    num_restarts: int = 4
    raw_samples: int = 128
    acq_maxiter: int = 40
    mc_samples: int = 128
    ts_candidates: int = 2000
    length_init: float = 0.8
    length_min: float = 0.5**4
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int | None = None
    hedge_length: float | None = None
    hedge_points: int | None = None
    trust_region: bool = True
    radius_quantile: float | None = None
    head_mean: bool = False
    restart: str = "incumbent"

    def __post_init__(self) -> None:
        if self.acquisition not in ACQUISITIONS:
            raise InputDataError(f"unknown acquisition {self.acquisition!r}; choose from {ACQUISITIONS}")
        if self.restart not in RESTARTS:
            raise InputDataError(f"unknown restart {self.restart!r}; choose from {RESTARTS}")
        for name in ("max_train", "fit_points", "fit_maxiter", "num_restarts", "raw_samples", "acq_maxiter",
                     "mc_samples", "ts_candidates", "success_tolerance"):
            integer_at_least(f"BOSettings.{name}", getattr(self, name), 1)
        for name in ("failure_tolerance", "hedge_points"):  # None: derived from d and q
            if getattr(self, name) is not None:
                integer_at_least(f"BOSettings.{name}", getattr(self, name), 1)
        if self.radius_quantile is not None and not 0 < self.radius_quantile <= 1:
            # chi2.ppf outside (0, 1] is NaN, which silently disabled the bound.
            raise InputDataError(f"radius_quantile must satisfy 0 < radius_quantile <= 1, got {self.radius_quantile}")
        if not 0 < self.length_min < self.length_init <= self.length_max:
            raise InputDataError("trust-region lengths must satisfy 0 < length_min < length_init <= length_max, "
                                 f"got {self.length_min}, {self.length_init}, {self.length_max}")
        if self.hedge_length is not None and not 0 < self.hedge_length <= self.length_max:
            raise InputDataError(f"hedge_length must satisfy 0 < hedge_length <= length_max ({self.length_max}), "
                                 f"got {self.hedge_length}")
        if self.hedge_points is not None and self.hedge_length is None:
            raise InputDataError(f"hedge_points ({self.hedge_points}) needs a hedge region: "
                                 "set hedge_length (--tr-hedge) too")
        if self.raw_samples < self.num_restarts:  # BoTorch failed every iteration; BO fell back to random
            raise InputDataError(f"BOSettings.raw_samples ({self.raw_samples}) must be at least num_restarts "
                                 f"({self.num_restarts}): the restarts are picked among the raw samples")

"""Batches of proposals from a fitted GP inside a box: qLogEI, Thompson sampling, uniform.

Each function returns `[q, d]` latents inside ``bounds`` `[2, d]`, in the bounds' dtype
and device; :class:`~chemvae.search.bo.BayesOpt` calls them once per trust region.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition import qLogExpectedImprovement
from botorch.generation import MaxPosteriorSampling
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor
from torch.quasirandom import SobolEngine

from vaecore.errors import InputDataError

# TuRBO perturbs about this many coordinates of the centre per Thompson candidate:
# perturbing all d works worse in high dimension.
PERTURBED_COORDINATES = 20.0


def draw_seed(rng: np.random.Generator) -> int:
    """A seed for a torch or BoTorch random stream, drawn from ``rng``."""
    return int(rng.integers(2**31 - 1))


def logei_batch(gp: SingleTaskGP, bounds: Tensor, best_f: Tensor | float, q: int, *,
                pending: Tensor | None = None, mc_samples: int = 128, num_restarts: int = 4,
                raw_samples: int = 128, maxiter: int = 40,
                rng: np.random.Generator | None = None) -> Tensor:
    """``q`` points `[q, d]` maximizing qLogEI over ``best_f`` jointly with ``pending`` `[p, d]`.

    Args:
        mc_samples: Quasi-MC samples of the acquisition.
        num_restarts, raw_samples, maxiter: ``optimize_acqf`` settings.
        rng: Draws the seeds of the QMC sampler and of the raw samples (default: unseeded);
            ``optimize_acqf`` also picks starting points with torch's global generator.
    """
    rng = np.random.default_rng() if rng is None else rng
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=draw_seed(rng))
    acq = qLogExpectedImprovement(gp, best_f=best_f, sampler=sampler, X_pending=pending)
    z, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=num_restarts, raw_samples=raw_samples,
                         options={"maxiter": maxiter, "batch_limit": num_restarts, "seed": draw_seed(rng)})
    return z


def thompson_batch(gp: SingleTaskGP, bounds: Tensor, center: Tensor, q: int, *,
                   n_candidates: int = 2000, rng: np.random.Generator | None = None) -> Tensor:
    """TuRBO's Thompson step: perturb a few coordinates of ``center`` `[d]`, sample, take argmaxes.

    Candidates copy the centre and replace about :data:`PERTURBED_COORDINATES` of its
    coordinates (at least one) with Sobol points in ``bounds``. Each of the ``q`` points is
    the argmax of its own joint posterior sample over the `[n_candidates, d]` candidates,
    without replacement. ``rng`` draws the Sobol seed; the coordinate mask uses torch's
    global generator.
    """
    d = center.shape[-1]
    sobol = SobolEngine(d, scramble=True, seed=draw_seed(np.random.default_rng() if rng is None else rng))
    pert = bounds[0] + (bounds[1] - bounds[0]) * sobol.draw(n_candidates).to(bounds)
    mask = torch.rand(n_candidates, d, device=bounds.device, dtype=bounds.dtype) <= min(PERTURBED_COORDINATES / d, 1.0)
    empty = mask.sum(1) == 0
    mask[empty, torch.randint(0, d, (int(empty.sum()),), device=bounds.device)] = True
    cand = center.expand(n_candidates, d).clone()
    cand[mask] = pert[mask]
    return MaxPosteriorSampling(gp, replacement=False)(cand, num_samples=q)


def uniform_batch(bounds: Tensor, q: int) -> Tensor:
    """``q`` uniform points `[q, d]` in ``bounds`` (the fallback when no GP is available)."""
    u = torch.rand(q, bounds.shape[-1], dtype=bounds.dtype, device=bounds.device)
    return bounds[0] + (bounds[1] - bounds[0]) * u


def check_box(box: Tensor) -> Tensor:
    """``box`` as given, once checked to be a search box: `[2, d]`, finite, lower below upper.

    Raises:
        InputDataError: Another shape, or a dimension whose bounds are not finite with
            lower < upper (an inverted or empty box proposed points outside it, or none
            but its one corner), naming the first such dimension.
    """
    if not isinstance(box, Tensor) or box.dim() != 2 or box.shape[0] != 2 or not box.shape[1] or \
            not box.is_floating_point():
        shape = list(box.shape) if isinstance(box, Tensor) else type(box).__name__
        raise InputDataError(f"box must be a float tensor [2, d] of lower and upper bounds, got {shape}")
    bad = (~(torch.isfinite(box).all(0) & (box[0] < box[1]))).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise InputDataError(f"box dimension {i} has lower {box[0, i].item():g} and upper {box[1, i].item():g}: "
                             f"bounds must be finite with lower < upper ({len(bad)} dimension(s) are not)")
    return box

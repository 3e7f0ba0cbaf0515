"""Proposal batches from a fitted GP: qLogEI, Thompson sampling, uniform."""

import numpy as np
import pytest
import torch

from chemvae.search.acquisition import check_box, logei_batch, thompson_batch, uniform_batch
from chemvae.search.gp import conditioned_gp, fit_hyperparameters
from vaecore.errors import InputDataError


@pytest.fixture(scope="module")
def gp_and_bounds():
    g = torch.Generator().manual_seed(1)
    x = 4 * torch.rand(30, 4, generator=g, dtype=torch.float64) - 2
    y = -((x - 1.0) ** 2).sum(-1)  # best at (1, 1, 1, 1)
    box = torch.tensor([[-2.0] * 4, [2.0] * 4], dtype=torch.float64)
    gp = conditioned_gp(x, y, box, fit_hyperparameters(x, y, box, warm_start=None, maxiter=50))
    bounds = torch.tensor([[0.0] * 4, [1.5] * 4], dtype=torch.float64)
    return gp, bounds, y


def _inside(z: torch.Tensor, bounds: torch.Tensor) -> bool:
    return bool(((z >= bounds[0] - 1e-9) & (z <= bounds[1] + 1e-9)).all())


def test_logei_batch_is_inside_the_bounds_and_seeded(gp_and_bounds):
    gp, bounds, y = gp_and_bounds
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # optimize_acqf picks its starting points with torch's global generator
        runs.append(logei_batch(gp, bounds, y.max(), 3, mc_samples=32, raw_samples=32, maxiter=10,
                                rng=np.random.default_rng(5)))
    assert runs[0].shape == (3, 4) and runs[0].dtype == torch.float64 and _inside(runs[0], bounds)
    assert torch.equal(runs[0], runs[1])
    # points near the optimum at (1, 1, 1, 1), not spread over the bounds
    assert float((runs[0] - 1.0).norm(dim=-1).min()) < 0.5


def test_logei_batch_avoids_pending_points(gp_and_bounds):
    gp, bounds, y = gp_and_bounds
    torch.manual_seed(0)
    first = logei_batch(gp, bounds, y.max(), 1, mc_samples=32, raw_samples=32, maxiter=20,
                        rng=np.random.default_rng(0))
    second = logei_batch(gp, bounds, y.max(), 1, pending=first, mc_samples=32, raw_samples=32, maxiter=20,
                         rng=np.random.default_rng(0))
    assert float((first - second).norm()) > 1e-3


def test_thompson_batch_changes_few_coordinates_of_the_centre():
    d = 40  # more coordinates than TuRBO perturbs at once
    center = torch.zeros(d, dtype=torch.float64)
    bounds = torch.stack([center - 1, center + 1])
    x = torch.randn(25, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = -x[:, 0] ** 2
    box = torch.stack([center - 3, center + 3])
    gp = conditioned_gp(x, y, box, fit_hyperparameters(x, y, box, warm_start=None, maxiter=20))
    torch.manual_seed(0)
    z = thompson_batch(gp, bounds, center, 5, n_candidates=300, rng=np.random.default_rng(0))
    assert z.shape == (5, d) and _inside(z, bounds)
    changed = (z != center).sum(-1)
    assert bool((changed >= 1).all()) and float(changed.float().mean()) < 0.8 * d
    assert len({tuple(row.tolist()) for row in z}) == 5  # without replacement


def test_uniform_batch_fills_the_bounds(gp_and_bounds):
    _, bounds, _ = gp_and_bounds
    torch.manual_seed(0)
    z = uniform_batch(bounds, 500)
    assert z.shape == (500, 4) and _inside(z, bounds)
    assert torch.allclose(z.mean(0), bounds.mean(0), atol=0.1)


@pytest.mark.parametrize(("box", "message"), [
    (torch.zeros(3), r"float tensor \[2, d\] of lower and upper bounds, got \[3\]"),
    (torch.zeros(3, 2), r"got \[3, 2\]"),
    (torch.zeros(2, 0), r"got \[2, 0\]"),
    (torch.ones(2, 3, dtype=torch.int64), r"got \[2, 3\]"),
    ([[-1.0], [1.0]], "got list"),
    (torch.tensor([[-1.0, 1.0], [1.0, -1.0]]), "box dimension 1 has lower 1 and upper -1: .* lower < upper"),
    (torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), "box dimension 1 has lower 0 and upper 0"),  # empty
    (torch.tensor([[-1.0, -1.0], [float("nan"), float("inf")]]), r"dimension 0 .* \(2 dimension\(s\) are not\)"),
])
def test_a_box_that_is_no_search_box_is_refused_by_name(box, message):
    # BayesOpt and GradientAscent took any tensor: an inverted or empty box proposed points
    # outside it, or its one corner, without a word.
    with pytest.raises(InputDataError, match=message):
        check_box(box)
    box = torch.tensor([[-1.0, -2.0], [1.0, 2.0]], dtype=torch.float64)
    assert check_box(box) is box

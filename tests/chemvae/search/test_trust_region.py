"""TuRBO trust region: growth, shrinkage, restart, geometry."""

import math

import pytest
import torch

from chemvae.search.trust_region import TrustRegion, search_bounds


def test_default_failure_tolerance_follows_turbo():
    assert TrustRegion(dim=56, batch_size=10).failure_tolerance == 6
    assert TrustRegion(dim=2, batch_size=10).failure_tolerance == 1


def test_successes_grow_and_failures_shrink_then_restart():
    tr = TrustRegion(dim=4, batch_size=2, success_tolerance=2, failure_tolerance=2)
    tr.update(1.0, 0.0)
    assert tr.length == 0.8
    tr.update(2.0, 1.0)
    assert tr.length == 1.6
    tr.update(3.0, 2.0), tr.update(4.0, 3.0)
    assert tr.length == 1.6  # capped at length_max
    tr.update(4.0, 4.0)  # no improvement
    assert tr.success_counter == 0 and tr.failure_counter == 1
    tr.update(-math.inf, 4.0)  # a batch with no new molecule is a failure too
    assert tr.length == 0.8
    while tr.restarts == 0:
        tr.update(0.0, 4.0)
    assert tr.length == tr.length_init


def test_a_batch_of_only_duplicates_grows_the_region():
    tr = TrustRegion(dim=4, batch_size=2, length=0.1, length_init=0.1, failure_tolerance=2)
    tr.update(-math.inf, 4.0)
    assert tr.failure_counter == 1
    tr.update(-math.inf, 4.0, only_duplicates=True)  # below the decoder's resolution
    assert tr.length == pytest.approx(0.2) and tr.failure_counter == 0 and tr.restarts == 0
    for _ in range(10):
        tr.update(-math.inf, 4.0, only_duplicates=True)
    assert tr.length == tr.length_max


def test_tiny_improvements_are_not_successes():
    tr = TrustRegion(dim=4, batch_size=2)
    tr.update(10.0 + 1e-6, 10.0)
    assert tr.failure_counter == 1


def test_without_an_incumbent_any_score_is_a_success():
    # BO with n_init=0, or every initial molecule failed: the reference is -inf.
    tr = TrustRegion(dim=4, batch_size=2, success_tolerance=1)
    tr.update(0.9, -math.inf)
    assert tr.length == 1.6 and tr.failure_counter == 0
    tr.update(-math.inf, -math.inf)  # still nothing scored: a failure
    assert tr.failure_counter == 1


def test_bounds_stay_in_the_box_and_follow_lengthscales():
    box = torch.tensor([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]])
    tr = TrustRegion(dim=3, batch_size=1, length=0.5)
    cube = tr.bounds(torch.tensor([0.0, 2.9, -2.9]), box)
    assert torch.all(cube[0] >= box[0]) and torch.all(cube[1] <= box[1])
    assert cube[1, 0] - cube[0, 0] == pytest.approx(3.0)  # 0.5 of a 6-wide box
    ard = tr.bounds(torch.zeros(3), box, lengthscales=torch.tensor([1.0, 2.0, 4.0]))
    widths = ard[1] - ard[0]
    assert widths[0] < widths[1] < widths[2]
    assert widths.prod() == pytest.approx(3.0**3, rel=1e-5)  # same volume as the cube


def test_search_box_is_the_prior_bulk_widened_to_the_data():
    loc, scale = torch.zeros(2), torch.ones(2)
    assert torch.equal(search_bounds(loc, scale, 3.0), torch.tensor([[-3.0, -3.0], [3.0, 3.0]]))
    wide = search_bounds(loc, scale, 3.0, torch.tensor([[4.0, 0.0], [0.0, -5.0]]))
    assert torch.equal(wide, torch.tensor([[-3.0, -5.0], [4.0, 3.0]]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "TrustRegion.batch_size must be an integer >= 1, got 0"),  # was a ZeroDivisionError
    ({"dim": 0}, "TrustRegion.dim must be an integer >= 1, got 0"),
    ({"success_tolerance": 0}, "TrustRegion.success_tolerance must be an integer >= 1, got 0"),
    ({"failure_tolerance": 0}, "TrustRegion.failure_tolerance must be an integer >= 1, got 0"),
    ({"length": float("nan")}, "got length nan"),
    ({"length": -1.0}, "got length -1.0"),
    ({"length_min": 2.0, "length_max": 1.0}, "length_min 2.0, length_max 1.0"),
    ({"improvement": -0.1}, "TrustRegion.improvement must be a finite number >= 0, got -0.1"),
])
def test_bad_trust_region_state_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrustRegion(**{"dim": 4, "batch_size": 2, **kwargs})

"""Tests for chemvae.search.random: prior draws, seeded, learning nothing."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from chemvae.search.oracle import Evaluation
from chemvae.search.random import RandomSearch
from vaecore.errors import InputDataError


def _prior(dtype: torch.dtype = torch.float32) -> Independent:
    loc = torch.tensor([3.0, -1.0, 0.0], dtype=dtype)
    return Independent(Normal(loc, torch.tensor([0.5, 2.0, 1.0], dtype=dtype)), 1)


def test_proposals_are_draws_from_the_prior() -> None:
    search = RandomSearch(_prior(torch.float64), batch_size=4000)
    torch.manual_seed(0)
    z, info = search.propose()
    assert z.shape == (4000, 3) and z.dtype == torch.float64 and info == {}
    torch.testing.assert_close(z.mean(0), torch.tensor([3.0, -1.0, 0.0], dtype=torch.float64), atol=0.1, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), atol=0.1, rtol=0)


def test_seeded_and_blind_to_results() -> None:
    search = RandomSearch(_prior(), batch_size=5)
    torch.manual_seed(1)
    first = search.propose()[0]
    # Initial data and scored batches change nothing: the same seed gives the same batch.
    search.initialize(torch.zeros(2, 3), torch.tensor([1.0, 2.0]))
    search.observe(first, [Evaluation(smiles="CCO", canonical="CCO", score=0.4, status="scored", new=True)] * 5)
    torch.manual_seed(1)
    torch.testing.assert_close(search.propose()[0], first)
    assert not RandomSearch.uses_init and not RandomSearch.uses_decodable


def test_a_batch_size_below_one_is_refused() -> None:
    for batch_size in (0, 1.5):  # 0 proposed empty batches forever
        with pytest.raises(InputDataError, match=f"batch_size must be an integer >= 1, got {batch_size}"):
            RandomSearch(_prior(), batch_size)

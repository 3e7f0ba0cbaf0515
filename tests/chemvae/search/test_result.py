"""SearchResult on a hand-written history: best molecules, best-so-far, summary."""

import math

import pytest
import torch

from chemvae.search.result import SearchResult, history_frame
from vaecore.errors import InputDataError

NAN = math.nan


def row(iteration, smiles, score, status, new, calls):
    return {"iteration": iteration, "method": "init" if iteration == 0 else "bo", "smiles": smiles,
            "canonical_smiles": None if status == "invalid_smiles" else smiles, "score": score,
            "valid": status != "invalid_smiles", "status": status, "new": new, "oracle_calls": calls,
            "seconds": float(iteration)}


@pytest.fixture
def result():
    rows = [
        row(0, "CCCC", 0.9, "scored", False, 0),  # the best initial molecule
        row(0, "CC", 0.1, "scored", False, 0),
        row(1, "CCCC", 0.9, "duplicate", False, 0),  # re-found: not a discovery
        row(1, "CCO", 0.5, "scored", True, 1),
        row(1, "C1CC", NAN, "invalid_smiles", False, 1),
        row(2, "CCN", NAN, "nan", True, 2),
        row(2, "CCS", 0.7, "scored", True, 3),
        row(2, "CCO", 0.5, "duplicate", False, 3),
    ]
    history = history_frame(rows)
    return SearchResult(history=history, method="bo", objective="toy", budget=3,
                        failures={"invalid_smiles": 1, "nan": 1}, wall_seconds=2.0,
                        latents=torch.zeros(len(rows), 2))


def test_best_counts_only_molecules_the_search_scored(result):
    best = result.best(5)
    assert best["smiles"].tolist() == ["CCS", "CCO"]
    assert best["rank"].tolist() == [1, 2] and best["oracle_calls"].tolist() == [3, 1]
    assert result.best(1, include_init=True)["smiles"].tolist() == ["CCCC"]
    assert result.best(0).empty and list(result.best(0).columns) == list(best.columns)
    for bad in (-1, 2.5, True):  # best(-1) gave every molecule but the last (pandas' head(-1))
        with pytest.raises(InputDataError, match=f"k must be an integer >= 0, got {bad!r}"):
            result.best(bad)


def test_best_so_far_follows_objective_calls(result):
    trace = result.best_so_far()
    assert trace["oracle_calls"].tolist() == [1, 2, 3]
    assert trace["best_score"].tolist() == [0.5, 0.5, 0.7]
    assert result.best_at((1, 3, 50)) == {1: 0.5, 3: 0.7, 50: pytest.approx(NAN, nan_ok=True)}
    # 0 and -5 read NaN, 2.5 an IndexError, a bare 10 a TypeError.
    for bad, message in [((0,), "got 0"), ((-5,), "got -5"), ((2.5,), "got 2.5"), (10, "sequence of call counts, got 10")]:
        with pytest.raises(InputDataError, match=message):
            result.best_at(bad)


def test_summary_is_strict_json(result):
    summary = result.summary()
    assert summary["best_score"] == 0.7 and summary["best_smiles"] == "CCS"
    assert summary["best_init_score"] == 0.9 and summary["n_init"] == 2
    assert summary["oracle_calls"] == 3 and summary["proposed"] == 6
    assert summary["valid_fraction"] == pytest.approx(5 / 6)
    assert summary["duplicates"] == 2 and summary["best_at"]["50"] is None

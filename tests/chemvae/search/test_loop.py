"""The shared search loop: history, budget, failures, random search, arguments."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from chemvae import objectives
from chemvae.search import SearchResult, optimize
from chemvae.search.result import HISTORY_COLUMNS
from vaecore.errors import InputDataError, InputDataWarning, ObjectiveError, SearchWarning


def test_random_search_history_budget_and_best(tiny_model):
    result = optimize(tiny_model, "qed", method="random", budget=25, batch_size=10, seed=1)
    assert result.objective == "qed"
    assert isinstance(result, SearchResult)
    history = result.history
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert (history["iteration"] > 0).all() and (history["method"] == "random").all()  # no initial data
    assert result.oracle_calls == 25 and history["oracle_calls"].max() == 25
    assert history["seconds"].is_monotonic_increasing
    assert len(result.latents) == len(history)
    best = result.best(5)
    assert best["smiles"].is_unique and best["score"].is_monotonic_decreasing
    assert best["score"].iloc[0] == pytest.approx(history["score"].max())
    trace = result.best_so_far()
    assert len(trace) == 25 and trace["best_score"].is_monotonic_increasing
    summary = result.summary()
    assert summary["oracle_calls"] == 25 and 0 < summary["valid_fraction"] <= 1
    assert summary["failures"].get("invalid_smiles", 0) == int((~history["valid"]).sum())
    assert summary["best_at"]["50"] is None  # fewer calls than the checkpoint


def test_same_seed_same_history_for_random_and_gradient(tiny_model, low_qed_smiles):
    for method in ("random", "gradient"):
        a, b, c = (optimize(tiny_model, objectives.qed, method=method, budget=10, batch_size=5, n_init=24,
                            init_smiles=low_qed_smiles, seed=s) for s in (7, 7, 8))
        pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))
        if method == "random":  # gradient ascent from the same molecules is deterministic anyway
            assert not a.latents.equal(c.latents)


def test_the_callers_rng_is_left_alone(tiny_model):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    optimize(tiny_model, objectives.qed, method="random", budget=3, batch_size=3, seed=0)
    assert torch.equal(torch.rand(3), expected)


def crashy(smiles):
    """None, NaN, inf or an exception for some molecules, depending on the string length."""
    out = []
    for s in smiles:
        if len(s) % 4 == 0:
            raise ValueError(f"no score for {s}")
        out.append({1: None, 2: math.nan, 3: math.inf}.get(len(s) % 5, 0.1 * len(s)))
    return out


@pytest.mark.parametrize("method", ["random", "bo"])
def test_failing_objectives_are_counted_not_fatal(tiny_model, train_smiles, method, fast_bo):
    budget = 30 if method == "random" else 15
    with pytest.warns(SearchWarning, match=r"the objective raised for \d+ molecule\(s\); the first time for '.+': "
                                           r"ValueError: no score for"):
        result = optimize(tiny_model, crashy, method=method, budget=budget, batch_size=10, n_init=30,
                          init_smiles=train_smiles, seed=0, settings=fast_bo if method == "bo" else None)
    failures = result.failures
    if method == "random":
        assert {"none", "nan", "inf", "exception"} <= set(failures)
    else:
        assert set(failures) - {"invalid_smiles"}
    searched = result.searched
    for reason, count in failures.items():
        assert count == int((searched["status"] == reason).sum())
    assert result.oracle_calls == budget
    assert searched.loc[searched["status"] == "scored", "score"].map(math.isfinite).all()
    assert math.isfinite(result.summary()["best_score"])


def test_an_objective_that_scores_nothing_stops_the_search(tiny_model):
    def typo(smiles):
        return [undefined_name for _ in smiles]  # noqa: F821 - the user's bug under test

    with pytest.raises(ObjectiveError, match="no score for any of the first 20 molecules.*NameError"):
        optimize(tiny_model, typo, method="random", budget=200, batch_size=10, seed=0)


def test_the_model_may_be_its_path_and_anything_else_is_named(tmp_path):
    # The path, as molopt's --model takes it, ended in "AttributeError: 'str' object has no
    # attribute 'parameters'", and a module of another kind in "... has no attribute 'prior'".
    path = Path(__file__).resolve().parents[3] / "data" / "fixtures" / "chemvae_tiny"
    result = optimize(str(path), objectives.qed, method="random", budget=3, batch_size=3, seed=0)
    assert result.history["new"].sum() <= 3
    with pytest.raises(InputDataError, match=r"model must be a molecule VAE \(chemvae.load\(path\), or the path\), "
                                             r"not a Linear, which has no latent_dim, encode, decode, prior"):
        optimize(torch.nn.Linear(2, 2), objectives.qed, method="random", budget=3)


def test_arguments_are_checked(tiny_model, fast_bo):
    with pytest.raises(InputDataError, match="'annealing'"):
        optimize(tiny_model, objectives.qed, method="annealing")
    with pytest.raises(InputDataError, match="budget must be an integer >= 1, got 0"):
        optimize(tiny_model, objectives.qed, budget=0)
    with pytest.raises(InputDataError, match="prior_bound must be a finite number > 0, got nan"):
        optimize(tiny_model, objectives.qed, method="random", prior_bound=float("nan"))
    # max_stalled_rounds 0 stopped before the first objective call, with a warning only
    for bad in ({"seed": None}, {"seed": -1}, {"batch_size": 2.5}, {"n_init": True}, {"max_stalled_rounds": 0}):
        (name, value), = bad.items()
        with pytest.raises(InputDataError, match=f"{name} must be an integer >= ., got {value!r}"):
            optimize(tiny_model, objectives.qed, method="random", **bad)
    # numpy integers, as a loop over an array gives them, are integers.
    result = optimize(tiny_model, objectives.qed, method="random", budget=np.int64(4), batch_size=np.int64(4),
                      seed=np.int64(0))
    assert result.history["new"].sum() <= 4 and result.history["method"].eq("random").all()
    with pytest.raises(InputDataError, match="method 'bo' only"):
        optimize(tiny_model, objectives.qed, method="random", acquisition="ts")
    with pytest.raises(InputDataError, match=r"method 'random' must be None \(it has no settings\), not BOSettings"):
        optimize(tiny_model, objectives.qed, method="random", settings=fast_bo)
    with pytest.raises(InputDataError, match="settings of method 'bo' must be a BOSettings or None, not int"):
        optimize(tiny_model, objectives.qed, method="bo", settings=3)  # was 'settings int do not apply'
    with pytest.raises(InputDataError, match="could be encoded"):
        optimize(tiny_model, objectives.qed, method="bo", init_smiles=["not smiles", "C1CC"], n_init=2)
    with pytest.raises(InputDataError, match="init_smiles is empty"):  # was torch's RuntimeError on a reshape
        optimize(tiny_model, objectives.qed, method="bo", init_smiles=[], n_init=2)


def test_a_bad_decoding_method_is_refused_before_the_objective_is_called(tiny_model, fast_bo):
    # It failed at the first decode, after the objective had scored the initial molecules.
    calls: list[str] = []

    def objective(smiles: list[str]) -> list[float]:
        calls.extend(smiles)
        return objectives.qed(smiles)

    # It said 'method must be', and optimize's own method is the search's (bo, gradient, random).
    with pytest.raises(InputDataError, match="decode_method must be 'greedy' or 'sample', got 'beam'"):
        optimize(tiny_model, objective, method="bo", budget=5, n_init=10, decode_method="beam", settings=fast_bo)
    assert calls == []


def test_prior_samples_are_the_default_initial_data(tiny_model, fast_bo):
    result = optimize(tiny_model, objectives.qed, method="bo", budget=5, batch_size=5, n_init=12, seed=0,
                      settings=fast_bo)
    init = result.history[result.history["iteration"] == 0]
    assert len(init) == 12 and (init["method"] == "init").all() and not init["new"].any()


def test_initial_molecules_the_model_cannot_encode_are_counted(tiny_model, train_smiles, fast_bo):
    # They were left out without a word: a user's --init-data file lost rows unseen.
    pool = [*train_smiles[:8], "C1CC", "not a molecule"]
    with pytest.warns(InputDataWarning, match=r"kept 8 of 10 initial molecules drawn; skipped 2 \(unparsable 2\); "
                                              r"the first: molecule 8 \('C1CC'\): unparsable"):
        result = optimize(tiny_model, objectives.qed, method="bo", budget=2, batch_size=2, n_init=10, seed=0,
                          init_smiles=pool, settings=fast_bo)
    assert result.summary()["n_init"] == 8
    with pytest.raises(InputDataError, match="none of the initial molecules could be encoded by the model: kept 0 of 2"):
        optimize(tiny_model, objectives.qed, method="bo", budget=2, n_init=10, init_smiles=["C1CC", "xyz"],
                 settings=fast_bo)


def test_a_search_that_stops_finding_new_molecules_ends_early_with_a_warning(tiny_model):
    with pytest.warns(SearchWarning, match=r"gradient search stopped after 2 iterations without a new molecule "
                                           r"\((\d+)/50 objective calls used\)") as caught:
        result = optimize(tiny_model, objectives.qed, method="gradient", budget=50, batch_size=2, n_init=4, seed=0,
                          max_stalled_rounds=2)
    message = next(str(w.message) for w in caught if issubclass(w.category, SearchWarning))
    calls = int(message.split("(")[1].split("/")[0])
    assert 0 < calls < 50 and result.history["new"].sum() == calls
    last_two = result.history[result.history["iteration"] > result.history["iteration"].max() - 2]
    assert not last_two["new"].any()  # the two rounds that ended it found nothing new

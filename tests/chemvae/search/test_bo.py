"""Bayesian optimization on the committed tiny model."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from chemvae import objectives
from chemvae.search import gp as gp_module
from chemvae.search import optimize
from chemvae.search.acquisition import logei_batch
from chemvae.search.bo import BayesOpt
from chemvae.search.bo_settings import BOSettings
from vaecore.errors import InputDataError, SearchWarning

FIXTURE_MODEL = Path(__file__).resolve().parents[3] / "data" / "fixtures" / "chemvae_tiny"


def test_bo_beats_the_best_initial_molecule_on_qed(tiny_model, low_qed_smiles, fast_bo):
    result = optimize(tiny_model, objectives.qed, method="bo", budget=20, batch_size=5, n_init=24,
                      init_smiles=low_qed_smiles, seed=0, settings=fast_bo)
    assert result.oracle_calls == 20
    assert result.best_init_score < 0.6
    assert result.best(1)["score"].iloc[0] > result.best_init_score
    assert (result.iterations["n_train"] >= 24).all() and not result.iterations["fallback"].any()


def test_same_seed_same_history(tiny_model, low_qed_smiles, fast_bo):
    runs = [optimize(tiny_model, objectives.qed, method="bo", budget=10, batch_size=5, n_init=24,
                     init_smiles=low_qed_smiles, seed=seed, settings=fast_bo) for seed in (3, 3)]
    drop = ["seconds"]
    pd.testing.assert_frame_equal(runs[0].history.drop(columns=drop), runs[1].history.drop(columns=drop))
    assert torch.equal(runs[0].latents, runs[1].latents)


def test_thompson_sampling_runs(tiny_model, low_qed_smiles):
    result = optimize(tiny_model, objectives.qed, method="bo", acquisition="ts", budget=5, batch_size=5,
                      n_init=24, init_smiles=low_qed_smiles, seed=0,
                      settings=BOSettings(ts_candidates=200, fit_maxiter=20))
    assert result.oracle_calls == 5 and result.settings["acquisition"] == "ts"


def test_failed_gp_fit_falls_back_to_random_proposals(tiny_model, low_qed_smiles, monkeypatch, fast_bo):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("cholesky failed")

    monkeypatch.setattr(gp_module, "fit_gpytorch_mll", broken_fit)
    with pytest.warns(SearchWarning, match="GP fit failed twice"):
        result = optimize(tiny_model, objectives.qed, method="bo", budget=5, batch_size=5, n_init=24,
                          init_smiles=low_qed_smiles, seed=0, settings=fast_bo)
    assert result.iterations["fallback"].all()
    assert "cholesky failed" in result.iterations["fit_error_0"].iloc[0]
    assert result.oracle_calls == 5


def test_oversized_training_sets_are_subsampled(tiny_model, train_smiles):
    result = optimize(tiny_model, objectives.qed, method="bo", budget=5, batch_size=5, n_init=60,
                      init_smiles=train_smiles, seed=0, settings=BOSettings(max_train=40, fit_points=20,
                                                                           num_restarts=2, raw_samples=32,
                                                                           acq_maxiter=10, fit_maxiter=10))
    assert (result.iterations["n_data"] >= 60).all()
    assert (result.iterations["n_train"] == 40).all()


def test_non_finite_scores_never_reach_the_gp(tiny_model, train_smiles, fast_bo):
    def half_broken(smiles):
        return [math.nan if i % 2 else 0.5 + 0.01 * len(s) for i, s in enumerate(smiles)]

    result = optimize(tiny_model, half_broken, method="bo", budget=10, batch_size=5, n_init=20,
                      init_smiles=train_smiles, seed=0, settings=fast_bo)
    assert result.failures.get("nan", 0) > 0
    history = result.history
    for row in result.iterations.itertuples():
        # The GP's data before iteration i: exactly the earlier rows with a finite score.
        before = history[history["iteration"] < row.iteration]
        assert row.n_data == int(before["score"].notna().sum())


def test_bad_settings_are_named():
    with pytest.raises(InputDataError, match="'ucb'"):
        BOSettings(acquisition="ucb")
    with pytest.raises(InputDataError, match="raw_samples"):
        BOSettings(raw_samples=0)


def test_radius_bound_pulls_far_proposals_back():
    from scipy.stats import chi2

    box = torch.stack([-5 * torch.ones(4), 5 * torch.ones(4)]).double()
    proposer = BayesOpt(box, 2, BOSettings(radius_quantile=0.99))
    z = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.1, 0.0, 0.0, 0.0]], dtype=torch.float64)
    out, pulled = proposer.into_bulk(z)
    assert pulled == 1 and torch.equal(out[1], z[1])
    assert out[0].norm() == pytest.approx(math.sqrt(chi2.ppf(0.99, 4)))
    assert torch.allclose(out[0] / out[0].norm(), z[0] / z[0].norm())  # same direction
    assert BayesOpt(box, 2).into_bulk(z)[1] == 0  # off by default


def test_only_duplicate_batches_widen_the_trust_region_and_invalid_ones_do_not():
    from chemvae.search.oracle import Evaluation

    box = torch.stack([-3 * torch.ones(4), 3 * torch.ones(4)]).double()
    proposer = BayesOpt(box, 2, BOSettings(failure_tolerance=1))
    proposer.initialize(torch.zeros(1, 4, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    start = proposer.tr.length
    duplicate = Evaluation("CCO", "CCO", 0.5, "duplicate", False)
    invalid = Evaluation("C(", None, math.nan, "invalid_smiles", False)
    z = torch.zeros(2, 4, dtype=torch.float64)
    proposer.observe(z, [duplicate, duplicate])
    assert proposer.tr.length == pytest.approx(min(2 * start, proposer.settings.length_max))
    proposer.observe(z, [duplicate, invalid])  # a failure: no new molecule, not all known
    assert proposer.tr.length == pytest.approx(min(2 * start, proposer.settings.length_max) / 2)


def test_hedge_region_learns_from_the_second_half_of_each_batch():
    from chemvae.search.oracle import Evaluation

    box = torch.stack([-3 * torch.ones(4), 3 * torch.ones(4)]).double()
    proposer = BayesOpt(box, 4, BOSettings(length_init=0.8, length_min=0.1, hedge_length=0.2, success_tolerance=1,
                                           failure_tolerance=1))
    main, hedge = proposer.regions
    assert (main.batch_size, hedge.batch_size) == (2, 2) and hedge.length == 0.2
    assert hedge.length_min == pytest.approx(0.1 * 0.2 / 0.8)  # the main region's ratio to its start
    proposer.initialize(torch.zeros(1, 4, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    worse, better = (Evaluation("C", "C", 0.1, "scored", True), Evaluation("CC", "CC", 0.9, "scored", True))
    proposer.observe(torch.zeros(4, 4, dtype=torch.float64), [worse, worse, better, worse])
    assert main.length == pytest.approx(0.4) and hedge.length == pytest.approx(0.4)  # halved / doubled


def test_hedged_search_spends_the_budget_and_logs_both_regions(tiny_model, low_qed_smiles, fast_bo):
    from dataclasses import replace

    result = optimize(tiny_model, objectives.qed, method="bo", budget=10, batch_size=5, n_init=24,
                      init_smiles=low_qed_smiles, seed=0, settings=replace(fast_bo, hedge_length=0.1))
    assert result.oracle_calls == 10 and not result.iterations["fallback"].any()
    assert result.iterations["tr_length_hedge"].iloc[0] == 0.1 and result.iterations["tr_length"].iloc[0] == 0.8
    assert result.settings["hedge_length"] == 0.1


def test_bad_hedge_settings_are_named():
    with pytest.raises(InputDataError, match="hedge_length must satisfy .* got 2.0"):
        BOSettings(hedge_length=2.0)
    box = torch.stack([-torch.ones(4), torch.ones(4)]).double()
    with pytest.raises(InputDataError, match="batch_size >= 2, got 1"):
        BayesOpt(box, 1, BOSettings(hedge_length=0.1))
    with pytest.raises(InputDataError, match=r"hedge_points \(2\) needs a hedge region"):
        BOSettings(hedge_points=2)
    with pytest.raises(InputDataError, match=r"hedge_points < batch_size \(10\), got 10"):
        BayesOpt(box, 10, BOSettings(hedge_length=0.1, hedge_points=10))
    with pytest.raises(InputDataError, match="BOSettings.hedge_points must be an integer >= 1, got 0"):
        BOSettings(hedge_length=0.1, hedge_points=0)  # refused with the settings, before any search


def test_settings_that_cannot_propose_a_batch_are_refused():
    # Each failed inside BoTorch at every iteration, and BO fell back to random points in
    # the trust region for the whole search (a warning an iteration).
    with pytest.raises(InputDataError, match=r"raw_samples \(2\) must be at least num_restarts \(4\)"):
        BOSettings(raw_samples=2, num_restarts=4)
    box = torch.stack([-torch.ones(4), torch.ones(4)]).double()
    with pytest.raises(InputDataError, match=r"ts_candidates \(5\) must be at least batch_size \(10\)"):
        BayesOpt(box, 10, BOSettings(acquisition="ts", ts_candidates=5))
    BayesOpt(box, 10, BOSettings(ts_candidates=5))  # qLogEI draws no candidates
    for batch_size in (0, 2.5):
        with pytest.raises(InputDataError, match=f"batch_size must be an integer >= 1, got {batch_size}"):
            BayesOpt(box, batch_size, BOSettings(acquisition="ts"))
    with pytest.raises(InputDataError, match="box dimension 0 has lower 1 and upper -1"):
        BayesOpt(-box, 10)


def test_hedge_points_split_the_batch():
    box = torch.stack([-torch.ones(4), torch.ones(4)]).double()
    main, hedge = BayesOpt(box, 10, BOSettings(hedge_length=0.1, hedge_points=2)).regions
    assert (main.batch_size, hedge.batch_size) == (8, 2)
    main, hedge = BayesOpt(box, 5, BOSettings(hedge_length=0.1)).regions
    assert (main.batch_size, hedge.batch_size) == (3, 2)  # default: half, rounded down


def test_trust_region_centres_on_the_best_latent_that_decodes_to_a_valid_molecule():
    from chemvae.search.oracle import Evaluation

    box = torch.stack([-3 * torch.ones(4), 3 * torch.ones(4)]).double()
    proposer = BayesOpt(box, 2, BOSettings(length_init=0.1, length_min=0.05, success_tolerance=1,
                                           failure_tolerance=1), seed=0)
    z = torch.tensor([[2.0, 2, 2, 2], [-2, -2, -2, -2], [0, 0, 0, 0]], dtype=torch.float64)
    proposer.initialize(z, torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64),
                        decodable=torch.tensor([False, True, True]))
    assert proposer.incumbent() == 1  # z[0] scores 0.9 but decodes to an invalid string
    proposals, _ = proposer.propose()
    # A region of side 0.1 of the 6-wide box (per-axis weights from the lengthscales aside) around z[1].
    assert (proposals - z[1]).abs().max() < 1.0 and ((proposals - z[0]).abs() > 3.0).all()
    # A new molecule above the incumbent (not above 0.9) is a success: the region grows.
    proposer.observe(proposals, [Evaluation("CC", "CC", 0.6, "scored", True)] * 2)
    assert proposer.incumbent() == 3 and proposer.tr.length == pytest.approx(0.2)
    undecodable = BayesOpt(box, 2)
    undecodable.initialize(z[:1], torch.tensor([0.9], dtype=torch.float64), decodable=torch.tensor([False]))
    assert undecodable.incumbent() == 0  # no decodable point at all: the best point
    with pytest.raises(InputDataError, match="2 latents, 2 scores, 1 flags"):
        undecodable.initialize(z[:2], torch.zeros(2, dtype=torch.float64), decodable=torch.tensor([True]))


def test_search_centres_on_an_initial_latent_that_decodes_to_a_valid_molecule(tiny_model, fast_bo):
    from dataclasses import replace

    from chemvae.rdkit_utils import canonical_smiles
    from chemvae.search.loop import initial_latents
    from pipelines.molopt import MoloptConfig, initial_pool

    pool, _ = initial_pool(MoloptConfig(model=str(FIXTURE_MODEL)))  # the model's training split
    z0, smiles0 = initial_latents(tiny_model, pool, 16, np.random.default_rng(0))  # as optimize(seed=0) draws them
    scores = objectives.qed(smiles0)
    valid = [canonical_smiles(s) is not None for s in tiny_model.decode(z0)]
    best = int(np.argmax(scores))
    assert not valid[best]  # the tiny decoder turns the best initial molecule's latent into an invalid string
    centre = max((i for i in range(16) if valid[i]), key=lambda i: scores[i])
    settings = replace(fast_bo, length_init=0.05, length_min=0.01, radius_quantile=None)
    result = optimize(tiny_model, objectives.qed, method="bo", budget=1, batch_size=5, n_init=16,
                      init_smiles=pool, seed=0, settings=settings)
    first = result.latents[16:21].float()  # the first batch, after the initial latents (budget 1: only it)
    assert first.shape[0] == 5
    assert torch.equal(result.latents[:16].float(), z0)
    assert ((first - z0[centre]).norm(dim=-1) < (first - z0[best]).norm(dim=-1)).all()


def test_restart_elsewhere_moves_the_centre_out_of_the_collapsed_region(monkeypatch):
    from chemvae.search import bo as bo_module
    from chemvae.search.oracle import Evaluation

    seen_best_f = []

    def recording_logei(gp, bounds, best_f, q, **kwargs):  # the real batch, with its threshold noted
        seen_best_f.append(float(best_f))
        return logei_batch(gp, bounds, best_f, q, **kwargs)

    monkeypatch.setattr(bo_module, "logei_batch", recording_logei)

    box = torch.stack([-3 * torch.ones(4), 3 * torch.ones(4)]).double()
    z = torch.tensor([[2.0, 2, 2, 2], [-2, -2, -2, -2], [0, 0, 0, 0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    worse = Evaluation("C", "C", 0.0, "scored", True)
    settings = BOSettings(length_init=0.1, length_min=0.05, failure_tolerance=1, restart="elsewhere")
    proposer = BayesOpt(box, 2, settings)
    proposer.initialize(z, scores)
    near = z[0] + 0.05  # inside the region around z[0]: taboo with it after the collapse
    proposer.observe(near.expand(2, 4), [worse, worse])  # 0.1 -> 0.05: not yet below length_min
    assert proposer.center() == 0 and not len(proposer.taboo)
    proposer.observe(near.expand(2, 4), [worse, worse])  # 0.025 < 0.05: restart
    assert proposer.tr.restarts == 1 and proposer.tr.length == 0.1 and len(proposer.taboo) == 1
    assert proposer.incumbent() == 0 and proposer.center() == 1  # the best point outside z[0]'s region
    proposals, info = proposer.propose()
    assert info["taboo"] == 1 and (proposals - z[1]).abs().max() < 1.0
    assert seen_best_f == [0.5]  # qLogEI improves on the centre's score, not on the out-of-reach 0.9
    # Successes now count against the centre's 0.5, not the overall best 0.9.
    proposer.observe(proposals, [Evaluation("CC", "CC", 0.6, "scored", True)] * 2)
    assert proposer.tr.success_counter == 1 and float(proposer.y[proposer.center()]) == 0.6
    # With every decodable point taboo the centre falls back to the incumbent.
    proposer.taboo = box.unsqueeze(0)
    assert proposer.center() == proposer.incumbent() == 0
    # The default restarts around the same incumbent.
    same = BayesOpt(box, 2, BOSettings(length_init=0.1, length_min=0.05, failure_tolerance=1))
    same.initialize(z, scores)
    for _ in range(2):
        same.observe(near.expand(2, 4), [worse, worse])
    assert same.tr.restarts == 1 and same.center() == same.incumbent() == 0 and not len(same.taboo)
    same.propose()
    assert seen_best_f[-1] == 0.9
    with pytest.raises(InputDataError, match="'far'"):
        BOSettings(restart="far")

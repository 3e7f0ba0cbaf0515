"""Gradient ascent on the property head of the committed tiny model."""

import pytest
import torch

from chemvae import objectives
from chemvae.search import GradientSettings, optimize
from chemvae.search.gradient import GradientAscent
from vaecore.errors import InputDataError


def test_gradient_ascent_climbs_the_head_surrogate(tiny_model, low_qed_smiles):
    z0 = tiny_model.encode(low_qed_smiles[:4])
    box = torch.stack([-3 * torch.ones(z0.shape[1]), 3 * torch.ones(z0.shape[1])]).double()
    climber = GradientAscent(tiny_model, objectives.qed, box, batch_size=4,
                             settings=GradientSettings(prior_weight=0.0, lr=0.05, steps_per_round=10))
    climber.initialize(z0.double(), torch.arange(4.0))
    before = climber.surrogate_value(climber.current.clone())
    z, info = climber.propose()
    after = climber.surrogate_value(z)
    assert (after > before).all()  # with no prior penalty every trajectory goes uphill
    assert info["mean_step"] > 0
    assert all(p.requires_grad for p in tiny_model.parameters())  # the model is left as it was


def test_a_bad_box_or_batch_size_is_refused(tiny_model):
    d = tiny_model.latent_dim
    box = torch.stack([-torch.ones(d), torch.ones(d)]).double()
    with pytest.raises(InputDataError, match="box dimension 0 has lower 1 and upper -1"):
        GradientAscent(tiny_model, objectives.qed, box.flip(0), batch_size=2)
    with pytest.raises(InputDataError, match="batch_size must be an integer >= 1, got 0"):
        GradientAscent(tiny_model, objectives.qed, box, batch_size=0)


def test_prior_penalty_pulls_towards_the_prior_mode(tiny_model):
    d = tiny_model.latent_dim
    box = torch.stack([-5 * torch.ones(d), 5 * torch.ones(d)]).double()
    far = torch.full((2, d), 2.5, dtype=torch.float64)
    climber = GradientAscent(tiny_model, objectives.qed, box, batch_size=2,
                             settings=GradientSettings(prior_weight=10.0, lr=0.1, steps_per_round=10))
    climber.initialize(far, torch.zeros(2))
    z, _ = climber.propose()
    assert (z.norm(dim=-1) < far.norm(dim=-1)).all()


def test_gradient_search_scores_the_path_with_the_true_objective(tiny_model, low_qed_smiles):
    result = optimize(tiny_model, objectives.qed, method="gradient", budget=15, batch_size=5, n_init=24,
                      init_smiles=low_qed_smiles, seed=0)
    assert result.oracle_calls == 15
    scored = result.searched[result.searched["status"] == "scored"]
    assert (scored["score"] == pd_qed(scored["canonical_smiles"])).all()
    assert result.best(1)["score"].iloc[0] > result.best_init_score


def pd_qed(smiles):
    return objectives.qed(list(smiles))


def test_objectives_without_a_head_surrogate_are_refused(tiny_model):
    with pytest.raises(InputDataError, match="no head surrogate: use method 'bo' or 'random'"):
        optimize(tiny_model, objectives.similarity("CCO"), method="gradient", budget=5)
    with pytest.raises(InputDataError, match="no head surrogate"):
        optimize(tiny_model, lambda smiles: [1.0] * len(smiles), method="gradient", budget=5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": float("nan")}, "GradientSettings.lr must be a finite number > 0, got nan"),  # passed `lr <= 0`
    ({"lr": 0.0}, "GradientSettings.lr must be a finite number > 0, got 0.0"),
    ({"prior_weight": -1.0}, "GradientSettings.prior_weight must be a finite number >= 0, got -1.0"),
    ({"steps_per_round": 2.5}, "GradientSettings.steps_per_round must be an integer >= 1, got 2.5"),
    ({"patience": 0}, "GradientSettings.patience must be an integer >= 1, got 0"),
])
def test_bad_gradient_settings_name_the_field(kwargs, message):
    with pytest.raises(InputDataError, match=message):
        GradientSettings(**kwargs)

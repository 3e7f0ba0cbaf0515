"""The property head's estimate of an objective, and as a GP prior mean, on the committed tiny model."""

import copy
import dataclasses

import pytest
import torch

from chemvae import objectives
from chemvae.search import BOSettings, optimize
from chemvae.search.bo import BayesOpt
from chemvae.search.gp import conditioned_gp, fit_hyperparameters
from chemvae.search.surrogate import HeadSurrogate, SurrogateMean
from vaecore.errors import InputDataError


def _box(d: int) -> torch.Tensor:
    return torch.stack([-3 * torch.ones(d), 3 * torch.ones(d)]).double()


def test_head_surrogate_is_standardized_on_the_given_latents(tiny_model, train_smiles):
    z = tiny_model.encode(train_smiles[:50]).double()
    head = HeadSurrogate(tiny_model, objectives.penalized_logp)
    head.standardize_on(z)
    values = head(z).detach()
    assert values.dtype == torch.float64 and values.shape == (50,)
    assert float(values.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(values.std()) == pytest.approx(1.0, abs=1e-6)


def test_surrogate_mean_maps_normalized_inputs_back_to_latents(tiny_model):
    d = tiny_model.latent_dim
    box = _box(d)
    head = HeadSurrogate(tiny_model, objectives.qed)
    mean = SurrogateMean(head, box)
    with torch.no_grad():
        mean.weight.fill_(2.0)
        mean.bias.fill_(-0.5)
    z = torch.randn(3, 7, d, dtype=torch.float64)
    normalized = (z - box[0]) / (box[1] - box[0])
    with torch.no_grad():
        assert torch.allclose(mean(normalized), 2.0 * head(z) - 0.5)


def test_gp_with_the_head_mean_keeps_the_vae_out_of_its_hyperparameters(tiny_model, train_smiles):
    z = tiny_model.encode(train_smiles[:40]).double()
    y = torch.tensor(objectives.qed(train_smiles[:40]), dtype=torch.float64)
    head = HeadSurrogate(tiny_model, objectives.qed)
    head.standardize_on(z)
    params = fit_hyperparameters(z, y, _box(z.shape[1]), warm_start=None, maxiter=20, head=head)
    assert {"mean_module.weight", "mean_module.bias"} <= set(params)
    assert not any("property" in k or "decoder" in k or "encoder" in k for k in params)
    # far from the data the posterior mean follows the fitted affine map of the head
    gp = conditioned_gp(z, y, _box(z.shape[1]), params, head)
    far = torch.full((5, z.shape[1]), 2.9, dtype=torch.float64)
    far[:, 0] = torch.linspace(-2.9, 2.9, 5)
    with torch.no_grad():
        posterior = gp.posterior(far).mean.squeeze(-1)
        expected = gp.outcome_transform.untransform(
            (gp.mean_module.weight * head(far) + gp.mean_module.bias).unsqueeze(-1))[0].squeeze(-1)
    tolerance = 0.01 * float(y.std())
    assert float(expected.max() - expected.min()) > 5 * tolerance  # not a constant mean
    assert torch.allclose(posterior, expected, atol=tolerance)


@pytest.mark.parametrize("acquisition", ["logei", "ts"])
def test_bo_with_the_head_mean_improves_and_leaves_the_model_as_it_was(tiny_model, low_qed_smiles, fast_bo,
                                                                       acquisition):
    settings = BOSettings(**{**fast_bo.__dict__, "head_mean": True, "acquisition": acquisition,
                             "ts_candidates": 200})
    result = optimize(tiny_model, objectives.qed, method="bo", budget=20, batch_size=5, n_init=24,
                      init_smiles=low_qed_smiles, seed=0, settings=settings)
    assert result.settings["head_mean"] is True and result.settings["acquisition"] == acquisition
    assert result.best(1)["score"].iloc[0] > result.best_init_score
    assert not result.iterations["fallback"].any()
    assert result.iterations["head_weight"].notna().all()  # the fitted weight of the head, per iteration
    assert all(p.requires_grad and p.grad is None for p in tiny_model.parameters())


def test_head_mean_needs_an_objective_with_a_surrogate(tiny_model):
    with pytest.raises(InputDataError, match="head_mean.*no head surrogate: leave it off"):
        optimize(tiny_model, objectives.similarity("CCO"), method="bo", budget=5,
                 settings=BOSettings(head_mean=True))
    with pytest.raises(InputDataError, match="head_mean needs the property head"):
        BayesOpt(_box(tiny_model.latent_dim), 5, BOSettings(head_mean=True))


def test_a_head_the_model_did_not_train_is_refused(tiny_model):
    # property_weight 0 leaves the head at its random initial weights: gradient ascent climbed it without a word.
    untrained = copy.copy(tiny_model)
    untrained.config = dataclasses.replace(tiny_model.config, property_weight=0.0)
    with pytest.raises(InputDataError, match=r"method 'gradient' follows the property head, which this model did not "
                                             r"train \(property_weight 0\): use method 'bo' or 'random'"):
        optimize(untrained, objectives.qed, method="gradient", budget=5)
    with pytest.raises(InputDataError, match=r"head_mean.*did not train \(property_weight 0\): leave it off"):
        optimize(untrained, objectives.qed, method="bo", budget=5, settings=BOSettings(head_mean=True))
    HeadSurrogate(tiny_model, objectives.qed)  # the fixture's head was trained

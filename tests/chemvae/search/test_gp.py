"""The GP of Bayesian optimization: subsampling, fitting, conditioning, lengthscales."""

import numpy as np
import torch

from chemvae.search.gp import conditioned_gp, fit_hyperparameters, hyperparameters, lengthscales, subsample


def _data(n: int = 40, d: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = 4 * torch.rand(n, d, generator=g, dtype=torch.float64) - 2
    y = -(x[:, 0] - 0.5) ** 2  # depends on the first coordinate only
    box = torch.tensor([[-2.0] * d, [2.0] * d], dtype=torch.float64)
    return x, y, box


def test_subsample_keeps_the_best_half_and_is_seeded():
    y = torch.arange(100.0)
    idx = subsample(y, 10, np.random.default_rng(0))
    assert len(idx) == 10 and set(range(95, 100)) <= set(idx.tolist())
    again = subsample(y, 10, np.random.default_rng(0))
    assert torch.equal(idx, again)
    assert torch.equal(subsample(y[:5], 10, None), torch.arange(5))


def test_fitted_hyperparameters_carry_over_to_a_gp_on_more_data():
    x, y, box = _data()
    params = fit_hyperparameters(x[:20], y[:20], box, warm_start=None, maxiter=50)
    assert not any(k.startswith("input_transform") for k in params)
    gp = conditioned_gp(x, y, box, params)
    assert not gp.training and gp.train_inputs[0].shape == (40, 3)
    # All 40 scores in the units the hyperparameters were fitted in: the 20's standardization.
    mean, std = y[:20].mean(), y[:20].std()
    torch.testing.assert_close(gp.outcome_transform.means.squeeze(), mean)
    torch.testing.assert_close(gp.outcome_transform.stdvs.squeeze(), std)
    torch.testing.assert_close(gp.train_targets, (y - mean) / std)
    assert torch.equal(hyperparameters(gp)["likelihood.noise_covar.raw_noise"],
                       params["likelihood.noise_covar.raw_noise"])
    # ARD: the coordinate the score depends on gets the shortest lengthscale
    ls = lengthscales(gp)
    assert ls is not None and ls.shape == (3,) and int(ls.argmin()) == 0
    # the posterior interpolates its data
    with torch.no_grad():
        mean = gp.posterior(x[20:]).mean.squeeze(-1)
    assert float((mean - y[20:]).abs().max()) < 0.05 * float(y.std())


def test_a_warm_start_is_where_the_fit_begins():
    x, y, box = _data()
    params = fit_hyperparameters(x, y, box, warm_start=None, maxiter=50)
    # Zero iterations from a warm start return the warm start's values. SciPy's L-BFGS-B
    # (1.17) may still take a first small step, hence the tolerance; a cold start with as
    # few iterations stays far from them, so the tolerance still tells the two apart.
    again = fit_hyperparameters(x, y, box, warm_start=params, maxiter=0)
    cold = fit_hyperparameters(x, y, box, warm_start=None, maxiter=0)
    key = "covar_module.raw_lengthscale"
    for name, value in params.items():
        assert torch.allclose(again[name], value, rtol=1e-3, atol=1e-6, equal_nan=True), name
    assert not torch.allclose(cold[key], params[key], rtol=1e-3, atol=1e-6)


def test_the_conditioned_gp_reads_the_hyperparameters_in_the_units_they_were_fitted_in():
    # Fitted on a skewed subset (as BO's best half plus a random rest), then standardized over all
    # scores, the posterior std came out sd_all / sd_subset times off (0.61 on a skewed objective).
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize

    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 3, generator=g, dtype=torch.float64)
    y = torch.exp(0.8 * (x[:, 0] + 0.5 * x[:, 1])) + 0.05 * torch.randn(120, generator=g, dtype=torch.float64)
    box = torch.tensor([[-3.0] * 3, [3.0] * 3], dtype=torch.float64)
    idx = subsample(y, 32, np.random.default_rng(0))
    params = fit_hyperparameters(x[idx], y[idx], box, warm_start=None, maxiter=50)
    gp = conditioned_gp(x, y, box, params)
    # Independently: the same hyperparameters on scores standardized by hand, no outcome transform.
    mean, std = y[idx].mean(), y[idx].std()
    manual = SingleTaskGP(x, ((y - mean) / std).unsqueeze(-1), input_transform=Normalize(3, bounds=box),
                          outcome_transform=None)
    manual.load_state_dict({k: v for k, v in params.items() if not k.startswith("outcome_transform")}, strict=False)
    manual.eval()
    xt = torch.randn(20, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ours, theirs = gp.posterior(xt), manual.posterior(xt)
        torch.testing.assert_close(ours.mean, theirs.mean * std + mean)
        torch.testing.assert_close(ours.variance, theirs.variance * std**2)
    assert abs(float(y.std() / std) - 1) > 0.2  # the subset's spread differs: the units matter here

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
    assert not any(k.startswith(("outcome_transform", "input_transform")) for k in params)
    gp = conditioned_gp(x, y, box, params)
    assert not gp.training and gp.train_inputs[0].shape == (40, 3)
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

"""The GP of :class:`~chemvae.search.bo.BayesOpt`: building it, fitting it, subsampling its data.

A ``SingleTaskGP`` in float64 with inputs scaled to `[0, 1]^d` over the search box
(``Normalize``) and standardized outcomes (``Standardize``), its prior mean optionally the
VAE's property head (:class:`~chemvae.search.surrogate.SurrogateMean`). Hyperparameters
are fitted on a subset of the training set and then loaded into a GP conditioned on all of
it: the exact marginal likelihood's gradient costs O(n^3) per L-BFGS step, about 0.5-1 s at
n = 1000 on two CPU cores, which alone would break the 10 s-per-iteration target.

The fitted noise, the kernel's unit signal variance and the head mean's slope and offset
are in the units of the subset's standardized scores, so the conditioned GP standardizes
all scores with the subset's mean and std, not with their own. The subset (best half plus
a random rest) is skewed towards the best scores; standardized over all of them, the
hyperparameters were read in other units: the posterior std came out sd_all / sd_subset
times too small or large (0.61 on a skewed test objective, 0.65-1.19 by skew at n = 1000),
and the head mean's offset about one std low.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from chemvae.search.surrogate import HeadSurrogate, SurrogateMean, frozen

# Parameters that define the GP's hyperparameters (the transforms hold data statistics).
_DATA_KEYS = ("outcome_transform", "input_transform")
# The fit subset's standardization, which the hyperparameters are in the units of.
_OUTCOME_KEYS = ("outcome_transform.means", "outcome_transform.stdvs", "outcome_transform._stdvs_sq")


def subsample(y: Tensor, size: int, generator: np.random.Generator) -> Tensor:
    """Indices of at most ``size`` points: the best half by ``y`` `[n]`, then random others.

    Returns:
        Sorted long tensor of indices (all of ``range(n)`` if ``n <= size``).
    """
    n = y.shape[0]
    if n <= size:
        return torch.arange(n, device=y.device)
    n_top = size // 2
    order = torch.argsort(y, descending=True, stable=True).cpu().numpy()
    rest = generator.choice(order[n_top:], size=size - n_top, replace=False)
    return torch.as_tensor(np.sort(np.concatenate([order[:n_top], rest])), device=y.device)


def build_gp(x: Tensor, y: Tensor, box: Tensor, head: HeadSurrogate | None = None) -> SingleTaskGP:
    """A ``SingleTaskGP`` on `[n, d]` inputs in ``box`` `[2, d]` and `[n]` scores.

    With ``head``, its prior mean is :class:`~chemvae.search.surrogate.SurrogateMean`,
    otherwise BoTorch's constant.
    """
    mean = None if head is None else SurrogateMean(head, box)
    with warnings.catch_warnings():
        # Latents of training molecules may lie slightly outside the box: harmless.
        warnings.simplefilter("ignore", InputDataWarning)
        return SingleTaskGP(x, y.unsqueeze(-1), input_transform=Normalize(x.shape[-1], bounds=box),
                            outcome_transform=Standardize(m=1), mean_module=mean)


def hyperparameters(gp: SingleTaskGP) -> dict[str, Tensor]:
    """The GP's fitted parameters, without the data-dependent transform statistics."""
    return {k: v.detach().clone() for k, v in gp.state_dict().items() if not k.startswith(_DATA_KEYS)}


def fit_hyperparameters(x: Tensor, y: Tensor, box: Tensor, *, warm_start: dict[str, Tensor] | None,
                        maxiter: int, head: HeadSurrogate | None = None) -> dict[str, Tensor]:
    """Fit GP hyperparameters by maximizing the exact marginal likelihood.

    Args:
        x, y: Fitting data `[m, d]`, `[m]`.
        box: Search box `[2, d]` for input scaling.
        warm_start: Parameters of a previous fit to start from (``None``: BoTorch's defaults).
        maxiter: L-BFGS-B iterations.
        head: The prior mean's head surrogate (``None``: a constant mean).

    Raises:
        Whatever ``fit_gpytorch_mll`` raises once its own retries are spent.
    """
    gp = build_gp(x, y, box, head)
    if warm_start is not None:  # the hyperparameters only: this subset standardizes its own scores
        gp.load_state_dict({k: v for k, v in warm_start.items() if not k.startswith(_DATA_KEYS)}, strict=False)
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    head_frozen = contextlib.nullcontext() if head is None else frozen(head.model)  # no gradients into the VAE
    with warnings.catch_warnings(), head_frozen:
        warnings.simplefilter("ignore", OptimizationWarning)  # "maxiter reached" is expected
        warnings.simplefilter("ignore", InputDataWarning)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    state = gp.state_dict()
    return {**hyperparameters(gp), **{k: state[k].detach().clone() for k in _OUTCOME_KEYS}}


def conditioned_gp(x: Tensor, y: Tensor, box: Tensor, params: dict[str, Tensor],
                   head: HeadSurrogate | None = None) -> SingleTaskGP:
    """The GP on all of ``x`` `[n, d]`, ``y`` `[n]` with fitted ``params``, in eval mode.

    ``y`` is standardized with the fit subset's statistics in ``params`` (see the module's
    docstring), where :func:`fit_hyperparameters` stored them.
    """
    gp = build_gp(x, y, box, head)
    gp.load_state_dict(params, strict=False)
    if all(k in params for k in _OUTCOME_KEYS):
        transform = gp.outcome_transform.eval()  # in eval mode it applies the loaded statistics
        gp.set_train_data(targets=transform(y.unsqueeze(-1))[0].squeeze(-1), strict=False)
    return gp.eval()


def lengthscales(gp: SingleTaskGP) -> Tensor | None:
    """The ARD lengthscales `[d]` of the GP's kernel (``None`` if it has none)."""
    kernel = gp.covar_module
    while kernel is not None and getattr(kernel, "lengthscale", None) is None:
        kernel = getattr(kernel, "base_kernel", None)
    return None if kernel is None else kernel.lengthscale.detach().reshape(-1)

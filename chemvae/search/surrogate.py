"""The property head as an estimate of the objective: for gradient ascent and as a GP prior mean.

An objective with a *surrogate* (see :mod:`chemvae.objectives`: qed, -SA and both
penalized logPs) maps the head's predicted properties to an estimate ``s(z)`` of itself.
:class:`HeadSurrogate` evaluates ``s`` at latents, standardized over the initial
latents so that weights on it mean the same for every objective.

Two searches use it:

* :class:`~chemvae.search.gradient.GradientAscent` climbs it (plus a prior penalty).
* :class:`~chemvae.search.bo.BayesOpt` with ``BOSettings.head_mean`` makes it the GP's
  prior mean through :class:`SurrogateMean`, ``a * s(z) + b`` with ``a, b`` fitted with
  the other hyperparameters. Why: with a constant mean the GP knows nothing away from
  its data, so the first batches of a search explore blindly, while the head, trained
  jointly on the training molecules' properties, already points uphill. The GP then
  models only the head's error, and the data overrule the head where it is wrong (``a``
  falls to 0 if it is useless).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from gpytorch.means import Mean
from torch import Tensor, nn

from vaecore.errors import InputDataError

Surrogate = Callable[[Mapping[str, Tensor]], Tensor]


def check_surrogate(objective: Any, property_names: Sequence[str], *, user: str = "method 'gradient'",
                    instead: str = "use method 'bo' or 'random'", trained: bool = True) -> Surrogate:
    """The objective's head surrogate, or a clear error saying why ``user`` cannot run and what to do ``instead``.

    ``trained=False``: the model's property head was not trained (``property_weight`` 0),
    and its estimates are those of its random initial weights.
    """
    surrogate = getattr(objective, "surrogate", None)
    name = getattr(objective, "name", repr(objective))
    if surrogate is None:
        raise InputDataError(
            f"{user} needs an objective the property head can predict (qed, plogp, "
            f"plogp_unnormalized, sa); {name!r} has no head surrogate: {instead}")
    missing = [p for p in getattr(objective, "surrogate_properties", ()) if p not in property_names]
    if missing:
        raise InputDataError(f"objective {name!r} needs property-head outputs {missing}, "
                             f"but the model predicts only {list(property_names)}")
    if not trained:  # it climbed the random head without a word
        raise InputDataError(f"{user} follows the property head, which this model did not train "
                             f"(property_weight 0): {instead}")
    return surrogate


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside the block (input gradients still flow)."""
    flags = [p.requires_grad for p in module.parameters()]
    was_training = module.training
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
        module.train(was_training)


class HeadSurrogate:
    """The standardized head estimate ``(s(z) - m) / sd`` of an objective.

    Args:
        model: The VAE (``property_tensor``, ``property_names``, ``prior``).
        objective: An objective with a ``surrogate`` (see :func:`check_surrogate`).
        dtype: Evaluate the head in this dtype, on a frozen copy of the model (``None``: the
            model itself, in its own dtype). Why: a GP prior mean computed in float32 adds
            rounding noise that makes the L-BFGS line search of the acquisition optimization
            fail ("ABNORMAL"); gradient ascent's Adam steps do not mind it.
        why: ``user`` and ``instead`` of :func:`check_surrogate`'s error message.
    """

    def __init__(self, model: nn.Module, objective: Any, *, dtype: torch.dtype | None = None, **why: str) -> None:
        trained = getattr(getattr(model, "config", None), "property_weight", 1.0) != 0
        self.surrogate = check_surrogate(objective, model.property_names, trained=trained, **why)
        self.head_dtype = model.prior().mean.dtype
        if dtype is not None and dtype != self.head_dtype:
            model = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)
            self.head_dtype = dtype
        self.model = model
        self.shift, self.scale = 0.0, 1.0

    def __call__(self, x: Tensor) -> Tensor:
        """Standardized surrogate `[...]` at latents `[..., d]`, in ``x``'s dtype (differentiable in ``x``)."""
        props = self.model.property_tensor(x.to(self.head_dtype))
        named = {n: props[..., i] for i, n in enumerate(self.model.property_names)}
        return ((self.surrogate(named) - self.shift) / self.scale).to(x.dtype)

    def standardize_on(self, z: Tensor) -> None:
        """Set ``m, sd`` to the raw surrogate's mean and std over latents `[n, d]`."""
        if not len(z):
            return
        self.shift, self.scale = 0.0, 1.0
        with torch.no_grad(), frozen(self.model):
            raw = self(z)
        self.shift = float(raw.mean())
        std = float(raw.std()) if len(z) > 1 else 0.0
        self.scale = std if std > 0 else 1.0


class SurrogateMean(Mean):
    """GP prior mean ``a * s(x) + b`` on inputs scaled to `[0, 1]^d` over ``box``.

    ``SingleTaskGP`` hands its mean module the *normalized* inputs (``Normalize`` over
    the search box), so they are mapped back to latents before the head sees them.

    Args:
        surrogate: A :class:`HeadSurrogate` (held as a plain callable: the VAE's weights
            are not GP hyperparameters and stay out of its ``state_dict``).
        box: Search box `[2, d]` the inputs were normalized over.
    """

    def __init__(self, surrogate: HeadSurrogate, box: Tensor) -> None:
        super().__init__()
        self._surrogate = (surrogate,)  # a tuple, so nn.Module does not register the VAE
        self.box = box.detach()  # not a buffer: the search box is data, not a hyperparameter to warm-start
        self.register_parameter("weight", nn.Parameter(torch.ones((), dtype=box.dtype, device=box.device)))
        self.register_parameter("bias", nn.Parameter(torch.zeros((), dtype=box.dtype, device=box.device)))

    def forward(self, x: Tensor) -> Tensor:
        """Mean `[..., n]` at normalized inputs `[..., n, d]`."""
        latents = self.box[0] + x * (self.box[1] - self.box[0])
        return self.weight * self._surrogate[0](latents) + self.bias

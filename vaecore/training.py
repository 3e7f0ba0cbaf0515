"""Training-loop helpers that know nothing of a model: Polyak weight averaging, compiled steps.

:class:`WeightAverage` keeps an exponential moving average of a module's weights (the
few-label training scores and keeps the average). :func:`compiled_step` wraps a
fixed-shape training step in ``torch.compile`` so that CUDA graphs can replay it.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from vaecore.errors import InputDataError

R = TypeVar("R")


def check_decay(decay: float) -> float:
    """``decay`` if it is a number in `[0, 1)`, the decays a :class:`WeightAverage` can take.

    Raises:
        InputDataError: Naming the value (1 or more never moves the average, or moves it away).
    """
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= decay < 1.0:
        raise InputDataError(f"ema_decay must be a number in [0, 1), got {decay!r}")
    return decay


class WeightAverage:
    """Exponential moving average of a module's weights and float buffers (Polyak averaging).

    After ``t`` updates the decay is ``min(decay, (1 + t) / (10 + t))``, so that short runs
    (a few hundred steps on a small data set) are not dominated by the initial weights;
    ``t`` is counted on the host, so an update never waits for the device.

    Args:
        module: The module to average; a copy of it holds the average.
        decay: Per-step decay once warmed up, e.g. 0.999.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay, self.updates = check_decay(decay), 0

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        # keep_vars: the tensors themselves; a plain state_dict() detaches each one, about 90
        # operators a step for M2 that launch nothing but still cost the host its dispatch.
        pairs = list(zip(self.module.state_dict(keep_vars=True).values(),
                         source.state_dict(keep_vars=True).values(), strict=True))
        floats = [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()]
        # One multi-tensor lerp (as torch.optim.swa_utils does) rather than one a tensor: on
        # a GPU this step is bound by kernel launches, not arithmetic.
        if floats:  # the multi-tensor op refuses empty lists
            torch._foreach_lerp_([mine for mine, _ in floats], [theirs for _, theirs in floats], 1.0 - decay)
        for mine, theirs in pairs:
            if not mine.is_floating_point():  # batch counters
                mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, stored: dict[str, Any]) -> None:
        self.module.load_state_dict(stored["state"])
        self.updates = int(stored["updates"])


def compiled_step(step: Callable[..., R], mode: str, *, static: Sequence[Tensor] = ()) -> Callable[..., R]:
    """``step`` through ``torch.compile`` in ``mode``, for a loop that calls it with same-shaped inputs.

    One static graph serves every call. ``static`` tensors (the run's data, read by
    ``step``) keep their memory for the whole loop, so CUDA graphs (``reduce-overhead``)
    need not copy them into their own buffers in every call.
    """
    for tensor in static:
        torch._dynamo.mark_static_address(tensor)
    compiled = torch.compile(step, mode=mode, dynamic=False)

    def call(*args: Any) -> R:
        # The last call's outputs are done with: CUDA graphs may reuse their memory.
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args)

    return call

"""KL-weight (beta) warm-up schedules: callables from the optimisation step to a weight."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vaecore.errors import InputDataError, finite_at_least, integer_at_least

# Weights are checked with finite_at_least(..., 0): a negative or NaN KL weight trains
# without any error but optimizes the wrong objective.


@dataclass(frozen=True)
class ConstantSchedule:
    """beta(step) = value."""

    value: float = 1.0

    def __post_init__(self) -> None:
        finite_at_least("value", self.value, 0)

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class LinearWarmup:
    """beta rises linearly from ``start`` to ``end`` over ``steps`` steps, then stays.

    A ``delay`` keeps beta at ``start`` for that many steps first (useful for
    sequence decoders that must learn to reconstruct before the KL bites).
    """

    steps: int
    start: float = 0.0
    end: float = 1.0
    delay: int = 0

    def __post_init__(self) -> None:
        integer_at_least("steps", self.steps, 0)
        integer_at_least("delay", self.delay, 0)
        finite_at_least("start", self.start, 0)
        finite_at_least("end", self.end, 0)

    def __call__(self, step: int) -> float:
        t = step - self.delay
        if t >= self.steps:  # a warm-up of 0 steps is none: ``end`` from the delay's end on, not one step later
            return self.end
        if t <= 0:
            return self.start
        return self.start + (self.end - self.start) * t / self.steps


@dataclass(frozen=True)
class SigmoidWarmup:
    """beta(step) = end / (1 + exp(-slope * (step - midpoint))), as in Bowman et al. 2016."""

    midpoint: int
    slope: float = 0.01
    end: float = 1.0

    def __post_init__(self) -> None:
        finite_at_least("slope", self.slope, 0, strict=True)
        finite_at_least("end", self.end, 0)

    def __call__(self, step: int) -> float:
        # Written to avoid overflow in exp for steps far from the midpoint.
        x = self.slope * (step - self.midpoint)
        if x >= 0:
            return self.end / (1.0 + math.exp(-x))
        e = math.exp(x)
        return self.end * e / (1.0 + e)


def make_schedule(kind: str, *, steps: int, end: float = 1.0, delay: int = 0) -> ConstantSchedule | LinearWarmup | SigmoidWarmup:
    """Build a schedule from a config string: ``none``, ``linear`` or ``sigmoid``.

    For ``linear`` beta is 0 for ``delay`` steps, then reaches ``end`` after ``steps``
    more. For ``sigmoid`` the midpoint is ``delay + steps // 2`` and the slope
    ``10 / steps`` makes beta go from ~0.7% to ~99.3% of ``end`` over ``steps``.
    With ``steps=0`` both are 0 for ``delay`` steps, then ``end``. ``none`` is the
    constant ``end``.
    """
    steps, delay = integer_at_least("steps", steps, 0), integer_at_least("delay", delay, 0)
    if kind == "none":
        return ConstantSchedule(end)
    if kind == "linear":
        return LinearWarmup(steps=steps, end=end, delay=delay)
    if kind == "sigmoid":
        if steps == 0:  # a warm-up of no steps is none; the sigmoid would put its midpoint (end / 2) at ``delay``
            return LinearWarmup(steps=0, end=end, delay=delay)
        return SigmoidWarmup(midpoint=delay + steps // 2, slope=10.0 / steps, end=end)
    raise InputDataError(f"unknown KL schedule {kind!r}; choose none, linear or sigmoid")

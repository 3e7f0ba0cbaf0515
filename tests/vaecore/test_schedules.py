"""KL warm-up schedules."""

from __future__ import annotations

import math

import pytest

from vaecore.schedules import ConstantSchedule, LinearWarmup, SigmoidWarmup, make_schedule


def test_linear_warmup_values() -> None:
    s = LinearWarmup(steps=10, start=0.0, end=1.0, delay=5)
    assert [s(t) for t in (0, 5)] == [0.0, 0.0]  # held at start through the delay
    assert s(6) == pytest.approx(0.1) and s(10) == pytest.approx(0.5) and s(14) == pytest.approx(0.9)
    assert s(15) == 1.0 and s(10_000) == 1.0
    values = [s(t) for t in range(30)]
    assert values == sorted(values)
    assert LinearWarmup(steps=4, start=0.5, end=0.1)(2) == pytest.approx(0.3)  # may also decrease


def test_linear_warmup_zero_steps_and_validation() -> None:
    # No warm-up: end from the first step (it gave start, 0, for one step), after any delay.
    s = LinearWarmup(steps=0, end=0.7)
    assert s(0) == 0.7 and s(1) == 0.7
    delayed = LinearWarmup(steps=0, end=0.7, delay=3)
    assert [delayed(t) for t in range(5)] == [0.0, 0.0, 0.0, 0.7, 0.7]
    assert [LinearWarmup(steps=2, delay=1)(t) for t in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.0]  # unchanged
    with pytest.raises(ValueError, match="-1"):
        LinearWarmup(steps=-1)
    with pytest.raises(ValueError, match="-2"):
        LinearWarmup(steps=3, delay=-2)


def test_sigmoid_warmup_shape() -> None:
    s = SigmoidWarmup(midpoint=100, slope=0.1, end=2.0)
    assert s(100) == pytest.approx(1.0)  # half of end at the midpoint
    assert s(100 + 30) == pytest.approx(2.0 / (1 + math.exp(-3.0)))
    assert s(100 - 30) == pytest.approx(2.0 - s(130))  # symmetric about the midpoint
    values = [s(t) for t in range(0, 300, 7)]
    assert all(a < b for a, b in zip(values, values[1:]))
    # Far from the midpoint: no overflow, and the limits 0 and end.
    assert s(-10**9) == 0.0 and s(10**9) == 2.0
    with pytest.raises(ValueError, match="slope"):
        SigmoidWarmup(midpoint=10, slope=0.0)


def test_make_schedule() -> None:
    assert make_schedule("none", steps=100, end=0.5) == ConstantSchedule(0.5)
    linear = make_schedule("linear", steps=100, delay=10)
    assert linear(10) == 0.0 and linear(60) == pytest.approx(0.5) and linear(110) == 1.0
    sigmoid = make_schedule("sigmoid", steps=100, delay=10)
    # As documented: ~0.7 % of end where warm-up starts, ~99.3 % where it ends.
    assert sigmoid(10) == pytest.approx(0.0067, abs=1e-4)
    assert sigmoid(60) == pytest.approx(0.5)
    assert sigmoid(110) == pytest.approx(0.9933, abs=1e-4)
    # No warm-up steps is no warm-up, for both kinds: 0 through the delay, then ``end``.
    for kind in ("linear", "sigmoid"):
        instant = make_schedule(kind, steps=0, end=0.2, delay=2)
        assert [instant(t) for t in range(4)] == [0.0, 0.0, 0.2, 0.2], kind
    with pytest.raises(ValueError, match="'cosine'"):
        make_schedule("cosine", steps=10)
    with pytest.raises(ValueError, match="-5"):
        make_schedule("sigmoid", steps=-5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: make_schedule("linear", steps=100, end=-1.0), "end must be a finite number >= 0, got -1.0"),
        (lambda: make_schedule("none", steps=0, end=math.nan), "value must be a finite number >= 0, got nan"),
        (lambda: make_schedule("sigmoid", steps=10, end=math.inf), "end must be a finite number >= 0, got inf"),
        (lambda: LinearWarmup(steps=10, start=-0.1), "start must be a finite number >= 0, got -0.1"),
        (lambda: LinearWarmup(steps=2.5), "steps must be an integer >= 0, got 2.5"),
        (lambda: make_schedule("linear", steps=10, delay=1.5), "delay must be an integer >= 0, got 1.5"),
        (lambda: SigmoidWarmup(midpoint=10, slope=math.nan), "slope must be a finite number > 0, got nan"),
        (lambda: ConstantSchedule("1"), "value must be a finite number >= 0, got '1'"),
    ],
)
def test_weights_and_step_counts_are_checked(build, message: str) -> None:
    # A negative or NaN KL weight trains without error while optimizing the wrong objective.
    with pytest.raises(ValueError, match=message):
        build()

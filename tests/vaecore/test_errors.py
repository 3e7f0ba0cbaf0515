"""Tests for vaecore.errors: each error is a VaelabError and the builtin a caller would catch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vaecore import errors
from vaecore.likelihoods import make_likelihood
from vaecore.nets import mlp
from vaecore.schedules import make_schedule

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("error", "builtins"), [
    (errors.InputDataError, (ValueError,)),
    (errors.ChecksumError, (errors.InputDataError, ValueError)),
    (errors.CheckpointError, (RuntimeError,)),
    (errors.ConfigMismatchError, (errors.CheckpointError, ValueError)),
    (errors.NonFiniteLossError, (FloatingPointError,)),
])
def test_errors_are_vaelab_errors_and_builtins(error, builtins) -> None:
    assert issubclass(error, errors.VaelabError)
    for base in builtins:
        assert issubclass(error, base)


@pytest.mark.parametrize("warning", [errors.InputDataWarning, errors.SearchWarning])
def test_warnings_are_user_warnings(warning) -> None:
    assert issubclass(warning, errors.VaelabWarning) and issubclass(warning, UserWarning)


@pytest.mark.parametrize(("call", "named"), [
    (lambda: make_likelihood("poisson"), "'poisson'"),
    (lambda: make_schedule("cosine", steps=10), "'cosine'"),
    (lambda: mlp(4, (3,), activation="swishy"), "'swishy'"),
])
def test_bad_names_are_caught_either_way(call, named) -> None:
    with pytest.raises(errors.VaelabError, match=named):
        call()
    with pytest.raises(ValueError, match=named):
        call()


def test_distinct_names_each_repeated_value_once() -> None:
    assert errors.distinct("--seeds", [3, 1, 2]) == [3, 1, 2]
    with pytest.raises(errors.InputDataError, match=r"^--seeds repeats \[0, 2\]; give each once$"):
        errors.distinct("--seeds", [0, 2, 0, 2, 0, 1])


def test_library_code_raises_no_bare_value_error() -> None:
    # A bare ValueError would escape ``except VaelabError``: library code raises
    # InputDataError (a ValueError) for bad input instead.
    bare = []
    for package in ("vaecore", "ssvae", "chemvae", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                        and isinstance(node.exc.func, ast.Name) and node.exc.func.id == "ValueError"):
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bare, bare


def test_integer_at_least_takes_numpy_integers_and_names_the_rest() -> None:
    import numpy as np

    assert errors.integer_at_least("n", np.int64(3), 1) == 3 and type(errors.integer_at_least("n", np.int64(3), 1)) is int
    assert errors.integer_at_least("n", 0, 0) == 0
    for bad in (0, -1, 2.0, True, None, "3"):
        with pytest.raises(errors.InputDataError, match=f"n must be an integer >= 1, got {bad!r}"):
            errors.integer_at_least("n", bad, 1)


def test_integers_at_least_names_the_first_bad_index() -> None:
    import numpy as np

    assert errors.integers_at_least("hidden", (500, np.int64(300)), 1) == (500, 300)
    assert errors.integers_at_least("hidden", (), 1) == ()
    with pytest.raises(errors.InputDataError, match=r"hidden\[1\] must be an integer >= 1, got 0"):
        errors.integers_at_least("hidden", [500, 0, -1], 1)


def test_brief_cuts_long_values_and_says_how_long() -> None:
    # A 5,000-character SMILES made a 5,000-character error line (model.encode, chem train's
    # "no usable molecule ... the first: ...").
    assert errors.brief("CCO") == "'CCO'"
    assert errors.brief("C" * 5000) == "'" + "C" * 96 + "... (5000 characters)"
    assert len(errors.brief(list(range(1000)), 40)) < 70

"""The oracle: dedup by canonical SMILES, failure isolation and counting, the budget."""

import math
import warnings

import pytest

from chemvae.search.oracle import GIVE_UP_AFTER, Oracle
from vaecore.errors import InputDataError, ObjectiveError, SearchWarning


class CountingObjective:
    """Length of the SMILES, recording every molecule it was called on."""

    def __init__(self):
        self.seen = []

    def __call__(self, smiles):
        self.seen += list(smiles)
        return [float(len(s)) for s in smiles]


def test_duplicates_are_looked_up_not_rescored():
    objective = CountingObjective()
    oracle = Oracle(objective, budget=10)
    first = oracle.evaluate(["CCO", "OCC", "c1ccccc1"])  # OCC is ethanol again
    second = oracle.evaluate(["C(O)C", "CCN"])
    assert [e.status for e in first] == ["scored", "duplicate", "scored"]
    assert [e.status for e in second] == ["duplicate", "scored"]
    assert first[1].score == first[0].score == 3.0 and second[0].score == 3.0
    assert sorted(objective.seen) == ["CCN", "CCO", "c1ccccc1"]
    assert oracle.calls == 3


def test_invalid_smiles_are_failures_that_cost_nothing():
    objective = CountingObjective()
    oracle = Oracle(objective, budget=5)
    out = oracle.evaluate(["C1CC", "", "CCO"])
    assert [e.status for e in out] == ["invalid_smiles", "invalid_smiles", "scored"]
    assert oracle.failures["invalid_smiles"] == 2 and oracle.calls == 1
    assert objective.seen == ["CCO"]


def flaky(smiles):
    """None, NaN, inf, a string, or a raise for particular molecules; raises for any batch with CCCl."""
    if "CCCl" in smiles:
        raise RuntimeError("cannot score chlorides")
    table = {"CCO": None, "CCN": math.nan, "CCC": math.inf, "CCS": "high"}
    return [table.get(s, 1.0) for s in smiles]


def test_failures_are_isolated_and_counted_by_reason():
    oracle = Oracle(flaky, budget=100)
    out = oracle.evaluate(["CCO", "CCN", "CCC", "CCS", "CCCl", "CCF", "c1ccccc1"])
    status = {e.canonical: e.status for e in out}
    assert status == {"CCO": "none", "CCN": "nan", "CCC": "inf", "CCS": "bad_output", "CCCl": "exception",
                      "CCF": "scored", "c1ccccc1": "scored"}
    assert dict(oracle.failures) == {"none": 1, "nan": 1, "inf": 1, "bad_output": 1, "exception": 1}
    assert [e.ok for e in out] == [False] * 5 + [True, True]
    assert oracle.calls == 7  # failed evaluations are objective calls too
    again = oracle.evaluate(["OCC"])  # a failed molecule is not retried
    assert again[0].status == "duplicate" and not again[0].ok and oracle.calls == 7


# Distinct molecules (alkanes, alcohols) for tests that need more than GIVE_UP_AFTER of them.
MANY = ["C" * n for n in range(1, 31)] + ["C" * n + "O" for n in range(1, 31)]


def test_an_objective_that_scores_nothing_is_given_up_with_its_first_exception():
    seen = []

    def typo(smiles):
        seen.append(len(smiles))
        return [undefined_name for _ in smiles]  # noqa: F821 - the user's bug under test

    oracle = Oracle(typo, budget=100)
    with pytest.raises(ObjectiveError, match=rf"no score for any of the first {GIVE_UP_AFTER} molecules .*"
                                             rf"\({GIVE_UP_AFTER} exception\).* for 'C': NameError") as info:
        oracle.evaluate(MANY)
    assert isinstance(info.value.__cause__, NameError)
    assert seen == [len(MANY)] + [1] * GIVE_UP_AFTER  # the batch, then one at a time until it gave up
    with pytest.raises(ObjectiveError, match="it must return one float per molecule"):
        Oracle(lambda smiles: ["high"] * len(smiles)).evaluate(MANY)


def test_a_function_of_one_smiles_is_told_the_calling_convention():
    # The likeliest mistake: its TypeError (from RDKit's C++ converters) said nothing of it.
    def per_molecule(smiles: str) -> float:
        return float(len(smiles.upper()))  # a list has no .upper()

    with pytest.raises(ObjectiveError, match=r"\(20 exception\); an objective takes a list of SMILES strings, and it "
                                             r"must return one float per molecule; the first exception, for 'C': "
                                             r"AttributeError"):
        Oracle(per_molecule).evaluate(MANY)


def test_an_objective_that_scored_once_keeps_going_and_keeps_its_first_exception():
    def first_only(smiles):
        if smiles != ["C"]:
            raise KeyError(smiles[0])
        return [1.0]

    oracle = Oracle(first_only)
    oracle.evaluate(["C"])
    out = oracle.evaluate(MANY[1:])
    assert all(e.status == "exception" for e in out) and oracle.failures["exception"] == len(MANY) - 1
    assert oracle.exception_note() == "for 'CC': KeyError: 'CC'"
    assert Oracle(len).exception_note() is None


def test_wrong_length_output_falls_back_to_one_at_a_time():
    def short(smiles):
        return [2.0] if len(smiles) == 1 else [2.0] * (len(smiles) - 1)

    oracle = Oracle(short)
    # Each batch then costs one call per molecule: said once, not silently.
    with pytest.warns(SearchWarning, match="returned 2 values for 3 molecules; it must return one per molecule"):
        out = oracle.evaluate(["CCO", "CCN", "CCC"])
    assert [e.score for e in out] == [2.0, 2.0, 2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oracle.evaluate(["CCCO", "CCCN"])
    assert oracle.miscounted == 2


def test_budget_is_never_exceeded():
    objective = CountingObjective()
    oracle = Oracle(objective, budget=2)
    out = oracle.evaluate(["CCO", "CCN", "CCC", "CCN", "CCO"])
    assert [e.status for e in out] == ["scored", "scored", "over_budget", "duplicate", "duplicate"]
    assert oracle.exhausted and oracle.calls == 2 and len(objective.seen) == 2
    assert oracle.evaluate(["CCCC"])[0].status == "over_budget"


def test_uncounted_evaluations_fill_the_cache_for_free():
    oracle = Oracle(CountingObjective(), budget=1)
    oracle.evaluate(["CCO", "CCN"], counted=False)
    assert oracle.calls == 0
    assert oracle.evaluate(["OCC"])[0].status == "duplicate" and oracle.calls == 0


def test_bad_arguments_are_named():
    with pytest.raises(InputDataError, match="callable"):
        Oracle("qed")
    with pytest.raises(InputDataError, match="-1"):
        Oracle(len, budget=-1)
    with pytest.raises(InputDataError, match="budget must be an integer >= 0, got nan"):
        Oracle(len, budget=float("nan"))  # passed the old `budget < 0` test: no budget at all
    with pytest.raises(InputDataError, match="not one string 'CCO'"):
        Oracle(len).evaluate("CCO")  # was scored as the three molecules C, C and O

"""Objective bookkeeping: deduplication, failure counting and the evaluation budget.

Every decoded string goes through an :class:`Oracle` before it reaches a surrogate
model. The oracle canonicalizes it with RDKit, looks up molecules it has already seen,
calls the user's objective only on molecules it has not, and turns anything that is not
a finite float into a counted failure:

=================  =====================================================================
status             meaning
=================  =====================================================================
``scored``         a new molecule, scored (finite float)
``duplicate``      seen before (in this batch, earlier, or among the initial molecules):
                   looked up, not re-scored, not counted in the budget
``invalid_smiles`` the decoder's string does not parse; the objective is not called
``none``           the objective returned ``None`` for this molecule
``nan`` / ``inf``  it returned NaN / an infinity
``exception``      it raised for this molecule (found by scoring one at a time)
``bad_output``     it returned something that is not a number
``over_budget``    a new molecule left unscored because the budget ran out
=================  =====================================================================

Only ``scored`` rows have a finite score; failures never reach the GP. The budget
counts objective calls on new molecules (``scored`` plus the failed ones).

An objective that gives no score for any of the first :data:`GIVE_UP_AFTER` molecules it
is called on is broken, not choosy (a typo raising ``NameError``, a wrong return type):
the oracle raises :class:`~vaecore.errors.ObjectiveError` from the first exception
instead of spending the budget on counted failures.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chemvae.rdkit_utils import canonical_smiles, smiles_list
from chemvae.search.journal import ScoreJournal
from vaecore.errors import InputDataError, ObjectiveError, SearchWarning, integer_at_least

Objective = Callable[[Sequence[str]], Sequence[Any]]

FAILURE_STATUSES = ("invalid_smiles", "none", "nan", "inf", "exception", "bad_output")
STATUSES = ("scored", "duplicate", "over_budget") + FAILURE_STATUSES

# Objective calls, none of them scored, after which the objective is taken to be broken.
# Built-in objectives score every valid molecule; a user's that fails for 20 molecules in
# a row from its very first call would most likely fail for all 500 of a budget.
GIVE_UP_AFTER = 20


@dataclass(frozen=True)
class Evaluation:
    """What became of one proposed string.

    Attributes:
        smiles: The string as proposed (decoded).
        canonical: RDKit canonical SMILES, ``None`` if it does not parse.
        score: The objective value; NaN unless the molecule was scored (now or before).
        status: One of :data:`STATUSES`.
        new: The objective was called on it now (it counts in the budget).
    """

    smiles: str
    canonical: str | None
    score: float
    status: str
    new: bool

    @property
    def ok(self) -> bool:
        """A finite score is known (scored now, or a duplicate of a scored molecule)."""
        return math.isfinite(self.score)


def _as_score(value: Any) -> tuple[float, str]:
    """One objective output as ``(score, status)``."""
    if value is None:
        return math.nan, "none"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan, "bad_output"
    if math.isnan(x):
        return math.nan, "nan"
    if math.isinf(x):
        return math.nan, "inf"
    return x, "scored"


class Oracle:
    """Wraps an objective with a cache, a failure counter and a budget.

    Args:
        objective: Callable from a list of SMILES to a list of floats (same length).
        budget: Objective calls on new molecules allowed; ``None`` for no limit.
        journal: Where outcomes are recorded and, for molecules recorded earlier, read
            from instead of calling the objective (they still count in the budget: the
            call was made, by the run that recorded it).

    Attributes:
        calls: Molecules the objective has been called on within the budget.
        failures: ``Counter`` of failure statuses (invalid SMILES included).
        cache: Canonical SMILES -> score (NaN for a molecule whose scoring failed).
        first_exception: The first molecule the objective raised for, with the exception
            (``None`` if it never raised); shown with the failure counts.
        miscounted: Batches for which the objective returned a list of the wrong length;
            they are scored one molecule at a time, with a warning the first time.
    """

    def __init__(self, objective: Objective, budget: int | None = None, journal: ScoreJournal | None = None) -> None:
        if not callable(objective):
            raise InputDataError(f"objective must be callable (list of SMILES -> list of floats), got {objective!r}")
        self.objective = objective
        self.budget = None if budget is None else integer_at_least("budget", budget, 0)  # NaN passed a < 0 test
        self.journal = journal
        self.calls = 0
        self.failures: Counter[str] = Counter()
        self.cache: dict[str, float] = {}
        self.first_exception: tuple[str, Exception] | None = None
        self.miscounted = 0  # batches the objective returned the wrong number of values for
        self._live: Counter[str] = Counter()  # statuses of this oracle's own objective calls (not replayed)

    @property
    def remaining(self) -> float:
        return math.inf if self.budget is None else self.budget - self.calls

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def evaluate(self, smiles: Sequence[str], *, counted: bool = True) -> list[Evaluation]:
        """Score proposed strings, looking up known molecules.

        Args:
            smiles: ``N`` strings (decoder output, possibly invalid).
            counted: Whether new molecules use the budget (``False`` for the initial
                training molecules, which are scored but free).

        Returns:
            ``N`` :class:`Evaluation` in input order.
        """
        smiles = smiles_list(smiles, "smiles")  # one string would be scored letter by letter
        canon = [canonical_smiles(s) for s in smiles]
        status: list[str] = [""] * len(smiles)
        fresh: list[int] = []  # positions of molecules to score now (first occurrences)
        fresh_set: set[str] = set()
        over: set[str] = set()  # new molecules the budget has no room for
        for i, c in enumerate(canon):
            if c is None:
                status[i] = "invalid_smiles"
            elif c in over:
                status[i] = "over_budget"
            elif c in self.cache or c in fresh_set:
                status[i] = "duplicate"
            elif counted and len(fresh) >= self.remaining:
                status[i] = "over_budget"
                over.add(c)
            else:
                fresh.append(i)
                fresh_set.add(c)

        results = self._score_or_replay([canon[i] for i in fresh])
        for i, (score, st) in zip(fresh, results):
            self.cache[canon[i]] = score
            status[i] = st
        if counted:
            self.calls += len(fresh)
        is_new = set(fresh)
        out = []
        for i, s in enumerate(smiles):
            st = status[i]
            if st in FAILURE_STATUSES:
                self.failures[st] += 1
            score = self.cache.get(canon[i], math.nan) if st in ("scored", "duplicate") else math.nan
            out.append(Evaluation(s, canon[i], score, st, i in is_new))
        return out

    def _score_or_replay(self, smiles: list[str]) -> list[tuple[float, str]]:
        """``(score, status)`` per molecule: from the journal if recorded, else scored and recorded."""
        if self.journal is None:
            return self._score(smiles)
        known = [self.journal.lookup(s) for s in smiles]
        todo = [s for s, k in zip(smiles, known) if k is None]
        scored = dict(zip(todo, self._score(todo)))
        self.journal.record([(s, *scored[s]) for s in todo])
        return [k if k is not None else scored[s] for s, k in zip(smiles, known)]

    def _score(self, smiles: list[str]) -> list[tuple[float, str]]:
        """``(score, status)`` per molecule; a failing batch is retried one at a time.

        Raises:
            ObjectiveError: None of the first :data:`GIVE_UP_AFTER` molecules was scored.
        """
        if not smiles:
            return []
        try:
            values = list(self.objective(list(smiles)))
        except Exception:  # noqa: BLE001 - any failure of user code: isolate the culprit
            return self._one_at_a_time(smiles)
        if len(values) != len(smiles):
            if not self.miscounted:  # the scores are right one at a time, but each batch cost N calls
                warnings.warn(f"the objective returned {len(values)} values for {len(smiles)} molecules; it must "
                              f"return one per molecule: each batch is scored one molecule at a time instead",
                              SearchWarning, stacklevel=2)
            self.miscounted += 1
            return self._one_at_a_time(smiles)
        results = [_as_score(v) for v in values]
        self._tally(results)
        return results

    def _one_at_a_time(self, smiles: list[str]) -> list[tuple[float, str]]:
        results = []
        for s in smiles:  # checked after each call: each may be an expensive one
            results.append(self._score_one(s))
            self._tally([results[-1]])
        return results

    def _score_one(self, smiles: str) -> tuple[float, str]:
        try:
            values = list(self.objective([smiles]))
        except Exception as err:  # noqa: BLE001 - the objective failed for this molecule
            if self.first_exception is None:
                self.first_exception = (smiles, err)
            return math.nan, "exception"
        if len(values) != 1:
            return math.nan, "bad_output"
        return _as_score(values[0])

    def _tally(self, results: list[tuple[float, str]]) -> None:
        """Count outcomes of objective calls; give up on an objective that has scored nothing."""
        self._live.update(status for _, status in results)
        called = sum(self._live.values())
        if self._live["scored"] or called < GIVE_UP_AFTER:
            return
        counts = ", ".join(f"{n} {status}" for status, n in self._live.most_common())
        # The calling convention in every case: a function of one SMILES string (RDKit's
        # QED.qed(Chem.MolFromSmiles(s))), the likeliest mistake, raised a TypeError about
        # C++ string converters that said nothing of it.
        message = (f"the objective gave no score for any of the first {called} molecules it was called on ({counts}); "
                   "an objective takes a list of SMILES strings, and it must return one float per molecule")
        if self.first_exception is None:
            raise ObjectiveError(message)
        raise ObjectiveError(f"{message}; the first exception, {self.exception_note()}") from self.first_exception[1]

    def exception_note(self) -> str | None:
        """The first exception the objective raised and its molecule, as ``for 'CCO': NameError: ...``."""
        if self.first_exception is None:
            return None
        smiles, err = self.first_exception
        return f"for {smiles!r}: {type(err).__name__}: {err}"

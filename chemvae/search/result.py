"""The outcome of a latent-space search: its history table and what to read from it.

:class:`SearchRecorder` appends one row per proposed molecule while a search runs;
:class:`SearchResult` is what :func:`chemvae.search.optimize` returns.

History columns (one row per proposed string, initial molecules first with
``iteration == 0`` and ``method == "init"``):

``iteration`` (0 = initial data), ``method``, ``smiles`` (as decoded),
``canonical_smiles``, ``score`` (NaN unless known), ``valid`` (RDKit parses it),
``status`` (see :mod:`chemvae.search.oracle`), ``new`` (the objective was called on it
within the budget), ``oracle_calls`` (budget used after this row), ``seconds`` (since
the search started, when the row's batch was scored).
"""

from __future__ import annotations

import math
import numbers
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from chemvae.search.oracle import Evaluation
from vaecore.errors import InputDataError, integer_at_least

HISTORY_COLUMNS = ("iteration", "method", "smiles", "canonical_smiles", "score", "valid", "status", "new",
                   "oracle_calls", "seconds")
DEFAULT_CHECKPOINTS = (50, 100, 250, 500)


class SearchRecorder:
    """Collects history rows and per-iteration diagnostics during a search.

    Args:
        method: Method name written in the ``method`` column.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.start = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self.latents: list[Tensor] = []
        self.iterations: list[dict[str, Any]] = []
        self.calls = 0
        self.best = -math.inf

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, iteration: int, z: Tensor, evaluations: Sequence[Evaluation], *, method: str | None = None
               ) -> int:
        """Append one row per evaluation; ``z`` `[N, d]` are their latents. Returns new calls."""
        seconds = self.elapsed()
        new = 0
        for ev in evaluations:
            if ev.new and iteration > 0:
                self.calls += 1
                new += 1
            if iteration > 0 and ev.status == "scored":
                self.best = max(self.best, ev.score)
            self.rows.append({
                "iteration": iteration, "method": method or self.method, "smiles": ev.smiles,
                "canonical_smiles": ev.canonical, "score": ev.score, "valid": ev.canonical is not None,
                "status": ev.status, "new": ev.new and iteration > 0, "oracle_calls": self.calls,
                "seconds": seconds,
            })
        self.latents.append(z.detach().to("cpu", torch.float64).reshape(len(evaluations), -1))
        return new

    def log_iteration(self, **row: Any) -> None:
        self.iterations.append(row)


@dataclass
class SearchResult:
    """History and summary of one search.

    Attributes:
        history: One row per proposed molecule (see the module docstring).
        method: ``bo``, ``gradient`` or ``random``.
        objective: The objective's name.
        budget: Objective calls allowed.
        failures: Failure counts by status (``invalid_smiles``, ``nan``, ...).
        wall_seconds: Duration of the whole search, initial scoring included (of this
            call: a resumed search retraces its replayed part without objective calls).
        latents: Latent of each history row `[len(history), d]` (float64, CPU).
        iterations: One row per search iteration with timings and method diagnostics
            (e.g. trust-region length, GP fallbacks).
        settings: The method's resolved settings.
        replayed: Objective outcomes read from a journal instead of computed (a resumed
            search; they count as calls all the same).
    """

    history: pd.DataFrame
    method: str
    objective: str
    budget: int
    failures: dict[str, int]
    wall_seconds: float
    latents: Tensor
    iterations: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict[str, Any] = field(default_factory=dict)
    replayed: int = 0

    @property
    def oracle_calls(self) -> int:
        """Objective calls on new molecules (the budget used)."""
        return int(self.history["new"].sum()) if len(self.history) else 0

    @property
    def searched(self) -> pd.DataFrame:
        """History rows proposed by the search (initial molecules left out)."""
        return self.history[self.history["iteration"] > 0]

    def best(self, k: int = 10, *, include_init: bool = False) -> pd.DataFrame:
        """The ``k`` best distinct valid molecules the search scored (highest score first).

        Args:
            k: How many (at most; fewer if the search found fewer).
            include_init: Also consider the initial (training) molecules; without it,
                only molecules new to the search count (not re-found initial ones).

        Returns:
            Columns ``rank``, ``smiles`` (canonical), ``score``, ``iteration``,
            ``oracle_calls`` (budget used when it was found), ``seconds``.
        """
        k = integer_at_least("k", k, 0)  # head(-1) would drop the last molecule
        table = self.history if include_init else self.searched
        # Scored rows only: a proposal that re-finds a known molecule (a duplicate, maybe of
        # a training molecule) is not a molecule the search found.
        table = table[(table["status"] == "scored") & np.isfinite(table["score"])]
        table = table.sort_values(["score", "oracle_calls"], ascending=[False, True], kind="stable")
        table = table.drop_duplicates("canonical_smiles").head(k)
        out = table[["canonical_smiles", "score", "iteration", "oracle_calls", "seconds"]].rename(
            columns={"canonical_smiles": "smiles"}).reset_index(drop=True)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        return out

    def best_so_far(self) -> pd.DataFrame:
        """Best score among searched molecules after each objective call.

        Returns:
            Columns ``oracle_calls`` (1..calls) and ``best_score`` (NaN until a call succeeds).
        """
        calls = self.searched[self.searched["new"]]
        scores = calls["score"].to_numpy(dtype=float)
        best = pd.Series(np.where(np.isfinite(scores), scores, -np.inf)).cummax().to_numpy()
        best = np.where(np.isfinite(best), best, np.nan)
        return pd.DataFrame({"oracle_calls": np.arange(1, len(scores) + 1), "best_score": best})

    def best_at(self, checkpoints: Sequence[int] = DEFAULT_CHECKPOINTS) -> dict[int, float]:
        """Best score after ``c`` objective calls for each checkpoint ``c`` (NaN if fewer).

        Raises:
            InputDataError: ``checkpoints`` is one number, or holds one that is not an integer >= 1.
        """
        if isinstance(checkpoints, numbers.Number):
            raise InputDataError(f"checkpoints must be a sequence of call counts, got {checkpoints!r}")
        checkpoints = [integer_at_least("checkpoint", c, 1) for c in checkpoints]
        trace = self.best_so_far()["best_score"].to_numpy()
        return {c: float(trace[c - 1]) if c <= len(trace) else math.nan for c in checkpoints}

    @property
    def best_init_score(self) -> float:
        init = self.history[(self.history["iteration"] == 0) & np.isfinite(self.history["score"])]
        return float(init["score"].max()) if len(init) else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON-able summary: best score, oracle calls, valid fraction, failures, wall time.

        Undefined numbers (no valid molecule, a checkpoint beyond the calls made) are ``None``.
        """
        searched = self.searched
        top = self.best(1)
        n = len(searched)
        return _finite_or_none({
            "method": self.method,
            "objective": self.objective,
            "budget": self.budget,
            "oracle_calls": self.oracle_calls,
            "best_score": float(top["score"].iloc[0]) if len(top) else math.nan,
            "best_smiles": str(top["smiles"].iloc[0]) if len(top) else None,
            "best_init_score": self.best_init_score,
            "n_init": int((self.history["iteration"] == 0).sum()),
            "proposed": n,
            "valid_fraction": float(searched["valid"].mean()) if n else math.nan,
            "unique_valid": int(searched.loc[searched["valid"], "canonical_smiles"].nunique()) if n else 0,
            "duplicates": int((searched["status"] == "duplicate").sum()) if n else 0,
            "failures": dict(sorted(self.failures.items())),
            "iterations": int(searched["iteration"].max()) if n else 0,
            "wall_seconds": self.wall_seconds,
            "replayed": self.replayed,
            "best_at": {str(k): v for k, v in self.best_at().items()},
        })


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities as ``None`` so that summaries are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`HISTORY_COLUMNS` in order (also when empty)."""
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return frame.astype({"iteration": int, "score": float, "valid": bool, "new": bool, "oracle_calls": int,
                         "seconds": float})


def count_failures(history: pd.DataFrame, statuses: Sequence[str]) -> dict[str, int]:
    """Failure counts among searched rows, by status."""
    searched = history[history["iteration"] > 0]
    counts = Counter(s for s in searched["status"] if s in statuses)
    return dict(counts)

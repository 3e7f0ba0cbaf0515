"""A journal of objective outcomes: an interrupted search resumes without re-scoring.

Objectives can be expensive (a docking run per molecule), and a search that dies after
400 of 500 calls should not pay for them twice. :class:`ScoreJournal` appends every
outcome the :class:`~chemvae.search.oracle.Oracle` gets from the objective to a CSV file,
flushed and synced after each batch, and answers molecules it has recorded from the file
instead of calling the objective. A search restarted with the same seed and settings on
the CPU then proposes the same molecules, finds them in the journal, and carries on where
the first one stopped with the same history; anything else it proposes is scored as usual.

File: a header line naming the objective, then one line per molecule::

    # vaelab score journal; objective=qed
    CCO,0.4068,scored,end

(canonical SMILES, score as Python's ``repr`` of a float, oracle status, and an ``end``
field). A line cut short by a crash lacks the ``end`` field and is dropped on reading,
so a torn write can never replay a truncated score.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from vaecore.checkpoint import atomic_write_bytes
from vaecore.errors import InputDataError, brief, cannot_write

HEADER = "# vaelab score journal; objective="
END = "end"


class ScoreJournal:
    """Recorded objective outcomes, read from and appended to ``path``.

    Args:
        path: The journal file; created (with its header) if missing.
        objective: Name of the objective the outcomes belong to. An existing journal of
            another objective is refused: its scores would be replayed as this one's.
        statuses: The statuses a recorded line may carry (``None``: any); lines with
            another are dropped on reading.

    Attributes:
        recorded: Canonical SMILES -> ``(score, status)``.
        replayed: Outcomes answered from the journal since it was opened.
        dropped: Lines of the file that were cut short or unreadable, skipped on reading.
    """

    def __init__(self, path: str | os.PathLike, objective: str, statuses: Collection[str] | None = None) -> None:
        if "\n" in objective:
            raise InputDataError(f"objective name {objective!r} cannot go in a journal header (newline)")
        self.path = Path(path)
        self.objective = objective
        self.statuses = statuses
        self.recorded: dict[str, tuple[float, str]] = {}
        self.replayed = 0
        self.dropped = 0
        if self.path.exists() and not self.path.is_file():
            raise InputDataError(f"journal {self.path} exists and is not a file")
        if self.path.is_file() and self.path.stat().st_size > 0 and not self._unused_other_journal():
            self._read()
        else:  # which makes the folders, naming a path it cannot write ("[Errno 17] File exists: F" named F alone)
            atomic_write_bytes(self.path, f"{HEADER}{objective}\n".encode())

    def _unused_other_journal(self) -> bool:
        """A journal of another objective that records nothing (its search was refused before
        its first call): nothing is lost by starting this one's there."""
        with self.path.open(encoding="utf-8", errors="replace") as f:
            head = f.readline().rstrip("\n")
        return head.startswith(HEADER) and head[len(HEADER):] != self.objective and not has_records(self.path)

    def _read(self) -> None:
        # Undecodable bytes (a damaged file) fail the header check or drop their line, as a
        # torn line does; a strict read raised UnicodeDecodeError naming no file.
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines(keepends=True)
        head = lines[0].rstrip("\n")
        if not head.startswith(HEADER):
            raise InputDataError(f"{self.path} is not a vaelab score journal (first line {brief(head, 80)})")
        if head[len(HEADER):] != self.objective:
            raise InputDataError(f"{self.path} records objective {head[len(HEADER):]!r}, not {self.objective!r}; "
                                 "give this search another journal (vaelab molopt: another --out)")
        for line in lines[1:]:
            fields = next(csv.reader([line])) if line.endswith("\n") and "\ufffd" not in line else []
            if len(fields) != 4 or fields[3] != END:
                self.dropped += 1
                continue
            score = _parse_float(fields[1])
            known = self.statuses is None or fields[2] in self.statuses
            if score is None or not known or math.isfinite(score) != (fields[2] == "scored"):  # a score only when scored
                self.dropped += 1
                continue
            self.recorded[fields[0]] = (score, fields[2])
        if not text.endswith("\n"):  # end the torn line, or the next record would extend it
            self._append("\n")

    def lookup(self, canonical: str) -> tuple[float, str] | None:
        """The recorded ``(score, status)`` of a molecule, or ``None``; counts a hit as replayed."""
        outcome = self.recorded.get(canonical)
        if outcome is not None:
            self.replayed += 1
        return outcome

    def record(self, outcomes: Sequence[tuple[str, float, str]]) -> None:
        """Append ``(canonical, score, status)`` outcomes and sync them to disk."""
        if not outcomes:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for canonical, score, status in outcomes:
            writer.writerow([canonical, repr(float(score)), status, END])
            self.recorded[canonical] = (float(score), status)
        self._append(buffer.getvalue())

    def _append(self, text: str) -> None:
        # One write per batch, then fsync: after a crash the file holds whole batches and
        # at most one torn line, which _read drops.
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise cannot_write(self.path, err) from err

    def __len__(self) -> int:
        return len(self.recorded)


def has_records(path: str | os.PathLike) -> bool:
    """Whether the journal file at ``path`` holds a line beyond its header (an outcome, or a torn one)."""
    path = Path(path)
    return path.is_file() and len(path.read_bytes().splitlines()) > 1  # bytes: a damaged file has lines too


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

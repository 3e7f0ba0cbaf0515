"""chemvae.search.journal: recorded outcomes survive a crash and replace objective calls on resume."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from chemvae import objectives
from chemvae.search import optimize
from chemvae.search.journal import ScoreJournal
from vaecore.errors import FileWriteError, InputDataError


def test_outcomes_round_trip_and_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "journal.csv"
    journal = ScoreJournal(path, "qed")
    journal.record([("CCO", 0.40680796565539457, "scored"), ("C1CC1", math.nan, "exception")])
    with path.open("a") as f:
        f.write("c1ccccc1,0.44")  # a crash in the middle of the next batch
    again = ScoreJournal(path, "qed")
    assert again.recorded["CCO"] == (0.40680796565539457, "scored")  # every digit back
    assert math.isnan(again.recorded["C1CC1"][0]) and again.recorded["C1CC1"][1] == "exception"
    assert "c1ccccc1" not in again.recorded and again.dropped == 1
    assert again.lookup("CCO") == (0.40680796565539457, "scored") and again.lookup("CCN") is None
    assert again.replayed == 1
    again.record([("CCN", 0.5, "scored")])  # appended after the torn line, not onto it
    third = ScoreJournal(path, "qed")
    assert third.recorded["CCN"] == (0.5, "scored") and len(third) == 3 and third.dropped == 1


def test_a_record_after_a_short_torn_line_is_not_glued_to_it(tmp_path):
    path = tmp_path / "journal.csv"
    ScoreJournal(path, "qed").record([("CCO", 0.4, "scored")])
    with path.open("a") as f:
        f.write("CC")  # torn: "CC" + "N,0.5,scored,end" would read as the molecule CCN
    ScoreJournal(path, "qed").record([("N", 0.5, "scored")])
    assert set(ScoreJournal(path, "qed").recorded) == {"CCO", "N"}


def test_a_line_whose_score_contradicts_its_status_is_dropped(tmp_path):
    path = tmp_path / "journal.csv"
    ScoreJournal(path, "qed")
    with path.open("a") as f:
        f.write("CCO,nan,scored,end\nCCN,0.5,nan,end\nCCC,abc,scored,end\nCCCC,0.3,scored,end\nN,nan,odd,end\n")
    journal = ScoreJournal(path, "qed")
    assert list(journal.recorded) == ["CCCC", "N"] and journal.dropped == 3
    journal = ScoreJournal(path, "qed", statuses=("scored", "nan"))
    assert list(journal.recorded) == ["CCCC"] and journal.dropped == 4  # "odd" is no status of these


def test_a_journal_of_another_objective_or_another_file_is_refused(tmp_path):
    # One that records nothing (its search was refused before its first call) is taken over:
    # it blocked the corrected command in the same directory.
    ScoreJournal(tmp_path / "journal.csv", "similarity:CCO")
    ScoreJournal(tmp_path / "journal.csv", "qed").record([("CCO", 0.4, "scored")])
    with pytest.raises(InputDataError, match="records objective 'qed', not 'penalized_logp'"):
        ScoreJournal(tmp_path / "journal.csv", "penalized_logp")
    assert ScoreJournal(tmp_path / "journal.csv", "qed").lookup("CCO") == (0.4, "scored")
    (tmp_path / "other.csv").write_text("smiles,score\nCCO,1\n")
    with pytest.raises(InputDataError, match="is not a vaelab score journal"):
        ScoreJournal(tmp_path / "other.csv", "qed")
    with pytest.raises(InputDataError, match="exists and is not a file"):
        ScoreJournal(tmp_path, "qed")
    # Undecodable bytes raised UnicodeDecodeError, naming no file: a damaged header is
    # refused by name, a damaged line dropped like a torn one.
    (tmp_path / "garbage.csv").write_bytes(b"\x90\xff\x01binary")
    with pytest.raises(InputDataError, match="garbage.csv is not a vaelab score journal"):
        ScoreJournal(tmp_path / "garbage.csv", "qed")
    damaged = tmp_path / "damaged.csv"
    ScoreJournal(damaged, "qed").record([("CCO", 0.4, "scored")])
    with damaged.open("ab") as f:
        f.write(b"C\xffC,0.5,scored,end\n")
    again = ScoreJournal(damaged, "qed")
    assert again.recorded == {"CCO": (0.4, "scored")} and again.dropped == 1
    assert again.lookup("CCO") == (0.4, "scored")


class CountingQED:
    """QED that remembers which molecules it was called on (and that the property head predicts)."""

    name = "qed"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.surrogate, self.surrogate_properties = objectives.qed.surrogate, objectives.qed.surrogate_properties

    def __call__(self, smiles):
        self.seen += list(smiles)
        return objectives.qed(smiles)


@pytest.mark.parametrize("method", ["bo", "gradient"])
def test_an_interrupted_search_resumes_with_the_same_history_and_no_repeated_call(
        tmp_path, tiny_model, low_qed_smiles, fast_bo, method):
    kwargs = dict(method=method, budget=10, batch_size=5, n_init=24, init_smiles=low_qed_smiles, seed=3,
                  settings=fast_bo if method == "bo" else None)
    first = CountingQED()
    whole = optimize(tiny_model, first, journal=tmp_path / "whole.csv", **kwargs)
    lines = (tmp_path / "whole.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 1 + len(first.seen)  # header, then every call: the 24 initial molecules and the 10
    assert whole.replayed == 0
    # The run "died" after scoring the initial molecules and 3 of its calls.
    kept = 1 + 24 + 3
    (tmp_path / "cut.csv").write_text("".join(lines[:kept]))
    second = CountingQED()
    resumed = optimize(tiny_model, second, journal=tmp_path / "cut.csv", **kwargs)
    assert second.seen == first.seen[kept - 1:]  # only what the journal lacked
    assert resumed.replayed == kept - 1 and resumed.oracle_calls == whole.oracle_calls == 10
    columns = ["iteration", "smiles", "score", "status", "new"]
    pd.testing.assert_frame_equal(resumed.history[columns], whole.history[columns])


def test_an_append_that_fails_names_the_journal_and_leaves_a_readable_one(tmp_path, file_size_limit):
    # A full disk said only "[Errno 28] No space left on device".
    path = tmp_path / "journal.csv"
    journal = ScoreJournal(path, "qed")
    journal.record([("CCO", 0.25, "scored")])
    with file_size_limit(path.stat().st_size + 5):  # five bytes of the first line reach the disk
        with pytest.raises(FileWriteError, match=r"^cannot write .*/journal\.csv: File too large$"):
            journal.record([("C" * n + "N", 0.5, "scored") for n in range(1, 11)])
    again = ScoreJournal(path, "qed")  # what reached the disk: a torn line, dropped
    assert again.recorded == {"CCO": (0.25, "scored")} and again.dropped == 1


def test_a_journal_under_a_file_is_named(tmp_path):
    # It was the bare "FileExistsError: [Errno 17] File exists: '.../a_file'".
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileWriteError, match=r"^cannot write .*/a_file/journal\.csv: .*/a_file is a file, not a "
                                             r"directory$"):
        ScoreJournal(tmp_path / "a_file" / "journal.csv", "qed")
    assert ScoreJournal(tmp_path / "new" / "deeper" / "journal.csv", "qed").path.is_file()  # folders are made

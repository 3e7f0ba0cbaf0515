"""Tests for chemvae.data: skip-and-count checking, CSV reading, splits."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chemvae.data import (
    SKIP_REASONS,
    check_molecules,
    load_splits,
    read_smiles_csv,
)
from chemvae.rdkit_utils import canonical_smiles
from chemvae.tokens import Tokenizer, Vocabulary
from vaecore.errors import InputDataError

BAD_AND_GOOD = [
    "CCO",  # kept
    "",  # empty
    None,  # empty
    float("nan"),  # empty
    "C1CC",  # unparsable (unclosed ring)
    "C(C)(C)(C)(C)C",  # valence: five bonds on carbon
    "c1cccc1",  # sanitize: cannot kekulize
    "C" * 30,  # too_long for max_length 20
    "[Xe]",  # kept by SMILES; outside the vocabulary below
    "c1ccccc1",  # kept
]


def test_bad_molecules_are_counted_by_reason():
    checked = check_molecules(BAD_AND_GOOD, Tokenizer("smiles"), max_length=20)
    assert checked.indices == [0, 8, 9]
    assert checked.smiles == ["CCO", "[Xe]", "c1ccccc1"]
    assert dict(checked.skipped) == {"empty": 3, "unparsable": 1, "valence": 1, "sanitize": 1, "too_long": 1}
    assert checked.summary() == (
        "kept 3 of 10 molecules; skipped 7 (empty 3, unparsable 1, valence 1, sanitize 1, too_long 1)"
    )
    assert checked.first_issue.index == 1 and checked.first_issue.reason == "empty"


def test_unknown_tokens_and_canonicalization():
    vocab = Vocabulary(["C", "O", "c", "1"])
    checked = check_molecules(["OCC", "[Xe]", "C1=CC=CC=C1"], Tokenizer("smiles"), max_length=20, vocab=vocab)
    assert checked.smiles == ["CCO", "c1ccccc1"]  # RDKit canonical forms
    assert dict(checked.skipped) == {"unknown_token": 1}
    assert "['[Xe]']" in checked.first_issue.message
    raw = check_molecules(["OCC"], Tokenizer("smiles"), max_length=20, canonicalize=False)
    assert raw.smiles == ["OCC"]


def test_canonical_forms_drop_explicit_hydrogens_as_rdkit_does():
    # Parsed without sanitizing, '[H]c1ccccc1' kept its [H] ('canonical', yet not RDKit's form): an
    # unknown token to a model trained without it, and a string long enough to be skipped.
    given = ["[H]c1ccccc1", "[H]OC([H])([H])C([H])([H])[H]", "[H]N=c1cccc[nH]1", "[2H]C", "[H][H]"]
    checked = check_molecules(given, Tokenizer("smiles"), max_length=8, vocab=Vocabulary(["C", "O", "c", "1"]))
    assert checked.smiles == ["c1ccccc1", "CCO"] and dict(checked.skipped) == {"too_long": 1, "unknown_token": 2}
    checked = check_molecules(given, Tokenizer("smiles"), max_length=20)
    assert checked.smiles == [canonical_smiles(s) for s in given] == ["c1ccccc1", "CCO", "N=c1cccc[nH]1", "[2H]C",
                                                                      "[H][H]"]
    assert check_molecules(given[:1], Tokenizer("smiles"), max_length=20, canonicalize=False).smiles == given[:1]


def test_selfies_checking_counts_refusals():
    checked = check_molecules(["CCO", "C1CC", "c1ccccc1"], Tokenizer("selfies"), max_length=20)
    assert len(checked.indices) == 2
    assert all(t.startswith("[") for t in checked.tokens[0])


def test_parallel_checking_matches_serial():
    smiles = BAD_AND_GOOD * 3
    serial = check_molecules(smiles, Tokenizer("smiles"), max_length=20)
    parallel = check_molecules(smiles, Tokenizer("smiles"), max_length=20, n_jobs=2, chunk_size=10)
    assert parallel.indices == serial.indices and parallel.smiles == serial.smiles
    assert parallel.skipped == serial.skipped and parallel.first_issue == serial.first_issue


def test_checking_refuses_one_string_and_a_bad_max_length():
    with pytest.raises(InputDataError, match="not one string 'CCO'"):
        check_molecules("CCO", Tokenizer("smiles"), max_length=20)  # was kept as C, C and O
    with pytest.raises(InputDataError, match="max_length must be an integer >= 1, got 2.5"):
        check_molecules(["CCO"], Tokenizer("smiles"), max_length=2.5)  # skipped all as too_long


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.none(), st.floats()), max_size=8))
def test_checking_never_raises_and_accounts_for_everything(items):
    checked = check_molecules(items, Tokenizer("smiles"), max_length=25)
    assert len(checked.indices) + sum(checked.skipped.values()) == len(items)
    assert set(checked.skipped) <= set(SKIP_REASONS)


def test_read_smiles_csv(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("id,SMILES\n1,CCO\n2,\n3,NA\n")
    table = read_smiles_csv(path, "smiles")
    assert table["smiles"].tolist() == ["CCO", "", "NA"]  # verbatim, empty cell as ""
    with pytest.raises(InputDataError, match=r"no SMILES column 'mol'.*\['id', 'SMILES'\]"):
        read_smiles_csv(path, "mol")
    # Two columns that match only case-insensitively: the first was read without a word.
    (tmp_path / "two.csv").write_text("Smiles,SMILES\nCCO,CCN\n")
    with pytest.raises(InputDataError, match=r"2 columns that match 'smiles' only case-insensitively: \['Smiles', 'SMILES'\]"):
        read_smiles_csv(tmp_path / "two.csv")
    (tmp_path / "exact.csv").write_text("SMILES,smiles\nCCN,CCO\n")
    assert read_smiles_csv(tmp_path / "exact.csv")["smiles"].tolist() == ["CCO"]  # an exact match is no doubt
    # A .tsv or a spreadsheet's semicolon export was one column named by the whole header line.
    for name, sep in (("mols.tsv", "\t"), ("semi.csv", ";")):
        (tmp_path / name).write_text(f"name{sep}SMILES\nethanol{sep}CCO\nbenzene{sep}c1ccccc1\n")
        table = read_smiles_csv(tmp_path / name)
        assert table["smiles"].tolist() == ["CCO", "c1ccccc1"] and table["name"].tolist() == ["ethanol", "benzene"]
    with pytest.raises(InputDataError, match="no data file"):
        read_smiles_csv(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputDataError, match="empty.csv is empty"):
        read_smiles_csv(tmp_path / "empty.csv")
    # Each of these was a raw UnicodeDecodeError, BadGzipFile or ParserError.
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00smiles\x00")
    (tmp_path / "damaged.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "ragged.csv").write_text("smiles,x\nCCO,1\nCCN,2,3,4\n")
    for name, detail in [("binary.csv", "codec can't decode"), ("damaged.csv.gz", "Not a gzipped file"),
                         ("ragged.csv", "Expected 2 fields in line 3, saw 4")]:
        with pytest.raises(InputDataError, match=f"{name} cannot be read as a CSV table: .*{detail}"):
            read_smiles_csv(tmp_path / name)


def test_a_smiles_file_is_read_a_molecule_a_line(tmp_path):
    # A .smi file (ZINC's, RDKit's, an export of ChEMBL) was refused as a CSV without a
    # SMILES column: "its columns are ['CCOC(=O)c1...']".
    (tmp_path / "named.smi").write_text("SMILES Name\nCCO ethanol\n\nc1ccccc1\tbenzene ring\nnot-a-molecule x\n")
    table = read_smiles_csv(tmp_path / "named.smi")
    assert table["smiles"].tolist() == ["CCO", "c1ccccc1", "not-a-molecule"]  # the header and a blank line skipped
    assert table["name"].tolist() == ["ethanol", "benzene ring", "x"]
    with gzip.open(tmp_path / "bare.smiles.gz", "wt") as fh:
        fh.write("CCO\nCCN\nC1CC1\nCCCC\n")
    assert read_smiles_csv(tmp_path / "bare.smiles.gz")["smiles"].tolist() == ["CCO", "CCN", "C1CC1", "CCCC"]
    (tmp_path / "commas.smi").write_text("smiles,name\nCCO,ethanol\nCCN\n")  # some tools write commas
    table = read_smiles_csv(tmp_path / "commas.smi")
    assert table["smiles"].tolist() == ["CCO", "CCN"] and table["name"].tolist() == ["ethanol", ""]
    splits = load_splits(tmp_path / "bare.smiles.gz", test_fraction=0.25, valid_fraction=0.0)
    assert sorted(splits.train + splits.test) == ["C1CC1", "CCCC", "CCN", "CCO"] and len(splits.test) == 1
    (tmp_path / "damaged.smi.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputDataError, match="damaged.smi.gz cannot be read as a SMILES file: .*Not a gzipped file"):
        read_smiles_csv(tmp_path / "damaged.smi.gz")


def test_fixture_splits_use_split_column_and_are_deterministic():
    a = load_splits("fixture", seed=3)
    b = load_splits("fixture", seed=3)
    assert a.train == b.train and a.valid == b.valid
    assert len(a.test) == 200 and len(a.train) + len(a.valid) == 1800
    assert not set(a.test) & set(a.train)
    assert a.reference == a.train and a.test_scaffolds is None and a.test_source == "split column"
    capped = load_splits("fixture", seed=3, max_molecules=100)
    assert len(capped.train) == 100 and len(capped.valid) == 5  # valid_fraction of the molecules used
    assert not set(capped.valid) & set(capped.train)
    with pytest.raises(InputDataError, match="max_molecules must be an integer >= 1, got 2.5"):
        load_splits("fixture", seed=3, max_molecules=2.5)


def test_random_split_of_a_plain_csv(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles\n" + "\n".join("C" * (i % 7 + 1) + "O" for i in range(40)) + "\n")
    splits = load_splits(str(path), test_fraction=0.25, valid_fraction=0.1)
    assert len(splits.test) == 10 and len(splits.valid) == 3 and len(splits.train) == 27
    assert splits.test_source == "test_fraction"
    one = tmp_path / "one.csv"
    one.write_text("smiles\nCCO\n")
    with pytest.raises(InputDataError, match="no molecule left to train on: 1 rows, 0 held out for test and 1 for"):
        load_splits(str(one))


def test_a_split_column_names_every_held_out_set(tmp_path):
    # MOSES's own dataset_v1.csv spells it SPLIT: the column was not read, and its scaffold
    # test rows went into the training pool; 'valid' rows were pooled too.
    path = tmp_path / "moses_like.csv"
    names = ["train"] * 20 + ["Valid"] * 3 + ["test"] * 4 + ["test_scaffolds"] * 2
    path.write_text("SMILES,SPLIT\n" + "".join(f"{'C' * (i + 1)}O,{n}\n" for i, n in enumerate(names)))
    splits = load_splits(str(path), smiles_column="SMILES", max_molecules=10)
    assert splits.valid == ["C" * i + "O" for i in range(21, 24)] and splits.valid_source == "split column"
    assert splits.test == ["C" * i + "O" for i in range(24, 28)] and splits.test_source == "split column"
    assert splits.test_scaffolds == ["C" * i + "O" for i in range(28, 30)]
    assert len(splits.train) == 10 and set(splits.train) <= {"C" * i + "O" for i in range(1, 21)}
    path.write_text("smiles,split\nCCO,train\nCCN,fold1\nCCC,\n")
    with pytest.raises(InputDataError, match=r"its 'split' column holds \['', 'fold1'\]; a split is one of"):
        load_splits(str(path))

"""Tests of chemvae.properties: known RDKit values, both penalized-logP forms, the cache."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import RDConfig

from chemvae.properties import (
    PROPERTY_COLUMNS,
    compute_properties,
    logp,
    penalized_logp,
    qed,
    read_property_table,
    ring_penalty,
    sa_score,
    smiles_checksum,
)
from chemvae.rdkit_utils import mol_from_smiles
from vaecore.errors import FileWriteError

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "moses_small.csv"


def test_sa_score_matches_rdkit_reference_values():
    # RDKit ships 100 ZINC molecules with the SA scores of the original implementation;
    # this also checks our restricted loading of the fragment-score table.
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "data", "zim.100.txt")
    table = pd.read_csv(path, sep="\t")
    got = np.array([sa_score(mol_from_smiles(s)) for s in table["smiles"]])
    np.testing.assert_allclose(got, table["sa_score"].to_numpy(), atol=5e-4)


def test_known_values_of_simple_molecules():
    benzene = mol_from_smiles("c1ccccc1")
    assert logp(benzene) == pytest.approx(1.6866, abs=1e-4)  # Crippen contributions: 6 x 0.2811
    assert qed(benzene) == pytest.approx(0.4426, abs=1e-3)
    assert ring_penalty(benzene) == 0.0
    assert ring_penalty(mol_from_smiles("C1CCCCCCC1")) == 2.0  # cyclooctane: 8 - 6
    assert ring_penalty(mol_from_smiles("C1CCCCCCCCCCC1")) == 6.0  # 12-membered ring
    assert ring_penalty(mol_from_smiles("CCO")) == 0.0
    assert 1.0 <= sa_score(mol_from_smiles("CC(C)(C)c1ccc(O)cc1")) <= 10.0


@pytest.mark.parametrize("function", [logp, qed, sa_score, ring_penalty, penalized_logp])
@pytest.mark.parametrize("bad", ["CCO", None])
def test_descriptors_name_what_is_not_a_molecule(function, bad):
    # RDKit's own error for these is a Boost.Python signature dump.
    with pytest.raises(ValueError, match=f"expected an RDKit molecule .*got {type(bad).__name__} {bad!r}"):
        function(bad)


@pytest.mark.parametrize("smiles", ["CCOC(=O)C1CCN(C(=O)c2ccccc2Cl)CC1", "C1CCCCCCCCCC1O"])
def test_penalized_logp_forms(smiles):
    mol = mol_from_smiles(smiles)
    lp, sa, cycle = logp(mol), sa_score(mol), ring_penalty(mol)
    assert penalized_logp(mol, normalized=False) == pytest.approx(lp - sa - cycle)
    expected = (lp - 2.45777691) / 1.43341767 + (-sa + 3.05352042) / 0.83460587 + (-cycle + 0.04861121) / 0.28746695
    assert penalized_logp(mol) == pytest.approx(expected)
    assert penalized_logp(mol) != pytest.approx(penalized_logp(mol, normalized=False))


def test_compute_properties_marks_bad_smiles_invalid(capfd):
    smiles = ["CCO", "C1CC", "", None, "c1ccccc1", "C(C)(C)(C)(C)C", "NA", float("nan")]
    table = compute_properties(smiles)
    assert list(table.columns) == ["smiles", "valid", *PROPERTY_COLUMNS]
    assert table["valid"].tolist() == [True, False, False, False, True, False, False, False]
    assert table.loc[~table["valid"], list(PROPERTY_COLUMNS)].isna().all().all()
    assert table.loc[table["valid"], list(PROPERTY_COLUMNS)].notna().all().all()
    benzene = mol_from_smiles("c1ccccc1")
    row = table.iloc[4]
    assert row["logp"] == pytest.approx(logp(benzene))
    assert row["plogp"] == pytest.approx(penalized_logp(benzene))
    assert row["plogp_unnormalized"] == pytest.approx(penalized_logp(benzene, normalized=False))
    # RDKit must stay quiet: no per-molecule parse or valence messages.
    assert capfd.readouterr().err == ""


def test_cache_is_keyed_by_checksum_and_read_back(tmp_path):
    smiles = ["CCO", "NA", "c1ccccc1O"]
    first = compute_properties(smiles, cache_dir=tmp_path)
    path = tmp_path / f"properties-{smiles_checksum(smiles)}.csv.gz"
    assert path.exists()
    pd.testing.assert_frame_equal(read_property_table(path), first)
    # Prove the second call reads the file: tamper with a value and see it come back.
    tampered = first.copy()
    tampered.loc[0, "qed"] = 123.0
    tampered.to_csv(path, index=False, compression="gzip")
    assert compute_properties(smiles, cache_dir=tmp_path).loc[0, "qed"] == 123.0
    # A different list has a different key.
    assert smiles_checksum(smiles) != smiles_checksum(smiles[::-1])
    other = compute_properties(smiles[::-1], cache_dir=tmp_path)
    assert other.loc[2, "qed"] == pytest.approx(qed(mol_from_smiles("CCO")))
    assert len(list(tmp_path.glob("properties-*.csv.gz"))) == 2


def test_a_cache_that_cannot_be_written_is_named(tmp_path, file_size_limit):
    # A full disk said only "[Errno 28] No space left on device", and left a ".partial" file.
    with file_size_limit(40), pytest.raises(FileWriteError, match=r"^cannot write .*/properties-[0-9a-f]+\.csv\.gz: "):
        compute_properties(["CCO", "c1ccccc1O"], cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_parallel_workers_match_serial():
    smiles = pd.read_csv(FIXTURE)["smiles"].tolist()[:60] + ["not a smiles"]
    serial = compute_properties(smiles, n_jobs=1)
    parallel = compute_properties(smiles, n_jobs=2, chunk_size=16)
    pd.testing.assert_frame_equal(serial, parallel)
    assert not parallel["valid"].iloc[-1]


def test_fixture_is_moses_molecules_with_their_properties():
    fixture = pd.read_csv(FIXTURE)
    assert list(fixture.columns) == ["smiles", "split", *PROPERTY_COLUMNS]
    assert fixture["split"].value_counts().to_dict() == {"train": 1800, "test": 200}
    assert fixture["smiles"].is_unique
    assert fixture[list(PROPERTY_COLUMNS)].notna().all().all()
    sample = fixture.sample(25, random_state=0)
    recomputed = compute_properties(sample["smiles"].tolist())
    np.testing.assert_allclose(
        recomputed[list(PROPERTY_COLUMNS)].to_numpy(), sample[list(PROPERTY_COLUMNS)].to_numpy(), atol=1e-5
    )
    # MOSES molecules are drug-like: QED in (0, 1], SA in [1, 10].
    assert fixture["qed"].between(0, 1).all() and fixture["sa"].between(1, 10).all()
    assert all(math.isfinite(v) for v in fixture["plogp"])

"""Tests of chemvae.metrics on hand-made inputs whose answers are known."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from chemvae import metrics
from chemvae.rdkit_utils import mol_from_smiles
from vaecore.errors import InputDataError, InputDataWarning

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "moses_small.csv"
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)


def _tanimoto(a: str, b: str) -> float:
    """Reference Tanimoto from RDKit's own bit-vector routine (independent of our torch path)."""
    fp_a, fp_b = (_MORGAN.GetFingerprint(mol_from_smiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fp_a, fp_b)


@pytest.fixture(scope="module")
def moses_small() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


def test_reconstruction_accuracy_is_canonical_exact_match():
    inputs = ["CCO", "c1ccccc1", "CCN", "CC(=O)O"]
    decoded = ["OCC", "C1=CC=CC=C1", "not smiles", "CC(O)=O"]  # 3 same molecules, 1 invalid
    assert metrics.reconstruction_accuracy(inputs, decoded) == pytest.approx(3 / 4)
    assert metrics.reconstruction_accuracy(["CCO"], [None]) == 0.0
    assert metrics.reconstruction_accuracy(["CCO"], ["CCC"]) == 0.0
    with pytest.raises(InputDataError, match="2 inputs but 1"):
        metrics.reconstruction_accuracy(["CCO", "C"], ["CCO"])
    with pytest.raises(InputDataError, match="C1CC"):
        metrics.reconstruction_accuracy(["C1CC"], ["CCO"])


def test_validity_counts_parsable_strings():
    assert metrics.validity(["CCO", "OCC", "C1CC", "", None, "C(C)(C)(C)(C)C"]) == pytest.approx(2 / 6)
    with pytest.raises(InputDataError):
        metrics.validity([])


def test_unique_at_k_uses_first_k_valid_molecules():
    gen = ["CCO", "bad", "OCC", "C", "CC", "CCC"]
    # valid canonical: CCO, CCO, C, CC, CCC -> first 3 have 2 distinct
    assert metrics.unique_at_k(gen, 3) == pytest.approx(2 / 3)
    assert metrics.unique_at_k(gen, 5) == pytest.approx(4 / 5)
    with pytest.warns(InputDataWarning, match="only 5 valid"):
        assert metrics.unique_at_k(gen, 1000) == pytest.approx(4 / 5)


def test_fingerprints_refuse_one_string():
    with pytest.raises(InputDataError, match="not one string 'CCO'"):
        metrics.morgan_fingerprints("CCO")  # was three rows: C, C and O
    assert metrics.morgan_fingerprints(["CCO", mol_from_smiles("CCN")]).shape == (2, 1024)


def test_k_and_p_are_checked():
    with pytest.raises(InputDataError, match="k must be an integer >= 1, got 1.5"):
        metrics.unique_at_k(["CCO"], 1.5)  # was a slice-index TypeError
    with pytest.raises(InputDataError, match="p must be a finite number > 0, got 0"):
        metrics.internal_diversity(["CCO", "CCN"], p=0)  # was a ZeroDivisionError
    with pytest.raises(InputDataError, match=r"k in ks must be an integer >= 1, got 0"):
        metrics.generation_metrics(["CCO"], train=["CC"], test=["CCO"], compute_fcd=False, ks=(1000, 0))
    with pytest.raises(InputDataError, match="ks must be a sequence of integers, got 10000"):
        metrics.generation_metrics(["CCO"], train=["CC"], test=["CCO"], compute_fcd=False, ks=10000)


@pytest.mark.filterwarnings("ignore::vaecore.errors.InputDataWarning")  # unique@k on few molecules
def test_without_test_molecules_the_test_entries_are_nan():
    result = metrics.generation_metrics(["CCO", "c1ccccc1"], train=["CC"], test=None, compute_fcd=False, ks=(10,))
    assert result["validity"] == 1.0 and result["novelty"] == 1.0
    assert all(math.isnan(result[f"{name}/Test"]) for name in ("FCD", "SNN", "Frag", "Scaf"))


def test_novelty_is_fraction_of_distinct_valid_molecules_not_in_train():
    gen = ["OCC", "CCO", "c1ccccc1", "CCN", "bad"]
    train = ["C(C)O", "CCCC"]  # same molecule as CCO, written differently
    assert metrics.novelty(gen, train) == pytest.approx(2 / 3)
    # Trusting the raw strings misses the non-canonical spelling, as MOSES would.
    assert metrics.novelty(gen, train, train_is_canonical=True) == pytest.approx(3 / 3)


def test_internal_diversity_of_two_molecules():
    a, b = "CCOC(=O)c1ccccc1", "CCOC(=O)c1ccccc1N"
    t = _tanimoto(a, b)
    assert 0 < t < 1
    # All ordered pairs, self-pairs included: mean T = (1 + 1 + 2t) / 4.
    assert metrics.internal_diversity([a, b]) == pytest.approx((1 - t) / 2)
    assert metrics.internal_diversity([a, b], p=2) == pytest.approx(1 - math.sqrt((1 + t**2) / 2))
    assert metrics.internal_diversity([a, a, a]) == pytest.approx(0.0)


def test_snn_is_mean_max_tanimoto_to_reference():
    gen = ["c1ccccc1O", "CCN(CC)CC", "bad"]
    ref = ["c1ccccc1N", "c1ccccc1", "CCNCC"]
    expected = np.mean([max(_tanimoto(g, r) for r in ref) for g in gen[:2]])
    assert metrics.snn(gen, ref) == pytest.approx(expected)
    assert metrics.snn(ref, ref) == pytest.approx(1.0)


def test_frag_and_scaffold_cosine_similarity():
    # Neither benzene nor ethanol has a BRICS bond: each is one fragment.
    assert metrics.frag_similarity(["c1ccccc1"], ["c1ccccc1", "CCO"]) == pytest.approx(1 / math.sqrt(2))
    assert metrics.frag_similarity(["CCOC(=O)c1ccccc1"], ["CCOC(=O)c1ccccc1"]) == pytest.approx(1.0)
    assert metrics.frag_similarity(["c1ccccc1"], ["CCO"]) == pytest.approx(0.0)
    # Scaffolds: toluene-benzyl and diphenylmethane share one scaffold; the amide has another.
    gen = ["Cc1ccccc1Cc1ccccc1"]
    ref = ["c1ccccc1Cc1ccccc1", "O=C(Nc1ccccc1)C1CC1"]
    assert metrics.scaffold_similarity(gen, ref) == pytest.approx(1 / math.sqrt(2))
    # One-ring scaffolds are dropped, as in MOSES: nothing left gives NaN.
    assert math.isnan(metrics.scaffold_similarity(["c1ccccc1CCN"], ref))


def test_generation_metrics_on_the_moses_fixture(moses_small):
    train = moses_small.loc[moses_small["split"] == "train", "smiles"].tolist()
    test = moses_small.loc[moses_small["split"] == "test", "smiles"].tolist()
    gen = train[:150] + train[:50] + ["bad", "C1CC"]
    with pytest.warns(InputDataWarning, match="unique@1000"):
        result = metrics.generation_metrics(
            gen, train=train, test=test, test_scaffolds=test[:100], compute_fcd=False
        )
    assert set(result) == {
        "validity", "unique@1k", "unique@10k", "novelty", "intdiv", "intdiv2",
        *(f"{m}/{s}" for m in ("FCD", "SNN", "Frag", "Scaf") for s in ("Test", "TestSF")),
    }
    assert result["validity"] == pytest.approx(200 / 202)
    assert result["unique@1k"] == pytest.approx(150 / 200)
    assert result["novelty"] == 0.0  # every generated molecule is a training molecule
    assert math.isnan(result["FCD/Test"])
    assert result["SNN/Test"] == pytest.approx(metrics.snn(gen, test))
    assert result["intdiv"] == pytest.approx(metrics.internal_diversity(gen))
    assert 0.0 < result["Scaf/Test"] < result["Frag/Test"] <= 1.0
    # MOSES test molecules are not in MOSES train.
    assert metrics.novelty(test, train) == 1.0
    # Precomputed reference statistics give the same numbers.
    stats = metrics.reference_stats(test, compute_fcd=False)
    again = metrics.generation_metrics(gen[:150], train=train[:10], test=stats, ks=(100,), compute_fcd=False)
    assert again["SNN/Test"] == pytest.approx(metrics.snn(gen[:150], test))
    assert again["unique@100"] == 1.0


def test_missing_fcd_torch_gives_nan_fcd_with_a_warning(monkeypatch, moses_small):
    # Simulate an install without the optional extra: importing fcd_torch fails.
    monkeypatch.setitem(sys.modules, "fcd_torch", None)
    monkeypatch.setitem(sys.modules, "fcd_torch.utils", None)
    with pytest.raises(metrics.FCDUnavailableError, match="vaelab\\[fcd\\]"):
        metrics.fcd(["CCO", "CCN"], ["CCO", "CCN"])
    test = moses_small["smiles"].tolist()[:30]
    with pytest.warns(InputDataWarning, match="FCD skipped"):
        result = metrics.generation_metrics(test[:10], train=test, test=test, ks=(10,), compute_fcd=True)
    assert math.isnan(result["FCD/Test"])
    assert result["validity"] == 1.0 and result["novelty"] == 0.0


def test_a_model_that_decodes_nothing_valid_gets_zero_validity_and_nan_elsewhere(moses_small):
    test = moses_small["smiles"].tolist()[:30]
    with pytest.warns(InputDataWarning, match="no valid generated molecules"):
        result = metrics.generation_metrics(["bad", "C1CC", "c1cc"], train=test, test=test, ks=(10,),
                                            compute_fcd=False)
    assert result["validity"] == 0.0
    for name in ("unique@10", "novelty", "intdiv", "intdiv2", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test"):
        assert math.isnan(result[name]), name

"""Tests of chemvae.fcd: FCD with ChemNet weights loaded via ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaecore.errors import InputDataError

fcd_torch = pytest.importorskip("fcd_torch")

from chemvae.fcd import chemnet_statistics, fcd  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "moses_small.csv"


def test_fcd_is_zero_for_a_set_with_itself_and_positive_otherwise():
    moses = pd.read_csv(FIXTURE)
    a = moses.loc[moses["split"] == "test", "smiles"].tolist()[:40]
    b = [s for s in moses.loc[moses["split"] == "train", "smiles"] if len(s) < 30][:40]  # small molecules
    assert fcd(a, a) == pytest.approx(0.0, abs=1e-3)
    assert fcd(a + ["not smiles"], b) > 1.0  # invalid entries are dropped, not fatal
    # Our weights_only loading gives the same activations as fcd_torch's own class.
    mean, cov = chemnet_statistics(a)
    assert mean.shape == (512,) and cov.shape == (512, 512)
    theirs = fcd_torch.FCD(device="cpu", n_jobs=1).get_predictions(a)
    np.testing.assert_allclose(mean, theirs.mean(0), rtol=1e-5, atol=1e-6)


def test_fcd_needs_two_valid_molecules():
    with pytest.raises(InputDataError, match="at least 2"):
        fcd(["CCO", "bad"], ["CCO", "CCN"])
    with pytest.raises(InputDataError, match="not one string 'CCOCCN'"):
        chemnet_statistics("CCOCCN")  # was the six one-atom molecules of its letters

"""Fixtures of the search tests: the committed tiny model and a pool of weak starting molecules."""

from pathlib import Path

import pandas as pd
import pytest

import chemvae
from chemvae.search import BOSettings

ROOT = Path(__file__).resolve().parents[3]
FIXTURE_MODEL = ROOT / "data" / "fixtures" / "chemvae_tiny"
FIXTURE_CSV = ROOT / "data" / "fixtures" / "moses_small.csv"


@pytest.fixture(scope="session")
def tiny_model():
    return chemvae.load(FIXTURE_MODEL)


@pytest.fixture(scope="session")
def low_qed_smiles() -> list[str]:
    """The 24 training molecules of the fixture with the lowest QED (best of them ~0.53)."""
    table = pd.read_csv(FIXTURE_CSV)
    return table[table["split"] == "train"].sort_values("qed")["smiles"].head(24).tolist()


@pytest.fixture(scope="session")
def train_smiles() -> list[str]:
    table = pd.read_csv(FIXTURE_CSV)
    return table[table["split"] == "train"]["smiles"].tolist()


@pytest.fixture(scope="session")
def fast_bo() -> BOSettings:
    """Small acquisition optimization: the tests check behaviour, not search quality.

    The radial bound keeps proposals where the tiny model's decoder is mostly valid, so a
    test reaches its budget in a few iterations.
    """
    return BOSettings(num_restarts=2, raw_samples=32, acq_maxiter=15, fit_maxiter=20, mc_samples=32,
                      fit_points=64, radius_quantile=0.999)

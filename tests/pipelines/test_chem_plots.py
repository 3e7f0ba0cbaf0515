"""Tests for pipelines.chem_plots: the plots draw, also on the edge cases a run can produce."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines.chem_plots import save_molecule_grid, save_property_histograms, save_training_curves
from vaecore.errors import InputDataError


def _table(n: int, valid: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"smiles": ["C"] * n, "valid": valid, "logp": rng.normal(2, 1, n),
                         "qed": rng.uniform(0, 1, n), "sa": rng.uniform(1, 5, n), "plogp": rng.normal(0, 2, n)})


def test_property_histograms_draw_with_and_without_valid_samples(tmp_path):
    reference = _table(200, True, 0)
    with_outlier = pd.concat([_table(50, True, 1), _table(1, True, 2).assign(logp=60.0)])
    assert save_property_histograms(with_outlier, reference, tmp_path / "a.png").stat().st_size > 0
    # every sample invalid: the reference alone is drawn, nothing raises
    assert save_property_histograms(_table(5, False, 3), reference, tmp_path / "b.png").stat().st_size > 0
    with pytest.raises(InputDataError, match=r"the samples table has no column \['weight'\]"):
        save_property_histograms(_table(5, True, 4), reference, tmp_path / "c.png", columns=("qed", "weight"))


def test_samples_that_all_lie_beyond_the_bins_are_drawn_at_their_edge(tmp_path):
    # One valid sample, an outlier beyond the shared bins (the bulk of both sets): a density
    # of 0 / 0, drawn as nothing with numpy's RuntimeWarning (chem eval of a tiny model).
    reference = _table(200, True, 0)
    outlier = _table(1, True, 2).assign(logp=60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert save_property_histograms(outlier, reference, tmp_path / "a.png").stat().st_size > 0


def test_training_curves_draw_from_a_history_and_from_none(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2], "beta": [0.01, 0.05], "train_loss": [90.0, 80.0], "valid_loss": [85.0, 79.0],
                            "train_kl": [10.0, 20.0], "train_token_accuracy": [0.3, 0.4]})
    assert save_training_curves(history, tmp_path / "a.png").stat().st_size > 0
    assert save_training_curves(pd.DataFrame(), tmp_path / "b.png").stat().st_size > 0  # a run of 0 epochs


def test_molecule_grid_leaves_out_what_rdkit_cannot_parse(tmp_path):
    assert save_molecule_grid(["CCO", "C1CC", "c1ccccc1"], tmp_path / "a.png", legends=["a", "b", "c"]) == 2
    assert (tmp_path / "a.png").stat().st_size > 0
    assert save_molecule_grid(["C1CC", "xyz"], tmp_path / "b.png") == 0 and not (tmp_path / "b.png").exists()
    with pytest.raises(InputDataError, match="one legend per molecule, got 1 for 2"):
        save_molecule_grid(["CCO", "CCN"], tmp_path / "c.png", legends=["a"])

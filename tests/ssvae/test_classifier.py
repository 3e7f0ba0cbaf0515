"""Tests for ssvae.classifier: loading a run's model back as a classifier, and what it cannot load."""

from __future__ import annotations

import pytest

import ssvae
from ssvae.classifier import load_classifier
from ssvae.data import load_dataset
from vaecore.datasets import REPO_DATA_DIR
from vaecore.errors import CheckpointError


def test_loading_another_kind_of_run_as_a_classifier_is_named():
    chem_run = REPO_DATA_DIR / "fixtures" / "chemvae_tiny"
    with pytest.raises(CheckpointError, match="is not a few-label classifier: its config has"):
        load_classifier(chem_run)  # its model.safetensors was read, then KeyError: 'm2'


def test_loading_an_m1_run_as_a_classifier_says_why_it_cannot(tmp_path):
    # Its scikit-learn classifier is not saved: the error was "no checkpoint at .../model.safetensors".
    ds = load_dataset("fixture")
    ssvae.fit(ds.train.x, ds.train.y, model="m1", n_labels=20, workdir=tmp_path, **{"m1.epochs": 1})
    with pytest.raises(CheckpointError, match="is a model 'm1' run: its classifier .* is not saved"):
        load_classifier(tmp_path)

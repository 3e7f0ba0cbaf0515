"""Tests for ssvae.api: what ssvae.fit refuses before it trains anything.

Its end-to-end runs (classifiers that learn, reload and resume) are in test_fewlabel.py,
beside the loop they drive.
"""

from __future__ import annotations

import pytest

import ssvae
from ssvae.data import load_dataset
from vaecore.errors import InputDataError


def test_a_fit_of_zero_m2_epochs_is_refused_before_m1_trains(tmp_path):
    # --set train.epochs=0 passed the command line's --epochs check and was refused by M2's
    # loop, after M1's training, whose checkpoint then made the corrected command's --out refused.
    ds = load_dataset("fixture")
    with pytest.raises(InputDataError, match="train.epochs is 0: a new M2 run must train at least one epoch"):
        ssvae.fit(ds.train.x, ds.train.y, model="m1m2", n_labels=20, workdir=tmp_path, progress=False,
                  **{"train.epochs": 0, "m1.epochs": 1})
    assert not (tmp_path / "m1").exists()


def test_a_fit_that_failed_leaves_its_workdir_free_for_other_processes(tmp_path, opens_elsewhere):
    # The workdir's lock followed the RunDir object, which the failed call's frames (kept by
    # the exception's traceback, as a notebook keeps its last one) kept alive.
    ds = load_dataset("fixture")
    with pytest.raises(InputDataError) as failed:
        ssvae.fit(ds.train.x, ds.train.y, model="m2", n_labels=20, workdir=tmp_path / "w", progress=False,
                  **{"train.epochs": 0})
    other = opens_elsewhere(tmp_path / "w")
    assert other.returncode == 0, other.stderr
    assert failed.tb is not None  # the frames were alive all along


def test_n_labels_with_unlabelled_examples_says_to_use_the_labels_as_given():
    # The command line said so (--labels); ssvae.fit said "training labels[0] = -1 is out of range".
    ds = load_dataset("fixture")
    y = ds.train.y.clone()
    y[:500] = -1
    with pytest.raises(InputDataError, match=r"n_labels=20 draws labels from a fully labelled y, but 500 examples "
                                             r"are unlabelled \(-1\); omit n_labels"):
        ssvae.fit(ds.train.x, y, model="m2", n_labels=20, progress=False)


def test_labels_with_gaps_are_named_before_the_split(tmp_path):
    # Labels 0, 2, 4, 6 were "40 labels cannot be split evenly over 7 classes".
    ds = load_dataset("fixture")
    y = ds.train.y * 2
    with pytest.raises(InputDataError, match=r"y's labels run up to 18, but class\(es\) \[1, 3, 5, 7, 9, 11, 13, 15, "
                                             r"17\] have no example; number the classes 0..K-1"):
        ssvae.fit(ds.train.x, y, model="m2", n_labels=40, progress=False)


def test_nested_lists_are_data_too():
    # image_rows read them, then fit asked for x.shape: "AttributeError: 'list' object has
    # no attribute 'shape'".
    ds = load_dataset("fixture")
    x, y = ds.train.x[:400], ds.train.y[:400]
    clf = ssvae.fit(x.reshape(-1, 28, 28).tolist(), y.tolist(), model="m2", n_labels=100, progress=False,
                    preset_name="fast", **{"train.epochs": 1})
    assert clf.predict(x[:5].reshape(-1, 28, 28).tolist()).shape == (5,)

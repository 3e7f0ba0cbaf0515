"""The balanced few-label split: balance, reproducibility, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssvae.labels import absent_classes, as_label_tensor, balanced_split, check_labels, given_labels, load_split, save_split
from vaecore.errors import InputDataError


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]


def test_split_is_balanced_and_unique(labels):
    idx = balanced_split(labels, 100, n_classes=10, seed=3)
    assert idx.shape == (100,) and idx.dtype == torch.int64
    assert len(torch.unique(idx)) == 100
    assert torch.bincount(labels[idx], minlength=10).tolist() == [10] * 10


def test_split_is_reproducible_by_seed(labels):
    a = balanced_split(labels, 50, n_classes=10, seed=7)
    assert torch.equal(a, balanced_split(labels, 50, n_classes=10, seed=7))
    assert not torch.equal(a, balanced_split(labels, 50, n_classes=10, seed=8))


def test_split_accepts_numpy_and_integral_floats(labels):
    a = balanced_split(labels.numpy(), 20, n_classes=10, seed=1)
    b = balanced_split(labels.double(), 20, n_classes=10, seed=1)
    assert torch.equal(a, b)


@pytest.mark.parametrize("n, match", [(95, "multiple of 10"), (0, "positive"), (-10, "positive"),
                                      (400, "class 0 has only 30")])
def test_split_rejects_bad_counts(labels, n, match):
    with pytest.raises(InputDataError, match=match):
        balanced_split(labels, n, n_classes=10, seed=0)


@pytest.mark.parametrize("seed", [2.5, -1])  # int() drew 2.5 as seed 2; torch's generator took -1
def test_split_names_a_bad_seed(labels, seed):
    with pytest.raises(InputDataError, match=f"seed must be a non-negative integer below 2\\*\\*64, got {seed}"):
        balanced_split(labels, 20, n_classes=10, seed=seed)


def test_split_names_zero_classes(labels):
    with pytest.raises(InputDataError, match="n_classes must be an integer >= 1, got 0"):
        balanced_split(labels, 20, n_classes=0, seed=0)  # was a ZeroDivisionError


def test_split_rejects_missing_class(labels):
    y = labels.clone()
    y[y == 4] = 3
    with pytest.raises(InputDataError, match=r"class\(es\) \[4\] have no labelled example"):
        balanced_split(y, 20, n_classes=10, seed=0)


def test_rejects_out_of_range_and_non_integer_labels(labels):
    y = labels.clone()
    y[17] = 12
    with pytest.raises(InputDataError, match=r"\[17\] = 12 is out of range"):
        balanced_split(y, 20, n_classes=10, seed=0)
    with pytest.raises(InputDataError, match=r"\[2\] = 2.5"):
        as_label_tensor(np.array([0.0, 1.0, 2.5]))
    with pytest.raises(InputDataError, match="integers"):
        as_label_tensor(np.array([True, False]))
    with pytest.raises(InputDataError, match="labels must be integers, got dtype <U1"):  # was torch's TypeError
        as_label_tensor(np.array(["3", "1"]))
    with pytest.raises(InputDataError, match="y must be integers, got dtype object"):
        as_label_tensor([1, None], what="y")
    with pytest.raises(InputDataError, match=r"\[1\] = -2"):
        check_labels(torch.tensor([0, -2]), 10)
    # -1 (unlabelled) is fine where unlabelled examples are allowed, not in a full split
    check_labels(torch.tensor([0, -1]), 10)
    with pytest.raises(InputDataError, match="out of range"):
        balanced_split(torch.tensor([0, -1] * 10), 2, n_classes=2, seed=0)


def test_given_labels_uses_the_labelled_examples():
    y = torch.tensor([-1, 0, -1, 1, 2, -1, 2])
    assert given_labels(y, n_classes=3).tolist() == [1, 3, 4, 6]
    with pytest.raises(InputDataError, match=r"class\(es\) \[1\]"):
        given_labels(torch.tensor([0, -1, 2]), n_classes=3)
    with pytest.raises(InputDataError, match="no example is labelled"):
        given_labels(torch.tensor([-1, -1]), n_classes=3)


def test_split_round_trips_through_csv(tmp_path, labels):
    idx = balanced_split(labels, 30, n_classes=10, seed=2)
    save_split(tmp_path / "labels.csv", idx, labels[idx])
    idx2, y2 = load_split(tmp_path / "labels.csv")
    assert torch.equal(idx, idx2) and torch.equal(labels[idx], y2)


def test_absent_classes_are_those_no_label_names() -> None:
    assert absent_classes(torch.tensor([0, 2, 4, -1]), 6) == [1, 3, 5]
    assert absent_classes(torch.tensor([1, 0]), 2) == [] and absent_classes(torch.tensor([-1, -1]), 2) == [0, 1]

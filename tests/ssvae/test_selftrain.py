"""Pseudo-labels for self-training: the surest predictions per class, never a true label's example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssvae.selftrain import labels_with, pseudo_labels
from vaecore.errors import InputDataError


def test_takes_the_most_confident_per_predicted_class():
    proba = np.array([[0.90, 0.10],   # 0: class 0, surest
                      [0.60, 0.40],   # 1: class 0
                      [0.20, 0.80],   # 2: class 1
                      [0.70, 0.30],   # 3: class 0
                      [0.05, 0.95],   # 4: class 1, surest
                      [0.45, 0.55]])  # 5: class 1, least sure
    idx, labels = pseudo_labels(proba, 2)
    assert idx.tolist() == [0, 2, 3, 4] and labels.tolist() == [0, 1, 0, 1]
    assert idx.dtype == labels.dtype == torch.int64


def test_excluded_examples_are_never_chosen_and_short_classes_keep_all():
    proba = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.1, 0.9, 0.0]])
    idx, labels = pseudo_labels(proba, 5, exclude=torch.tensor([0, 3]))
    # class 0 loses its surest example to the exclusion; class 1's only one is excluded;
    # class 2 is never predicted
    assert idx.tolist() == [1, 2] and labels.tolist() == [0, 0]


def test_ties_resolve_by_position_and_repeat():
    proba = torch.full((6, 2), 0.5)
    proba[:, 0] += 1e-3  # all class 0, all equally sure
    first = pseudo_labels(proba, 3)
    assert first[0].tolist() == [0, 1, 2] and torch.equal(pseudo_labels(proba, 3)[0], first[0])


@pytest.mark.parametrize("per_class", [0, -3, 2.5, True, "10"])
def test_refuses_a_bad_count(per_class):
    with pytest.raises(InputDataError, match="positive integer"):
        pseudo_labels(np.full((4, 2), 0.5), per_class)


@pytest.mark.parametrize("proba", [np.full(4, 0.5), np.array([[0.5, np.nan]]), np.ones((2, 2), dtype=np.int64)])
def test_refuses_bad_probabilities(proba):
    with pytest.raises(InputDataError, match=r"finite \[N, C\] float"):
        pseudo_labels(proba, 1)


def test_refuses_logits_and_exclusions_outside_the_examples():
    # Logits ranked the examples otherwise without a word; -1 excluded the last example.
    with pytest.raises(InputDataError, match=r"must lie in \[0, 1\], got values from -2 to 3 \(logits\?"):
        pseudo_labels(np.array([[3.0, -2.0], [0.5, 0.5]]), 1)
    for exclude in ([-1], [0, 4]):
        with pytest.raises(InputDataError, match=r"exclude holds indices from -?\d to -?\d; the 4 examples have "
                                                 r"indices 0 to 3"):
            pseudo_labels(np.full((4, 2), 0.5), 1, exclude=torch.tensor(exclude))
    assert pseudo_labels(np.zeros((0, 2)), 1)[0].tolist() == []  # no candidates, no pseudo-labels


def test_labels_with_writes_a_copy():
    y = torch.tensor([-1, 3, -1, -1])
    out = labels_with(y, torch.tensor([0, 3]), torch.tensor([5, 7]))
    assert out.tolist() == [5, 3, -1, 7] and y.tolist() == [-1, 3, -1, -1]

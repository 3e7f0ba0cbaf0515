"""Tests for ssvae.m1features: classifier choice on validation, the M1 classifier's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssvae.m1 import VAE, VAEConfig
from ssvae.m1features import CANDIDATES, M1Classifier, make_classifier, posterior_means, predict_labels, select_classifier
from vaecore.errors import InputDataError


def _blobs(per_class: int, seed: int, classes: int = 3, dim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs `[classes * per_class, dim]` and their labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    centres = 4.0 * np.eye(classes, dim)
    return centres[y] + rng.normal(size=(len(y), dim)), y


def test_selection_keeps_the_best_candidate_on_validation() -> None:
    f_l, y_l = _blobs(5, seed=0)
    f_v, y_v = _blobs(50, seed=1)
    chosen = select_classifier(f_l, y_l, f_v, y_v)
    table = chosen.table
    assert len(table) == len(CANDIDATES)
    best = table.loc[table["valid_error"].idxmin()]
    assert (chosen.kind, chosen.c) == (best["classifier"], best["C"])
    assert best["valid_error"] <= 0.05  # the blobs are 4 standard deviations apart
    assert (predict_labels(chosen.classifier, f_v) != y_v).mean() == pytest.approx(best["valid_error"])


def test_selection_without_validation_or_with_single_labels() -> None:
    f_l, y_l = _blobs(5, seed=0)
    chosen = select_classifier(f_l, y_l, None, None)
    assert chosen.table[["classifier", "C"]].values.tolist() == [["svc_rbf", 10.0]]
    assert chosen.table["valid_error"].isna().all()
    # One label of class 2: too few to calibrate the SVC, so only logistic regression is fitted.
    f_one, y_one = f_l[:11], y_l[:11]
    f_v, y_v = _blobs(20, seed=1)
    chosen = select_classifier(f_one, y_one, f_v, y_v)
    assert set(chosen.table["classifier"]) == {"logistic"}
    assert chosen.kind == "logistic"
    assert set(predict_labels(chosen.classifier, f_v)) <= {0, 1, 2}


def test_unknown_classifier_is_named() -> None:
    with pytest.raises(InputDataError, match="'knn'"):
        make_classifier("knn", 1.0)


def test_m1_classifier_returns_log_probabilities_of_its_prediction() -> None:
    torch.manual_seed(0)
    m1 = VAE(VAEConfig(x_dim=6, z_dim=2, hidden=(5,)))
    x = torch.rand(30, 6)
    features = posterior_means(m1, x, batch_size=7)  # batched: the same as one pass
    np.testing.assert_allclose(features, m1.posterior_mean(x).detach().numpy(), rtol=1e-6, atol=1e-6)
    y = (features[:, 0] > np.median(features[:, 0])).astype(int)
    clf = M1Classifier(m1, make_classifier("logistic", 1.0).fit(features, y))
    logits = clf.logits(x)
    assert logits.shape == (30, 2) and logits.dtype == x.dtype
    torch.testing.assert_close(logits.logsumexp(-1), torch.zeros(30), atol=1e-5, rtol=0)
    assert logits.argmax(-1).tolist() == predict_labels(clf.classifier, features).tolist()

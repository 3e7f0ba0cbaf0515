"""M1 as a feature extractor: scikit-learn classifiers on VAE posterior means.

The paper's M1 baseline trains a VAE on all training images and a separate classifier
(a transductive SVM there) on the posterior means of the few labelled ones. Here the
classifiers are scikit-learn's RBF-kernel SVC and logistic regression on standardised
features, with the kind and regularisation chosen on the validation set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import Tensor, nn

from ssvae.m1 import VAE
from vaecore.errors import InputDataError

# (name, factory) of the candidate classifiers; C spans weak to strong fits.
CANDIDATES: tuple[tuple[str, float], ...] = (
    ("svc_rbf", 1.0), ("svc_rbf", 10.0), ("svc_rbf", 100.0),
    ("logistic", 0.1), ("logistic", 1.0), ("logistic", 10.0),
)


def make_classifier(kind: str, c: float, seed: int = 0, *, calibration_folds: int = 5) -> Pipeline:
    """A standardise-then-classify pipeline: ``svc_rbf`` or ``logistic`` with strength ``c``.

    The SVC's probabilities come from sigmoid calibration on ``calibration_folds``
    cross-validation folds (scikit-learn's replacement for ``SVC(probability=True)``).

    Raises:
        InputDataError: For another ``kind``; the message names it.
    """
    if kind == "svc_rbf":
        head: ClassifierMixin = CalibratedClassifierCV(
            SVC(kernel="rbf", C=c, gamma="scale", random_state=seed), cv=calibration_folds, ensemble=False)
    elif kind == "logistic":
        head = LogisticRegression(C=c, max_iter=2000)
    else:
        raise InputDataError(f"unknown M1 classifier {kind!r}; choose svc_rbf or logistic")
    return make_pipeline(StandardScaler(), head)


@torch.no_grad()
def posterior_means(m1: VAE, x: Tensor, batch_size: int = 2000) -> np.ndarray:
    """M1 features E q(z|x) of images `[N, D]` as a numpy array `[N, z]`."""
    device = m1.prior.loc.device
    return torch.cat([m1.posterior_mean(xb.to(device)).cpu() for xb in x.split(batch_size)]).numpy()


def predict_labels(clf: Pipeline, features: np.ndarray) -> np.ndarray:
    """The most probable class under ``clf.predict_proba``, `[N]`."""
    return clf.classes_[clf.predict_proba(features).argmax(1)]


@dataclass
class M1Selection:
    """The chosen classifier and the validation table of all candidates."""

    classifier: Pipeline
    kind: str
    c: float
    table: pd.DataFrame


def select_classifier(f_l: np.ndarray, y_l: np.ndarray, f_valid: np.ndarray | None,
                      y_valid: np.ndarray | None, *, seed: int = 0) -> M1Selection:
    """Fit every candidate on labelled features `[n, z]`; keep the best on validation.

    Without a validation set the RBF SVC with C = 10 is used (logistic regression when
    some class has a single label, too few to calibrate the SVC).
    """
    rows, best = [], None
    candidates = CANDIDATES if f_valid is not None else (("svc_rbf", 10.0),)
    folds = min(5, int(np.bincount(y_l).min()))
    if folds < 2:  # calibrating the SVC needs two examples of every class
        candidates = tuple(cand for cand in candidates if cand[0] != "svc_rbf") or (("logistic", 1.0),)
    for kind, c in candidates:
        clf = make_classifier(kind, c, seed, calibration_folds=max(folds, 2)).fit(f_l, y_l)
        # argmax of predict_proba, the rule M1Classifier predicts with (SVC's own
        # predict uses the decision function, which can disagree with Platt scaling).
        err = (float((predict_labels(clf, f_valid) != y_valid).mean())
               if f_valid is not None else float("nan"))
        rows.append({"classifier": kind, "C": c, "valid_error": err})
        if best is None or err < best[0]:
            best = (err, clf, kind, c)
    assert best is not None
    return M1Selection(best[1], best[2], best[3], pd.DataFrame(rows))


class M1Classifier(nn.Module):
    """A trained M1 and a scikit-learn classifier on its posterior means.

    Not a trained-by-gradient model: :meth:`logits` returns log-probabilities of the
    scikit-learn classifier, computed on the CPU.
    """

    kind = "m1"

    def __init__(self, m1: VAE, classifier: Pipeline) -> None:
        super().__init__()
        self.m1 = m1.eval()
        self.classifier = classifier

    def logits(self, x: Tensor) -> Tensor:
        proba = self.classifier.predict_proba(posterior_means(self.m1, x))
        return torch.as_tensor(np.log(np.clip(proba, 1e-12, None)), dtype=x.dtype, device=x.device)

    @torch.no_grad()
    def generate(self, y: Tensor, z: Tensor) -> Tensor:  # noqa: ARG002 - M1 has no label input
        return self.m1.decoder(z).mean

    @torch.no_grad()
    def latent(self, x: Tensor) -> Tensor:
        return self.m1.posterior_mean(x)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.m1.reconstruct(x)

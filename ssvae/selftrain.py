"""Self-training: a trained few-label model labels the unlabelled images it is surest of.

A second model is then trained on the true labels plus these pseudo-labels (``vaelab
fewlabel --self-train N``). On MNIST with 100 labels, the 3,000 surest predictions per
class of the `fast` preset's M1+M2 (predicting by Bayes' rule) were wrong on 0.17-0.38% of
those 30,000 digits and the 4,000 surest on 0.57-1.19%, against 4.0-5.4% on all
50,000 training digits (seeds 0-3; BENCHMARKS.md, "Self-training"). Taking a fixed number per
*predicted* class keeps the pseudo-labelled set balanced even where the model favours some
classes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaecore.errors import InputDataError

SELF_TRAIN_DIR = "self_train"  # a self-training stage's run directory, inside the previous stage's


def pseudo_labels(proba: Tensor | np.ndarray, per_class: int, *,
                  exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``per_class`` most confident predictions of every class.

    Args:
        proba: Class probabilities of the candidate examples, `[N, C]`.
        per_class: How many examples to keep per predicted class; a class predicted
            for fewer examples keeps all of them.
        exclude: Indices `[M]` into the N examples that must not be chosen (those
            that already have a true label).

    Returns:
        ``(indices, labels)``: int64 `[K]` each, indices sorted, ``K <= per_class * C``;
        each label is the class predicted for its example.

    Raises:
        InputDataError: ``per_class`` is not a positive integer, ``proba`` is not a `[N, C]`
            array of finite values in `[0, 1]`, or ``exclude`` holds an index outside `[0, N)`.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class <= 0:
        raise InputDataError(f"pseudo-labels per class must be a positive integer, got {per_class!r}")
    p = torch.as_tensor(np.asarray(proba) if not isinstance(proba, Tensor) else proba).detach().cpu()
    if p.dim() != 2 or not p.is_floating_point() or not torch.isfinite(p).all():
        raise InputDataError(f"class probabilities must be a finite [N, C] float array, got shape "
                             f"{tuple(p.shape)} and dtype {p.dtype}")
    low, high = (float(p.min()), float(p.max())) if p.numel() else (0.0, 1.0)
    if low < 0 or high > 1:  # logits or log-probabilities: another ranking
        raise InputDataError(f"class probabilities must lie in [0, 1], got values from {low:.4g} to {high:.4g} "
                             "(logits? apply softmax first)")
    confidence, predicted = p.max(dim=1)
    if exclude is not None and len(exclude):
        skip = torch.as_tensor(exclude, dtype=torch.int64)
        first, last = int(skip.min()), int(skip.max())
        if first < 0 or last >= len(p):  # -1 excluded the last example without a word
            raise InputDataError(f"exclude holds indices from {first} to {last}; "
                                 f"the {len(p)} examples have indices 0 to {len(p) - 1}")
        confidence = confidence.clone()
        confidence[skip] = -torch.inf
    chosen = []
    for c in range(p.shape[1]):  # C is small (10); one sort per class is clearer than a joint rank
        members = ((predicted == c) & (confidence > -torch.inf)).nonzero().flatten()
        order = confidence[members].argsort(descending=True, stable=True)
        chosen.append(members[order[:per_class]])
    indices = torch.cat(chosen).sort().values
    return indices, predicted[indices]


def labels_with(y: Tensor, indices: Tensor, labels: Tensor) -> Tensor:
    """``y`` `[N]` with ``labels`` written at ``indices`` (a copy; ``y`` is untouched)."""
    out = y.clone()
    out[indices] = labels.to(out.dtype)
    return out

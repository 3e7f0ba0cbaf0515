"""The pixel view of M2: fresh binarization of training batches, pixel outputs."""

from __future__ import annotations

import numpy as np
import torch

from ssvae.m2_config import M2Config
from ssvae.pixel_m2 import PixelM2

C, D, B = 4, 12, 5


def test_pixel_view_binarizes_training_batches_and_generates_pixels() -> None:
    torch.manual_seed(0)
    view = PixelM2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(8,)))
    x = torch.full((B, D), 0.5)
    s = view.sample(view.rows(x))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(view.mean(x), x)
    gen = view.generate(torch.arange(C), torch.zeros(C, 3))
    assert gen.shape == (C, D) and ((gen >= 0) & (gen <= 1)).all()
    assert view.logits(x).shape == (B, C)


def test_pixel_view_reconstructs_and_encodes_through_the_predicted_class() -> None:
    torch.manual_seed(0)
    view = PixelM2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(8,)), binarize=False)
    x = torch.rand(B, D)
    assert torch.equal(view.sample(x), x)  # no binarization asked for
    y = view.logits(x).argmax(-1)
    assert torch.allclose(view.reconstruct(x), view.generate(y, view.m2.encode(x, y)))
    assert view.latent(x).shape == (B, 3)


def test_a_bayes_classifiers_answer_for_an_image_does_not_depend_on_the_others() -> None:
    # 21 of 200 answers of a little-trained M1+M2 changed when its images were scored one at a time.
    from ssvae.classifier import FewLabelClassifier

    torch.manual_seed(0)
    view = PixelM2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(8,)))
    x = torch.rand(40, D)
    clf = FewLabelClassifier(view, n_classes=C, bayes_samples=16, batch_size=4)  # several passes
    together = clf.predict_proba(x)
    alone = np.concatenate([clf.predict_proba(x[i:i + 1]) for i in range(len(x))])
    shuffled = clf.predict_proba(x[torch.arange(39, -1, -1)])[::-1]
    np.testing.assert_allclose(alone, together, atol=1e-6)
    np.testing.assert_allclose(shuffled, together, atol=1e-6)

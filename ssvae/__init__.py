"""ssvae: semi-supervised learning with deep generative models (Kingma et al. 2014).

M1 (a VAE whose posterior means are features), M2 (the semi-supervised generative
model p(y) p(z) p(x|y,z) with classifier q(y|x)) and M1+M2 (M2 on M1's latent space),
trained on a few labels. The entry point is :func:`ssvae.fit`; ``vaelab fewlabel`` is
its command line. :func:`ssvae.pseudo_labels` picks a trained model's surest predictions
for self-training (``vaelab fewlabel --self-train N``).
"""

from ssvae.api import fit
from ssvae.classifier import FewLabelClassifier, load_classifier
from ssvae.labels import balanced_split, given_labels
from ssvae.m1 import VAE, VAEConfig
from ssvae.m1m2 import M1M2
from ssvae.m2 import M2
from ssvae.m2_config import M2Config
from ssvae.pixel_m2 import PixelM2
from ssvae.presets import FitConfig, M1Settings, preset
from ssvae.selftrain import pseudo_labels
from ssvae.train_config import TrainConfig

__all__ = [
    "M1M2",
    "M2",
    "VAE",
    "FewLabelClassifier",
    "FitConfig",
    "M1Settings",
    "M2Config",
    "PixelM2",
    "TrainConfig",
    "VAEConfig",
    "balanced_split",
    "fit",
    "given_labels",
    "load_classifier",
    "preset",
    "pseudo_labels",
]

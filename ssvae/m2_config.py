"""M2's architecture: :class:`M2Config`, checked before any network is built."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vaecore.errors import InputDataError, integer_at_least, integers_at_least
from vaecore.likelihoods import check_feature_likelihood
from vaecore.nets import check_activation


@dataclass(frozen=True)
class M2Config:
    """Architecture of M2.

    Attributes:
        x_dim: Input size D (784 for MNIST pixels, the number of active z1 dims for M1+M2).
        n_classes: Number of classes C.
        z_dim: Size of the continuous latent z (z2 in M1+M2).
        hidden: Hidden widths of encoder and decoder (paper: one layer, 300 at 100
            labels, 500 otherwise).
        classifier_hidden: Hidden widths of q(y|x); ``None`` means ``hidden``.
        activation: Nonlinearity (paper: softplus).
        likelihood: ``bernoulli`` (pixels) or ``gaussian`` (learned diagonal variance).
        batch_norm: Batch normalisation before each hidden activation (not in the paper).
        aux_dim: Size of the ADGM auxiliary latent a (Maaloe et al. 2016; not in
            Kingma et al.); 0 = plain M2.
        classifier_channels: Output channels of strided convolutions that q(y|x) applies
            to the images before its hidden layers (:class:`vaecore.nets.ConvNet`; not in
            the paper; with ``aux_dim``, a joins after the convolutions); empty = the
            paper's MLP classifier. Needs ``image_shape``.
        image_shape: One input's shape as an image, e.g. `(28, 28)`; set by the pipeline
            for M2 on pixels (the shape of the context when ``context_dim`` is set).
        context_dim: Number of input values after the first ``x_dim`` that only q(y|.)
            sees (not modelled by p(x|y,z); M1+M2: the pixels, set by
            :class:`ssvae.m1m2.M1M2`); 0 = none.
    """

    x_dim: int = 784
    n_classes: int = 10
    z_dim: int = 50
    hidden: tuple[int, ...] = (500,)
    classifier_hidden: tuple[int, ...] | None = None
    activation: str = "softplus"
    likelihood: str = "bernoulli"
    batch_norm: bool = False
    aux_dim: int = 0
    classifier_channels: tuple[int, ...] = ()
    image_shape: tuple[int, ...] | None = None
    context_dim: int = 0

    def __post_init__(self) -> None:
        # Named here: the layers would otherwise report "latent_dim" or a torch shape error.
        for name in ("x_dim", "n_classes", "z_dim"):
            integer_at_least(name, getattr(self, name), 1)
        check_feature_likelihood(self.likelihood)  # "categorical" failed in M2's constructor
        for name in ("aux_dim", "context_dim"):  # 0: none
            integer_at_least(name, getattr(self, name), 0)
        if not self.hidden:  # () was an IndexError in M2's constructor
            raise InputDataError("M2Config.hidden needs at least one layer width: the Gaussian head of q(z|x,y) "
                                 "(and those of the auxiliary a) sit on the last hidden layer")
        if any(c < 1 for c in self.classifier_channels):
            raise InputDataError(f"classifier_channels must be positive, got {self.classifier_channels}")
        # Checked by the layers when M2 is built: for M1+M2, once M1 had trained.
        check_activation(self.activation)
        for name in ("hidden", "classifier_hidden"):
            integers_at_least(name, getattr(self, name) or (), 1)

    def check_images(self) -> None:
        """Refuse a convolutional classifier that has no images to see.

        Checked when the model is built, not in ``__post_init__``: a preset override may
        set the channels before the pipeline fills in ``x_dim`` and ``image_shape``.

        Raises:
            InputDataError: Channels without a 2-D (or channels-last 3-D) ``image_shape`` of
                ``context_dim`` values (``x_dim`` without a context).
        """
        if not self.classifier_channels:
            return
        shape, size = self.image_shape, self.context_dim or self.x_dim
        if shape is None or len(shape) not in (2, 3) or math.prod(shape) != size:
            raise InputDataError(f"classifier_channels={self.classifier_channels} needs inputs that are images: "
                                 f"image_shape={shape} for x_dim={self.x_dim}, context_dim={self.context_dim} "
                                 f"(pixels of 2-D images only)")

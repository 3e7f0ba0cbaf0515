"""M2Config: bad sizes are named errors, and a convolutional classifier needs images."""

from __future__ import annotations

import pytest

from ssvae.m2_config import M2Config
from vaecore.errors import InputDataError


def test_config_rejects_a_negative_auxiliary_size() -> None:
    with pytest.raises(InputDataError, match="aux_dim must be an integer >= 0, got -1"):
        M2Config(aux_dim=-1)


@pytest.mark.parametrize("name", ["x_dim", "n_classes", "z_dim"])
def test_config_names_a_zero_size(name: str) -> None:
    # Without this, z_dim=0 was reported by the layers as "latent_dim must be ...".
    with pytest.raises(InputDataError, match=f"{name} must be an integer >= 1, got 0"):
        M2Config(**{name: 0})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"activation": "relux"}, "unknown activation 'relux'"),
    ({"hidden": (300, 0)}, r"hidden\[1\] must be an integer >= 1, got 0"),
    ({"classifier_hidden": (0,)}, r"classifier_hidden\[0\] must be an integer >= 1, got 0"),
])
def test_config_names_what_its_layers_would_refuse(kwargs: dict, message: str) -> None:
    # The layers refused them when M2 was built: for M1+M2, once M1 had trained.
    with pytest.raises(InputDataError, match=message):
        M2Config(**kwargs)


def test_config_needs_a_hidden_layer() -> None:
    # () was an IndexError traceback from M2's constructor ('--set m2.hidden=()').
    with pytest.raises(InputDataError, match="M2Config.hidden needs at least one layer width"):
        M2Config(hidden=())
    assert M2Config(hidden=(8,), classifier_hidden=()).classifier_hidden == ()  # a linear q(y|x) is fine


@pytest.mark.parametrize(("image_shape", "context_dim", "ok"), [
    ((3, 4), 0, True),       # x_dim 12 pixels as a 3 x 4 image
    ((2, 3, 2), 0, True),    # channels last
    ((3, 5), 0, False),      # 15 pixels, not 12
    ((12,), 0, False),       # not an image
    ((2, 5), 10, True),      # the image is the context, not x
    ((3, 4), 10, False),
])
def test_check_images_compares_the_image_with_what_the_classifier_sees(image_shape, context_dim, ok) -> None:
    config = M2Config(x_dim=12, classifier_channels=(4,), image_shape=image_shape, context_dim=context_dim)
    if ok:
        config.check_images()
    else:
        with pytest.raises(InputDataError, match="needs inputs that are images"):
            config.check_images()
    M2Config(x_dim=12, image_shape=(3, 5)).check_images()  # an MLP classifier needs no image

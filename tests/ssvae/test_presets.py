"""ssvae.presets: what each preset chooses, by model, label count and image shape."""

import pytest

from ssvae.m1 import VAEConfig
from ssvae.m2_config import M2Config
from ssvae.presets import M1Settings, check_settings_keys, preset
from vaecore.errors import InputDataError


@pytest.mark.parametrize("name", ["fast", "default"])
def test_preset_weights_classification_heavier_from_600_labels(name):
    # BENCHMARKS.md: alpha = 10 helped pixel M2 at 600, 1000 and 3000 labels, not at 100;
    # M1+M2 with its convolutions on 2-D images from 600 labels takes 20; flat M1+M2 keeps 2.
    alpha = {(model, n, shape): preset(name, model=model, n_labels=n, image_shape=shape).train.alpha
             for model in ("m2", "m1m2") for n in (100, 599, 600, 3000) for shape in ((28, 28), None)}
    assert alpha == {**{("m2", n, shape): 10.0 if n >= 600 else 2.0
                        for n in (100, 599, 600, 3000) for shape in ((28, 28), None)},
                     ("m1m2", 100, (28, 28)): 2.0, ("m1m2", 599, (28, 28)): 2.0,
                     ("m1m2", 600, (28, 28)): 20.0, ("m1m2", 3000, (28, 28)): 20.0,
                     ("m1m2", 100, None): 2.0, ("m1m2", 599, None): 2.0,
                     ("m1m2", 600, None): 2.0, ("m1m2", 3000, None): 2.0}
    assert preset("paper", model="m2", n_labels=600).train.alpha == 0.1
    assert preset("paper", model="m1m2", n_labels=600).train.alpha == 0.1
    # Early stopping goes with alpha = 10 and 20, whose runs peak within 35 epochs
    # (BENCHMARKS.md, "Early stopping"); at alpha = 2 the best epoch came late, and the paper had none.
    patience = {key: preset(name, model=key[0], n_labels=key[1], image_shape=key[2]).train.patience for key in alpha}
    assert patience == {key: 30 if a > 2.0 else None for key, a in alpha.items()}
    assert {preset("paper", model=m, n_labels=n).train.patience for m in ("m2", "m1m2") for n in (100, 600)} == {None}


@pytest.mark.parametrize("name", ["fast", "default"])
def test_preset_translates_labelled_images_and_convolves_them_when_they_are_2d(name):
    # BENCHMARKS.md, "Translated labelled digits" (M2) and "M1+M2 with translated labelled digits".
    shift = {(model, shape): preset(name, model=model, n_labels=100, image_shape=shape).train.label_shift
             for model in ("m2", "m1m2") for shape in ((28, 28), (14, 14, 3), (2, 2), (784,), None)}
    assert shift == {("m2", (28, 28)): 2, ("m2", (14, 14, 3)): 2, ("m2", (2, 2)): 0, ("m2", (784,)): 0,
                     ("m2", None): 0, ("m1m2", (28, 28)): 2, ("m1m2", (14, 14, 3)): 2, ("m1m2", (2, 2)): 0,
                     ("m1m2", (784,)): 0, ("m1m2", None): 0}
    assert preset("paper", model="m2").train.label_shift == 0
    channels = {(model, n, shape): preset(name, model=model, n_labels=n, image_shape=shape).m2.classifier_channels
                for model in ("m2", "m1m2") for n in (100, 599, 600) for shape in ((28, 28), (784,), None)}
    # M1+M2 convolves the pixels from 600 labels up (BENCHMARKS.md, "M1+M2 with a
    # convolutional classifier on the pixels"); below that its MLP on z1 did better.
    conv = {("m2", n, (28, 28)) for n in (100, 599, 600)} | {("m1m2", 600, (28, 28))}
    assert channels == {key: (16, 32) if key in conv else () for key in channels}
    assert preset("paper", model="m2", image_shape=(28, 28)).m2.classifier_channels == ()
    assert preset("paper", model="m1m2", n_labels=600, image_shape=(28, 28)).m2.classifier_channels == ()
    assert preset("paper", model="m1m2", image_shape=(28, 28)).train.label_shift == 0
    assert preset(name, model="m1", image_shape=(28, 28)).train.label_shift == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),  # was a ZeroDivisionError
    ({"lr_decay": 0.0}, "lr_decay must be a finite number > 0, got 0.0"),  # learning stopped after epoch 1
    ({"warmup_epochs": -1.0}, "warmup_epochs must be a finite number >= 0, got -1.0"),
    ({"epochs": 2.5}, "epochs must be an integer >= 0, got 2.5"),
])
def test_m1_settings_are_checked(kwargs, message):
    with pytest.raises(InputDataError, match=message):
        M1Settings(**kwargs)


@pytest.mark.parametrize("config", [M2Config, VAEConfig])
def test_a_sequence_likelihood_is_refused_for_images(config):
    # "categorical" needs a pad index: the models' constructors failed with a TypeError.
    with pytest.raises(InputDataError, match=r"likelihood must be one of \('bernoulli', 'gaussian'\)"):
        config(likelihood="categorical")


def test_settings_of_what_the_data_decide_are_refused():
    # '--set m2.n_classes=5' and the like trained on without a word: the data set them.
    with pytest.raises(InputDataError, match=r"m1.vae.x_dim, m2.n_classes come from the data"):
        check_settings_keys(["train.lr", "m2.n_classes", "m1.vae.x_dim"])
    check_settings_keys(["train.lr", "m2.hidden", "m1.vae.z_dim"])  # the model's own sizes are settings
    # '--set model=m2' beside '--model m1m2' trained a pixel M2 on M1+M2's preset, reported as M1+M2.
    with pytest.raises(InputDataError, match=r"the model is chosen with model= \(--model\)"):
        check_settings_keys(iter(["train.lr", "model"]))

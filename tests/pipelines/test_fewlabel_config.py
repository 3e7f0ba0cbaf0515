"""Tests for pipelines.fewlabel_config: the run config and the settings it passes to the presets."""

from __future__ import annotations

import pytest

from pipelines.fewlabel_config import FewLabelRunConfig, fit_config_for, parse_settings
from vaecore.errors import InputDataError


@pytest.mark.parametrize(("kwargs", "message"), [
    # Python callers' values reach the config unparsed: these passed `< 0` / `< 1` and failed later.
    ({"epochs": 2.5}, "epochs must be an integer >= 0, got 2.5"),
    ({"m1_epochs": float("nan")}, "m1_epochs must be an integer >= 0, got nan"),
    ({"self_train": (100, 2.5)}, "each self_train count must be an integer >= 1, got 2.5"),
    # t-SNE of 1 or 2 points failed in scikit-learn once the whole training was done.
    ({"tsne_points": 2}, r"tsne_points must be 0 \(no t-SNE plot\) or at least 10, got 2"),
    # ignored without a word:
    ({"tsne_points": 500, "plots": False}, r"tsne_points=500 would be ignored: plots=False \(--no-plots\) draws no"),
])
def test_the_config_names_bad_counts_and_a_t_sne_count_it_would_not_use(kwargs, message):
    with pytest.raises(InputDataError, match=message):
        FewLabelRunConfig(**kwargs)


def test_settings_are_parsed_as_python_literals_or_words():
    parsed = parse_settings(("train.lr=1e-3", "m2.hidden=[300, 100]", " train.weighting = balanced",
                             "train.ema_decay=None"))
    assert parsed == {"train.lr": 0.001, "m2.hidden": (300, 100), "train.weighting": "balanced",
                      "train.ema_decay": None}  # lists become the tuples frozen configs hold
    assert parse_settings(("train.epochs=3", "train.epochs=3")) == {"train.epochs": 3}  # repeated alike: fine
    for bad, message in ((("lr",), "setting 'lr' is not KEY=VALUE"), (("=3",), "setting '=3' is not KEY=VALUE"),
                         ((" =3",), "setting ' =3' is not KEY=VALUE"),
                         (("train.epochs=2", "train.epochs=3"), "train.epochs is set twice, to 2 and 3")):
        with pytest.raises(InputDataError, match=message):
            parse_settings(bad)


def test_the_fit_config_is_the_preset_with_the_flags_then_the_settings_applied():
    config = FewLabelRunConfig(model="m2", preset="fast", epochs=7, settings=("train.lr=0.002",))
    fit = fit_config_for(config, n_labels=100, n_total=50_000, image_shape=(28, 28))
    assert fit.model == "m2" and fit.train.epochs == 7 and fit.train.lr == 0.002
    assert fit_config_for(FewLabelRunConfig(model="m2", preset="fast"), n_labels=100, n_total=50_000,
                          image_shape=(28, 28)).train.lr != 0.002  # the preset's own rate otherwise

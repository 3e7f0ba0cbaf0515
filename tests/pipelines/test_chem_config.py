"""Tests for pipelines.chem_config: chem train / eval's run configs, checked when they are made."""

from __future__ import annotations

import pytest

from chemvae.model import ChemVAEConfig
from pipelines.chem_config import ChemEvalConfig, ChemTrainConfig, check_warmup, unused_settings
from vaecore.errors import InputDataError


@pytest.mark.parametrize(("config", "message"), [
    # Python callers' values reach the configs unparsed: these passed `< 1` / `< 0` and failed later.
    (lambda: ChemTrainConfig(batch_size=2.5), "batch_size must be an integer >= 1, got 2.5"),
    (lambda: ChemTrainConfig(epochs=float("nan")), "epochs must be an integer >= 0, got nan"),
    (lambda: ChemEvalConfig(run_dir="r", n_recon=2.5), "n_recon must be an integer >= 0, got 2.5"),
    (lambda: ChemEvalConfig(run_dir="r", n_samples=float("nan")), "n_samples must be an integer >= 1, got nan"),
])
def test_python_configs_name_counts_that_are_not_integers(config, message):
    with pytest.raises(InputDataError, match=message):
        config()


def test_a_warm_up_that_would_end_after_the_run_is_refused():
    # The warm-up starts after the delay: a delay of 0.1 with the default warm-up of the
    # whole run ended the run at 90% of beta, without a word.
    with pytest.raises(InputDataError, match="kl_delay_fraction 0.1 \\+ kl_warmup_fraction 1.0 is more than all "
                                             "steps: the KL weight would end below beta; make the warm-up at most 0.9"):
        check_warmup(ChemTrainConfig(kl_delay_fraction=0.1))
    check_warmup(ChemTrainConfig(kl_delay_fraction=0.1, kl_warmup_fraction=0.9))  # ends with the run
    check_warmup(ChemTrainConfig(kl_schedule="sigmoid", kl_delay_fraction=0.3, kl_warmup_fraction=0.7))
    check_warmup(ChemTrainConfig(kl_schedule="none", kl_delay_fraction=0.5))  # no warm-up (unused_settings says so)


def test_unused_settings_name_what_this_run_would_not_read():
    assert unused_settings(ChemTrainConfig()) == []  # the defaults are never "set"
    gru_with_cnn = ChemTrainConfig(model=ChemVAEConfig(encoder="gru", cnn_kernels=(7, 7, 7)))
    assert unused_settings(gru_with_cnn) == ["cnn_kernels=(7, 7, 7) (read by the cnn encoder only)"]
    flat = ChemTrainConfig(kl_schedule="none", kl_warmup_fraction=0.5, kl_delay_fraction=0.2)
    assert unused_settings(flat) == ["kl_warmup_fraction=0.5 (kl_schedule 'none' has no warm-up)",
                                     "kl_delay_fraction=0.2 (kl_schedule 'none' has no warm-up)"]
    assert unused_settings(ChemTrainConfig(model=ChemVAEConfig(encoder="cnn", cnn_kernels=(7, 7, 7)))) == []
    # torch's GRU drops out between its layers only: with one layer the setting was ignored.
    single = ChemTrainConfig(model=ChemVAEConfig(decoder_layers=1, dropout=0.3))
    assert unused_settings(single) == ["dropout=0.3 (read between stacked GRU layers only, and this model has a "
                                       "decoder of 1 layer and no GRU encoder of 2 or more)"]
    for stacked in (dict(decoder_layers=2), dict(decoder_layers=1, encoder="gru", encoder_layers=2)):
        assert unused_settings(ChemTrainConfig(model=ChemVAEConfig(dropout=0.3, **stacked))) == []
    # A KL weight of 0 has nothing to warm up to: the schedule's settings were ignored.
    assert unused_settings(ChemTrainConfig(beta=0.0, kl_schedule="sigmoid", kl_warmup_fraction=0.5)) == [
        "kl_schedule='sigmoid' (beta 0 has no KL weight to warm up to)",
        "kl_warmup_fraction=0.5 (beta 0 has no KL weight to warm up to)"]
    assert unused_settings(ChemTrainConfig(beta=0.0)) == []

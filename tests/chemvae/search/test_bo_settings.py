"""Tests for chemvae.search.bo_settings: every bad setting is named when the settings are made."""

from __future__ import annotations

import pytest

from chemvae.search.bo_settings import BOSettings
from vaecore.errors import InputDataError


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fit_maxiter": 0}, "BOSettings.fit_maxiter must be an integer >= 1, got 0"),
    ({"acq_maxiter": -1}, "BOSettings.acq_maxiter must be an integer >= 1, got -1"),
    ({"success_tolerance": 0}, "BOSettings.success_tolerance must be an integer >= 1, got 0"),
    ({"failure_tolerance": 0}, "BOSettings.failure_tolerance must be an integer >= 1, got 0"),
    ({"raw_samples": 64.5}, "BOSettings.raw_samples must be an integer >= 1, got 64.5"),
    ({"radius_quantile": 2.0}, r"0 < radius_quantile <= 1, got 2.0"),  # chi2.ppf gave NaN: no bound at all
    ({"radius_quantile": 0.0}, r"0 < radius_quantile <= 1, got 0.0"),
])
def test_bad_bo_settings_are_named(kwargs, message):
    with pytest.raises(InputDataError, match=message):
        BOSettings(**kwargs)

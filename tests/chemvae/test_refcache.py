"""Tests of chemvae.refcache: reference statistics stored once, read back without pickle."""

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chemvae.metrics import reference_stats
from chemvae.refcache import cached_reference_stats, load_reference_stats, reference_key, save_reference_stats
from vaecore.errors import InputDataWarning

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "moses_small.csv"


@pytest.fixture(scope="module")
def smiles():
    return pd.read_csv(FIXTURE)["smiles"].tolist()[:60]


def _assert_same(a, b):
    assert a.n_valid == b.n_valid
    np.testing.assert_array_equal(a.fingerprints, b.fingerprints)
    assert a.fragments == b.fragments and a.scaffolds == b.scaffolds


def test_round_trip_keeps_every_field(smiles, tmp_path):
    # stand-in ChemNet moments: only their storage is tested here
    stats = replace(reference_stats(smiles, compute_fcd=False), chemnet=(np.arange(3.0), np.eye(3)))
    back = load_reference_stats(save_reference_stats(stats, tmp_path / "ref.npz"))
    _assert_same(stats, back)
    np.testing.assert_array_equal(back.chemnet[1], np.eye(3))
    with zipfile.ZipFile(tmp_path / "ref.npz") as z:  # plain .npy members, nothing pickled
        assert all(name.endswith(".npy") for name in z.namelist())


def test_second_call_reads_the_cache_and_the_key_follows_the_inputs(smiles, tmp_path):
    first = cached_reference_stats(smiles, cache_dir=tmp_path, compute_fcd=False)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    _assert_same(first, cached_reference_stats(smiles, cache_dir=tmp_path, compute_fcd=False))
    assert files[0].stat().st_mtime_ns == mtime
    assert reference_key(smiles, compute_fcd=False) != reference_key(smiles[1:], compute_fcd=False)
    assert reference_key(smiles, compute_fcd=False) != reference_key(smiles, compute_fcd=True)


def test_unreadable_cache_file_is_recomputed_with_a_warning(smiles, tmp_path):
    path = tmp_path / f"{reference_key(smiles, compute_fcd=False)}.npz"
    path.write_bytes(b"not a zip file")
    with pytest.warns(InputDataWarning, match="unreadable"):
        stats = cached_reference_stats(smiles, cache_dir=tmp_path, compute_fcd=False)
    _assert_same(stats, load_reference_stats(path))

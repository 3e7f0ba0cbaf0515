"""Image grids as PNG files (matplotlib, Agg backend), shared by the pipelines."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from vaecore.checkpoint import atomic_write_bytes  # noqa: E402
from vaecore.errors import InputDataError  # noqa: E402
from vaecore.nets import looks_channels_first  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike, *, dpi: int) -> Path:
    """Lay ``fig`` out, write it to ``path`` as PNG atomically (a Ctrl-C leaves no half image) and close it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: the channel counts an image axis can be drawn from


def grid_shape(image_shape: Sequence[int], x_dim: int) -> tuple[int, ...]:
    """The shape to draw images of ``image_shape`` with (see :func:`tile_images`).

    `(H, W)` as it is; `(H, W, C)` with ``C`` in :data:`CHANNELS`, or `(C, H, W)` where it
    :func:`~vaecore.nets.looks_channels_first`, as it is (grey or colour); anything else
    is drawn flat: square if its size is a square, else as one row.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2 or (len(shape) == 3 and (shape[-1] in CHANNELS or looks_channels_first(shape))):
        return shape
    side = math.isqrt(x_dim)
    return (side, side) if side * side == x_dim else (1, x_dim)


def tile_images(images: Tensor | np.ndarray, image_shape: Sequence[int], *, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Arrange images into one mosaic array.

    Args:
        images: `[N, prod(image_shape)]` or `[N, *image_shape]`, values in `[0, 1]`.
        image_shape: ``(H, W)`` of one grey image, or ``(H, W, C)`` / ``(C, H, W)`` with
            ``C`` in :data:`CHANNELS` (channels last when the last axis can be one).
        ncols: Images per row (default: about sqrt(N)).
        pad: Pixels of grey padding between images.

    Returns:
        The mosaic, float array `[rows*(H+pad)+pad, ncols*(W+pad)+pad]`, with a last axis
        of 3 or 4 for colour images.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.float32)
    n = arr.shape[0]
    if n == 0:
        raise InputDataError("no images to tile")
    arr = arr.reshape(n, *(int(s) for s in image_shape))
    if arr.ndim == 4:
        if arr.shape[-1] not in CHANNELS:  # channels first, as torch stores images
            arr = arr.transpose(0, 2, 3, 1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    h, w = arr.shape[1], arr.shape[2]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *arr.shape[3:]), 0.5, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = arr[i]
    return grid


def save_image_grid(
    images: Tensor | np.ndarray,
    path: str | os.PathLike,
    image_shape: Sequence[int] = (28, 28),
    *,
    ncols: int | None = None,
    title: str | None = None,
) -> Path:
    """Write a grid of grey or colour images (e.g. prior samples) as a PNG.

    Args:
        images: `[N, prod(image_shape)]` or `[N, *image_shape]`, values in `[0, 1]`.
        path: Output ``.png`` path.
        image_shape: The shape of one image, as :func:`tile_images` takes it.
        ncols: Images per row (default: about sqrt(N)).
        title: Optional figure title.
    """
    grid = tile_images(images, image_shape, ncols=ncols)
    scale = 6.0 / max(grid.shape[:2])
    fig, ax = plt.subplots(figsize=(grid.shape[1] * scale + 0.2, grid.shape[0] * scale + (0.5 if title else 0.2)))
    # cmap, vmin and vmax apply to grey mosaics; colour ones must lie in [0, 1] themselves.
    ax.imshow(np.clip(grid, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, wrap=True)  # a narrow grid (few classes) cut a long title off
    return save_figure(fig, path, dpi=100)


def save_reconstruction_grid(
    originals: Tensor | np.ndarray,
    reconstructions: Tensor | np.ndarray,
    path: str | os.PathLike,
    image_shape: Sequence[int] = (28, 28),
    *,
    ncols: int = 10,
    title: str | None = None,
) -> Path:
    """Write originals and their reconstructions as alternating rows of a PNG grid.

    Args:
        originals, reconstructions: `[N, prod(image_shape)]` each, values in `[0, 1]`.
        path: Output ``.png`` path.
        image_shape: The shape of one image, as :func:`tile_images` takes it.
        ncols: Images per row; row pairs show ``ncols`` originals then their reconstructions.
        title: Optional figure title.
    """
    a = torch.as_tensor(np.asarray(originals.detach().cpu() if isinstance(originals, Tensor) else originals))
    b = torch.as_tensor(np.asarray(reconstructions.detach().cpu() if isinstance(reconstructions, Tensor) else reconstructions))
    if a.shape[0] != b.shape[0]:
        raise InputDataError(f"{a.shape[0]} originals but {b.shape[0]} reconstructions")
    a, b = a.reshape(a.shape[0], -1).float(), b.reshape(b.shape[0], -1).float()
    rows = []
    for start in range(0, a.shape[0], ncols):
        chunk_a, chunk_b = a[start:start + ncols], b[start:start + ncols]
        fill = ncols - chunk_a.shape[0]  # pad the last pair of rows with blank images
        blank = torch.full((fill, a.shape[1]), 0.5)
        rows += [torch.cat([chunk_a, blank]), torch.cat([chunk_b, blank])]
    return save_image_grid(torch.cat(rows), path, image_shape, ncols=ncols, title=title)

"""Image grids as PNG files (matplotlib, Agg backend), shared by the pipelines."""

from __future__ import annotations

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

from vaecore.errors import InputDataError  # noqa: E402


def grid_shape(image_shape: Sequence[int], x_dim: int) -> tuple[int, int]:
    """`(H, W)` to draw images of ``image_shape`` with; flat data of square size is drawn square."""
    if len(image_shape) == 2:
        return int(image_shape[0]), int(image_shape[1])
    side = math.isqrt(x_dim)
    return (side, side) if side * side == x_dim else (1, x_dim)


def tile_images(images: Tensor | np.ndarray, image_shape: Sequence[int], *, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Arrange grey images into one mosaic array.

    Args:
        images: `[N, H*W]` or `[N, H, W]`, values in `[0, 1]`.
        image_shape: ``(H, W)`` of one image.
        ncols: Images per row (default: about sqrt(N)).
        pad: Pixels of white-ish padding between images.

    Returns:
        The mosaic, float array `[rows*(H+pad)+pad, ncols*(W+pad)+pad]`.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.float32)
    h, w = int(image_shape[0]), int(image_shape[1])
    n = arr.shape[0]
    if n == 0:
        raise InputDataError("no images to tile")
    arr = arr.reshape(n, h, w)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 0.5, dtype=np.float32)
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
    """Write a grid of grey images (e.g. prior samples) as a PNG.

    Args:
        images: `[N, H*W]` or `[N, H, W]`, values in `[0, 1]`.
        path: Output ``.png`` path.
        image_shape: ``(H, W)`` of one image.
        ncols: Images per row (default: about sqrt(N)).
        title: Optional figure title.
    """
    grid = tile_images(images, image_shape, ncols=ncols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 6.0 / max(grid.shape)
    fig, ax = plt.subplots(figsize=(grid.shape[1] * scale + 0.2, grid.shape[0] * scale + (0.5 if title else 0.2)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
        originals, reconstructions: `[N, H*W]` each, values in `[0, 1]`.
        path: Output ``.png`` path.
        image_shape: ``(H, W)`` of one image.
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

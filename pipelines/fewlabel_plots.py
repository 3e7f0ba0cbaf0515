"""Plots of a few-label run (matplotlib, Agg): samples, reconstructions, t-SNE, curves.

:func:`write_plots` draws them all for ``vaelab fewlabel``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, SymmetricalLogLocator  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from pipelines.fewlabel_config import MIN_TSNE_POINTS  # noqa: E402
from pipelines.plots import grid_shape, save_figure, save_image_grid, save_reconstruction_grid  # noqa: E402

if TYPE_CHECKING:
    from ssvae.classifier import FewLabelClassifier
    from ssvae.data import ImageDataset

N_SAMPLE_ROWS = 8  # rows of samples.png (one z each)
N_RECON = 50  # test digits in reconstructions.png
ERROR_LINEAR_BELOW = 0.1  # % error: with errors of 0, the error axis of curves.png is linear below it


def save_tsne(codes: np.ndarray, labels: np.ndarray, path: str | os.PathLike, *, seed: int = 0,
              title: str | None = None) -> Path:
    """2-D t-SNE (scikit-learn) of latent codes `[N, d]`, one colour per class.

    Perplexity is capped below N so that tiny sets (tests, fixtures) work too. The
    OpenMP threads of scikit-learn's Barnes-Hut gradient are limited to torch's thread
    count: on a shared CPU, more threads than cores spin and slow everyone down.
    """
    codes = np.asarray(codes, dtype=np.float32)
    n = len(codes)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    method = "exact" if n <= 300 else "barnes_hut"  # exact is faster and deterministic when tiny
    with threadpool_limits(limits=torch.get_num_threads(), user_api="openmp"):
        # PCA initialisation needs >= 2 features; M1+M2 may keep a single active z1 dim.
        init = "pca" if codes.shape[1] >= 2 else "random"
        xy = TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed,
                  method=method).fit_transform(codes)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(i % cmap.N), label=str(c))
    ax.legend(markerscale=3, fontsize=8, loc="best", title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi=110)


def _two_and_five(value: float, _position: int) -> str:
    """Minor tick labels of the error axis: 0.2, 0.5, 2, 5, 20, 50 (the other minor ticks unlabelled)."""
    mantissa = f"{value:.0e}"[0]  # leading digit
    return f"{value:g}" if value > 0 and mantissa in "25" else ""


def save_curves(history: pd.DataFrame, path: str | os.PathLike) -> Path:
    """:func:`curves_figure` of ``history`` as a PNG at ``path``."""
    return save_figure(curves_figure(history), path, dpi=110)


def curves_figure(history: pd.DataFrame) -> plt.Figure:
    """Loss per epoch (left) and validation / test / labelled training error per epoch (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_col = "train_loss" if "train_loss" in history else None
    if loss_col:
        left.plot(history["epoch"], history[loss_col], label="training loss")
        left.set_xlabel("epoch")
        left.set_ylabel("loss (nats)")
        left.legend()
    lowest = np.inf
    for col in ("valid_error", "test_error", "train_labelled_accuracy"):
        if col in history:
            values = 100 * (1 - history[col] if col == "train_labelled_accuracy" else history[col])
            right.plot(history["epoch"], values, label=col.replace("train_labelled_accuracy", "labelled train error"))
            lowest = min(lowest, values.min())
    right.set_xlabel("epoch")
    right.set_ylabel("error (%)")
    if lowest > 0:
        right.set_yscale("log")
        for axis in (right.yaxis.set_major_formatter, right.yaxis.set_minor_formatter):
            axis(LogFormatter())  # 20, 30 instead of 2 x 10^1
    else:
        # An error of 0 (a labelled training error once the few labels are learned by heart,
        # any error on small or easy data) is drawn nowhere on a log axis: logarithmic
        # above ERROR_LINEAR_BELOW %, linear down to 0.
        right.set_yscale("symlog", linthresh=ERROR_LINEAR_BELOW, linscale=0.5)
        right.set_ylim(0, max(right.get_ylim()[1], 1.0))  # errors of 0 everywhere still get an axis to 1%
        right.yaxis.set_minor_locator(SymmetricalLogLocator(linthresh=ERROR_LINEAR_BELOW, base=10,
                                                            subs=range(2, 10)))
        right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1, 1, 10, not 1e-01
        right.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even just one
    right.legend()
    return fig


def sample_grid_inputs(kind: str, n_classes: int, z_dim: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Labels `[R * C]` and latents `[R * C, z]` of samples.png, row by row (R = ``N_SAMPLE_ROWS``).

    A class-conditional model gets one z per row, the same along it, and class j in column
    j. M1 takes no label: it gets a z per cell (one per row made each row one image
    repeated across it, 8 distinct samples of 80).
    """
    if kind == "m1":
        z = torch.randn(N_SAMPLE_ROWS * n_classes, z_dim, generator=generator)
    else:
        z = torch.randn(N_SAMPLE_ROWS, z_dim, generator=generator).repeat_interleave(n_classes, 0)
    return torch.arange(n_classes).repeat(N_SAMPLE_ROWS), z


def write_plots(clf: FewLabelClassifier, dataset: ImageDataset, rundir: Path, *, tsne_points: int,
                seed: int) -> list[str]:
    """samples.png, tsne.png, reconstructions.png and curves.png in ``rundir``; returns their names.

    ``curves.png`` plots the training history of ``clf`` itself (M2 / M1+M2; every epoch,
    resumed ones included), so a self-trained run's curves are its second model's.
    """
    model, shape, written = clf.model, grid_shape(dataset.image_shape, dataset.x_dim), []
    device = clf.device
    n_classes = clf.n_classes
    z_dim = model.m1.config.z_dim if model.kind == "m1" else model.m2.config.z_dim
    gen = torch.Generator().manual_seed(seed)
    y, z = sample_grid_inputs(model.kind, n_classes, z_dim, gen)
    y, z = y.to(device), z.to(device)
    title = ("M1 prior samples (no label input)" if model.kind == "m1"
             else "class-conditional samples: one column per class, one z per row")
    save_image_grid(model.generate(y, z), rundir / "samples.png", shape, ncols=n_classes, title=title)
    written.append("samples.png")
    x_show = dataset.test.x[:N_RECON].to(device)
    save_reconstruction_grid(x_show, model.reconstruct(x_show), rundir / "reconstructions.png", shape,
                             title="test digits (odd rows) and reconstructions (even rows)")
    written.append("reconstructions.png")
    if tsne_points > 0 and len(dataset.test) >= MIN_TSNE_POINTS:
        keep = torch.randperm(len(dataset.test), generator=gen)[:tsne_points]
        codes = torch.cat([model.latent(xb.to(device)).cpu() for xb in dataset.test.x[keep].split(2000)])
        save_tsne(codes.numpy(), dataset.test.y[keep].numpy(), rundir / "tsne.png", seed=seed,
                  title=f"t-SNE of {model.kind} latent codes, {len(keep)} test digits")
        written.append("tsne.png")
    if clf.result is not None and len(clf.result.history):
        save_curves(clf.result.history, rundir / "curves.png")
        written.append("curves.png")
    return written

"""Plots of a few-label run: t-SNE of latent codes and training curves (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_curves(history: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Loss per epoch (left) and validation / test error per epoch (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_col = "train_loss" if "train_loss" in history else None
    if loss_col:
        left.plot(history["epoch"], history[loss_col], label="training loss")
        left.set_xlabel("epoch")
        left.set_ylabel("loss (nats)")
        left.legend()
    for col in ("valid_error", "test_error", "train_labelled_accuracy"):
        if col in history:
            values = 1 - history[col] if col == "train_labelled_accuracy" else history[col]
            right.plot(history["epoch"], 100 * values, label=col.replace("train_labelled_accuracy", "labelled train error"))
    right.set_xlabel("epoch")
    right.set_ylabel("error (%)")
    right.set_yscale("log")
    right.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

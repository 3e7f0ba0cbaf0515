"""Tests for pipelines.fewlabel_plots: the error curves and the t-SNE plot of a few-label run."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import pandas as pd
import pytest

from pipelines.fewlabel_plots import curves_figure, save_curves, save_tsne


def _error_axis(history: pd.DataFrame):
    """The right-hand axis of the curves, drawn with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Data has no positive values, and therefore cannot be log-scaled"
        fig = curves_figure(history)
    return fig, fig.axes[1]


def _line(axis, label: str) -> np.ndarray:
    return np.asarray(next(line for line in axis.get_lines() if line.get_label() == label).get_ydata())


def test_an_error_of_zero_is_drawn_on_the_error_axis():
    # Once the few labels are learned by heart the labelled training error is 0, and the
    # log axis drew that line nowhere.
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [150.0, 120.0, 110.0],
                            "valid_error": [0.3, 0.05, 0.02], "train_labelled_accuracy": [0.6, 1.0, 1.0]})
    fig, right = _error_axis(history)
    assert right.get_yscale() == "symlog"
    bottom, top = right.get_ylim()
    assert bottom == 0 and top >= 40
    assert _line(right, "labelled train error") == pytest.approx([40.0, 0.0, 0.0])
    assert _line(right, "valid_error") == pytest.approx([30.0, 5.0, 2.0])
    assert [label.get_text() for label in right.get_yticklabels()][:3] == ["0", "0.1", "1"]
    plt.close(fig)


def test_errors_of_zero_everywhere_still_get_an_axis():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [3.0, 2.0], "valid_error": [0.0, 0.0],
                            "train_labelled_accuracy": [1.0, 1.0]})
    fig, right = _error_axis(history)
    assert right.get_ylim() == (0.0, 1.0)
    plt.close(fig)


def test_errors_above_zero_keep_a_log_axis():
    epochs = np.arange(1, 51)
    history = pd.DataFrame({"epoch": epochs, "train_loss": 100 + 50 * np.exp(-epochs / 10),
                            "valid_error": 0.02 + 0.02 * np.exp(-epochs / 10),
                            "test_error": 0.025 + 0.02 * np.exp(-epochs / 10)})
    fig, right = _error_axis(history)
    assert right.get_yscale() == "log"
    assert _line(right, "test_error") == pytest.approx(100 * history["test_error"].to_numpy())
    assert fig.axes[0].get_ylabel() == "loss (nats)"
    plt.close(fig)


def test_save_curves_writes_the_png_and_closes_the_figure(tmp_path):
    history = pd.DataFrame({"epoch": [1], "train_loss": [150.0], "valid_error": [0.5]})
    open_before = len(plt.get_fignums())
    path = save_curves(history, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    assert plt.imread(path).shape[:2] == (418, 1100)  # 10 x 3.8 inches at 110 dpi
    assert len(plt.get_fignums()) == open_before


def test_tsne_of_one_feature_and_more_classes_than_ten_is_seeded(tmp_path):
    # M1+M2 may keep a single active z1 dimension (PCA initialisation needs two); a user's
    # data may have more classes than tab10's colours.
    rng = np.random.default_rng(0)
    codes, labels = rng.normal(size=(24, 1)), np.arange(24) % 12
    first = save_tsne(codes, labels, tmp_path / "a.png", seed=3, title="one feature")
    again = save_tsne(codes, labels, tmp_path / "b.png", seed=3, title="one feature")
    other = save_tsne(codes, labels, tmp_path / "c.png", seed=4, title="one feature")
    assert plt.imread(first).shape[:2] == (660, 715)  # 6.5 x 6 inches at 110 dpi
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_tsne_of_the_fewest_points_plotted(tmp_path):
    # Ten points: the perplexity is capped below them, (10 - 1) / 3 = 3 (scikit-learn
    # refuses a perplexity of at least the number of points).
    codes = np.random.default_rng(1).normal(size=(10, 4))
    assert save_tsne(codes, np.arange(10) % 2, tmp_path / "tsne.png").is_file()


def test_m1_samples_are_a_fresh_draw_per_cell_and_class_conditional_ones_share_a_row():
    from pipelines.fewlabel_plots import N_SAMPLE_ROWS, sample_grid_inputs

    gen = torch.Generator().manual_seed(0)
    y, z = sample_grid_inputs("m1m2", 10, 4, gen)
    assert y.tolist() == list(range(10)) * N_SAMPLE_ROWS  # class j in column j
    rows = z.reshape(N_SAMPLE_ROWS, 10, 4)
    assert torch.equal(rows, rows[:, :1].expand_as(rows)) and len(rows[:, 0].unique(dim=0)) == N_SAMPLE_ROWS
    # M1 ignores y: a z per row made each row one image ten times (8 distinct of 80).
    _, z1 = sample_grid_inputs("m1", 10, 4, gen)
    assert z1.shape == (10 * N_SAMPLE_ROWS, 4) and len(z1.unique(dim=0)) == 10 * N_SAMPLE_ROWS

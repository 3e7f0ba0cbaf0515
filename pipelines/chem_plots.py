"""Plots of molecule runs: training curves, property distributions, molecule grids.

``vaelab chem train`` draws :func:`save_training_curves` from its ``history.csv``;
``vaelab chem eval`` draws :func:`save_property_histograms` of its valid prior samples
against the held-out test molecules, the picture MOSES uses to show whether generated
molecules look like the data, and a :func:`save_molecule_grid` of them, as ``vaelab
molopt`` does of its best molecules.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipelines.plots import save_figure  # noqa: E402
from vaecore.checkpoint import atomic_write_bytes  # noqa: E402
from vaecore.errors import InputDataError  # noqa: E402

PROPERTY_LABELS = {"logp": "logP (Crippen)", "qed": "QED", "sa": "SA score", "plogp": "penalized logP (normalized)"}


def save_training_curves(history: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Loss, KL and token accuracy per epoch, training and validation, from ``history.csv``."""
    panels = (("loss", "loss (nats / molecule)"), ("kl", "KL (nats / molecule)"), ("token_accuracy", "token accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.6))
    for ax, (name, label) in zip(axes, panels):
        for split in ("train", "valid"):
            column = f"{split}_{name}"
            if column in history:
                ax.plot(history["epoch"], history[column], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even just one
        ax.set_ylabel(label)
        if ax.has_data():
            ax.legend()
    if "beta" in history and len(history):  # the KL weight at each epoch's end: why the KL moves as it does
        axes[1].set_title(f"KL weight at the last epoch: {history['beta'].iloc[-1]:.3g}", fontsize=9)
    return save_figure(fig, path, dpi=110)


def save_property_histograms(samples: pd.DataFrame, reference: pd.DataFrame, path: str | os.PathLike, *,
                             columns: Sequence[str] = ("logp", "qed", "sa", "plogp"),
                             reference_name: str = "test") -> Path:
    """Density histograms of molecular properties: valid samples against a reference set.

    Args:
        samples: Property table of the samples (:func:`chemvae.properties.compute_properties`);
            rows with ``valid`` false are left out.
        reference: The same table for the reference molecules.
        path: Output ``.png`` path.
        columns: Which properties, one panel each.
        reference_name: The reference set's name in the legend.

    Raises:
        InputDataError: A property in ``columns`` that either table lacks.
    """
    for name, table in (("samples", samples), ("reference", reference)):
        missing = [c for c in columns if c not in table]
        if missing:
            raise InputDataError(f"the {name} table has no column {missing}; it has {list(table.columns)}")
    valid = samples[samples["valid"]] if "valid" in samples else samples
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.2))
    for ax, column in zip(np.atleast_1d(axes), columns):
        ours, theirs = valid[column].dropna().to_numpy(), reference[column].dropna().to_numpy()
        both = np.concatenate([ours, theirs])
        if both.size:
            # Shared bins over the bulk of both sets, so that one outlier (a 60-carbon chain's
            # logP) does not squeeze every other molecule into one bin.
            low, high = np.percentile(both, [0.5, 99.5])
            bins = np.linspace(low, high, 41) if high > low else 40
            for values, label, color in ((theirs, reference_name, "tab:blue"), (ours, "valid samples", "tab:orange")):
                if values.size:  # a density of nothing is 0 / 0
                    # Values beyond the bins go in the edge bins: left out, a set that lay all
                    # outside (one valid sample, an outlier) was a density of 0 / 0, drawn as
                    # nothing with numpy's "invalid value encountered in divide".
                    ax.hist(np.clip(values, low, high) if high > low else values, bins=bins, density=True,
                            alpha=0.5, color=color, label=f"{label} ({values.size:,})")
            ax.legend(fontsize=8)
        ax.set_xlabel(PROPERTY_LABELS.get(column, column))
        ax.set_yticks([])
    return save_figure(fig, path, dpi=110)


def save_molecule_grid(smiles: Sequence[str], path: str | os.PathLike, *, legends: Sequence[str] | None = None,
                       per_row: int = 6, size: int = 250) -> int:
    """Draw ``smiles`` as an RDKit grid PNG; returns how many were drawn (no file if none).

    Strings RDKit cannot parse are left out with their legends (default: the position).
    """
    from rdkit.Chem import Draw

    from chemvae.rdkit_utils import mol_from_smiles

    legends = [str(i) for i in range(len(smiles))] if legends is None else list(legends)
    if len(legends) != len(smiles):
        raise InputDataError(f"save_molecule_grid needs one legend per molecule, got {len(legends)} for {len(smiles)}")
    drawn = [(m, legend) for m, legend in zip((mol_from_smiles(s) for s in smiles), legends) if m is not None]
    if drawn:
        image = Draw.MolsToGridImage([m for m, _ in drawn], molsPerRow=per_row, subImgSize=(size, size),
                                     legends=[legend for _, legend in drawn])
        buffer = io.BytesIO()  # written whole, as every other file a run writes
        image.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
    return len(drawn)

"""Frechet ChemNet Distance (Preuer et al. 2018) on fcd_torch, with safe weight loading.

fcd_torch is an optional extra (``pip install 'vaelab[fcd]'``); without it every function
here raises :class:`FCDUnavailableError`, and :func:`chemvae.metrics.generation_metrics`
reports FCD as NaN with a warning.

Why not ``fcd_torch.FCD`` directly: its constructor calls ``torch.load`` on the ChemNet
weights without ``weights_only``, which unpickles arbitrary objects on torch < 2.6. We read
the same file with ``weights_only=True`` and reuse fcd_torch's network builder, SMILES
one-hot dataset and Frechet distance, so the numbers are the library's.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from chemvae.rdkit_utils import canonicalize_all
from vaecore.errors import InputDataError, VaelabError

Moments = tuple[np.ndarray, np.ndarray]  # (mean `[512]`, covariance `[512, 512]`)


class FCDUnavailableError(VaelabError, ImportError):
    """``fcd_torch`` (the optional extra ``vaelab[fcd]``) is not installed."""


def _fcd_utils():
    try:
        import fcd_torch.utils as fcd_utils
    except ImportError as err:
        raise FCDUnavailableError(
            "FCD needs the optional package fcd_torch (pip install 'vaelab[fcd]'); "
            f"importing it failed: {err}"
        ) from err
    return fcd_utils


@functools.cache
def _chemnet() -> torch.nn.Module:
    """ChemNet from the weights file shipped inside the fcd_torch wheel (CPU copy).

    The file holds a list of ``(layer type, (state dict, kwargs, info))`` made of tensors,
    strings, numbers and containers only, so ``weights_only=True`` loads it and would
    refuse anything else.
    """
    fcd_utils = _fcd_utils()
    path = os.path.join(os.path.dirname(fcd_utils.__file__), "ChemNet_v0.13_pretrained.pt")
    config = torch.load(path, map_location="cpu", weights_only=True)
    return fcd_utils.load_imported_model(config).eval()


def chemnet_moments(valid: list[str], *, device: str = "cpu", n_jobs: int = 1, batch_size: int = 512) -> Moments:
    """Mean and covariance of ChemNet's penultimate activations for valid canonical SMILES.

    Args:
        valid: ``N >= 2`` valid, canonical SMILES.
        device: Torch device for ChemNet.
        n_jobs: DataLoader workers for one-hot encoding (``1``: in this process).
        batch_size: Molecules per forward pass.

    Returns:
        ``(mean, cov)`` with shapes `[512]` and `[512, 512]`, float64.
    """
    fcd_utils = _fcd_utils()
    if len(valid) < 2:
        raise InputDataError(f"FCD needs at least 2 valid molecules, got {len(valid)}")
    model = _chemnet() if torch.device(device).type == "cpu" else copy.deepcopy(_chemnet()).to(device)
    loader = torch.utils.data.DataLoader(
        fcd_utils.SmilesDataset(valid, canonize=False),  # already canonical
        batch_size=batch_size,
        num_workers=n_jobs if n_jobs > 1 else 0,
    )
    activations = []
    with torch.no_grad():
        for batch in loader:  # `[b, 350, 35]` one-hot; ChemNet's convolutions want channels first
            activations.append(model(batch.transpose(1, 2).float().to(device)).cpu().double().numpy())
    acts = np.concatenate(activations)  # `[N, 512]`
    return acts.mean(0), np.cov(acts.T)


def chemnet_statistics(
    smiles: Sequence[str | None], *, device: str = "cpu", n_jobs: int = 1, batch_size: int = 512
) -> Moments:
    """:func:`chemnet_moments` of the valid entries of ``smiles`` (invalid ones are dropped).

    Raises:
        FCDUnavailableError: fcd_torch is not installed.
        InputDataError: fewer than two valid molecules.
    """
    valid = [c for c in canonicalize_all(smiles, progress=False) if c is not None]  # which refuses one bare string
    return chemnet_moments(valid, device=device, n_jobs=n_jobs, batch_size=batch_size)


def frechet_distance(a: Moments, b: Moments) -> float:
    """Frechet distance of two Gaussians given as ``(mean, cov)`` (fcd_torch's stable version)."""
    # One BLAS thread: the 512 x 512 matrix square root gains little from threads, and on
    # shared, oversubscribed cores OpenBLAS's spinning threads made it about 10x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return float(_fcd_utils().calculate_frechet_distance(a[0], a[1], b[0], b[1]))


def fcd(gen: Sequence[str | None], ref: Sequence[str], *, device: str = "cpu", n_jobs: int = 1) -> float:
    """Frechet ChemNet Distance between the valid molecules of ``gen`` and ``ref`` (0 = same).

    Raises:
        FCDUnavailableError: fcd_torch is not installed.
        InputDataError: either set has fewer than two valid molecules.
    """
    ref_moments = chemnet_statistics(ref, device=device, n_jobs=n_jobs)
    return frechet_distance(ref_moments, chemnet_statistics(gen, device=device, n_jobs=n_jobs))

"""Saving a :class:`~chemvae.model.MoleculeVAE` and loading it back, without unpickling code.

A checkpoint holds the weights (safetensors), the model's config as JSON and, beside
them, what rebuilds its boundary: the vocabulary and the property statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch

from chemvae.model import ChemVAEConfig, MoleculeVAE
from chemvae.tokens import Vocabulary
from vaecore.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from vaecore.config import config_from_dict, config_to_dict
from vaecore.errors import CheckpointError
from vaecore.runtime import resolve_device

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"


def checkpoint_extra(model: MoleculeVAE) -> dict:
    """What a checkpoint stores besides tensors: the vocabulary and property statistics."""
    return {
        "kind": "chemvae.MoleculeVAE",
        "vocab": model.vocab.to_dict(),
        "property_names": list(model.property_names),
        "property_mean": model.property_mean.tolist(),
        "property_std": model.property_std.tolist(),
    }


def save_model(model: MoleculeVAE, path: str | Path, **payload: object) -> Path:
    """Write the model (and any extra ``payload`` entries, e.g. optimizer state) atomically."""
    return save_checkpoint(path, {"model": model.state_dict(), **payload}, config_to_dict(model.config),
                           extra=checkpoint_extra(model))


def model_from_checkpoint(ckpt: Checkpoint) -> MoleculeVAE:
    """Rebuild a model from a loaded checkpoint (weights on the checkpoint's device)."""
    if ckpt.extra.get("kind") != "chemvae.MoleculeVAE" or "vocab" not in ckpt.extra:
        raise CheckpointError("not a chemvae model checkpoint (no vocabulary stored; a model of vaelab chem "
                              "train is meant)")
    config = config_from_dict(ChemVAEConfig, ckpt.config)
    model = MoleculeVAE(config, Vocabulary.from_dict(ckpt.extra["vocab"]))
    model.load_state_dict(ckpt.payload["model"])
    return model.to(next(iter(ckpt.payload["model"].values())).device)


def load(path: str | Path, device: str | torch.device = "cpu") -> MoleculeVAE:
    """Load a trained :class:`MoleculeVAE` in eval mode.

    Args:
        path: A run directory (its ``model.safetensors``, else its resumable
            ``checkpoint.safetensors``) or a checkpoint file.
        device: Where to put the weights: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``
            (a device this machine lacks is an :class:`InputDataError` naming it).

    Raises:
        CheckpointError: No checkpoint there, or not a chemvae checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / MODEL_FILE, path / CHECKPOINT_FILE]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise CheckpointError(f"{path} holds no {MODEL_FILE} or {CHECKPOINT_FILE}")
        path = found[0]
    checkpoint = load_checkpoint(path, device=resolve_device(device))
    try:
        model = model_from_checkpoint(checkpoint)
    except CheckpointError as err:  # name the file: it may be another command's run
        raise CheckpointError(f"{path}: {err}") from err
    return model.eval()

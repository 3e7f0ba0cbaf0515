"""Tests for chemvae.persistence: a run directory's model, else its checkpoint; other checkpoints named."""

from __future__ import annotations

import pytest
import torch

from chemvae.persistence import CHECKPOINT_FILE, MODEL_FILE, load, save_model
from vaecore.checkpoint import save_checkpoint, stored_scalar
from vaecore.datasets import REPO_DATA_DIR
from vaecore.errors import CheckpointError

FIXTURE_MODEL = REPO_DATA_DIR / "fixtures" / "chemvae_tiny"


def test_a_run_directory_loads_its_final_model_else_its_resumable_checkpoint(tmp_path):
    fixture = load(FIXTURE_MODEL)
    fixture.set_property_stats([1.0, 0.5, 3.0], [2.0, 0.1, 1.0])
    save_model(fixture, tmp_path / CHECKPOINT_FILE, epoch=3)  # extra payload beside the weights
    assert stored_scalar(tmp_path / CHECKPOINT_FILE, "epoch") == 3
    interrupted = load(tmp_path)  # no model.safetensors yet: the checkpoint
    assert interrupted.property_std.tolist() == pytest.approx([2.0, 0.1, 1.0]) and not interrupted.training
    assert interrupted.vocab == fixture.vocab and interrupted.config == fixture.config
    save_model(load(FIXTURE_MODEL), tmp_path / MODEL_FILE)
    finished = load(tmp_path)  # the final model wins over the checkpoint
    assert finished.property_std.tolist() == pytest.approx(load(FIXTURE_MODEL).property_std.tolist())
    z = torch.zeros(2, fixture.latent_dim)
    assert load(tmp_path / CHECKPOINT_FILE).decode(z) == fixture.eval().decode(z)  # a file is loaded as named


def test_a_checkpoint_of_another_kind_is_named_with_its_file(tmp_path):
    other = save_checkpoint(tmp_path / MODEL_FILE, {"model": {"w": torch.ones(1)}}, {"kind": "m2"})
    with pytest.raises(CheckpointError, match=f"{other}: not a chemvae model checkpoint"):
        load(tmp_path)
    (tmp_path / "none").mkdir()
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'none'} holds no {MODEL_FILE} or {CHECKPOINT_FILE}"):
        load(tmp_path / "none")

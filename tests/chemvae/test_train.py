"""Tests for chemvae.train: a tiny CPU run overfits, checkpoints resume, Ctrl-C stops cleanly."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from chemvae.batches import MoleculeTensors, encode_tokens
from chemvae.data import FIXTURE_CSV, check_molecules
from chemvae.metrics import reconstruction_accuracy
from chemvae.model import ChemVAEConfig, MoleculeVAE
from chemvae.tokens import Tokenizer, Vocabulary
from chemvae.train import evaluate_loss, fit, load_training_state, reconstruct, train_epoch
from vaecore.checkpoint import load_checkpoint
from vaecore.errors import ConfigMismatchError, NonFiniteLossError
from vaecore.rundir import RunDir
from vaecore.schedules import ConstantSchedule, LinearWarmup


def _data(n: int, config: ChemVAEConfig, vocab: Vocabulary | None = None) -> tuple[MoleculeTensors, Vocabulary]:
    # The shortest fixture molecules: the same test at a fraction of the sequence length.
    smiles = sorted(pd.read_csv(FIXTURE_CSV)["smiles"].tolist(), key=len)[:n]
    checked = check_molecules(smiles, Tokenizer(config.representation), max_length=config.max_length)
    vocab = vocab or Vocabulary.build(checked.tokens)
    props = torch.randn(len(checked.smiles), len(config.property_names), generator=torch.Generator().manual_seed(0))
    return MoleculeTensors(checked.smiles, encode_tokens(checked.tokens, vocab, config.max_length + 1), props), vocab


def test_tiny_cpu_run_overfits_100_molecules():
    torch.manual_seed(0)
    config = ChemVAEConfig(latent_dim=16, embedding_dim=32, encoder_hidden=64, decoder_hidden=128,
                           decoder_layers=1, property_hidden=(16,), max_length=60, property_weight=0.0)
    data, vocab = _data(100, config)
    assert len(data) == 100
    model = MoleculeVAE(config, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    step = 0
    for _ in range(40):
        step, row = train_epoch(model, data, optimizer, ConstantSchedule(1e-3), step=step, batch_size=20,
                                generator=generator, progress=False)
    assert step == 200 and row["train_token_accuracy"] > 0.95
    inputs, decoded = reconstruct(model, data.smiles)
    assert len(inputs) == 100
    assert reconstruction_accuracy(inputs, decoded) >= 0.9


TINY = ChemVAEConfig(latent_dim=4, embedding_dim=8, encoder_hidden=8, decoder_hidden=16, decoder_layers=1,
                     property_hidden=(8,), max_length=40)


@pytest.mark.parametrize("grad_clip", [-1.0, 0.0, float("nan")])
def test_a_clip_norm_that_is_not_positive_is_refused(grad_clip):
    # clip_grad_norm_ with a negative norm multiplies every gradient by a negative number.
    data, vocab = _data(10, TINY)
    model = MoleculeVAE(TINY, vocab)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=f"grad_clip must be a finite number > 0, got {grad_clip}"):
        train_epoch(model, data, torch.optim.Adam(model.parameters()), ConstantSchedule(1.0), step=0, batch_size=5,
                    generator=torch.Generator().manual_seed(0), grad_clip=grad_clip, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before any step


def test_fit_logs_checkpoints_and_resumes(tmp_path):
    torch.manual_seed(0)
    data, vocab = _data(30, TINY)
    model = MoleculeVAE(TINY, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    rundir = RunDir(tmp_path, TINY, seed=0, device="cpu")
    schedule = LinearWarmup(steps=6)
    done = fit(model, data, data, optimizer=optimizer, schedule=schedule, epochs=2, batch_size=10,
               generator=generator, rundir=rundir, checkpoint_path=tmp_path / "ckpt.safetensors", progress=False)
    assert done == 2
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["step"].tolist() == [3, 6]
    assert history["beta"].tolist() == [0.5, 1.0]
    assert {"train_loss", "valid_loss", "valid_token_accuracy", "train_molecules_per_s"} <= set(history)
    stored = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert stored.payload["epoch"] == 2 and stored.extra["vocab"]["itos"] == vocab.itos

    # A fresh model and optimizer pick up exactly where the run stopped.
    torch.manual_seed(1)
    resumed = MoleculeVAE(TINY, vocab)
    optimizer2 = torch.optim.Adam(resumed.parameters(), lr=1e-3)
    generator2 = torch.Generator()
    epoch, step = load_training_state(tmp_path / "ckpt.safetensors", resumed, optimizer2, generator2)
    assert (epoch, step) == (2, 6)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert torch.equal(generator.get_state(), generator2.get_state())
    done = fit(resumed, data, None, optimizer=optimizer2, schedule=schedule, epochs=3, batch_size=10,
               generator=generator2, rundir=rundir, checkpoint_path=tmp_path / "ckpt.safetensors",
               start_epoch=epoch, step=step, progress=False)
    assert done == 3 and pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3]

    other = MoleculeVAE(ChemVAEConfig(**{**TINY.__dict__, "latent_dim": 5}), vocab)
    with pytest.raises(ConfigMismatchError, match="latent_dim"):
        load_training_state(tmp_path / "ckpt.safetensors", other, torch.optim.Adam(other.parameters()), generator2)


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    # The checkpoint kept the shuffling generator but not the global one that draws the
    # reparameterization noise: resumed after epoch 1 (in a new process, seeded afresh), a
    # run redrew epoch 1's noise in epoch 2, and its weights and losses differed from there.
    data, vocab = _data(30, TINY)

    def run(directory, epochs, resume):
        torch.manual_seed(0)  # as seed_everything at every start of the command
        model = MoleculeVAE(TINY, vocab)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        start, step = (load_training_state(directory / "ckpt.safetensors", model, optimizer, generator)
                       if resume else (0, 0))
        fit(model, data, data, optimizer=optimizer, schedule=LinearWarmup(steps=6), epochs=epochs, batch_size=10,
            generator=generator, rundir=RunDir(directory, TINY, seed=0, device="cpu"),
            checkpoint_path=directory / "ckpt.safetensors", start_epoch=start, step=step, progress=False)
        return model

    whole = run(tmp_path / "whole", 2, resume=False)
    run(tmp_path / "cut", 1, resume=False)
    resumed = run(tmp_path / "cut", 2, resume=True)
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)
    columns = ["epoch", "train_loss", "train_kl", "valid_loss"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv")[columns],
                                  pd.read_csv(tmp_path / "whole" / "history.csv")[columns])


def test_a_non_finite_epoch_leaves_the_last_checkpoint_as_it_was(tmp_path):
    # An epoch of fewer than 50 steps (or NaN in its steps after the last check) was
    # logged with empty means and its NaN weights written over the last good checkpoint.
    data, vocab = _data(30, TINY)
    model = MoleculeVAE(TINY, vocab)
    optimizer = torch.optim.Adam(model.parameters())
    rundir = RunDir(tmp_path, TINY, seed=0, device="cpu")
    run = dict(optimizer=optimizer, schedule=ConstantSchedule(1.0), batch_size=10, generator=torch.Generator(),
               rundir=rundir, checkpoint_path=tmp_path / "ckpt.safetensors", progress=False)
    assert fit(model, data, None, epochs=1, **run) == 1
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss \\(nan\\) at step 6"):
        fit(model, data, None, epochs=2, start_epoch=1, step=3, **run)
    stored = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert stored.payload["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in stored.payload["model"].values())
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1]


def test_stop_flag_ends_without_logging_a_partial_epoch(tmp_path):
    data, vocab = _data(20, TINY)
    model = MoleculeVAE(TINY, vocab)
    rundir = RunDir(tmp_path, TINY, seed=0, device="cpu")
    done = fit(model, data, None, optimizer=torch.optim.Adam(model.parameters()), schedule=ConstantSchedule(1.0),
               epochs=5, batch_size=10, generator=torch.Generator(), rundir=rundir,
               checkpoint_path=tmp_path / "ckpt.safetensors", stop={"stop": True}, progress=False)
    assert done == 0
    assert not (tmp_path / "history.csv").exists() and not (tmp_path / "ckpt.safetensors").exists()


def test_evaluate_loss_is_deterministic_in_eval_mode():
    data, vocab = _data(20, TINY)
    model = MoleculeVAE(TINY, vocab)
    torch.manual_seed(0)
    a = evaluate_loss(model, data, beta=1.0, batch_size=8)
    torch.manual_seed(0)
    b = evaluate_loss(model, data, beta=1.0, batch_size=8)
    assert a == b and a["valid_loss"] > 0 and model.training

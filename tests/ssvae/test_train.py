"""Tests of ssvae.train: fit_vae's loop (resume, Ctrl-C, non-finite losses, device reads), the
data it refuses before training, learning-rate schedules, batches and evaluation helpers."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssvae.data import fixed_binarize, load_dataset
from ssvae.m1 import VAE, VAEConfig, fit_vae, load_vae
from ssvae.train import evaluate_log_px, evaluate_terms, iterate_batches, learning_rate
from vaecore.datasets import REPO_DATA_DIR
from vaecore.errors import CheckpointError, ConfigMismatchError, InputDataError, NonFiniteLossError
from vaecore.rundir import RunDir

SMALL = VAEConfig(z_dim=4, hidden=(32,))


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_dataset("fixture").train.x


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 2.5}, "epochs must be an integer >= 0, got 2.5"),  # passed `< 0`, failed inside range()
    ({"epochs": float("nan")}, "epochs must be an integer >= 0, got nan"),
    ({"epochs": 1, "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"epochs": 1, "batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
    ({"epochs": 1, "seed": 2.5}, "seed must be a non-negative integer below 2"),  # torch's 'expected a long'
])
def test_fit_vae_names_bad_counts(kwargs: dict, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        fit_vae(VAE(SMALL), torch.rand(8, SMALL.x_dim), progress=False, **kwargs)
    with pytest.raises(InputDataError, match="x_train holds no examples"):
        fit_vae(VAE(SMALL), torch.rand(0, SMALL.x_dim), epochs=1, progress=False)


def test_log_marginal_likelihood_is_above_elbo(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    fit_vae(model, digits[:300], epochs=1, batch_size=50, progress=False)
    x = fixed_binarize(digits[:40])
    log_px = evaluate_log_px(model, x, n_samples=200, batch_size=20, chunk_size=64, progress=False)
    elbo = evaluate_terms(model, x)["elbo"]
    assert log_px.shape == (40,) and log_px.mean() > elbo.mean()


def test_training_lowers_the_loss(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    history = fit_vae(model, digits, epochs=3, valid=digits[:100], progress=False)
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] - 50
    assert history["valid_elbo"].iloc[-1] > history["valid_elbo"].iloc[0]


def test_resume_matches_an_uninterrupted_run(tmp_path: Path, digits: torch.Tensor) -> None:
    x = digits[:400]
    torch.manual_seed(0)
    straight = fit_vae(VAE(SMALL), x, epochs=3, progress=False, seed=3, checkpoint_path=tmp_path / "a.safetensors")

    torch.manual_seed(0)
    model = VAE(SMALL)
    rundir = RunDir(tmp_path / "run", SMALL, seed=3, device="cpu")
    fit_vae(model, x, epochs=2, progress=False, seed=3, rundir=rundir)
    torch.manual_seed(123)  # a fresh process: state must come from the checkpoint
    resumed_model = VAE(SMALL)
    rundir = RunDir(tmp_path / "run", SMALL, seed=3, device="cpu")
    resumed = fit_vae(resumed_model, x, epochs=3, progress=False, seed=3, rundir=rundir,
                      resume_from=tmp_path / "run" / "checkpoint.safetensors")
    assert list(resumed["epoch"]) == [1, 2, 3]
    assert torch.allclose(torch.tensor(resumed["train_loss"].to_numpy()), torch.tensor(straight["train_loss"].to_numpy()))
    reloaded = load_vae(tmp_path / "run", device="auto")
    on = next(reloaded.parameters()).device  # auto: a GPU where there is one
    assert torch.allclose(reloaded.posterior_mean(x[:5].to(on)).cpu(), resumed_model.posterior_mean(x[:5]), atol=1e-5)
    with pytest.raises(InputDataError, match="unknown device 'tpu'"):
        load_vae(tmp_path / "run", device="tpu")
    # The committed chem model: it raised VAEConfig's bare field lists, naming no file.
    chem = REPO_DATA_DIR / "fixtures" / "chemvae_tiny" / "model.safetensors"
    with pytest.raises(CheckpointError, match=f"{chem} is not an M1 VAE checkpoint of vaelab vae / fit_vae"):
        load_vae(chem)


def test_resume_refuses_another_architecture(tmp_path: Path, digits: torch.Tensor) -> None:
    fit_vae(VAE(SMALL), digits[:100], epochs=1, progress=False, checkpoint_path=tmp_path / "c.safetensors")
    with pytest.raises(ConfigMismatchError, match="z_dim"):
        fit_vae(VAE(VAEConfig(z_dim=5, hidden=(32,))), digits[:100], epochs=2, progress=False,
                resume_from=tmp_path / "c.safetensors")


def test_non_finite_loss_stops_without_overwriting_checkpoint(tmp_path: Path, digits: torch.Tensor) -> None:
    model = VAE(SMALL)
    with torch.no_grad():
        model.encoder_net[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        fit_vae(model, digits[:100], epochs=1, progress=False, checkpoint_path=tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()


def test_learning_rate_schedules() -> None:
    assert learning_rate(5, 1e-3) == 1e-3
    assert learning_rate(2, 1e-3, decay=0.5) == pytest.approx(2.5e-4)
    burda = [learning_rate(e, 1e-3, schedule="burda") for e in range(14)]
    # Stage i lasts 3**i epochs: 1 epoch, then 3, then 9.
    assert burda[0] == 1e-3 and burda[1] == burda[3] == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert burda[4] == burda[12] == pytest.approx(1e-3 * 10 ** (-2 / 7)) and burda[13] < burda[12]


def test_an_epochs_row_is_logged_before_its_checkpoint(tmp_path: Path, digits: torch.Tensor) -> None:
    # Checkpointed first, an epoch whose row a kill kept from the history was lost for good
    # (the resume goes on after it): a kill-and-resume sweep of fewlabel ended with M1's
    # history missing epoch 1. The failing write (a directory in the checkpoint's place, as
    # a full disk would fail it) comes after the row now.
    (tmp_path / "checkpoint.safetensors").mkdir()
    with pytest.raises(InputDataError, match="is a directory"):
        fit_vae(VAE(SMALL), digits[:100], epochs=2, batch_size=50, progress=False,
                rundir=RunDir(tmp_path, SMALL, seed=0, device="cpu"))
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1]


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path: Path, digits: torch.Tensor) -> None:
    def beta(step: int) -> float:
        if step == 12:  # Ctrl-C in the middle of the second epoch (10 batches an epoch)
            signal.raise_signal(signal.SIGINT)
        return 1.0

    path = tmp_path / "ck.safetensors"
    with pytest.raises(KeyboardInterrupt, match="epoch 2"):
        fit_vae(VAE(SMALL), digits[:200], epochs=3, batch_size=20, beta=beta, progress=False, checkpoint_path=path)
    resumed = fit_vae(VAE(SMALL), digits[:200], epochs=3, batch_size=20, progress=False, resume_from=path)
    assert list(resumed["epoch"]) == [2, 3]  # the unfinished epoch is run again


def test_training_reads_from_the_device_per_epoch_not_per_step(digits: torch.Tensor, host_reads) -> None:
    # 4 or 16 steps in the epoch, both below the every-20-steps progress read.
    reads = []
    for batch_size in (100, 25):
        torch.manual_seed(0)
        before = sum(host_reads.values())
        fit_vae(VAE(SMALL), digits[:400], epochs=1, batch_size=batch_size, valid=digits[:50], progress=False,
                beta=lambda step: min(1.0, step / 10))
        reads.append(sum(host_reads.values()) - before)
    assert reads[0] == reads[1], reads


def _nan_pixel() -> torch.Tensor:
    x = torch.rand(20, 784)
    x[3, 5] = float("nan")
    return x


@pytest.mark.parametrize(("x", "valid", "message"), [
    # Each was torch's error; the validation ones only after the first epoch had trained.
    (torch.rand(20, 784), torch.rand(5, 100), r"valid must be rows of pixels, \[N, 784\]; got shape \[5, 100\]"),
    (torch.rand(20, 100), None, r"x_train must be rows of pixels, \[N, 784\]; got shape \[20, 100\]"),
    (torch.rand(20, 28, 28), None, r"x_train must be rows of pixels, \[N, 784\]; got shape \[20, 28, 28\]"),
    (3 * torch.rand(20, 784), None, r"x_train must hold grey levels in \[0, 1\] to binarize \('dynamic'\)"),
    (torch.full((20, 784), 255, dtype=torch.uint8), None, r"its values span \[255, 255\]"),
    (torch.rand(20, 784), torch.rand(5, 784) + 1, r"valid must hold grey levels in \[0, 1\]"),
    (_nan_pixel(), None, "x_train has NaN or infinite values"),
])
def test_data_training_cannot_read_is_refused_before_it_starts(tmp_path: Path, x, valid, message) -> None:
    path = tmp_path / "ck.safetensors"
    with pytest.raises(InputDataError, match=message):
        fit_vae(VAE(SMALL), x, epochs=1, valid=valid, progress=False, checkpoint_path=path)
    assert not path.exists()  # nothing trained


def test_data_of_another_dtype_trains_in_the_models_and_grey_levels_need_binarizing_only(digits) -> None:
    torch.manual_seed(0)
    history = fit_vae(VAE(SMALL), digits[:100].double(), epochs=1, valid=digits[:20].double(), progress=False)
    assert torch.isfinite(torch.tensor(history[["train_loss", "valid_elbo"]].to_numpy())).all()
    gaussian = VAE(VAEConfig(x_dim=6, z_dim=2, hidden=(8,), likelihood="gaussian"))
    history = fit_vae(gaussian, 5 * torch.randn(40, 6), epochs=1, binarize="none", valid=torch.randn(8, 6),
                      progress=False)  # real values, not pixels: nothing to refuse
    assert list(history["epoch"]) == [1]


def test_batches_are_a_seeded_permutation() -> None:
    batches = list(iterate_batches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = torch.cat(list(iterate_batches(10, 4, torch.Generator().manual_seed(0))))
    assert torch.equal(torch.cat(batches), again)


def test_unknown_modes_are_named() -> None:
    with pytest.raises(InputDataError, match=r"unknown binarize mode 'otsu'; choose from \('dynamic', 'fixed', 'none"):
        fit_vae(VAE(SMALL), torch.rand(4, 784), epochs=1, binarize="otsu", progress=False)
    with pytest.raises(InputDataError, match="unknown learning-rate schedule 'cosine'"):
        learning_rate(0, 1e-3, schedule="cosine")

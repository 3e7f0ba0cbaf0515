"""Tests of ssvae.m1 (the M1 VAE) and its training loop in ssvae.train, on the MNIST fixture."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from ssvae.data import fixed_binarize, load_dataset
from ssvae.m1 import VAE, VAEConfig, fit_vae, load_vae
from ssvae.train import evaluate_log_px, evaluate_terms, learning_rate
from vaecore.datasets import REPO_DATA_DIR
from vaecore.errors import CheckpointError, ConfigMismatchError, InputDataError, NonFiniteLossError
from vaecore.rundir import RunDir

SMALL = VAEConfig(z_dim=4, hidden=(32,))


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_dataset("fixture").train.x


def test_default_config_is_burda_architecture() -> None:
    model = VAE(VAEConfig())
    linears = [m for m in model.encoder_net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 500)]
    assert isinstance(model.encoder_net[1], torch.nn.Softplus)
    assert model.decoder_net[-1].out_features == 784 and model.encoder_head.latent_dim == 50


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"z_dim": 0}, "z_dim must be an integer >= 1, got 0"),
    ({"hidden": (500, 0)}, r"hidden\[1\] must be an integer >= 1, got 0"),  # the message named the whole config
    ({"x_dim": 2.5}, "x_dim must be an integer >= 1, got 2.5"),
    ({"activation": "relux"}, r"unknown activation 'relux'; choose from \['elu', 'gelu', 'relu', 'softplus', 'tanh'\]"),
])
def test_bad_sizes_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        VAEConfig(**kwargs)


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


def test_encoder_decoder_shapes() -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    x = torch.rand(5, 784).bernoulli()
    q = model.encoder(x)
    assert q.batch_shape == (5,) and q.event_shape == (4,) and q.has_rsample
    p = model.decoder(q.rsample((3,)))
    assert p.batch_shape == (3, 5) and p.event_shape == (784,)
    assert p.log_prob(x).shape == (3, 5)
    assert model.posterior_mean(x).shape == (5, 4)
    assert model.sample(7).shape == (7, 784) and 0 <= model.sample(2).min() <= model.sample(2).max() <= 1
    assert model.reconstruct(x).shape == (5, 784)
    assert model.sample(0).shape == (0, 784)
    for n in (-1, 2.5):  # -1 was torch's "negative dimension" error
        with pytest.raises(InputDataError, match=f"n must be an integer >= 0, got {n}"):
            model.sample(n)


def test_loss_terms_elbo_and_iwae() -> None:
    torch.manual_seed(0)
    model = VAE(SMALL)
    x = torch.rand(64, 784).bernoulli()
    terms = model.loss_terms(x, beta=0.5)
    assert terms["loss"].shape == () and all(terms[k].shape == (64,) for k in ("bound", "elbo", "kl", "log_likelihood"))
    assert torch.allclose(terms["elbo"], terms["log_likelihood"] - terms["kl"])
    assert torch.allclose(terms["bound"], terms["log_likelihood"] - 0.5 * terms["kl"])
    assert (terms["kl"] >= 0).all()
    iwae = model.loss_terms(x, objective="iwae", k=50)
    assert iwae["loss"].shape == () and iwae["elbo"].shape == (64,) and iwae["loss"].requires_grad
    # The 50-sample bound is tighter than the ELBO (averaged over a batch: robust to noise).
    assert iwae["elbo"].mean() > terms["elbo"].mean()
    with pytest.raises(ValueError, match="objective"):
        model.loss_terms(x, objective="vimco")


def test_gaussian_likelihood_variant() -> None:
    model = VAE(VAEConfig(x_dim=6, z_dim=2, hidden=(8,), likelihood="gaussian"))
    assert model.decoder_net[-1].out_features == 12  # mean and log-variance per feature
    assert model.loss_terms(torch.randn(3, 6))["elbo"].shape == (3,)


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

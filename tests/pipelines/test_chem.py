"""Tests for pipelines.chem: ``vaelab chem train|eval`` on tiny real runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import chemvae
from chemvae.data import FIXTURE_CSV
from chemvae.model import ChemVAEConfig
from pipelines.chem import run
from pipelines.chem_config import ChemTrainConfig
from pipelines.cli import main
from vaecore.errors import InputDataError

ROOT = Path(__file__).resolve().parents[2]
TINY_ARGS = ["--epochs", "1", "--batch-size", "16", "--latent-dim", "4", "--embedding-dim", "8",
             "--encoder-hidden", "8", "--decoder-hidden", "16", "--decoder-layers", "1", "--property-hidden", "8",
             "--max-length", "50", "--n-jobs", "1", "--device", "cpu", "--no-progress"]
BAD = ["", "C1CC", "C(C)(C)(C)(C)C", "c1cccc1", "C" * 60, "not a molecule"]


pytestmark = pytest.mark.usefixtures("private_data_cache")


@pytest.fixture()
def messy_csv(tmp_path):
    good = pd.read_csv(FIXTURE_CSV)["smiles"].tolist()[:60]
    path = tmp_path / "mols.csv"
    pd.DataFrame({"id": range(66), "Molecule": good + BAD}).to_csv(path, index=False)
    return path


def test_train_skips_bad_molecules_counts_them_and_resumes(messy_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["chem", "train", "--data", str(messy_csv), "--smiles-column", "molecule", "--test-fraction", "0.1",
            "--out", str(out), *TINY_ARGS]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "train.json").read_text())
    n_bad = sum(summary["skipped"].values()) + sum(summary["valid_skipped"].values())
    assert summary["n_train"] + summary["n_valid"] + n_bad == 66 - 7  # 7 = round(0.1 * 66) test rows
    assert summary["n_train"] > 40 and sum(summary["skipped"].values()) >= 1
    assert set(summary["skipped"]) <= {"empty", "unparsable", "valence", "sanitize", "too_long"}
    assert summary["data_summary"] in printed and printed.count("skipped") == 1  # one summary line
    assert {"config.json", "run.json", "history.csv", "model.safetensors", "checkpoint.safetensors", "curves.png"} <= {
        p.name for p in out.iterdir()}
    model = chemvae.load(out)
    assert model.latent_dim == 4 and model.encode(["CCO"]).shape == (1, 4)

    assert main(["chem", "train", "--resume", str(out), "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]
    assert chemvae.load(out).vocab == model.vocab
    capsys.readouterr()
    # A changed setting would be ignored by the resume (it keeps the stored ones): refused.
    assert main(["chem", "train", "--resume", str(out), "--epochs", "3", "--latent-dim", "6", "--no-progress"]) == 2
    assert "given otherwise: model.latent_dim (stored 4, given 6)" in capsys.readouterr().err
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]
    assert main(["chem", "train", "--resume", str(out), "--epochs", "1", "--no-progress"]) == 2
    assert "--epochs 1 is below the 2 epochs this run has trained" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    # Without --epochs, as the interrupted run's hint words it, the run's own total (it was the
    # default 10, and the KL warm-up stretched to 10 epochs with it).
    assert main(["chem", "train", "--resume", str(out), "--no-progress"]) == 0
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    # Killed in its first epoch, a run leaves its config.json and run.json alone; --resume said
    # "no checkpoint.safetensors there". It starts over with the stored settings.
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("config.json", "run.json"):
        (killed / name).write_bytes((out / name).read_bytes())
    assert main(["chem", "train", "--resume", str(killed), "--epochs", "1", "--no-progress"]) == 0
    assert pd.read_csv(killed / "history.csv")["epoch"].tolist() == [1]
    again = chemvae.load(killed)
    assert again.vocab == model.vocab
    for name, tensor in model.state_dict().items():  # the same first epoch, from the same seed
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0)
    # No new run is written over it: a second chem train, or a vae run, which replaced its
    # checkpoint and config.json beside its weights.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(args) == 2
    assert f"{out} already holds a chem train run; continue it with --resume {out}" in capsys.readouterr().err
    assert main(["vae", "--data", "fixture", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    assert f"{out} already holds a run of another command (its config.json is not a vae run's)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_run_resumed_to_more_epochs_keeps_its_kl_warm_up(messy_csv, tmp_path):
    # Refitted to the new total, the warm-up fell back mid-run: beta 0.025, 0.05, then 0.0375, 0.05.
    out = tmp_path / "run"
    tiny = TINY_ARGS[2:]  # without its --epochs 1
    assert main(["chem", "train", "--data", str(messy_csv), "--smiles-column", "molecule", "--beta", "0.05",
                 "--epochs", "2", "--out", str(out), *tiny]) == 0
    first = pd.read_csv(out / "history.csv")["beta"].tolist()
    assert first[-1] == pytest.approx(0.05) and first[0] < first[-1]
    assert main(["chem", "train", "--resume", str(out), "--epochs", "4", "--device", "cpu", "--no-progress"]) == 0
    betas = pd.read_csv(out / "history.csv")["beta"].tolist()
    assert betas[:2] == first and betas[2:] == pytest.approx([0.05, 0.05])


def test_selfies_cnn_run_through_the_python_api(tmp_path):
    architecture = ChemVAEConfig(representation="selfies", encoder="cnn", latent_dim=4, embedding_dim=8,
                                 encoder_hidden=8, decoder_hidden=16, decoder_layers=1, property_hidden=(8,),
                                 max_length=60, cnn_kernels=(5, 5, 5))
    config = ChemTrainConfig(data="fixture", max_molecules=40, model=architecture, epochs=1, batch_size=20,
                             n_jobs=1, device="cpu", progress=False)
    summary = run(config, tmp_path)
    assert summary["n_train"] == 40 and summary["epochs"] == 1
    model = chemvae.load(tmp_path)
    assert model.config.representation == "selfies" and model.config.encoder == "cnn"
    assert all(t.startswith("[") for t in model.vocab.itos[4:])
    decoded = model.decode(torch.zeros(2, 4))
    assert all("[Branch" not in s for s in decoded)  # SELFIES come back as SMILES


def test_a_file_without_usable_molecules_is_an_error(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"smiles": BAD * 3}).to_csv(path, index=False)
    code = main(["chem", "train", "--data", str(path), "--out", str(tmp_path / "run"), *TINY_ARGS])
    assert code == 2
    err = capsys.readouterr().err
    assert "no usable molecule" in err and "unparsable" in err


def test_missing_smiles_column_names_the_columns(messy_csv, tmp_path, capsys):
    assert main(["chem", "train", "--data", str(messy_csv), "--out", str(tmp_path / "r"), *TINY_ARGS]) == 2
    assert "no SMILES column 'smiles'" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    # A negative clip norm made clip_grad_norm_ flip every gradient, so the loss climbed.
    (["--grad-clip", "-1"], "grad_clip must be a finite number > 0, got -1.0"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--beta", "-1"], "beta must be a finite number >= 0, got -1.0"),
    (["--kl-warmup-fraction", "2"], r"kl_warmup_fraction must be in \[0, 1\]"),
    (["--kl-delay-fraction", "-0.5"], r"kl_delay_fraction must be in \[0, 1\]"),
    (["--property-weight", "nan"], "property_weight must be a finite number >= 0, got nan"),
    (["--n-jobs", "0"], "n_jobs must be an integer >= 1 or -1, got 0"),  # was named after the data load
    # It wrote an untrained model.safetensors and train.json, as a trained model's.
    (["--epochs", "0"], "--epochs 0: a new run must train at least one epoch to have a model"),
])
def test_bad_training_settings_are_named_before_the_data_is_read(flags, message, tmp_path, capsys):
    missing = tmp_path / "not_there.csv"  # the settings are refused first, so this is never read
    assert main(["chem", "train", "--data", str(missing), "--out", str(tmp_path / "r"), *TINY_ARGS, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err)


@pytest.mark.parametrize(("flags", "message"), [
    (["--encoder", "gru", "--cnn-kernels", "7", "7", "7"], "cnn_kernels=(7, 7, 7) (read by the cnn encoder only)"),
    (["--encoder", "cnn", "--encoder-layers", "3"], "encoder_layers=3 (read by the gru encoder only)"),
    (["--kl-schedule", "none", "--kl-delay-fraction", "0.2"], "kl_delay_fraction=0.2 (kl_schedule 'none' has no warm-up)"),
])
def test_settings_a_new_run_would_not_read_are_refused(flags, message, tmp_path, capsys):
    # They were ignored without a word.
    assert main(["chem", "train", "--data", "fixture", "--out", str(tmp_path / "r"), *TINY_ARGS, *flags]) == 2
    err = capsys.readouterr().err
    assert "this setting would be ignored by this run: " + message + ". Drop it" in err
    assert not (tmp_path / "r").exists()


def test_a_test_fraction_the_data_would_not_read_is_refused(tmp_path, capsys):
    # The fixture's split column names its test rows: --test-fraction was ignored without a word.
    args = ["chem", "train", "--data", "fixture", "--out", str(tmp_path / "r"), *TINY_ARGS, "--test-fraction", "0.2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert ("--test-fraction 0.2 would be ignored: the test set of fixture is the rows its split column marks test"
            in err) and not (tmp_path / "r").exists()


def test_a_valid_fraction_the_data_would_not_read_is_refused(tmp_path, capsys):
    # A CSV whose split column marks validation rows: --valid-fraction was ignored without a word.
    rows = pd.read_csv(FIXTURE_CSV)
    rows.loc[rows.index[:50], "split"] = "valid"
    rows.to_csv(tmp_path / "mols.csv", index=False)
    args = ["chem", "train", "--data", str(tmp_path / "mols.csv"), "--out", str(tmp_path / "r"), *TINY_ARGS,
            "--valid-fraction", "0.2"]
    assert main(args) == 2
    assert "--valid-fraction 0.2 would be ignored: the validation set of " in capsys.readouterr().err


def test_chem_needs_a_subcommand():
    with pytest.raises(SystemExit):
        main(["chem"])


def test_a_failed_run_leaves_its_directory_free_for_other_processes(tmp_path, opens_elsewhere):
    # The lock followed the run's RunDir, which a failed call's frames (kept by its traceback,
    # as a notebook keeps its last one) kept alive: a terminal's command was refused as "in use".
    (tmp_path / "curves.png").mkdir()  # its last write fails, as on a full disk
    architecture = ChemVAEConfig(latent_dim=4, embedding_dim=8, encoder_hidden=8, decoder_hidden=16, decoder_layers=1,
                                 property_hidden=(8,), max_length=50)
    with pytest.raises(InputDataError, match="is a directory") as failed:
        run(ChemTrainConfig(data="fixture", max_molecules=40, model=architecture, epochs=1, batch_size=20, n_jobs=1,
                            device="cpu", progress=False), tmp_path)
    other = opens_elsewhere(tmp_path)
    assert other.returncode == 0, other.stderr
    assert failed.tb is not None


def test_a_stopped_run_says_which_epoch_its_checkpoint_holds(tmp_path):
    # It printed "vaelab chem: interrupted" alone.
    out = tmp_path / "chem"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "chem", "train", "--data", "fixture", *TINY_ARGS,
                             "--epochs", "1000", "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.safetensors").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # as a batch scheduler's time limit
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    stopped = re.fullmatch(rf"vaelab chem: interrupted in epoch (\d+); the checkpoint at "
                           rf"{re.escape(str(out / 'checkpoint.safetensors'))} holds epoch (\d+); "
                           rf"continue with: vaelab chem train --resume {re.escape(str(out))}", last)
    assert stopped and int(stopped[1]) == int(stopped[2]) + 1 >= 2, last


def test_no_progress_silences_the_data_preparation_bars(tmp_path, capsys):
    # The bars of checking and property computation ignored --no-progress: a MOSES run's log
    # filled with them (they show from two chunks of 2000 molecules on).
    smiles = pd.read_csv(FIXTURE_CSV)["smiles"].tolist()
    tiny = [a for a in TINY_ARGS if a != "--no-progress"]
    for name, order, quiet in (("quiet", smiles, True), ("loud", smiles[::-1], False)):  # two files: no cache hit
        pd.DataFrame({"smiles": order * 2}).to_csv(tmp_path / f"{name}.csv", index=False)  # two chunks of properties
        assert main(["chem", "train", "--data", str(tmp_path / f"{name}.csv"), *tiny, "--batch-size", "500",
                     *(["--no-progress"] if quiet else []), "--out", str(tmp_path / name)]) == 0
        assert ("properties:" in capsys.readouterr().err) is not quiet

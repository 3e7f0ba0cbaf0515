"""End-to-end tests of ``vaelab vae`` on the committed MNIST fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.cli import main
from pipelines.vae import NEW_RUN_EPOCHS, VAERunConfig, run
from vaecore.errors import InputDataError

ROOT = Path(__file__).resolve().parents[2]

# Burda's architecture, one epoch of 10 batches on the 1,000 fixture digits.
ARGS = ["vae", "--data", "fixture", "--latent", "50", "--eval-samples", "20", "--eval-limit", "50",
        "--device", "cpu", "--no-progress"]
FILES = ("config.json", "run.json", "history.csv", "checkpoint.safetensors", "metrics.json",
         "samples.png", "reconstructions.png")


def test_cli_end_to_end_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*ARGS, "--epochs", "1", "--out", str(out)]) == 0
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["device"] == "cpu" and metrics["n_test_log_px"] == 50
    assert metrics["test_nll"] == pytest.approx(-metrics["test_log_px"])
    assert 0 < metrics["test_nll"] < 550 and metrics["test_elbo"] < 0  # 784 * log 2 = 543 nats is chance
    assert json.loads((out / "config.json").read_text())["hidden"] == [500, 500]
    assert "test_nll" in capsys.readouterr().out

    # --resume continues the same directory up to --epochs in total.
    assert main([*ARGS, "--epochs", "2", "--resume", str(out)]) == 0
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history["train_loss"].iloc[1] < history["train_loss"].iloc[0]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["epochs"] == 2 and resumed["test_elbo"] > metrics["test_elbo"]
    # Both calls' training: it was this call's wall time, below the sum of the epochs' times.
    assert resumed["train_seconds"] == pytest.approx(history["seconds"].sum())
    assert resumed["train_seconds"] > metrics["train_seconds"] == pytest.approx(history["seconds"].iloc[0])
    # Fewer epochs in all than done trained nothing and wrote the smaller number into config.json.
    capsys.readouterr()
    assert main([*ARGS, "--epochs", "1", "--resume", str(out)]) == 2
    assert "--epochs 1 is below the 2 epochs this run has trained" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def test_threads_sets_torchs_thread_count(tmp_path: Path) -> None:
    # vae and chem train had no --threads: two threads on a 2-core machine with another job on
    # one core ran a chem train step 140 times slower than one thread.
    before = torch.get_num_threads()
    try:
        assert main([*ARGS, "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_iwae_objective_runs(tmp_path: Path) -> None:
    metrics = run(VAERunConfig(data="fixture", epochs=1, latent=4, hidden=(32,), objective="iwae", k=5,
                               device="cpu", eval_samples=10, eval_limit=10, progress=False), tmp_path)
    assert metrics["objective"] == "iwae" and metrics["k"] == 5 and metrics["n_test_elbo"] == 200
    assert pd.read_csv(tmp_path / "history.csv").shape[0] == 1


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vae", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["vae", "--data", "fixture", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    # Data without a validation split: --train-on-valid trained on the training split alone without a word.
    fixture = np.load(ROOT / "data" / "fixtures" / "mnist_small.npz")
    np.savez(tmp_path / "novalid.npz", **{k: fixture[k] for k in ("x_train", "y_train", "x_test", "y_test")})
    assert main(["vae", "--data", str(tmp_path / "novalid.npz"), "--train-on-valid", "--out", str(tmp_path / "v")]) == 2
    assert "novalid.npz has no validation split to train on" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_resume_with_another_architecture_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["vae", "--data", "fixture", "--hidden", "16", "--eval-samples", "5", "--eval-limit", "5",
             "--device", "cpu", "--no-progress", "--epochs", "1"]
    assert main([*small, "--latent", "3", "--out", str(tmp_path)]) == 0
    assert main([*small, "--latent", "4", "--epochs", "2", "--resume", str(tmp_path)]) == 2
    assert "latent (stored 3, given 4)" in capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["latent"] == 3  # the refused resume wrote nothing


def test_a_resume_whose_data_file_changed_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It trained on the edited file without a word.
    fixture = dict(np.load(ROOT / "data" / "fixtures" / "mnist_small.npz"))
    data = tmp_path / "digits.npz"
    np.savez(data, **fixture)
    small = ["vae", "--data", str(data), "--hidden", "16", "--latent", "2", "--eval-samples", "2", "--eval-limit", "5",
             "--no-progress"]
    assert main([*small, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    np.savez(data, **{**fixture, "x_train": fixture["x_train"][::-1]})
    assert main(["vae", "--resume", str(tmp_path / "run"), "--epochs", "2", "--no-progress"]) == 2
    assert f"{data} has changed since this run began (sha256 " in capsys.readouterr().err
    np.savez(data, **fixture)  # the run's own data back: it goes on
    assert main(["vae", "--resume", str(tmp_path / "run"), "--epochs", "2", "--no-progress"]) == 0


def test_resume_continues_with_the_stored_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A resume that repeats no flag trained with every default (z = 50 against a z = 3
    # checkpoint, or MNIST for a fixture run had the architecture matched) and rewrote
    # config.json with them; it continues the stored run now.
    out = tmp_path / "run"
    assert main(["vae", "--data", "fixture", "--hidden", "16", "--latent", "3", "--eval-samples", "5",
                 "--eval-limit", "5", "--device", "cpu", "--no-progress", "--epochs", "1", "--out", str(out)]) == 0
    assert main(["vae", "--resume", str(out), "--epochs", "2", "--eval-samples", "7", "--device", "cpu",
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["data"], config["latent"], config["hidden"], config["epochs"]) == ("fixture", 3, [16], 2)
    assert (config["eval_limit"], config["eval_samples"]) == (5, 7)  # evaluation: stored unless given
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
    assert main(["vae", "--resume", str(out), "--epochs", "3", "--lr", "0.01", "--k", "5"]) == 2
    assert "k (stored 1, given 5); lr (stored 0.001, given 0.01)" in capsys.readouterr().err
    # A bare checkpoint file, with no config.json beside it, continues with the settings given.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "ckpt.safetensors").write_bytes((out / "checkpoint.safetensors").read_bytes())
    assert main(["vae", "--data", "fixture", "--hidden", "16", "--latent", "3", "--eval-samples", "5",
                 "--eval-limit", "5", "--device", "cpu", "--no-progress", "--epochs", "3",
                 "--resume", str(bare / "ckpt.safetensors")]) == 0
    assert list(pd.read_csv(bare / "history.csv")["epoch"]) == [3]
    # The data, objective and k it was trained with are stored in it: a resume without
    # --data went on training the fixture's model on MNIST without a word.
    capsys.readouterr()
    (tmp_path / "bare2").mkdir()
    (tmp_path / "bare2" / "ckpt.safetensors").write_bytes((out / "checkpoint.safetensors").read_bytes())
    assert main(["vae", "--hidden", "16", "--latent", "3", "--objective", "iwae", "--k", "2", "--epochs", "4",
                 "--no-progress", "--resume", str(tmp_path / "bare2" / "ckpt.safetensors")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "the checkpoint was trained with other settings than given: data (stored 'fixture', given 'mnist'); "
        "objective (stored 'elbo', given 'iwae'); k (stored 1, given 2). Give its own")
    assert sorted(p.name for p in (tmp_path / "bare2").iterdir()) == ["ckpt.safetensors"]  # nothing written
    # Continued in another directory: a new one, not one that holds a run (it was written over).
    assert main(["vae", "--resume", str(out), "--epochs", "3", "--no-progress", "--out", str(tmp_path / "copy")]) == 0
    assert list(pd.read_csv(tmp_path / "copy" / "history.csv")["epoch"]) == [3]  # its own epochs
    capsys.readouterr()
    assert main(["vae", "--resume", str(out), "--epochs", "3", "--no-progress", "--out", str(bare)]) == 2
    assert f"{bare} already holds a vae run; continue it with --resume {bare}" in capsys.readouterr().err


def test_a_resume_without_epochs_keeps_the_runs_own_total(tmp_path: Path) -> None:
    # 'vaelab vae --resume DIR', the command an interrupted run prints, trained to the default
    # 10 epochs whatever the run's own total (a 1-epoch run went on to 10; a 30-epoch run
    # stopped past epoch 10 was refused as a resume to fewer epochs than done).
    out = tmp_path / "run"
    small = ["vae", "--data", "fixture", "--hidden", "16", "--latent", "2", "--eval-samples", "2", "--eval-limit", "5",
             "--device", "cpu", "--no-progress"]
    assert main([*small, "--epochs", "1", "--out", str(out)]) == 0
    first = pd.read_csv(out / "history.csv").drop(columns="seconds")
    assert main(["vae", "--resume", str(out), "--no-progress"]) == 0
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1]
    # Killed in its first epoch, a run leaves its config.json and run.json alone; --resume said
    # "no checkpoint at ...". It starts over with the stored settings, as the run it was.
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("config.json", "run.json"):
        (killed / name).write_bytes((out / name).read_bytes())
    assert main(["vae", "--resume", str(killed), "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(killed / "history.csv").drop(columns="seconds"), first)
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert main(["vae", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0  # given: the new total
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
    # A new run without --epochs trains the default total, and stores the number.
    assert run(VAERunConfig(data="fixture", latent=2, hidden=(16,), eval_samples=2, eval_limit=5, device="cpu",
                            progress=False), tmp_path / "new")["epochs"] == NEW_RUN_EPOCHS == 10
    assert json.loads((tmp_path / "new" / "config.json").read_text())["epochs"] == 10


def test_config_validation() -> None:
    with pytest.raises(InputDataError, match="objective"):
        VAERunConfig(objective="vimco")
    with pytest.raises(InputDataError, match="eval_limit must be an integer >= 1, got 0"):
        VAERunConfig(eval_limit=0)
    # Python callers' values reach the config unparsed: these passed `< 1` and failed later.
    with pytest.raises(InputDataError, match="eval_limit must be an integer >= 1, got 2.5"):
        VAERunConfig(eval_limit=2.5)
    with pytest.raises(InputDataError, match="epochs must be an integer >= 0, got nan"):
        VAERunConfig(epochs=float("nan"))
    # Both trained without error: a NaN rate gave NaN weights, a zero decay stopped learning after epoch 1.
    with pytest.raises(InputDataError, match="lr must be a finite number > 0, got nan"):
        VAERunConfig(lr=float("nan"))
    with pytest.raises(InputDataError, match="lr_decay must be a finite number > 0, got 0.0"):
        VAERunConfig(lr_decay=0.0)
    with pytest.raises(InputDataError, match="unknown lr_schedule 'cosine'"):
        VAERunConfig(lr_schedule="cosine")
    with pytest.raises(InputDataError, match="lr_decay 0.97 would be ignored by the 'burda' schedule"):
        VAERunConfig(lr_schedule="burda", lr_decay=0.97)


def test_a_failed_run_leaves_its_directory_free_for_other_processes(tmp_path: Path, opens_elsewhere) -> None:
    # The lock followed the run's RunDir, which a failed call's frames (kept by its traceback,
    # as a notebook keeps its last one) kept alive: a terminal's command was refused as "in use".
    (tmp_path / "samples.png").mkdir()  # its last write fails, as on a full disk
    with pytest.raises(InputDataError, match="is a directory") as failed:
        run(VAERunConfig(data="fixture", epochs=1, latent=4, hidden=(32,), device="cpu", eval_samples=2,
                         eval_limit=10, progress=False), tmp_path)
    other = opens_elsewhere(tmp_path)
    assert other.returncode == 0, other.stderr
    assert failed.tb is not None  # the frames lived on


def test_a_checkpoint_that_cannot_be_written_ends_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              file_size_limit) -> None:
    # A full disk ended the run in a traceback: "safetensors._safetensors_rust.SafetensorError:
    # Error while serializing: I/O error: No space left on device (os error 28)".
    tiny = [*ARGS, "--latent", "4", "--hidden", "32", "--eval-samples", "2", "--epochs", "1"]
    with file_size_limit(16_384):  # config.json, run.json and history.csv fit; the checkpoint does not
        assert main([*tiny, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"vaelab vae: error: cannot write {tmp_path / 'checkpoint.safetensors'}: "
                                               "File too large")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert main(["vae", "--resume", str(tmp_path), "--no-progress"]) == 0  # with room, it starts over
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1


def test_a_new_run_of_zero_epochs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It wrote an untrained checkpoint and the untrained model's metrics, and exited 0.
    assert main([*ARGS, "--epochs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--epochs 0: a new run must train at least one epoch to have a model" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

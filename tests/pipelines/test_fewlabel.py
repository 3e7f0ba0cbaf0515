"""``vaelab fewlabel`` end to end on the committed fixture and on a small user .npz."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.cli import main
from pipelines.fewlabel import FewLabelRunConfig, cpu_preset_note, run
from ssvae.classifier import load_classifier
from ssvae.data import load_dataset
from vaecore.errors import InputDataError, InputDataWarning


RUN = ["--device", "cpu", "--no-progress", "--tsne-points", "0"]
TINY_M1 = ["--set", "m1.vae.hidden=(32,)", "--set", "m1.vae.z_dim=6", "--m1-epochs", "1", *RUN]
# Pixel M2 trains no M1 and refuses M1's settings: TINY_M2 for model m2, TINY for m1m2.
TINY_M2 = ["--set", "m2.hidden=(16,)", "--set", "m2.z_dim=4", "--set", "m2.batch_norm=False",
           "--set", "train.labelled_batch=50", "--set", "train.ema_decay=None", "--set", "train.unlabelled_batch=100",
           "--set", "train.alpha=5.0", *RUN]
TINY = [*TINY_M2[:-len(RUN)], *TINY_M1]
METRIC_KEYS = {"test_error", "valid_error", "n_labels", "model", "seed", "device", "wall_seconds"}


def _metrics(run_dir):
    with open(run_dir / "metrics.json") as fh:
        return json.load(fh)


@pytest.mark.parametrize("model", ["m2", "m1m2"])
def test_fewlabel_on_fixture_writes_everything(tmp_path, capsys, model):
    out = tmp_path / "run"
    assert main(["fewlabel", "--data", "fixture", "--labels", "50", "--model", model, "--preset", "fast",
                 "--epochs", "1", "--seed", "3", *(TINY if model == "m1m2" else TINY_M2), "--tsne-points", "60",
                 "--out", str(out)]) == 0
    metrics = _metrics(out)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["model"] == model and metrics["n_labels"] == 50 and metrics["seed"] == 3
    assert 0.0 <= metrics["test_error"] <= 1.0 and 0.0 <= metrics["valid_error"] <= 1.0
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert {"train_loss", "train_cross_entropy", "train_kl", "valid_error", "test_error"} <= set(history)
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 50 and labels["label"].value_counts().tolist() == [5] * 10
    for name in ("samples.png", "tsne.png", "reconstructions.png", "curves.png", "model.safetensors",
                 "checkpoint.safetensors", "config.json", "run.json"):
        assert (out / name).stat().st_size > 0, name
    if model == "m1m2":
        assert (out / "m1" / "checkpoint.safetensors").exists() and metrics["active_z1_dims"] >= 1
        # Bayes' rule at test time (the preset below 600 labels): the classifier's own errors,
        # which chose the epoch and fill history.csv, are kept beside the product's.
        assert metrics["bayes_samples"] == 64
        assert metrics["classifier_valid_error"] == pytest.approx(history["valid_error"].min())
        assert 0.0 <= metrics["classifier_test_error"] <= 1.0
        assert f"the classifier alone {100 * metrics['classifier_test_error']:.2f}%" in capsys.readouterr().out
    else:
        assert metrics["bayes_samples"] == 0 and "classifier_test_error" not in metrics


def test_fewlabel_stops_early_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fewlabel", "--data", "fixture", "--labels", "50", "--model", "m2", "--preset", "fast",
                 "--epochs", "40", *TINY_M2, "--set", "train.patience=1", "--no-plots", "--out", str(out)]) == 0
    metrics = _metrics(out)
    assert metrics["stopped_by_patience"] and not metrics["stopped_by_budget"]
    assert metrics["epochs_done"] == metrics["best_epoch"] + 1 < 40
    assert len(pd.read_csv(out / "history.csv")) == metrics["epochs_done"]
    printed = capsys.readouterr().out
    assert (f"at epoch {metrics['best_epoch']} of {metrics['epochs_done']} (stopped early: no better validation "
            "error in the 1 epoch after it)") in printed


def test_fewlabel_m1_features_with_sklearn_classifiers(tmp_path):
    out = tmp_path / "run"
    # M2's settings are refused for m1 (they would be ignored): M1's and the run's own only.
    assert main(["fewlabel", "--data", "fixture", "--labels", "100", "--model", "m1", "--preset", "fast",
                 *TINY_M1, "--m1-epochs", "2", "--out", str(out)]) == 0
    metrics = _metrics(out)
    assert METRIC_KEYS <= set(metrics) and metrics["model"] == "m1"
    assert metrics["m1_classifier"].startswith(("svc_rbf", "logistic"))
    table = pd.read_csv(out / "m1_classifiers.csv")
    assert set(table["classifier"]) == {"svc_rbf", "logistic"}
    assert metrics["valid_error"] == pytest.approx(table["valid_error"].min())
    assert metrics["test_error"] < 0.8  # 10 labels a class on crude 2-epoch features still beat chance (0.9)
    assert (out / "samples.png").exists() and (out / "m1" / "history.csv").exists()


def test_fewlabel_resume_continues_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fewlabel", "--data", "fixture", "--labels", "20", "--model", "m2", "--preset", "fast", *TINY_M2, "--no-plots"]
    assert main([*args, "--epochs", "1", "--out", str(out)]) == 0
    # Killed in its first epoch, a run leaves its settings and label split alone: it starts
    # over, and its closing line and metrics.json no longer call it resumed.
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("config.json", "fit_config.json", "labels.csv", "run.json"):
        (killed / name).write_bytes((out / name).read_bytes())
    capsys.readouterr()
    assert main(["fewlabel", "--resume", str(killed), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "the run stopped before its first checkpoint; it starts over" in printed and "(resumed;" not in printed
    assert not json.loads((killed / "metrics.json").read_text())["resumed"]
    assert pd.read_csv(killed / "history.csv")["epoch"].tolist() == [1]
    # the run keeps the settings it started with, even where the preset has changed since
    stored = json.loads((out / "fit_config.json").read_text())
    stored["train"]["alpha"] = 7.5
    (out / "fit_config.json").write_text(json.dumps(stored))
    first = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["fewlabel", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]
    # this call's wall time, and the training time of both calls, which the closing line gives
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] and not first["resumed"] and metrics["train_seconds"] > first["train_seconds"]
    assert f"(resumed; {metrics['train_seconds']:.0f} s of training in all)" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    resumed = json.loads((out / "fit_config.json").read_text())["train"]
    assert resumed["alpha"] == 7.5 and resumed["epochs"] == 2
    assert main(["fewlabel", "--resume", str(out), "--epochs", "0", "--no-progress"]) == 2
    assert "epochs must be >= 1 for model 'm2'" in capsys.readouterr().err  # the run's model, not the default m1m2
    assert main(["fewlabel", "--resume", str(out), "--epochs", "1", "--no-progress"]) == 2  # fewer than done
    assert "--epochs 1 is below the 2 epochs this run has trained" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    # The run's own flags may be repeated; a changed one would be ignored, so it is refused.
    assert main([*args, "--epochs", "2", "--resume", str(out)]) == 0
    capsys.readouterr()
    assert main(["fewlabel", "--resume", str(out), "--labels", "30", "--seed", "4", "--no-progress"]) == 2
    assert ("given otherwise: labels (stored 20, given 30); seed (stored 0, given 4)"
            in capsys.readouterr().err)
    # A split drawn otherwise now (another torch's randperm) than the run's labels.csv: it was
    # overwritten and the run went on with other labels.
    split = pd.read_csv(out / "labels.csv")
    split.loc[0, "index"] = int(split["index"].max()) + 1  # one labelled example that the draw does not give
    split.to_csv(out / "labels.csv", index=False)
    assert main(["fewlabel", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 2
    assert (f"the labelled examples drawn for this resume differ from the run's {out / 'labels.csv'}"
            in capsys.readouterr().err)
    assert pd.read_csv(out / "labels.csv").equals(split) and pd.read_csv(out / "history.csv")["epoch"].max() == 2
    # A new run there is refused: it overwrote this one's files and left the others (a
    # self-trained run's later stages, then loaded by load_classifier as the new run's model).
    before = (out / "metrics.json").read_bytes()
    assert main([*args, "--epochs", "1", "--seed", "1", "--out", str(out)]) == 2
    assert (f"{out} already holds a fewlabel run; continue it with --resume {out}, give another --out"
            in capsys.readouterr().err)
    assert (out / "metrics.json").read_bytes() == before


def test_fewlabel_on_a_user_npz_with_given_labels(tmp_path, capsys):
    ds = load_dataset("fixture")
    # 14x14 images (any shape is fine), -1 = unlabelled, no validation split
    small = torch.nn.functional.avg_pool2d(ds.train.x.reshape(-1, 1, 28, 28), 2).reshape(-1, 14, 14)
    y = np.full(len(small), -1, dtype=np.int64)
    for c in range(10):
        y[np.flatnonzero(ds.train.y.numpy() == c)[:3]] = c
    test = torch.nn.functional.avg_pool2d(ds.test.x.reshape(-1, 1, 28, 28), 2).reshape(-1, 14, 14)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=small.numpy(), y_train=y, x_test=test.numpy(), y_test=ds.test.y.numpy())
    out = tmp_path / "run"
    assert main(["fewlabel", "--data", str(path), "--model", "m2", "--preset", "fast", "--epochs", "1", *TINY_M2,
                 "--set", "train.label_shift=1", "--out", str(out)]) == 0
    metrics = _metrics(out)
    assert metrics["n_labels"] == 30 and np.isnan(metrics["valid_error"]) and 0 <= metrics["test_error"] <= 1
    assert "(no validation set)" in capsys.readouterr().out  # it printed 'valid nan%'
    assert (out / "samples.png").exists() and not (out / "tsne.png").exists()
    # Early stopping watches the validation error, which these data lack: it did nothing without a word.
    assert main(["fewlabel", "--data", str(path), "--model", "m2", "--epochs", "3", *TINY_M2,
                 "--set", "train.patience=1", "--out", str(tmp_path / "patient")]) == 2
    assert "train.patience=1 stops on the validation error, and there is no validation set" in capsys.readouterr().err


def test_a_plot_that_fails_leaves_the_figures_written(tmp_path, capsys):
    # metrics.json came after the plots: a plot that failed once training was done lost the figures.
    out = tmp_path / "run"
    (out / "samples.png").mkdir(parents=True)  # the first plot cannot be written
    assert main(["fewlabel", "--data", "fixture", "--labels", "20", "--model", "m2", "--preset", "fast",
                 "--epochs", "1", *TINY_M2, "--out", str(out)]) == 2
    assert "samples.png is a directory; give the path of a file to write" in capsys.readouterr().err
    metrics = _metrics(out)
    assert METRIC_KEYS <= set(metrics) and "plots" not in metrics


def test_fewlabel_rejects_bad_label_requests(tmp_path, capsys):
    assert main(["fewlabel", "--data", "fixture", "--labels", "95", "--out", str(tmp_path / "a")]) == 2
    assert "multiple of 10" in capsys.readouterr().err
    assert main(["fewlabel", "--data", "fixture", "--labels", "2000", "--out", str(tmp_path / "b")]) == 2
    assert "has only 100" in capsys.readouterr().err
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((20, 4), np.float32), y_train=np.r_[np.arange(10), -np.ones(10, int)],
             x_test=np.zeros((5, 4), np.float32), y_test=np.arange(5))
    assert main(["fewlabel", "--data", str(path), "--labels", "10", "--out", str(tmp_path / "c")]) == 2
    assert "omit --labels" in capsys.readouterr().err
    # 4-pixel rows have no 2-D shape to translate
    assert main(["fewlabel", "--data", str(path), "--model", "m2", "--set", "train.label_shift=1",
                 "--out", str(tmp_path / "e")]) == 2
    assert "2-D shape" in capsys.readouterr().err
    # a setting of the wrong type is refused by name before anything trains
    assert main(["fewlabel", "--data", "fixture", "--set", "train.alpha=abc", "--out", str(tmp_path / "d")]) == 2
    assert "TrainConfig.alpha expects float, got 'abc'" in capsys.readouterr().err
    # a time budget that would train M1 and then no M2 epoch is refused before M1 starts
    assert main(["fewlabel", "--data", "fixture", "--time-budget-minutes", "-1", "--out", str(tmp_path / "f")]) == 2
    assert "time_budget_minutes must be > 0 or None, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
    # self-training: a count below 1, or any for M1, is refused before anything trains
    assert main(["fewlabel", "--data", "fixture", "--self-train", "-5", "--out", str(tmp_path / "g")]) == 2
    assert "each self_train count must be an integer >= 1, got -5" in capsys.readouterr().err
    assert main(["fewlabel", "--data", "fixture", "--self-train", "10", "0", "--out", str(tmp_path / "g")]) == 2
    assert "self_train count must be an integer >= 1, got 0" in capsys.readouterr().err
    # 90 per class could take all 900 unlabelled fixture digits: that failed only after the first stage trained.
    assert main(["fewlabel", "--data", "fixture", "--labels", "100", "--self-train", "20", "90",
                 "--out", str(tmp_path / "i")]) == 2
    assert "--self-train 90 pseudo-labels up to 90 x 10 classes = 900 examples, which could be all 900 unlabelled " \
           "ones; use at most 89 per class" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()
    assert main(["fewlabel", "--data", "fixture", "--model", "m1", "--self-train", "10",
                 "--out", str(tmp_path / "h")]) == 2
    assert "got (10,) for 'm1'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists() and not (tmp_path / "h").exists()
    full = tmp_path / "full.npz"
    np.savez(full, x_train=np.zeros((20, 4), np.float32), y_train=np.arange(20) % 10,
             x_test=np.zeros((5, 4), np.float32), y_test=np.arange(5))
    assert main(["fewlabel", "--data", str(full), "--self-train", "3", "--out", str(tmp_path / "i")]) == 2
    assert "every training example is labelled" in capsys.readouterr().err and not (tmp_path / "i").exists()
    # Without --labels all 1,000 fixture labels are used: M1+M2 trained its M1, then found no unlabelled digit.
    assert main(["fewlabel", "--data", "fixture", "--model", "m1m2", "--out", str(tmp_path / "j")]) == 2
    assert "every training example is labelled, and model 'm1m2' trains on unlabelled ones too: keep some of the " \
           "labels (vaelab fewlabel --labels N" in capsys.readouterr().err
    assert not (tmp_path / "j" / "m1").exists()


def test_fewlabel_self_training_trains_a_second_model_and_resumes_it(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fewlabel", "--data", "fixture", "--labels", "50", "--model", "m1m2", "--preset", "fast", *TINY,
            "--set", "bayes_samples=4", "--no-plots", "--self-train", "30"]
    assert main([*args, "--epochs", "2", "--out", str(out)]) == 0
    metrics, first = _metrics(out), json.loads((out / "stage1_metrics.json").read_text())
    true = pd.read_csv(out / "labels.csv")
    pseudo = pd.read_csv(out / "pseudo_labels.csv")
    # at most 30 per predicted class, none of them an example with a true label
    assert 0 < len(pseudo) <= 300 and pseudo["label"].value_counts().max() <= 30
    assert not set(pseudo["index"]) & set(true["index"])
    # the second stage trained on both, with the first stage's M1, and gives the run's figures
    second = tmp_path / "run" / "self_train"
    both = pd.read_csv(second / "labels.csv")
    assert sorted(both["index"]) == sorted([*true["index"], *pseudo["index"]])
    assert json.loads((second / "fit_config.json").read_text())["m1"]["checkpoint"] == str(out / "m1")
    assert not (second / "m1").exists()
    history = pd.read_csv(second / "history.csv")
    assert metrics["classifier_valid_error"] == pytest.approx(history["valid_error"].min())
    assert metrics["n_labels"] == 50 and metrics["n_pseudo_labels"] == len(pseudo) and metrics["self_train"] == [30]
    assert metrics["stage_test_errors"] == [first["test_error"], metrics["test_error"]]
    assert metrics["stage1_test_error"] == first["test_error"] and first["n_labels"] == 50
    # the fixture's hidden labels score the pseudo-labels
    hidden = load_dataset("fixture").train.y.numpy()[pseudo["index"]]
    assert metrics["pseudo_label_error"] == pytest.approx(float((hidden != pseudo["label"]).mean()))
    assert f"50 labels and {len(pseudo)} pseudo-labels (before self-training: test error" in capsys.readouterr().out
    # resuming continues the second stage; the first is not trained again
    stage1_history = (out / "history.csv").read_text()
    assert main(["fewlabel", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert pd.read_csv(second / "history.csv")["epoch"].tolist() == [1, 2, 3]
    assert (out / "history.csv").read_text() == stage1_history
    assert pd.read_csv(out / "pseudo_labels.csv").equals(pseudo) and _metrics(out)["resumed"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 3


def test_fewlabel_self_training_rounds_nest_and_resume_between_them(tmp_path):
    out = tmp_path / "run"
    args = ["fewlabel", "--data", "fixture", "--labels", "50", "--model", "m1m2", "--preset", "fast", *TINY,
            "--no-plots", "--epochs", "2", "--self-train", "20", "30"]
    assert main([*args, "--out", str(out)]) == 0
    metrics, true = _metrics(out), pd.read_csv(out / "labels.csv")
    second, third = out / "self_train", out / "self_train" / "self_train"
    # round 2 labels with the second model: at most 30 per class, none with a true label
    pseudo = pd.read_csv(second / "pseudo_labels.csv")
    assert pseudo["label"].value_counts().max() <= 30 and not set(pseudo["index"]) & set(true["index"])
    assert sorted(pd.read_csv(third / "labels.csv")["index"]) == sorted([*true["index"], *pseudo["index"]])
    assert json.loads((third / "fit_config.json").read_text())["m1"]["checkpoint"] == str(out / "m1")
    # the run's figures are the third model's; every stage's are kept
    stages = [json.loads((d / name).read_text()) for d, name in
              ((out, "stage1_metrics.json"), (second, "metrics.json"), (third, "metrics.json"))]
    assert metrics["test_error"] == stages[2]["test_error"] and metrics["n_pseudo_labels"] == len(pseudo)
    assert metrics["stage_test_errors"] == [m["test_error"] for m in stages] and metrics["self_train"] == [20, 30]
    assert metrics["train_seconds"] == pytest.approx(stages[0]["train_seconds"] + stages[1]["m2_seconds"]
                                                     + stages[2]["m2_seconds"])
    # load_classifier(run) is the last stage's model, whose figures metrics.json gives (it loaded the first).
    x = load_dataset("fixture").test.x[:20]
    final = load_classifier(out).predict_proba(x)
    assert np.array_equal(final, load_classifier(third / "model.safetensors").predict_proba(x))
    assert not np.array_equal(final, load_classifier(out / "model.safetensors").predict_proba(x))
    (third / "metrics.json").rename(third / "metrics.bak")  # as if the third stage had been cut short
    with pytest.warns(InputDataWarning, match="has not finished"):
        cut_short = load_classifier(out).predict_proba(x)
    assert np.array_equal(cut_short, load_classifier(second / "model.safetensors").predict_proba(x))
    (third / "metrics.bak").rename(third / "metrics.json")
    # Interrupted between the rounds: the second model is kept and labels again, as before.
    shutil.rmtree(third)
    (second / "pseudo_labels.csv").unlink()
    second_history = (second / "history.csv").read_text()
    assert main(["fewlabel", "--resume", str(out), "--no-progress"]) == 0
    assert (second / "history.csv").read_text() == second_history
    assert pd.read_csv(second / "pseudo_labels.csv").equals(pseudo)
    assert _metrics(out)["test_error"] == metrics["test_error"]


def test_a_failed_run_leaves_its_directory_free_for_other_processes(tmp_path, opens_elsewhere):
    # The lock followed the run's RunDir, which a failed call's frames (kept by its traceback,
    # as a notebook keeps its last one) kept alive: a terminal's command was refused as "in use".
    (tmp_path / "m1_classifiers.csv").mkdir()  # a write during training fails, as on a full disk
    config = FewLabelRunConfig(data="fixture", labels=100, model="m1", preset="fast", device="cpu", m1_epochs=1,
                               settings=("m1.vae.hidden=(32,)", "m1.vae.z_dim=6"), tsne_points=0, progress=False)
    with pytest.raises(InputDataError, match="is a directory") as failed:
        run(config, tmp_path)
    other = opens_elsewhere(tmp_path)
    assert other.returncode == 0, other.stderr
    assert failed.tb is not None


def test_the_default_preset_on_a_cpu_points_to_the_fast_one():
    # A CPU user's 'vaelab fewlabel --data mnist' trained the GPU-sized preset for hours
    # without a word about --preset fast.
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    plain = FewLabelRunConfig(data="mnist")
    assert "(100 M1 and 300 M2 epochs); on a CPU, --preset fast stops after an hour" in cpu_preset_note(plain, cpu, 50_000)
    assert "(300 M2 epochs)" in cpu_preset_note(FewLabelRunConfig(model="m2"), cpu, 50_000)
    assert cpu_preset_note(plain, gpu, 50_000) is None  # sized for it
    assert cpu_preset_note(plain, cpu, 1_000) is None  # quick anyway
    for bounded in (FewLabelRunConfig(preset="fast"), FewLabelRunConfig(epochs=5), FewLabelRunConfig(m1_epochs=5),
                    FewLabelRunConfig(time_budget_minutes=30.0), FewLabelRunConfig(settings=("train.epochs=5",))):
        assert cpu_preset_note(bounded, cpu, 50_000) is None, bounded

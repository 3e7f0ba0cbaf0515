"""Tests for pipelines.chem_eval: ``vaelab chem eval`` on the committed fixture model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from pipelines.chem import run
from pipelines.chem_config import ChemEvalConfig
from pipelines.cli import main
from vaecore.datasets import REPO_DATA_DIR

FIXTURE_MODEL = REPO_DATA_DIR / "fixtures" / "chemvae_tiny"
pytestmark = pytest.mark.usefixtures("private_data_cache")


@pytest.mark.filterwarnings("ignore::vaecore.errors.InputDataWarning")  # few valid samples: expected
def test_eval_of_the_fixture_model(tmp_path, capsys, monkeypatch):
    import pipelines.chem_plots  # chem eval imports its plotting helpers when it runs

    grids = []  # what the prior-sample grid is given, then drawn as before
    draw = pipelines.chem_plots.save_molecule_grid
    monkeypatch.setattr(pipelines.chem_plots, "save_molecule_grid", lambda *a, **k: grids.append((a, k)) or draw(*a, **k))
    config = ChemEvalConfig(run_dir=str(FIXTURE_MODEL), n_samples=60, n_recon=20, compute_fcd=False, device="cpu",
                            progress=False)
    result = run(config, tmp_path)
    assert "chem eval" not in capsys.readouterr().err  # no stage bar
    stored = json.loads((tmp_path / "eval.json").read_text())
    for key in ("recon_accuracy", "validity", "unique@10k", "novelty", "SNN/Test", "decoded_molecules_per_s"):
        assert key in stored
    assert stored["FCD/Test"] is None  # not computed: written as null, not NaN
    # The evaluation's own settings and library versions (it writes beside the model's config.json).
    assert stored["config"]["n_samples"] == 60 and stored["config"]["seed"] == 0
    assert stored["config"]["run_dir"] == str(FIXTURE_MODEL) and stored["versions"]["torch"] == torch.__version__
    assert result["n_recon"] == 20 and 0 <= result["recon_accuracy"] <= 1
    assert 0 <= result["validity"] <= 1 and result["decoded_molecules_per_s"] > 0
    samples = pd.read_csv(tmp_path / "samples.csv", keep_default_na=False)
    assert len(samples) == 60
    # each sample with its RDKit properties; valid as the metrics count it
    assert {"smiles", "valid", "logp", "qed", "sa", "plogp"} <= set(samples.columns)
    assert samples["valid"].mean() == pytest.approx(result["validity"])
    for name in ("logP", "QED", "SA"):  # the valid samples' distance to the test molecules' properties
        assert stored[f"W1 {name}/Test"] > 0
    assert (tmp_path / "properties.png").stat().st_size > 0
    assert result["n_drawn"] == min(config.grid_size, int(samples["valid"].sum()))  # the first valid ones
    assert (tmp_path / "prior_samples.png").exists() == (result["n_drawn"] > 0)
    # Each molecule drawn is labelled with its row of samples.csv: the labels counted valid
    # samples only, and drifted from the rows at the first invalid one.
    (drawn, _), = grids
    rows = [int(label) for label in grids[0][1]["legends"]]
    assert drawn[0] == samples["smiles"].iloc[rows].tolist() and samples["valid"].iloc[rows].all()
    assert rows == samples.index[samples["valid"]].tolist()[:config.grid_size]
    assert rows != list(range(len(rows)))  # the fixture model's samples include invalid ones before some valid
    assert not (FIXTURE_MODEL / "eval.json").exists()  # nothing written into the committed fixture


@pytest.mark.filterwarnings("ignore::vaecore.errors.InputDataWarning")
def test_a_plot_that_fails_leaves_the_metrics_written(tmp_path, capsys):
    # eval.json came after the plots: a plot that failed lost minutes of decoding and FCD.
    (tmp_path / "prior_samples.png").mkdir()
    assert main(["chem", "eval", str(FIXTURE_MODEL), "--out", str(tmp_path), "--n-samples", "40", "--n-recon", "10",
                 "--no-fcd", "--device", "cpu", "--no-progress"]) == 2
    assert "prior_samples.png is a directory; give the path of a file to write" in capsys.readouterr().err
    stored = json.loads((tmp_path / "eval.json").read_text())
    assert stored["n_recon"] == 10 and 0 <= stored["validity"] <= 1 and "n_drawn" not in stored


def test_eval_of_a_directory_that_is_no_run_names_it(tmp_path, capsys):
    assert main(["chem", "eval", str(tmp_path), "--device", "cpu"]) == 2
    assert f"{tmp_path} holds no model.safetensors or checkpoint.safetensors" in capsys.readouterr().err
    # An --out that holds another run: eval's files went in among its own, after minutes of decoding.
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "metrics.json"):
        (other / name).write_text("{}")
    assert main(["chem", "eval", str(FIXTURE_MODEL), "--device", "cpu", "--out", str(other), "--no-progress"]) == 2
    assert f"--out {other} holds another run; chem eval writes beside its model" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "metrics.json"]


@pytest.mark.filterwarnings("ignore::vaecore.errors.InputDataWarning")  # few valid samples: expected
def test_eval_of_a_run_without_test_molecules(tmp_path, capsys):
    # Five molecules hold none out for testing; eval failed with 'ref is empty' once every sample was decoded.
    (tmp_path / "five.csv").write_text("smiles\nCCO\nc1ccccc1\nCC(=O)O\nCCN\nCCCl\n")
    tiny = ["--latent-dim", "4", "--embedding-dim", "8", "--encoder-hidden", "8", "--decoder-hidden", "16",
            "--decoder-layers", "1", "--property-hidden", "8", "--batch-size", "4", "--n-jobs", "1"]
    assert main(["chem", "train", "--data", str(tmp_path / "five.csv"), "--epochs", "1", *tiny, "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert main(["chem", "eval", str(tmp_path / "run"), "--n-samples", "20", "--no-fcd", "--n-jobs", "1",
                 "--device", "cpu"]) == 0
    stored = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert stored["n_recon"] == 0 and stored["recon_accuracy"] is None and stored["SNN/Test"] is None
    out, err = capsys.readouterr()
    assert 0 <= stored["validity"] <= 1 and "properties.png" not in out
    assert "chem eval: 100%" in err and "5/5" in err  # the stage bar ran through its five stages
    # The training file moved: it said "no data file at PATH" alone.
    (tmp_path / "five.csv").rename(tmp_path / "moved.csv")
    assert main(["chem", "eval", str(tmp_path / "run"), "--n-samples", "20", "--no-fcd", "--device", "cpu"]) == 2
    assert (f"the test molecules (and the novelty reference) come from the run's training data, and there is no "
            f"data file at {tmp_path / 'five.csv'} (moved?)") in capsys.readouterr().err
    # Edited since: its splits would differ, and training molecules would count as test ones.
    (tmp_path / "five.csv").write_text("smiles\nCCO\nc1ccccc1\nCC(=O)O\nCCN\nCCCl\nCCCC\n")
    assert main(["chem", "eval", str(tmp_path / "run"), "--n-samples", "20", "--no-fcd", "--device", "cpu"]) == 2
    assert (f"come from the run's training data, and {tmp_path / 'five.csv'} has changed since the run was trained "
            "(sha256 ") in capsys.readouterr().err

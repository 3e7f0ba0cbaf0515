"""``vaelab molopt`` end to end on the committed tiny model."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines import cli
from pipelines.molopt import BO_ONLY, INIT_METHODS, MoloptConfig, add_bo_arguments, bo_options, initial_pool, run
from vaecore.errors import InputDataError
from vaecore.resume import data_digest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "data" / "fixtures" / "chemvae_tiny"


def test_cli_runs_bo_end_to_end(tmp_path):
    out = tmp_path / "qed"
    code = cli.main(["molopt", "--model", str(MODEL), "--objective", "qed", "--method", "bo", "--budget", "5",
                     "--batch-size", "5", "--n-init", "16", "--seed", "0", "--device", "cpu", "--out", str(out),
                     "--threads", "1", "--no-progress", "--tr-length", "0.2", "--tr-length-min", "0.01",
                     "--bo-head-mean", "--tr-restart", "elsewhere"])
    assert code == 0
    for name in ("history.csv", "best.csv", "iterations.csv", "summary.json", "journal.csv", "best_so_far.png",
                 "top_molecules.png", "config.json", "run.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oracle_calls"] == 5 and summary["method"] == "bo" and summary["objective"] == "qed"
    assert summary["n_init"] == 16 and "training split" in summary["init_source"]
    assert 0 < summary["valid_fraction"] <= 1 and summary["wall_seconds"] > 0
    assert isinstance(summary["failures"], dict)
    assert summary["settings"]["length_init"] == 0.2 and summary["settings"]["length_min"] == 0.01
    assert summary["settings"]["head_mean"] is True and summary["settings"]["restart"] == "elsewhere"
    history = pd.read_csv(out / "history.csv", keep_default_na=False, na_values={"score": [""]})
    assert {"iteration", "method", "smiles", "score", "valid", "seconds"} <= set(history.columns)
    assert int(history["new"].sum()) == 5 and (history["iteration"] == 0).sum() == 16
    best = pd.read_csv(out / "best.csv")
    assert best["score"].iloc[0] == pytest.approx(summary["best_score"])
    assert best["smiles"].is_unique


def test_the_same_command_again_reads_every_score_from_the_journal(tmp_path, capsys):
    out = tmp_path / "again"
    command = ["molopt", "--model", str(MODEL), "--objective", "qed", "--method", "random", "--budget", "6",
               "--batch-size", "3", "--device", "cpu", "--out", str(out), "--threads", "1", "--no-progress"]
    assert cli.main(command) == 0
    first = pd.read_csv(out / "history.csv")
    recorded = len((out / "journal.csv").read_text().splitlines()) - 1
    assert json.loads((out / "summary.json").read_text())["replayed"] == 0 and recorded >= 6
    capsys.readouterr()
    assert cli.main(command) == 0  # as after an interruption: the journal answers every call
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replayed"] == recorded and summary["oracle_calls"] == 6
    assert f"resumed: {recorded} objective outcomes read from" in capsys.readouterr().out
    columns = ["iteration", "smiles", "score", "status", "new"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv")[columns], first[columns])
    # A larger budget goes on from the journal; other settings are another search, refused
    # (it overwrote this one's results, reading its journal's scores as its own).
    longer = [*command, "--budget", "9"]  # the last --budget wins
    assert cli.main(longer) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replayed"] >= recorded and summary["oracle_calls"] == 9
    capsys.readouterr()
    for changed, message in [(["--objective", "sa"], "objective (stored 'qed', given 'sa')"),
                             (["--seed", "1", "--batch-size", "5"], "batch_size (stored 3, given 5); seed (stored 0, given 1)")]:
        assert cli.main([*command, *changed]) == 2
        assert f"already holds a search of other settings: {message}. Its own command" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text()) == summary
    # A search refused before its first objective call leaves its config and an empty journal:
    # the corrected command may take the directory.
    fresh = tmp_path / "fresh"
    refused = ["molopt", "--model", str(MODEL), "--objective", "similarity:CCO", "--method", "gradient",
               "--budget", "3", "--out", str(fresh), "--no-progress"]
    assert cli.main(refused) == 2 and (fresh / "config.json").is_file()
    assert cli.main([*command[:-5], "--out", str(fresh), "--threads", "1", "--no-progress"]) == 0


def test_cli_random_with_sa_objective(tmp_path):
    out = tmp_path / "sa"
    code = cli.main(["molopt", "--model", str(MODEL), "--objective", "sa", "--method", "random", "--budget", "8",
                     "--device", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "neg_sa" and summary["best_score"] < 0  # -SA
    assert summary["n_init"] == 0


BAD_INPUT = [  # command-line arguments after --model, and what the one error line must say
    (["--objective", "toxicity"], "unknown objective 'toxicity'"),
    (["--objective", "similarity:CCO", "--method", "gradient", "--n-init", "5"], "no head surrogate"),
    (["--tr-length", "0.05"], "0 < length_min < length_init"),  # 0.05 is below the default 1/16
    (["--method", "gradient", "--tr-length", "0.2", "--acquisition", "ts", "--tr-hedge", "0.1", "--tr-restart",
      "elsewhere", "--bo-head-mean"],
     "method 'bo' only, given with method 'gradient': acquisition='ts', tr_length=0.2, tr_hedge=0.1, "
     "tr_restart='elsewhere', head_mean=True"),
    (["--objective", "similarity:CCO", "--bo-head-mean", "--n-init", "5"], "BO with head_mean (--bo-head-mean) needs"),
    (["--tr-hedge", "0"], "hedge_length must satisfy 0 < hedge_length"),
    (["--prior-bound", "0"], "prior_bound must be a finite number > 0, got 0.0"),  # a box of one point
    (["--tr-hedge", "0.1", "--tr-hedge-points", "10", "--n-init", "5"], "hedge_points < batch_size (10), got 10"),
    # Random search starts from no initial molecules: these were ignored without a word.
    # Each named the other setting too, at its default ("n_init=100 and init_data=None").
    (["--method", "random", "--n-init", "100"], "method 'random' starts from no initial molecules, so n_init=100 "
                                                "would be ignored; drop it"),
    (["--method", "random", "--init-data", "fixture"], "so init_data='fixture' would be ignored; drop it"),
    (["--method", "random", "--prior-bound", "2"], "method 'random' decodes draws from the whole prior, so "
                                                     "prior_bound=2.0 would be ignored"),
    (["--method", "gradient", "--n-init", "0", "--init-data", "fixture"],
     "n_init=0 draws no initial molecules, so init_data='fixture' would be ignored"),  # it was, without a word
]


def test_init_methods_are_those_whose_proposer_uses_initial_molecules():
    from chemvae.search import METHODS, BayesOpt, GradientAscent, RandomSearch
    from pipelines.molopt import METHODS as CLI_METHODS

    proposers = {"bo": BayesOpt, "gradient": GradientAscent, "random": RandomSearch}
    assert set(proposers) == set(METHODS)
    assert {method for method, cls in proposers.items() if cls.uses_init} == set(INIT_METHODS)
    assert set(METHODS) == set(CLI_METHODS)  # the CLI's copy, kept to answer --help without BoTorch


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_cli_reports_bad_input_in_one_line(args, message, tmp_path, capsys):
    code = cli.main(["molopt", "--model", str(MODEL), *args, "--no-progress", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_trust_region_help_states_the_bo_defaults(capsys):
    from chemvae.search.bo_settings import BOSettings

    with pytest.raises(SystemExit):
        cli.main(["molopt", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = BOSettings()
    assert f"(default {defaults.length_init})" in text and f"(default {defaults.length_min})" in text


def test_initial_molecules_come_from_the_models_training_split():
    pool, source = initial_pool(MoloptConfig(model=str(MODEL)))
    train = pd.read_csv(ROOT / "data" / "fixtures" / "moses_small.csv").query("split == 'train'")["smiles"]
    assert pool and set(pool) <= set(train) and "fixture" in source
    with pytest.raises(ValueError, match="budget must be an integer >= 1, got 0"):
        MoloptConfig(model=str(MODEL), budget=0)
    # Python callers' values reach the config unparsed: NaN passed `< 1` and `< 0`.
    with pytest.raises(ValueError, match="budget must be an integer >= 1, got nan"):
        MoloptConfig(model=str(MODEL), budget=float("nan"))
    with pytest.raises(ValueError, match="n_init must be an integer >= 0, got 2.5"):
        MoloptConfig(model=str(MODEL), n_init=2.5)


def test_the_initial_pool_reads_a_config_of_another_version(tmp_path):
    # A config.json with a field this version lacks (and without one it has) still names the split.
    stored = json.loads((MODEL / "config.json").read_text())
    stored["dropped_in_a_later_version"] = 1
    del stored["kl_schedule"]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(stored))
    pool, source = initial_pool(MoloptConfig(model=str(model)))
    assert (pool, source) == initial_pool(MoloptConfig(model=str(MODEL)))
    (model / "config.json").write_text(json.dumps({"seed": 0}))
    assert initial_pool(MoloptConfig(model=str(model))) == (None, "prior samples (the model's config.json names no data)")
    (model / "config.json").write_text(json.dumps([1, 2]))
    assert initial_pool(MoloptConfig(model=str(model))) == (None, "prior samples (the model's config.json names no data)")
    # Cut short: json's "Expecting value: line 1 column 1 (char 0)" was all molopt said.
    (model / "config.json").write_text("")
    with pytest.raises(InputDataError, match=rf"^{model / 'config.json'} is damaged \(Expecting value"):
        initial_pool(MoloptConfig(model=str(model)))


def test_bo_options_map_onto_the_config_with_its_defaults():
    # vaelab molopt and bench/molopt.py share these options: their defaults must be the config's.
    parser = argparse.ArgumentParser()
    add_bo_arguments(parser)
    defaults = bo_options(parser.parse_args([]))
    assert set(defaults) == set(BO_ONLY)
    assert MoloptConfig(model="m", **defaults) == MoloptConfig(model="m")
    args = parser.parse_args(["--acquisition", "ts", "--tr-hedge", "0.1", "--tr-hedge-points", "1",
                              "--tr-restart", "elsewhere", "--bo-head-mean"])
    config = MoloptConfig(model="m", **bo_options(args))
    assert (config.acquisition, config.tr_hedge, config.tr_hedge_points, config.tr_restart, config.head_mean) == (
        "ts", 0.1, 1, "elsewhere", True)


def test_init_data_names_a_csv_or_a_dataset_instead_of_the_models_split(tmp_path):
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"SMILES": ["CCO", "c1ccccc1", "CC(=O)O"]}).to_csv(csv, index=False)
    assert initial_pool(MoloptConfig(model=str(MODEL), init_data=str(csv))) == (["CCO", "c1ccccc1", "CC(=O)O"], str(csv))
    pool, source = initial_pool(MoloptConfig(model=str(MODEL), init_data="fixture"))
    assert source == "fixture" and pool == initial_pool(MoloptConfig(model=str(MODEL)))[0]
    bare = tmp_path / "weights_only"
    bare.mkdir()
    assert initial_pool(MoloptConfig(model=str(bare))) == (
        None, "prior samples (the model directory has no config.json naming its data)")


def test_a_training_file_that_moved_points_to_init_data(tmp_path):
    # It said "no data file at PATH" alone, and --init-data starts the search from other molecules.
    moved = tmp_path / "model"
    shutil.copytree(MODEL, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone.csv")}))
    with pytest.raises(InputDataError, match=f"the initial molecules come from the run's training data, and there "
                                             f"is no data file at {tmp_path / 'gone.csv'} \\(moved\\?\\); give "
                                             "--init-data PATH.csv"):
        initial_pool(MoloptConfig(model=str(moved)))
    assert initial_pool(MoloptConfig(model=str(moved), init_data="fixture"))[1] == "fixture"


def test_a_training_file_changed_since_points_to_init_data(tmp_path):
    # Its split would differ from the one the model was trained on: "the model's training split" was not.
    data = tmp_path / "train.csv"
    data.write_text("smiles\nCCO\nc1ccccc1\nCC(=O)O\nCCN\n")
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "data": str(data)}))
    (model / "data.json").write_text(json.dumps({"source": str(data), "sha256": data_digest(str(data))}))
    assert initial_pool(MoloptConfig(model=str(model)))[1] == f"{data} (the model's training split)"
    data.write_text("smiles\nCCO\nc1ccccc1\nCC(=O)O\nCCN\nCCCl\n")
    with pytest.raises(InputDataError, match=f"the initial molecules come from the run's training data, and {data} "
                                             "has changed since the run was trained .*; give --init-data PATH.csv"):
        initial_pool(MoloptConfig(model=str(model)))


def test_a_failed_run_leaves_its_directory_free_for_other_processes(tmp_path, opens_elsewhere):
    # The lock followed the run's RunDir, which a failed call's frames (kept by its traceback,
    # as a notebook keeps its last one) kept alive: a terminal's command was refused as "in use".
    (tmp_path / "top_molecules.png").mkdir()  # its last write fails, as on a full disk
    with pytest.raises(InputDataError, match="is a directory") as failed:
        run(MoloptConfig(model=str(MODEL), objective="qed", method="random", budget=4, batch_size=4, device="cpu",
                         threads=1, progress=False), tmp_path)
    other = opens_elsewhere(tmp_path)
    assert other.returncode == 0, other.stderr
    assert failed.tb is not None


def test_a_search_stopped_by_a_full_disk_goes_on_when_run_again(tmp_path, capsys, file_size_limit):
    # It ended in "[Errno 28] No space left on device", naming neither the file nor what to do.
    out = tmp_path / "full"
    command = ["molopt", "--model", str(MODEL), "--objective", "qed", "--method", "random", "--budget", "40",
               "--batch-size", "5", "--device", "cpu", "--out", str(out), "--threads", "1", "--no-progress"]
    with file_size_limit(1500):  # config.json and run.json fit; the journal of 40 outcomes does not
        assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert (f"vaelab molopt: error: cannot write {out / 'journal.csv'}: File too large; once it can be written, "
            f"the same command again goes on from the outcomes recorded in {out / 'journal.csv'}") in err
    assert cli.main(command) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oracle_calls"] == 40 and 0 < summary["replayed"] < 40


def test_a_search_into_a_trained_models_directory_is_refused(tmp_path, capsys):
    # It wrote its config.json over the model's and exited 0: chemvae.load of that
    # directory then failed on the search's settings.
    model = shutil.copytree(MODEL, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert cli.main(["molopt", "--model", str(model), "--objective", "qed", "--method", "random", "--budget", "2",
                     "--batch-size", "2", "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(model)]) == 2
    assert (f"{model} already holds a run of another command (its config.json is not a molopt run's); give another "
            "--out") in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_sigterm_ends_a_search_with_how_to_go_on(tmp_path):
    # SIGTERM (kill, a scheduler's time limit) ended it at once and without a word.
    out = tmp_path / "search"
    command = [sys.executable, "-m", "pipelines.cli", "molopt", "--model", str(MODEL), "--objective", "qed",
               "--method", "random", "--budget", "100000", "--batch-size", "5", "--device", "cpu", "--threads", "1",
               "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not (
            (out / "journal.csv").is_file() and len((out / "journal.csv").read_text().splitlines()) > 10):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"vaelab molopt: interrupted; the same command again goes on from the "
                                            f"outcomes recorded in {out / 'journal.csv'}")

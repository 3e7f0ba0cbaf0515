"""The ``vaelab`` command line: a missing optional package disables only the commands that need it; bad input is one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _vaelab_without_rdkit(*args: str) -> subprocess.CompletedProcess:
    # A fresh interpreter in which `import rdkit` fails, as on a machine without it.
    code = ("import sys; sys.modules['rdkit'] = None; from pipelines.cli import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_fewlabel_runs_without_rdkit() -> None:
    done = _vaelab_without_rdkit("fewlabel", "--help")
    assert done.returncode == 0, done.stderr
    assert "--labels" in done.stdout


@pytest.mark.parametrize("args", [("chem", "train", "--data", "fixture"), ("molopt", "--help")])
def test_chemistry_command_without_rdkit_names_the_package(args: tuple[str, ...]) -> None:
    done = _vaelab_without_rdkit(*args)
    assert done.returncode == 2
    assert f"'{args[0]}' command needs the Python package 'rdkit'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, message", [
    (["fewlabel", "--data", "fixture", "--model", "m2", "--set", "lr", "--out", "{empty}/o"],
     "setting 'lr' is not KEY=VALUE"),
    (["fewlabel", "--data", "fixture", "--model", "m2"], "--out DIR is required (or --resume DIR)"),
    (["fewlabel", "--data", "fixture", "--tsne-points", "-1", "--out", "{empty}/o"], "tsne_points must be an integer >= 0, got -1"),
    (["fewlabel", "--resume", "{empty}"], "no config.json there (not a fewlabel run directory)"),
    (["fewlabel", "--resume", str(ROOT / "data" / "fixtures" / "chemvae_tiny")],
     "its config.json is not a fewlabel run's (unknown FewLabelRunConfig field(s)"),
    (["chem", "train", "--data", "fixture"], "give --out DIR (or --resume DIR to continue a run in place)"),
    (["chem", "train", "--data", "fixture", "--resume", "{empty}"], "is not a chem run directory (no config.json)"),
    (["chem", "eval", "{empty}"], "holds no model.safetensors or checkpoint.safetensors"),
    (["chem", "eval", "{empty}", "--n-samples", "0"], "n_samples must be an integer >= 1, got 0"),  # before the model
    (["chem", "eval", "{empty}", "--n-jobs", "-2"], "n_jobs must be an integer >= 1 or -1, got -2"),  # not after decoding
    (["chem", "eval", "{empty}", "--temperature", "0"], "temperature must be a finite number > 0, got 0.0"),
    (["chem", "eval", "{empty}", "--temperature", "inf"], "temperature must be a finite number > 0, got inf"),
    (["chem", "eval", "{empty}", "--sample-method", "greedy", "--temperature", "0.5"],
     "temperature 0.5 has no effect on greedy decoding; use sample_method 'sample'"),
    (["molopt", "--model", "{empty}", "--objective", "qed", "--out", "{empty}/o"],
     "holds no model.safetensors or checkpoint.safetensors"),
    (["vae", "--data", "{empty}/nope.npz", "--out", "{empty}/o"], "is neither 'mnist', 'fixture' nor an existing path"),
    # torch.set_num_threads(0) raised a RuntimeError, which the command printed as a traceback.
    (["fewlabel", "--data", "fixture", "--threads", "0", "--out", "{empty}/o"], "threads must be an integer >= 1, got 0"),
    (["vae", "--data", "fixture", "--threads", "0", "--out", "{empty}/o"], "threads must be an integer >= 1, got 0"),
    (["chem", "train", "--data", "fixture", "--threads", "0", "--out", "{empty}/o"], "threads must be an integer >= 1, got 0"),
    (["chem", "eval", "{empty}", "--threads", "0"], "threads must be an integer >= 1, got 0"),
    # M1's classifier is fitted once: these M2 settings were ignored without a word.
    (["fewlabel", "--data", "fixture", "--model", "m1", "--epochs", "5", "--set", "train.lr=0.01", "--out", "{empty}/o"],
     "model 'm1' trains no M2, so --epochs 5, --set train.lr=0.01 would be ignored"),
    # Pixel M2 trains no M1: these were ignored without a word.
    (["fewlabel", "--data", "fixture", "--model", "m2", "--m1-epochs", "5", "--set", "m1.lr=0.01", "--out", "{empty}/o"],
     "model 'm2' trains no M1, so --m1-epochs 5, --set m1.lr=0.01 would be ignored"),
    # A loaded M1 is not trained: how to train it was ignored without a word.
    (["fewlabel", "--data", "fixture", "--set", "m1.checkpoint='m1'", "--m1-epochs", "5", "--set", "m1.lr=0.01",
      "--out", "{empty}/o"], "--set m1.checkpoint loads a trained M1, so --m1-epochs 5, --set m1.lr=0.01 would be ignored"),
    # It trained M1, then no M2 epoch, and reported a NaN test error.
    (["fewlabel", "--data", "fixture", "--epochs", "0", "--out", "{empty}/o"],
     "epochs must be >= 1 for model 'm1m2': 0 trains no M2 to keep and score"),
    (["chem", "train", "--data", "fixture", "--grad-clip", "-1", "--out", "{empty}/o"],
     "grad_clip must be a finite number > 0, got -1.0"),
    (["fewlabel", "--data", "fixture", "--set", "train.grad_clip=-1", "--out", "{empty}/o"],
     "grad_clip must be a finite number > 0, got -1"),
    # The --set was applied last: 2 epochs trained, and --epochs 5 was ignored without a word.
    (["fewlabel", "--data", "fixture", "--epochs", "5", "--set", "train.epochs=2", "--out", "{empty}/o"],
     "--epochs 5 and --set train.epochs=2 set the same thing two ways; give one"),
    (["fewlabel", "--data", "fixture", "--set", "m2.n_classes=5", "--out", "{empty}/o"],
     "m2.n_classes comes from the data (the images' size and the labels' classes), whatever a setting says"),
    (["fewlabel", "--data", "fixture", "--set", "train.epochs=2", "--set", "train.epochs=3", "--out", "{empty}/o"],
     "train.epochs is set twice, to 2 and 3; give it once"),  # the last one won without a word
    # A file as the run directory, or one that cannot be made: FileExistsError ended in a traceback.
    (["fewlabel", "--data", "fixture", "--labels", "100", "--model", "m2", "--out", "/dev/null"],
     "/dev/null is a file, not a directory to hold a run"),
    (["molopt", "--model", str(ROOT / "data" / "fixtures" / "chemvae_tiny"), "--objective", "qed", "--out", "/dev/null"],
     "/dev/null is a file, not a directory to hold a run"),
    (["vae", "--data", "fixture", "--out", "/dev/null/run"], "cannot make the run directory /dev/null/run: "),
    (["chem", "eval", str(ROOT / "data" / "fixtures" / "chemvae_tiny"), "--out", "/dev/null"],
     "/dev/null is a file, not a directory to hold a run"),  # it came after the decoding
])
def test_a_bad_invocation_is_one_line_naming_what_is_wrong(tmp_path, capsys, args, message) -> None:
    from pipelines.cli import main

    code = main([a.format(empty=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"vaelab {args[0]}: error: ") and message in err


def test_version_lists_vaelab_and_its_libraries(capsys) -> None:
    import importlib.metadata

    from pipelines.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    lines = dict(line.split(" ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["vaelab"] == importlib.metadata.version("vaelab") and lines["torch"] == torch.__version__


def test_another_commands_run_is_named_by_the_chemistry_commands(tmp_path, capsys) -> None:
    # A few-label run's directory: chem train --resume raised the bare field list, chem eval and
    # molopt said 'not a chemvae model checkpoint' without naming the file.
    from pipelines.cli import main
    from vaecore.checkpoint import save_checkpoint

    (tmp_path / "config.json").write_text('{"labels": 100, "model": "m2", "self_train": []}')
    save_checkpoint(tmp_path / "model.safetensors", {"model": {"w": torch.zeros(2)}}, {"kind": "m2"})
    for args, message in (
        (["chem", "train", "--resume", str(tmp_path)], f"{tmp_path}: its config.json is not a chem train run's"),
        (["chem", "eval", str(tmp_path)], f"{tmp_path / 'model.safetensors'}: not a chemvae model checkpoint"),
        (["molopt", "--model", str(tmp_path), "--out", str(tmp_path / "o")],
         f"{tmp_path / 'model.safetensors'}: not a chemvae model checkpoint"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_says_where_the_run_stopped_and_the_command_that_continues_it(tmp_path, signum) -> None:
    # It printed "vaelab vae: interrupted" alone: the run's own word on its checkpoint and
    # how to go on were dropped. SIGTERM (a batch scheduler's time limit) ended the run at
    # once, without a word and without the checkpoint of the epoch under way.
    out = tmp_path / "vae"
    proc = subprocess.Popen(  # SIGINT at its default: a shell without job control may have it ignored
        [sys.executable, "-m", "pipelines.cli", "vae", "--data", "fixture", "--epochs", "1000", "--hidden", "16",
         "--latent", "2", "--eval-samples", "2", "--no-progress", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.safetensors").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaelab vae: interrupted in epoch ") and f"checkpoint at {out}" in last
    assert last.endswith(f"; continue with: vaelab vae --resume {out}")


def test_a_run_that_diverges_says_what_to_change(tmp_path, capsys) -> None:
    # It printed "non-finite loss (...) at step 10" alone.
    from pipelines.cli import main

    args = ["vae", "--data", "fixture", "--epochs", "1", "--lr", "1e12", "--hidden", "16", "--latent", "2",
            "--eval-samples", "2", "--no-progress", "--out", str(tmp_path / "vae")]
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("vaelab vae: error: non-finite loss (")
    assert last.endswith("; training diverged: start a new run with a smaller --lr (a resume keeps the stored settings)")


def test_paths_that_begin_with_a_tilde_are_in_the_home_directory(tmp_path, monkeypatch, capsys) -> None:
    # A shell leaves ~ as is where quoted, or after "--out=": --out "~/runs/a" made a directory
    # named ~ in the current one, which --resume "~/runs/a" did not find (it looked in the
    # home directory), and molopt's --model "~/model" was "no checkpoint at ~/model".
    from pipelines.cli import main

    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    vae = ["vae", "--data", "fixture", "--hidden", "16", "--latent", "2", "--eval-samples", "2", "--device", "cpu",
           "--no-progress"]
    assert main([*vae, "--epochs", "1", "--out=~/runs/a"]) == 0
    assert (home / "runs" / "a" / "metrics.json").is_file() and not any(elsewhere.iterdir())
    assert main(["vae", "--resume", "~/runs/a", "--epochs", "2", "--no-progress"]) == 0
    shutil.copytree(ROOT / "data" / "fixtures" / "chemvae_tiny", home / "model")
    assert main(["molopt", "--model", "~/model", "--objective", "qed", "--method", "random", "--budget", "2",
                 "--batch-size", "2", "--device", "cpu", "--threads", "1", "--no-progress", "--out", "~/search"]) == 0
    assert (home / "search" / "summary.json").is_file() and not any(elsewhere.iterdir())
    assert f"{home / 'search'}/history.csv" in capsys.readouterr().out


def test_building_the_parser_imports_neither_botorch_nor_matplotlib() -> None:
    # molopt's parser built a MoloptConfig for its defaults, whose check imports BoTorch, and
    # vae's imported pyplot: a second or two of every 'vaelab --help' and mistyped command.
    code = ("import sys; from pipelines.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('botorch', 'gpytorch', 'matplotlib.pyplot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_running_out_of_memory_says_what_to_lower(tmp_path) -> None:
    # It ended in torch's traceback: "RuntimeError: [enforce fail at alloc_cpu.cpp:127] ...
    # DefaultCPUAllocator: can't allocate memory: you tried to allocate 2000000000 bytes".
    import resource

    def limited() -> None:  # 3 GB of address space; the evaluation below asks for 20 GB at once
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))

    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "vae", "--data", "fixture", "--epochs", "1",
                           "--hidden", "16", "--latent", "2", "--eval-samples", "50000", "--eval-chunk", "50000",
                           "--eval-batch-size", "1000", "--device", "cpu", "--no-progress", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, preexec_fn=limited,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vaelab vae: error: out of memory (") and "Traceback" not in proc.stderr
    assert last.endswith("); use a smaller --batch-size (a new run), or --eval-batch-size and --eval-chunk (which "
                         "--resume may change)")


def test_vaelabs_warnings_are_one_line_naming_the_command(tmp_path) -> None:
    # Python's format added the library file and line that warned and that line's source
    # ("  generation = generation_metrics(samples, ..."), which told a user nothing.
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "chem", "eval",
                           str(ROOT / "data" / "fixtures" / "chemvae_tiny"), "--n-samples", "20", "--n-recon", "10",
                           "--no-progress", "--no-fcd", "--device", "cpu", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert warned and all(line.startswith("vaelab chem: warning: ") for line in warned), proc.stderr
    assert "generation_metrics(" not in proc.stderr and "InputDataWarning" not in proc.stderr

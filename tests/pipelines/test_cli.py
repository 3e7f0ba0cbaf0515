"""The ``vaelab`` command line: a missing optional package disables only the commands that need it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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

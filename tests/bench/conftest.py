"""Loading the benchmark scripts (not a package) as modules for the tests beside this file."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def load_bench() -> Iterator[Callable[[str], ModuleType]]:
    """``load_bench("molopt")`` runs ``bench/molopt.py`` as a fresh module and returns it."""
    sys.path.insert(0, str(BENCH))  # the bench scripts import each other by file name
    try:
        def load(name: str) -> ModuleType:
            spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module

        yield load
    finally:
        sys.path.remove(str(BENCH))

"""Shared test settings and fixtures: one torch thread, no GUI plots, a host-read counter,
a run directory opened from another process, writes that fail as on a full disk.

The models in the suite are tiny, so intra-op parallelism buys nothing, while OpenMP
threads spinning against each other on a shared 2-core machine made some files 5-50x
slower (ChemNet, small GPs, graph batches). Tests that need more threads set them.
"""

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
# The commands that tests start as subprocesses, too: the suite runs one worker per core, and
# a torch of two threads beside a busy core ran over a hundred times slower (README, --threads).
os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]

# Tensor methods that hand a tensor's values to Python. On a GPU each one waits for the
# device to finish its queued work (a host sync).
HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy", "cpu")


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts, by method name, the reads of tensor values into Python while a test runs.

    A CPU-only suite cannot see GPU syncs, but it can see the Python-level calls that
    cause them. Reads made inside C++ (``nonzero``, boolean-mask indexing) are not seen.
    Reads by ``torch.optim`` are not counted: Adam keeps its step counters on the host
    (unless ``capturable``), so reading them costs no sync on a GPU either.
    """
    counts: Counter = Counter()
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args, _real=real, _name=name, **kwargs):
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("torch.optim"):
                counts[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


@pytest.fixture
def private_data_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A per-test data and property cache (``VAELAB_DATA``), so no test reads another's."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))


@pytest.fixture
def opens_elsewhere() -> Callable[[Path], subprocess.CompletedProcess]:
    """Opens a ``RunDir`` at a path from another Python process, as a second command would.

    It exits 0 where the path's run lock lets it in, 1 with "... is in use" on stderr where
    a live run of this process holds it. It writes that run's ``config.json`` (``name: "b"``).
    """
    code = ("import sys; from dataclasses import dataclass; from vaecore.rundir import RunDir\n"
            "@dataclass(frozen=True)\nclass Config:\n    name: str = 'b'\n"
            "RunDir(sys.argv[1], Config(), seed=0, device='cpu')")

    def opens(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)

    return opens


@pytest.fixture
def file_size_limit() -> Callable[[int], AbstractContextManager[None]]:
    """``with file_size_limit(n):`` a write that takes any file of this process past ``n``
    bytes fails, as on a full disk, with the operating system's own error (EFBIG, "File
    too large"): ``RLIMIT_FSIZE``, no mock. Keep what the block prints short: pytest's
    capture files are files of this process too.
    """
    resource = pytest.importorskip("resource")  # POSIX

    @contextmanager
    def limit(n: int) -> Iterator[None]:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal ends the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    return limit

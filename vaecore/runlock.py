"""One writing process per run directory.

Two commands given the same ``--out`` at once both found it free (nothing written yet) and
wrote into it together; each ended "successfully", and the directory held one run's
``config.json`` beside the other's history, checkpoint and metrics. :class:`RunDir`
therefore holds an advisory lock (``flock``) on a file in its directory for as long as a
``RunDir`` of that directory lives in the process; another process's ``RunDir`` of it is
refused, naming the process that holds it. The lock goes with the process, so a run that
was killed leaves nothing to clean up. Where ``flock`` is missing (Windows) or refused by
the file system, directories go unguarded, as before.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from vaecore.errors import InputDataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vaelab.lock"
# Directories this process holds: resolved path -> [lock file descriptor, live holders].
# Counted, so that the same process may open a directory again (a resume, a second stage).
_held: dict[Path, list[int]] = {}


def hold(directory: str | os.PathLike, owner: object) -> weakref.finalize | None:
    """Lock ``directory`` for this process while ``owner`` (its ``RunDir``) lives.

    Args:
        directory: An existing run directory.
        owner: The object whose lifetime the lock follows.

    Returns:
        What releases ``owner``'s hold early when called (once; later calls do nothing),
        or ``None`` where the directory goes unguarded.

    Raises:
        InputDataError: Another live process holds the directory.
    """
    if fcntl is None:
        return None
    key = Path(directory).resolve()
    entry = _held.get(key)
    if entry is None:
        try:
            fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # unwritable: the run's own first write reports it
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputDataError(f"{directory} is in use: {holder} is writing a run there. Wait for it to end, "
                                 "or give another --out") from None
        except OSError:  # a file system without flock (some network mounts): unguarded
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        entry = _held[key] = [fd, 0]
    entry[1] += 1
    return weakref.finalize(owner, _release, key)


def _release(key: Path) -> None:
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[key]
        os.close(entry[0])  # closing the descriptor releases the lock

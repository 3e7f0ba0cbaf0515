"""Checkpoints: exact round trips, atomic writes, and clear refusals of bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from vaecore.checkpoint import (atomic_write_bytes, config_mismatches, load_checkpoint, save_checkpoint, stored_extra,
                               stored_scalar)
from vaecore.errors import CheckpointError, ConfigMismatchError, FileWriteError, InputDataError

CONFIG = {"x_dim": 4, "z_dim": 2, "hidden": [8, 8], "likelihood": "bernoulli"}


def _trained_model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Softplus(), nn.Linear(8, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def _no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_round_trip_model_optimizer_scalars_tuples(tmp_path: Path) -> None:
    model, opt = _trained_model_and_optimizer()
    generator_state = torch.Generator().manual_seed(3).get_state()
    payload = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),  # state keyed by int parameter ids
        "epoch": 7,
        "best": 0.125,
        "finished": False,
        "note": None,
        "name": "m1",
        "shape": (2, (3, 4)),
        "history": [1.5, float("inf"), {"k": (1, "a")}],
        "rng": generator_state,
        "mixed_keys": {1: "one", "1": "string one", 2.5: "float", None: "none", False: "bool"},
    }
    path = save_checkpoint(tmp_path / "ckpt.safetensors", payload, CONFIG, extra={"vocab": ["<pad>", "C"]})
    assert _no_temp_files(tmp_path)

    ck = load_checkpoint(path, expected_config=CONFIG)
    assert ck.config == CONFIG and ck.extra == {"vocab": ["<pad>", "C"]}
    loaded = ck.payload
    assert set(loaded) == set(payload)
    for key in ("epoch", "best", "finished", "note", "name", "shape", "history", "mixed_keys"):
        assert loaded[key] == payload[key], key
    assert isinstance(loaded["shape"], tuple) and isinstance(loaded["shape"][1], tuple)
    assert isinstance(loaded["history"][2]["k"], tuple)
    assert torch.equal(loaded["rng"], generator_state)

    state = loaded["optimizer"]["state"]
    assert set(state) == set(opt.state_dict()["state"]) and all(isinstance(k, int) for k in state)
    assert loaded["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]

    fresh_model = nn.Sequential(nn.Linear(4, 8), nn.Softplus(), nn.Linear(8, 4))
    fresh_model.load_state_dict(loaded["model"])
    fresh_opt = torch.optim.Adam(fresh_model.parameters(), lr=1e-3)
    fresh_opt.load_state_dict(loaded["optimizer"])
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)
    for pid, entries in opt.state_dict()["state"].items():
        for name, value in entries.items():
            assert torch.equal(fresh_opt.state_dict()["state"][pid][name], value), (pid, name)


def test_tied_and_aliased_tensors_and_key_collisions(tmp_path: Path) -> None:
    base = torch.arange(10.0)
    payload = {
        "tied": (base, base),  # the same tensor twice (weight tying)
        "view": base[2:5],  # overlapping view of the same storage
        "a.b": torch.ones(1),
        "a": {"b": torch.zeros(1)},  # flattens to the same name as "a.b"
        1: torch.full((2,), 1.0),
        "1": torch.full((2,), 2.0),
        "empty": (torch.zeros(0), torch.zeros(0, 3)),
    }
    path = save_checkpoint(tmp_path / "tied.safetensors", payload, {})
    loaded = load_checkpoint(path).payload
    assert torch.equal(loaded["tied"][0], base) and torch.equal(loaded["tied"][1], base)
    assert torch.equal(loaded["view"], torch.tensor([2.0, 3.0, 4.0]))
    assert torch.equal(loaded["a.b"], torch.ones(1)) and torch.equal(loaded["a"]["b"], torch.zeros(1))
    assert torch.equal(loaded[1], torch.full((2,), 1.0)) and torch.equal(loaded["1"], torch.full((2,), 2.0))
    assert loaded["empty"][1].shape == (0, 3)


def test_unsupported_payload_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"set at 'model\.extra'"):
        save_checkpoint(tmp_path / "x.safetensors", {"model": {"extra": {1, 2}}}, {})
    with pytest.raises(TypeError, match="dict key"):
        save_checkpoint(tmp_path / "x.safetensors", {(1, 2): 3}, {})
    assert list(tmp_path.iterdir()) == []


def test_save_creates_missing_parent_dirs_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "new" / "deep" / "last.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, CONFIG)
    save_checkpoint(path, {"w": torch.zeros(3)}, CONFIG)  # overwrite in place
    assert torch.equal(load_checkpoint(path).payload["w"], torch.zeros(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.safetensors"]
    assert _no_temp_files(tmp_path)


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path: Path, file_size_limit) -> None:
    # A full disk ended runs in safetensors' "SafetensorError: Error while serializing: I/O
    # error: No space left on device (os error 28)", a traceback naming no file, and other
    # writes in a bare "[Errno 28] No space left on device".
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(3)}, CONFIG)
    with file_size_limit(4096):
        with pytest.raises(FileWriteError, match=r"^cannot write .*/c\.safetensors: File too large$"):
            save_checkpoint(path, {"w": torch.zeros(10_000)}, CONFIG)
        with pytest.raises(FileWriteError, match=r"^cannot write .*/h\.csv: File too large$"):
            atomic_write_bytes(tmp_path / "h.csv", b"x" * 10_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # no temporary file left
    assert torch.equal(load_checkpoint(path).payload["w"], torch.ones(3))
    assert isinstance(FileWriteError("x"), OSError)  # what callers catching OSError already catch


def test_a_write_where_no_file_can_be_made_names_the_file(tmp_path: Path) -> None:
    # The failed clean-up of a temporary file never made raised in place of the error:
    # "NotADirectoryError: [Errno 20] Not a directory: '.../afile/.x.json.<hex>.tmp'" (and on
    # a read-only file system "[Errno 30] Read-only file system: '.../.x.json.<hex>.tmp'").
    (tmp_path / "afile").write_text("")
    with pytest.raises(FileWriteError, match=r"^cannot write .*/afile/x\.json: .*/afile is a file, not a directory$"):
        atomic_write_bytes(tmp_path / "afile" / "x.json", b"{}")
    with pytest.raises(FileWriteError, match=r"^cannot write .*/afile/deeper/x\.json: Not a directory$"):
        save_checkpoint(tmp_path / "afile" / "deeper" / "x.json", {"w": torch.ones(2)}, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_directory_as_the_destination_is_refused_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "runs"
    target.mkdir()
    with pytest.raises(InputDataError, match="runs is a directory; give the path of a file to write"):
        save_checkpoint(target, {"w": torch.ones(2)}, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any(target.iterdir())


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.csv"
    atomic_write_bytes(target, b"x,y\n1,2\n")
    assert target.read_bytes() == b"x,y\n1,2\n"
    reference = tmp_path / "reference"
    reference.touch()
    ckpt = save_checkpoint(tmp_path / "c.safetensors", {}, {})
    for written in (target, ckpt):  # usual umask permissions, not a temp file's 0600
        assert written.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
    assert _no_temp_files(tmp_path)


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_write_removes_what_a_killed_write_of_the_same_file_left(tmp_path: Path) -> None:
    # A process killed while writing (SIGKILL in a kill-and-resume sweep of fewlabel) left
    # '.checkpoint.safetensors.<writer>.tmp', 16 MB, in the run directory for good.
    host = socket.gethostname()
    killed = tmp_path / f".checkpoint.safetensors.{host}-{_dead_pid()}-bdcf90da.tmp"
    other = tmp_path / f".model.safetensors.{host}-{_dead_pid()}-01234567.tmp"  # another file's: not this write's
    elsewhere = tmp_path / ".checkpoint.safetensors.other-host-1234-89abcdef.tmp"  # a shared disk's: a day old
    older = tmp_path / ".checkpoint.safetensors.0123456789abcdef.tmp"  # an earlier version's, untagged
    for path in (killed, other, elsewhere, older):
        path.write_bytes(b"partial")
    past = time.time() - 2 * 24 * 3600
    os.utime(older, (past, past))
    save_checkpoint(tmp_path / "checkpoint.safetensors", {"w": torch.ones(2)}, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, elsewhere.name, "checkpoint.safetensors"])
    os.utime(elsewhere, (past, past))
    atomic_write_bytes(tmp_path / "model.safetensors", b"x")
    save_checkpoint(tmp_path / "checkpoint.safetensors", {"w": torch.ones(2)}, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "model.safetensors"]


def test_a_write_leaves_the_temporary_file_of_a_live_writer(tmp_path: Path) -> None:
    # Processes started together (parallel seeds on a cold dataset cache) write the same
    # file at once. Removing the temporary file of one still in its fsync failed it: 24 of
    # 80 fetches of MNIST, 8 processes at a time, ended in "cannot write ...: No such file
    # or directory".
    target = tmp_path / "mnist.pkl.gz"
    code = ("import os, pathlib, socket, sys, time; p = pathlib.Path(sys.argv[1]); "
            "t = p.parent / f'.{p.name}.{socket.gethostname()}-{os.getpid()}-0000abcd.tmp'; "
            "t.write_bytes(b'partial'); print(t.name, flush=True); time.sleep(120)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        name = writer.stdout.readline().strip()
        past = time.time() - 5
        os.utime(tmp_path / name, (past, past))  # its last write came before this write began
        atomic_write_bytes(target, b"x")
        assert (tmp_path / name).is_file()
    finally:
        writer.kill()
        writer.wait()
    atomic_write_bytes(target, b"y")  # its writer is gone: a remnant now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.pkl.gz"]


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, opt = _trained_model_and_optimizer()
    return save_checkpoint(tmp_path / "good.safetensors", {"model": model.state_dict(), "opt": opt.state_dict()}, CONFIG)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 8, 60, -1])
def test_truncated_file_is_refused(saved: Path, keep: int) -> None:
    raw = saved.read_bytes()
    saved.write_bytes(raw[: keep if keep >= 0 else len(raw) - 7])
    with pytest.raises(CheckpointError, match="truncated|corrupted"):
        load_checkpoint(saved)


def test_corrupted_tensor_bytes_are_refused(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[-10] ^= 0x40  # a bit flip inside the last tensor's data
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="tensor bytes do not match"):
        load_checkpoint(saved)


def test_corrupted_header_is_refused(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[8] = ord("#")  # the header's opening brace
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted checkpoint header"):
        load_checkpoint(saved)


def test_plain_safetensors_file_is_not_a_vaelab_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint"):
        load_checkpoint(path)


def _rewrite_metadata(path: Path, **changes: str | None) -> None:
    """Save ``path``'s tensors again with some metadata fields changed (``None``: removed)."""
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    metadata.update(changes)
    save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if v is not None})


@pytest.mark.parametrize("changes, message", [
    ({"vaelab_format": "99"}, "not a vaelab checkpoint \\(format '99'\\)"),
    ({"extra": None}, "corrupted checkpoint header \\(missing \\['extra'\\]\\)"),
    ({"config": "{not json"}, "corrupted checkpoint metadata"),
    ({"structure": '{"__dict__": [["model", {"__tensor__": "absent"}]]}'}, "corrupted checkpoint structure"),
    ({"structure": '{"__what__": 1}'}, "corrupted checkpoint structure"),
])
def test_a_damaged_vaelab_header_is_refused_by_what_is_wrong(saved: Path, changes: dict, message: str) -> None:
    _rewrite_metadata(saved, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)


class _Payload:
    """Unpickling this runs code: it creates the marker file with ``open``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_with_code_payload_is_refused_unexecuted(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=protocol))
    pickle.loads(path.read_bytes())["model"].close()  # sanity: unpickling runs the payload ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint|pickled"):
        load_checkpoint(path)
    assert not marker.exists()  # ... but load_checkpoint never unpickles


def test_torch_save_file_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- config checks


def test_mismatched_config_names_the_field(saved: Path) -> None:
    other = dict(CONFIG, z_dim=3)
    with pytest.raises(ConfigMismatchError, match="z_dim: checkpoint has 2, model has 3") as info:
        load_checkpoint(saved, expected_config=other)
    assert "x_dim" not in str(info.value)  # only differing fields are named
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
    with pytest.raises(ConfigMismatchError, match="activation: checkpoint has '<missing>'"):
        load_checkpoint(saved, expected_config=dict(CONFIG, activation="relu"))


@dataclasses.dataclass(frozen=True)
class _Encoder:
    hidden: tuple[int, ...] = (8, 8)


@dataclasses.dataclass(frozen=True)
class _Model:
    z_dim: int = 2
    encoder: _Encoder = _Encoder()


def test_dataclass_configs_and_nested_field_names(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "n.safetensors", {"w": torch.ones(1)}, _Model())
    assert load_checkpoint(path, expected_config=_Model()).config == {"z_dim": 2, "encoder": {"hidden": [8, 8]}}
    with pytest.raises(ConfigMismatchError, match=r"encoder\.hidden: checkpoint has \[8, 8\], model has \[16\]"):
        load_checkpoint(path, expected_config=_Model(encoder=_Encoder(hidden=(16,))))
    assert config_mismatches({"a": 1, "b": [1]}, {"a": 1, "b": (1,)}) == []


def test_header_is_plain_json(saved: Path) -> None:
    # The format stays inspectable with nothing but json: 8-byte length, then the header.
    raw = saved.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert json.loads(meta["config"]) == CONFIG
    assert len(meta["tensors_sha256"]) == 64


def test_stored_scalar_reads_the_header_alone(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", {"epoch": 3, "w": torch.ones(2), "note": {"a": 1}},
                           {"d": 2})
    assert stored_scalar(path, "epoch") == 3
    assert stored_scalar(path, "w") is None and stored_scalar(path, "note") is None  # a tensor, a dict
    assert stored_scalar(path, "step") is None
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"epoch": 3}))
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        stored_scalar(tmp_path / "pickle.safetensors", "epoch")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        stored_scalar(tmp_path / "none.safetensors", "epoch")


def test_stored_extra_reads_the_header_alone(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(2)}, {"d": 2},
                           extra={"run_config": {"data": "fixture", "k": 1}})
    assert stored_extra(path) == {"run_config": {"data": "fixture", "k": 1}}
    assert stored_extra(save_checkpoint(tmp_path / "plain.safetensors", {"w": torch.ones(2)}, {"d": 2})) == {}
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"epoch": 3}))
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        stored_extra(tmp_path / "pickle.safetensors")

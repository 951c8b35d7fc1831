"""Checkpoints never run code, refuse corrupt files clearly, and are written atomically."""

import os
import pickle

import pytest
import torch

from vmonf.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from vmonf.model import ModelConfig, VMoNFModel


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_round_trip(tmp_path):
    model = VMoNFModel(ModelConfig(2, 2, depth=1, hidden=4))
    save_checkpoint(tmp_path / "m.pt", model, {"note": "hi"})
    again, extra = load_checkpoint(tmp_path / "m.pt")
    assert extra == {"note": "hi"}
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_malicious_pickle_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for payload in (pickle.dumps(Exploit()), None):
        path = tmp_path / "evil.pt"
        if payload is None:
            torch.save({"format": "vmonf-checkpoint", "x": Exploit()}, path)
        else:
            path.write_bytes(payload)
        with pytest.raises(ValueError, match="never run"):
            load_checkpoint(path)
        assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("blob, match", [(b"", "corrupt"), (b"garbage" * 10, "corrupt"), (None, "No checkpoint")])
def test_corrupt_or_missing(tmp_path, blob, match):
    path = tmp_path / "c.pt"
    if blob is not None:
        path.write_bytes(blob)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_not_a_vmonf_file(tmp_path):
    torch.save({"hello": 1}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not a VMoNF"):
        load_checkpoint(tmp_path / "o.pt")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]

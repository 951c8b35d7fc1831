"""Checkpoints that load without running code: ``torch.load(weights_only=True)`` and atomic writes."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

from vmonf.model import ModelConfig, VMoNFModel

_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)

FORMAT = "vmonf-checkpoint"
VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash mid-write leaves any previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def checkpoint_bytes(model: VMoNFModel, extra: dict | None = None) -> bytes:
    """Serialise a model (config + weights on CPU) and ``extra`` (plain Python data only)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, model: VMoNFModel, extra: dict | None = None) -> None:
    atomic_write_bytes(path, checkpoint_bytes(model, extra))


def load_checkpoint(source: str | Path | bytes, map_location: str | torch.device = "cpu") -> tuple[VMoNFModel, dict]:
    """Load a checkpoint from a path or bytes. Never unpickles code (``weights_only=True``).

    Raises:
        ValueError: the file is missing, corrupt, not a VMoNF checkpoint, or tries to run code.
    """
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise ValueError(f"No checkpoint at {source}.")
        source = Path(source).read_bytes()
    try:
        payload = torch.load(io.BytesIO(source), map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle that asks for code
        raise ValueError(f"Not a valid VMoNF checkpoint (it is corrupt, or it contains code, which is never run): "
                         f"{type(exc).__name__}.") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError("This file is not a VMoNF checkpoint.")
    if payload.get("version") != VERSION:
        raise ValueError(f"Checkpoint version {payload.get('version')} is not supported (expected {VERSION}).")
    try:
        model = VMoNFModel(ModelConfig(**payload["model_config"]))
        state = dict(payload["state_dict"])
        state.setdefault("active", model.active)  # written before components could be removed
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"The checkpoint's weights do not match its settings: {exc}") from exc
    return model, payload.get("extra", {})


def describe_checkpoint(source: str | Path | bytes) -> dict:
    """Load a checkpoint safely (see :func:`load_checkpoint`) and summarise it as plain data."""
    model, extra = load_checkpoint(source)
    return {"config": model.config.to_dict(), "parameters": model.parameter_count(),
            "step": extra.get("step"), "dataset": extra.get("spec", {}).get("dataset")}

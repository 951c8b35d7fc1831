"""Saved runs (``.vmonf`` files): settings, checkpoint and recording in one zip, with no pickle inside.

Layout: ``run.json`` (format, version, settings, frame count), ``model.pt`` (optional, loaded with
``weights_only=True``) and ``frames/NNNNN.npz`` (loaded with ``allow_pickle=False``). Loading checks
sizes before it unpacks anything, so a crafted or corrupt file is refused with a ``ValueError``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from vmonf.checkpoint import atomic_write_bytes
from vmonf.studio.snapshot import Snapshot

FORMAT, VERSION = "vmonf-run", 1
MAX_FRAMES = 5_000  # more than any recording keeps (Recording.max_frames defaults to 200)
MAX_UNPACKED_BYTES = 2 << 30  # refuse zip bombs: 2 GiB unpacked at most


@dataclass
class Run:
    """A recorded run: its settings, the trained weights (if kept) and its frames in step order."""

    settings: dict
    frames: list[Snapshot]
    checkpoint: bytes | None = None
    info: dict = field(default_factory=dict)


def run_bytes(run: Run) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        header = {"format": FORMAT, "version": VERSION, "settings": run.settings, "frames": len(run.frames),
                  "info": run.info}
        z.writestr("run.json", json.dumps(header))
        if run.checkpoint is not None:
            z.writestr("model.pt", run.checkpoint)
        for i, frame in enumerate(run.frames):
            z.writestr(f"frames/{i:05d}.npz", frame.to_bytes())
    return buf.getvalue()


def save_run(path: str | Path, run: Run) -> None:
    """Write ``run`` atomically: a crash mid-write leaves any previous file intact."""
    atomic_write_bytes(path, run_bytes(run))


def load_run(source: str | Path | bytes) -> Run:
    """Read a ``.vmonf`` file (path or bytes). Raises ``ValueError`` with the reason if it is not one."""
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise ValueError(f"No run file at {source}.")
        source = Path(source).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(source)) as z:
            infos = z.infolist()
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES or len(infos) > MAX_FRAMES + 2:
                raise ValueError("This run file is too large to open safely.")
            header = json.loads(z.read("run.json"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError("This file is not a VMoNF run.")
            if header.get("version") != VERSION:
                raise ValueError(f"Run file version {header.get('version')} is not supported (expected {VERSION}).")
            names = sorted(n for n in z.namelist() if n.startswith("frames/") and n.endswith(".npz"))
            frames = [Snapshot.from_bytes(z.read(n)) for n in names]
            checkpoint = z.read("model.pt") if "model.pt" in z.namelist() else None
    except ValueError:
        raise
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"This run file is corrupt or incomplete ({type(exc).__name__}).") from exc
    if not frames:
        raise ValueError("This run file has no recorded frames.")
    if [f.step for f in frames] != sorted(f.step for f in frames):
        raise ValueError("This run file's frames are out of order.")
    return Run(header.get("settings", {}), frames, checkpoint, header.get("info", {}))


def check_checkpoint(data: bytes, timeout: float = 120.0) -> dict:
    """Check a checkpoint (e.g. a run file's ``model.pt``) in a separate process, so this one never imports torch.

    Returns :func:`vmonf.checkpoint.describe_checkpoint`'s summary with ``ok=True``, or ``ok=False`` and
    a ``message``. The check loads with ``weights_only=True``: a crafted pickle is refused, never run.
    """
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "vmonf.studio.runfile"], input=data, capture_output=True,
                              timeout=timeout, env=env, cwd=root)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, OSError) as exc:
        return {"ok": False, "message": f"The model could not be checked ({type(exc).__name__})."}


def main() -> int:
    """``python -m vmonf.studio.runfile < file``: print ``{"ok": true, ...summary}`` or ``{"ok": false, "message"}``.

    Lets the app (whose server never imports torch) check an uploaded model in a short-lived process.
    """
    from vmonf.checkpoint import describe_checkpoint

    try:
        result = {"ok": True, **describe_checkpoint(sys.stdin.buffer.read())}
    except ValueError as exc:
        result = {"ok": False, "message": str(exc)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

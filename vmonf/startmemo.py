"""A chosen start, kept on disk so that the same run started again, or by another session, replays it.

Choosing the initialisation (:func:`vmonf.starts.start_training`: six candidate partitions, their normalised
cuts, q fitted to the kept one) is deterministic: the same data, model, recipe and seed give the same start,
bit for bit. In a classroom every student presses Start on the same run; a teacher presses Reset and Start
again. Each of those used to make the same partitions again, and with four sessions starting together they
made them four times over on two cores, beside four browser tabs (docs/RESULTS.md, "The live loop").

A :class:`StartMemo` is a folder of such starts (one ``.npz`` per run, no pickles), shared by the processes
of one server. The first run to need a start takes the key's lock and chooses it; a run with the same key
that comes meanwhile waits on the lock (no CPU) and then replays the record: the same candidate partitions,
scores and messages are shown, and the trainer is loaded with the state :meth:`~vmonf.train.Trainer.initialize`
made (:meth:`~vmonf.train.Trainer.set_start_state`). A start that was cut short (a stop during the choice) is
not kept. A record that cannot be read (a cut-off file, another model) is chosen again, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: Records a memo folder keeps; the oldest go first. A default 2-D run's record is ~0.5 MB.
KEEP = 32
ENV = "VMONF_START_MEMO"


def start_key(x: np.ndarray, labels: np.ndarray | None, x_perturbed: np.ndarray | None, model_config, config,
              val_fraction: float, device) -> str:
    """What a start depends on, hashed: the data (its bytes), the labels, the perturbed copies, the model's
    config, the training recipe (seed included), the held-out share and the device type."""
    h = hashlib.sha256()
    for a in (x, labels, x_perturbed):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    settings = {"model": asdict(model_config), "train": asdict(config), "val": float(val_fraction),
                "device": str(getattr(device, "type", device))}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


@dataclass
class StartRecord:
    """A chosen start: the events :func:`vmonf.starts.choose_start` sent (their partitions over the training
    rows), the :class:`~vmonf.starts.FitResult` fields, and the trainer's state after ``initialize``."""

    events: list[dict] = field(default_factory=list)  # stage, candidate, index, total, score, trainer (bool)
    partitions: list[np.ndarray | None] = field(default_factory=list)  # one per event
    init_method: str = ""
    candidates: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    criterion: str = ""
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {"events": self.events, "init_method": self.init_method, "candidates": self.candidates,
                "skipped": self.skipped, "criterion": self.criterion}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for i, p in enumerate(self.partitions):
            if p is not None:
                arrays[f"partition/{i}"] = np.asarray(p, dtype=np.int64)
        arrays.update({f"state/{k}": v for k, v in self.state.items()})
        return arrays

    @staticmethod
    def from_arrays(arrays) -> StartRecord:
        meta = json.loads(bytes(arrays["meta"]).decode())
        events = list(meta["events"])
        return StartRecord(
            events=events,
            partitions=[arrays[f"partition/{i}"] if f"partition/{i}" in arrays else None for i in range(len(events))],
            init_method=str(meta["init_method"]), candidates={k: float(v) for k, v in meta["candidates"].items()},
            skipped=dict(meta["skipped"]), criterion=str(meta["criterion"]),
            state={k[len("state/"):]: arrays[k] for k in arrays if k.startswith("state/")})


class StartMemo:
    """A folder of :class:`StartRecord` files, one per :func:`start_key`, with a lock file per key."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @staticmethod
    def from_env() -> StartMemo | None:
        """The memo the server named in ``VMONF_START_MEMO`` (:mod:`vmonf.studio.pool`), if any."""
        folder = os.environ.get(ENV)
        return StartMemo(folder) if folder and Path(folder).is_dir() else None

    def load(self, key: str) -> StartRecord | None:
        try:
            with np.load(self.folder / f"{key}.npz", allow_pickle=False) as npz:
                return StartRecord.from_arrays({k: npz[k] for k in npz.files})
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # none yet, or unreadable: choose again

    def save(self, key: str, record: StartRecord) -> None:
        """Write ``record`` atomically (a reader sees the whole file or none), then drop the oldest beyond
        :data:`KEEP`. A full disk loses the record, never the run."""
        from vmonf.checkpoint import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **record.to_arrays())
        with contextlib.suppress(OSError):
            atomic_write_bytes(self.folder / f"{key}.npz", buffer.getvalue())
            files = sorted(self.folder.glob("*.npz"), key=lambda p: p.stat().st_mtime)
            for old in files[:-KEEP]:
                with contextlib.suppress(OSError):
                    old.unlink()
                    (old.with_suffix(".lock")).unlink()

    @contextlib.contextmanager
    def hold(self, key: str, give_up=lambda: False, poll: float = 0.05):
        """Hold ``key``'s lock while the caller reads or makes its record; yields ``True`` when held. While
        another process holds it, wait (checking ``give_up()`` every ``poll`` s: ``True`` stops waiting and
        yields ``False``, e.g. a stop pressed meanwhile). The lock goes with the process that held it."""
        try:
            f = open(self.folder / f"{key}.lock", "a+b")  # noqa: SIM115  (held across the yield)
        except OSError:
            yield False
            return
        try:
            import fcntl
        except ImportError:  # not a POSIX system: records are still shared, only not waited for
            f.close()
            yield True
            return
        with f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if give_up():
                        yield False
                        return
                    time.sleep(poll)
                except OSError:
                    yield False
                    return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

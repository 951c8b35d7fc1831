"""Immutable, numpy-only pictures of a training run (:class:`Snapshot`) and a bounded :class:`Recording`.

The training side builds snapshots with :mod:`vmonf.studio.capture` (torch, in the worker); the UI only ever
reads them, and this module needs numpy alone.
They cross process boundaries as ``.npz`` bytes (no pickle): :meth:`Snapshot.to_bytes` / :meth:`Snapshot.from_bytes`.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True, eq=False)  # equal only to itself (cheap; a frame's arrays are never compared)
class Snapshot:
    """One moment of a run. ``meta`` holds numbers and strings; ``arrays`` holds read-only numpy arrays.

    Common ``meta`` keys: step, steps_per_sec, elapsed, state, elbo, val_loglik, ari, nmi, accuracy.
    Common ``arrays``: hist_step, hist_elbo, hist_val_loglik, hist_pi (H, K), hist_ari, grid_x, grid_y,
    log_density (G, G), comp_log_density (K, G, G), q_grid_assign / q_grid_conf and p_grid_assign /
    p_grid_conf (G, G: argmax and max of q(c|x) and of p(c|x)), warp (K, lines, points, 2: a base-space
    grid pushed through each flow), points (P, D), assign (P,), confidence (P,),
    y_true (P,), labelled (P,), samples (S, D), sample_comp (S,), component_images (K, m, h, w),
    contingency (K, C), pi (K,), qp_gap (P,): half the L1 distance between q(c|x) and p(c|x) at each point.
    """

    meta: MappingProxyType
    arrays: MappingProxyType

    @staticmethod
    def create(meta: dict, arrays: dict[str, np.ndarray]) -> Snapshot:
        frozen = {}
        for k, v in arrays.items():
            a = np.array(v)  # a private copy
            a.setflags(write=False)
            frozen[k] = a
        return Snapshot(MappingProxyType(dict(meta)), MappingProxyType(frozen))

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(json.dumps(dict(self.meta))), **dict(self.arrays))
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Snapshot:
        """Decode :meth:`to_bytes` output; never unpickles (``allow_pickle=False``)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
        return Snapshot.create(meta, arrays)


@dataclass
class Recording:
    """The frames of a run, at most ``max_frames`` of them whatever the run's length.

    When full, every second frame is dropped and the keep-stride doubles, so the frames stay evenly
    spread over the whole run and in step order. Thread-safe.
    """

    max_frames: int = 200
    frames: list[Snapshot] = field(default_factory=list)
    stride: int = 1
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append(self, snap: Snapshot) -> None:
        with self._lock:
            if self._seen % self.stride == 0:
                self.frames.append(snap)
                if len(self.frames) > self.max_frames:
                    self.frames = self.frames[::2]
                    self.stride *= 2
            self._seen += 1

    def insert(self, snap: Snapshot) -> None:
        """Add a frame that arrives after later ones (a run's start, drawn after its first trained frame), in
        step order."""
        with self._lock:
            at = next((i for i, f in enumerate(self.frames) if f.step > snap.step), len(self.frames))
            self.frames.insert(at, snap)
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[::2]
                self.stride *= 2
            self._seen += 1

    def snapshot_list(self) -> list[Snapshot]:
        with self._lock:
            return list(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

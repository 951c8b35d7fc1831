"""Immutable, numpy-only pictures of a training run (:class:`Snapshot`) and a bounded :class:`Recording`.

The training side builds snapshots with :mod:`vmonf.studio.capture` (torch, in the worker); the UI only ever
reads them, and this module needs numpy alone.
Saved in run files as ``.npz`` bytes (:meth:`Snapshot.to_bytes` / :meth:`Snapshot.from_bytes`); from the worker to
the server as :func:`pack` bytes (:meth:`Snapshot.to_wire` / :meth:`Snapshot.from_wire`). Neither ever unpickles.
"""

from __future__ import annotations

import io
import json
import math
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

#: What a light frame (``take_snapshot(..., full=False)``) leaves out: the warp lines and the per-point and
#: per-component numbers that need every point through every flow once more. They were ~30 % of an idle frame of
#: the default playground run; the live app draws most frames light and fills them in from its last full one
#: (:meth:`Snapshot.filled_from`; docs/RESULTS.md, "Light frames").
LIGHT_SKIPS = ("warp", "qp_gap", "comp_share", "comp_loglik")


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

    A light frame (``meta["light"]``) lacks the warp lines and the per-point and per-component numbers; the live
    app fills them in from its last full frame (:meth:`filled_from`), and ``meta["heavy_step"]`` then names that
    frame's step.
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

    def filled_from(self, full: Snapshot, names: tuple[str, ...] = LIGHT_SKIPS) -> Snapshot:
        """This light frame with the arrays ``names`` it lacks taken from the full frame ``full`` (an earlier
        one of the same run), and ``meta["heavy_step"]``: the step they show. Itself where ``full`` shows
        other points (edited since), as its per-point arrays would not fit."""
        points, old = self.get("points"), full.get("points")
        if points is None or old is None or not np.array_equal(points, old):
            return self
        taken = {k: full.arrays[k] for k in names if k not in self.arrays and k in full.arrays}
        # The arrays are read-only already: shared, not copied (Snapshot.create would copy them).
        return Snapshot(MappingProxyType({**self.meta, "heavy_step": full.step}),
                        MappingProxyType({**self.arrays, **taken}))

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

    def to_wire(self) -> bytes:
        """The frame as :func:`pack` bytes: what a worker sends its server, several times a second."""
        return pack(dict(self.meta), self.arrays)

    @staticmethod
    def from_wire(data: bytes) -> Snapshot:
        """Decode :meth:`to_wire` output. The arrays are read-only views of ``data``, not copies."""
        meta, arrays = unpack(data)
        return Snapshot(MappingProxyType(meta), MappingProxyType(arrays))


_WIRE = b"VMW1"


def pack(meta: dict, arrays: Mapping[str, np.ndarray]) -> bytes:
    """``meta`` (JSON) and numeric ``arrays`` as one buffer: a header naming each array's dtype, shape and place,
    then their bytes. :func:`unpack` reads it back without a copy. An ``.npz`` of a live frame (~30 arrays, ~200 KB)
    took 1-2 ms to write and 3-5 ms to read back as frozen copies (docs/RESULTS.md, "Light frames")."""
    index, chunks, offset = [], [], 0
    for name, a in arrays.items():
        a = np.asarray(a)  # (np.ascontiguousarray would make a 0-d array 1-d)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects")
        index.append([name, a.dtype.str, list(a.shape), offset])
        chunks.append(a.tobytes(order="C"))
        offset += a.nbytes
    head = json.dumps({"meta": meta, "arrays": index}).encode()
    return b"".join([_WIRE, struct.pack("<I", len(head)), head, *chunks])


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``(meta, arrays)`` of :func:`pack` bytes; the arrays are read-only views of ``data``. Raises
    ``ValueError`` for anything else (never unpickles: an object dtype is refused)."""
    if data[:4] != _WIRE:
        raise ValueError("not a packed frame")
    try:
        (size,) = struct.unpack_from("<I", data, 4)
        head = json.loads(data[8: 8 + size])
        base, arrays = 8 + size, {}
        for name, dtype, shape, offset in head["arrays"]:
            dt = np.dtype(dtype)
            if dt.hasobject:
                raise ValueError(f"array {name!r} holds Python objects")
            arrays[name] = np.frombuffer(data, dt, math.prod(shape), base + offset).reshape(tuple(shape))
        return head["meta"], arrays
    except (struct.error, TypeError, KeyError) as exc:
        raise ValueError(f"a damaged packed frame: {exc}") from exc


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

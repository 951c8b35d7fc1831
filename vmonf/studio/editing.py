"""Points drawn or edited by hand on the playground's chart: a :class:`PointSet` and its :class:`Editor` (undo).

Numpy only. A point set is the data a run trains on when the user draws their own or edits a toy set:
positions, the true cluster where it is known (a toy set's points) and the label the user gave, if any
(the brush's cluster: semi-supervised data). It goes into a :class:`~vmonf.studio.worker.JobSpec` as
``dataset="csv"`` with ``points``, ``point_labels`` and ``given_labels``, into a share link when it is small
(:func:`to_query` / :func:`from_query`) and into a CSV download (:meth:`PointSet.to_csv`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: At most this many points go into a share link (about 12 characters each); more are shared as a CSV.
MAX_SHARED_POINTS = 300
#: At most this many points can be drawn or kept (what an uploaded CSV may hold).
MAX_POINTS = 20_000
#: Undo steps kept.
UNDO_DEPTH = 50


@dataclass(frozen=True, eq=False)
class PointSet:
    """2-D points (``x``, float32 ``(N, 2)``), their true clusters (``truth``, -1 unknown; ``None`` when none is
    known) and the labels given by hand (``given``, -1 unlabelled). Every edit returns a new set."""

    x: np.ndarray
    truth: np.ndarray | None
    given: np.ndarray

    @staticmethod
    def create(x, truth=None, given=None) -> PointSet:
        x = np.asarray(x, dtype=np.float32).reshape(-1, 2)
        truth = None if truth is None else np.asarray(truth, dtype=np.int64).reshape(-1)
        given = np.full(len(x), -1, np.int64) if given is None else np.asarray(given, dtype=np.int64).reshape(-1)
        if (truth is not None and len(truth) != len(x)) or len(given) != len(x):
            raise ValueError("Every point needs one true label and one given label (-1 for none).")
        if not np.isfinite(x).all():
            raise ValueError("Points must be finite numbers.")
        if truth is not None and not (truth >= 0).any():
            truth = None  # no point's cluster is known
        return PointSet(x, truth, given)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_given(self) -> int:
        return int((self.given >= 0).sum())

    def add(self, points, label: int = -1) -> PointSet:
        """These points added, each given ``label`` (-1: unlabelled); their true cluster is unknown."""
        new = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        new = new[np.isfinite(new).all(1)][: max(0, MAX_POINTS - len(self))]
        truth = None if self.truth is None else np.concatenate([self.truth, np.full(len(new), -1, np.int64)])
        return PointSet.create(np.concatenate([self.x, new]), truth,
                               np.concatenate([self.given, np.full(len(new), int(label), np.int64)]))

    def keep(self, rows: np.ndarray) -> PointSet:
        rows = np.asarray(rows)
        return PointSet.create(self.x[rows], None if self.truth is None else self.truth[rows], self.given[rows])

    def inside_box(self, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        (xa, xb), (ya, yb) = sorted((x0, x1)), sorted((y0, y1))
        return (self.x[:, 0] >= xa) & (self.x[:, 0] <= xb) & (self.x[:, 1] >= ya) & (self.x[:, 1] <= yb)

    def inside_polygon(self, xs, ys) -> np.ndarray:
        """Points inside the closed polygon through ``(xs[i], ys[i])`` (even-odd rule)."""
        px, py = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        inside = np.zeros(len(self), bool)
        if len(px) < 3:
            return inside
        x, y = self.x[:, 0].astype(np.float64), self.x[:, 1].astype(np.float64)
        for ax, ay, bx, by in zip(px, py, np.roll(px, 1), np.roll(py, 1), strict=True):
            crosses = (ay > y) != (by > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = ax + (y - ay) * (bx - ax) / (by - ay)
            inside ^= crosses & (x < at)
        return inside

    def nearest(self, x: float, y: float, within: float) -> int | None:
        """The point nearest to ``(x, y)`` if it lies within ``within`` (in data units), else ``None``."""
        if not len(self):
            return None
        d = np.hypot(self.x[:, 0] - x, self.x[:, 1] - y)
        i = int(d.argmin())
        return i if d[i] <= within else None

    def labelled(self, row: int, label: int) -> PointSet:
        given = self.given.copy()
        given[int(row)] = int(label)
        return PointSet.create(self.x, self.truth, given)

    def to_csv(self) -> bytes:
        """``x,y,label`` rows (the label: the one given, else the true cluster; blank when neither is known),
        which the playground's CSV upload reads back."""
        label = self.given if self.truth is None else np.where(self.given >= 0, self.given, self.truth)
        rows = ["x,y,label"] + [f"{a:.6g},{b:.6g}," + (str(int(c)) if c >= 0 else "")
                                for (a, b), c in zip(self.x.tolist(), label.tolist(), strict=True)]
        return ("\n".join(rows) + "\n").encode()


def spray(path, scale: float, per_point: int = 3, seed: int = 0) -> np.ndarray:
    """Points sprayed along a mouse drag: each point of ``path`` and ``per_point - 1`` more scattered around it
    (Gaussian, ``scale`` data units)."""
    path = np.asarray(path, dtype=np.float32).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    extra = np.repeat(path, max(0, per_point - 1), axis=0)
    extra = extra + rng.normal(0.0, scale, extra.shape).astype(np.float32)
    return np.concatenate([path, extra])


@dataclass
class Editor:
    """A point set under edit, with undo. ``base`` names the data it started from (a toy set's settings);
    ``bounds`` is the plane the chart shows while editing, ``[x0, x1, y0, y1]``, kept so the axes never move
    under the mouse."""

    points: PointSet
    base: tuple
    bounds: list[float]
    history: list[PointSet] = field(default_factory=list)
    edits: int = 0  # edits made (tells a caller that the set changed)

    def apply(self, new: PointSet) -> None:
        if new is self.points:
            return
        self.history = [*self.history, self.points][-UNDO_DEPTH:]
        self.points = new
        self.edits += 1

    def undo(self) -> bool:
        if not self.history:
            return False
        self.points, self.history = self.history[-1], self.history[:-1]
        self.edits += 1
        return True

    def clear(self) -> None:
        self.apply(PointSet.create(np.zeros((0, 2), np.float32)))

    @property
    def span(self) -> float:
        x0, x1, y0, y1 = self.bounds
        return float(max(x1 - x0, y1 - y0))


def bounds_of(x: np.ndarray, margin: float = 0.15, least: float = 8.0) -> list[float]:
    """A plane around the points ``x``: their box with ``margin`` on each side, and ``least`` units wide at
    least (the empty drawing canvas is ``[-4, 4]`` square)."""
    if len(x):
        lo, hi = x.min(0).astype(float), x.max(0).astype(float)
    else:
        lo = hi = np.zeros(2)
    pad = margin * (hi - lo)
    lo, hi = lo - pad, hi + pad
    mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, least / 2 if not len(x) else 1e-3)
    return [float(mid[0] - half[0]), float(mid[0] + half[0]), float(mid[1] - half[1]), float(mid[1] + half[1])]


def to_query(points: PointSet) -> str | None:
    """A short text for a share link: ``x,y[,label];…`` with 3 decimals; ``None`` when there are more than
    :data:`MAX_SHARED_POINTS` points."""
    if len(points) > MAX_SHARED_POINTS:
        return None
    parts = []
    for (a, b), g in zip(points.x.tolist(), points.given.tolist(), strict=True):
        parts.append(f"{a:.3f},{b:.3f}" + (f",{g}" if g >= 0 else ""))
    return ";".join(parts)


def from_query(text: str, max_label: int) -> PointSet:
    """Parse :func:`to_query`'s text from an untrusted link; ``ValueError`` saying what is wrong."""
    items = [p for p in str(text).split(";") if p.strip()]
    if len(items) > MAX_SHARED_POINTS:
        raise ValueError(f"a link holds at most {MAX_SHARED_POINTS} points, this one {len(items)}")
    xs, given = [], []
    for i, item in enumerate(items, start=1):
        cells = item.split(",")
        try:
            if len(cells) not in (2, 3):
                raise ValueError
            a, b = float(cells[0]), float(cells[1])
            g = int(cells[2]) if len(cells) == 3 else -1
        except ValueError:
            raise ValueError(f"point {i} ({item[:20]!r}) is not x,y or x,y,label") from None
        if not (np.isfinite(a) and np.isfinite(b)) or not -1 <= g < max_label:
            raise ValueError(f"point {i} ({item[:20]!r}) is out of range")
        xs.append((a, b))
        given.append(g)
    return PointSet.create(np.array(xs, np.float32).reshape(-1, 2), None, given)


#: What "Suggest a point" ranks by: the snapshot's per-point array, and its sign (the lowest ``sign * value`` wins).
SUGGEST = {"q is least sure": ("confidence", 1), "q and p(c|x) disagree most": ("qp_gap", -1)}


def suggest_point(snap, exclude=(), rule: str = "q is least sure") -> int | None:
    """The unlabelled point of the frame ``snap`` most useful to label next (an index into its points): where
    q(c|x) is least sure (lowest top probability), or where q(c|x) and the flows' exact p(c|x) disagree most
    (largest half-L1 distance, ``qp_gap``). Points in ``exclude`` and labelled ones are never suggested;
    ``None`` when no point is left or the frame has no model yet."""
    name, sign = SUGGEST[rule]
    values = snap.get(name)
    if values is None or snap.meta.get("stage", "training") == "data":
        return None
    score = sign * values.astype(float)
    score[list(exclude)] = np.inf
    if snap.get("labelled") is not None:
        score[snap.get("labelled").astype(bool)] = np.inf
    return None if not np.isfinite(score).any() else int(score.argmin())

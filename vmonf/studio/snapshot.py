"""Immutable, numpy-only pictures of a training run (:class:`Snapshot`) and a bounded :class:`Recording`.

The training side builds snapshots with :func:`take_snapshot`; the UI only ever reads them.
They cross process boundaries as ``.npz`` bytes (no pickle): :meth:`Snapshot.to_bytes` / :meth:`Snapshot.from_bytes`.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads lazily: the UI reads snapshots without importing it
    import torch

    from vmonf.model import VMoNFModel


@dataclass(frozen=True, eq=False)  # equal only to itself (cheap; a frame's arrays are never compared)
class Snapshot:
    """One moment of a run. ``meta`` holds numbers and strings; ``arrays`` holds read-only numpy arrays.

    Common ``meta`` keys: step, steps_per_sec, elapsed, state, elbo, val_loglik, ari, nmi, accuracy.
    Common ``arrays``: hist_step, hist_elbo, hist_val_loglik, hist_pi (H, K), hist_ari, grid_x, grid_y,
    log_density (G, G), comp_log_density (K, G, G), q_grid_assign / q_grid_conf and p_grid_assign /
    p_grid_conf (G, G: argmax and max of q(c|x) and of p(c|x)), warp (K, lines, points, 2: a base-space
    grid pushed through each flow), points (P, D), assign (P,), confidence (P,),
    y_true (P,), labelled (P,), samples (S, D), sample_comp (S,), component_images (K, m, h, w),
    contingency (K, C), pi (K,).
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

    def snapshot_list(self) -> list[Snapshot]:
        with self._lock:
            return list(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class View:
    """What a snapshot shows: a fixed subset of points, a fixed grid, fixed sample noise."""

    points: np.ndarray  # (P, D) points to colour by cluster
    y_true: np.ndarray | None  # (P,) their true labels, if known
    labelled: np.ndarray | None  # (P,) bool, points whose label the model was given
    grid_x: np.ndarray | None = None  # (G,) grid for 2-D densities
    grid_y: np.ndarray | None = None
    n_samples: int = 300  # samples drawn from the model per snapshot (2-D)
    per_component_images: int = 6  # image data: samples per component shown as images
    to_images: object = None  # image data: callable features -> (n, h, w)
    component_densities: bool = True  # 2-D: also evaluate every component's density
    index: np.ndarray | None = None  # (P,) rows of the data set the points are


def make_view(x: np.ndarray, y: np.ndarray | None, labelled: np.ndarray | None = None, *, max_points: int = 2000,
              grid: int = 64, seed: int = 0, margin: float = 0.15, **kw) -> View:
    """Pick the points and grid once per run, so frames line up and axes never jump."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(x))[:max_points])
    gx = gy = None
    if x.shape[1] == 2 and grid > 0:
        lo, hi = x.min(0), x.max(0)
        pad = margin * (hi - lo)
        gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid, dtype=np.float32)
        gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid, dtype=np.float32)
    return View(x[idx], None if y is None else y[idx], None if labelled is None else labelled[idx], gx, gy, index=idx,
                **kw)


def data_snapshot(view: View, k: int, meta: dict, assign: np.ndarray | None = None) -> Snapshot:
    """A frame of the data alone, before any model exists: every point unassigned (``assign`` -1), or
    coloured by a starting partition ``assign`` (one value per point of the view). No density yet."""
    n = len(view.points)
    arrays = {"points": view.points.astype(np.float32), "pi": np.full(k, 1.0 / k, dtype=np.float32),
              "assign": (np.full(n, -1) if assign is None else assign).astype(np.int16),
              "confidence": np.ones(n, dtype=np.float32)}
    if view.y_true is not None:
        arrays["y_true"] = view.y_true.astype(np.int16)
    if view.labelled is not None:
        arrays["labelled"] = view.labelled
    if view.grid_x is not None:
        arrays.update(grid_x=view.grid_x, grid_y=view.grid_y)
    meta = dict(meta)
    if assign is not None and view.y_true is not None:
        from vmonf.metrics import clustering_scores

        known = assign >= 0  # held-out points have no place in the partition
        meta.update(clustering_scores(view.y_true[known], assign[known].astype(np.int64)))
    return Snapshot.create(meta, arrays)


def take_snapshot(model: VMoNFModel, view: View, history: list[dict], meta: dict, seed: int = 0) -> Snapshot:
    """Evaluate the model on the view: densities on the grid, assignments, samples, metrics.

    Adds this frame's ``ari`` and ``nmi`` to ``history[-1]`` when true labels are known.
    """
    import torch

    with torch.no_grad():
        return _take_snapshot(model, view, history, meta, seed)


def _take_snapshot(model: VMoNFModel, view: View, history: list[dict], meta: dict, seed: int) -> Snapshot:
    import torch

    from vmonf.metrics import clustering_scores, contingency
    from vmonf.train import chunked
    device = model.shift.device
    model.eval()
    pts = torch.as_tensor(view.points, device=device)
    q = chunked(lambda t: model.posterior_log_probs(t).exp(), pts)
    conf, assign = q.max(1)
    arrays: dict[str, np.ndarray] = {
        "points": view.points.astype(np.float32), "assign": assign.cpu().numpy().astype(np.int16),
        "confidence": conf.cpu().numpy().astype(np.float32), "pi": model.log_pi.exp().cpu().numpy(),
    }
    arrays.update(_component_table(model, pts))
    meta = dict(meta)
    if view.y_true is not None:
        arrays["y_true"] = view.y_true.astype(np.int16)
        scores = clustering_scores(view.y_true, arrays["assign"].astype(np.int64))
        meta.update(scores)
        if history:  # so the ARI/NMI curves include this frame
            history[-1].update(ari=scores["ari"], nmi=scores["nmi"])
        if view.to_images is not None:
            arrays["contingency"] = contingency(view.y_true, arrays["assign"].astype(np.int64),
                                                model.config.n_components)
    if view.labelled is not None:
        arrays["labelled"] = view.labelled
    gen = torch.Generator(device=device).manual_seed(seed)
    if view.grid_x is not None:
        gx, gy = torch.as_tensor(view.grid_x, device=device), torch.as_tensor(view.grid_y, device=device)
        xx, yy = torch.meshgrid(gx, gy, indexing="xy")
        grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
        g = len(view.grid_x)
        comp = chunked(model.component_log_prob, grid)  # (G*G, K)
        log_mix = torch.logsumexp(comp + model.log_pi, -1)
        arrays.update(grid_x=view.grid_x, grid_y=view.grid_y,
                      log_density=log_mix.reshape(len(view.grid_y), g).cpu().numpy().astype(np.float32))
        if view.component_densities:
            arrays["comp_log_density"] = comp.T.reshape(-1, len(view.grid_y), g).cpu().numpy().astype(np.float32)
        # The variational posterior q(c|x) and the exact one p(c|x) on the grid: cluster and confidence.
        shape = (len(view.grid_y), g)
        for name, probs in (("q", chunked(lambda t: model.posterior_log_probs(t).exp(), grid)),
                            ("p", torch.softmax(comp + model.log_pi, -1))):
            conf, arg = probs.max(-1)
            arrays[f"{name}_grid_assign"] = arg.reshape(shape).cpu().numpy().astype(np.int16)
            arrays[f"{name}_grid_conf"] = conf.reshape(shape).cpu().numpy().astype(np.float32)
        arrays["warp"] = _warp_lines(model).cpu().numpy().astype(np.float32)
        s, c = model.sample(view.n_samples, generator=gen)
        arrays.update(samples=s.cpu().numpy().astype(np.float32), sample_comp=c.cpu().numpy().astype(np.int16))
    if view.to_images is not None:
        k, m = model.config.n_components, view.per_component_images
        feats = torch.cat([model.sample(m, component=c, generator=gen)[0] if model.active[c]
                           else torch.full((m, model.config.dim), float("nan")) for c in range(k)])
        imgs = np.nan_to_num(view.to_images(feats.cpu().numpy()), nan=0.0)  # a removed component shows blanks
        arrays["component_images"] = imgs.reshape(k, m, *imgs.shape[1:]).astype(np.float32)
    arrays.update(_history_arrays(history, model.config.n_components))
    if history:
        last = history[-1]
        meta.update({key: last[key] for key in ("val_elbo", "val_loglik", "val_expected_loglik",
                                                "val_expected_logprior", "val_entropy") if key in last})
    model.train()
    return Snapshot.create(meta, arrays)


def _component_table(model: VMoNFModel, pts: torch.Tensor) -> dict[str, np.ndarray]:
    """Per component: still in the mixture, flow parameters of its own, share of the points (mean p(c|x)),
    and the mean log p(x|c) of the points it explains (NaN for a removed one): the complexity balance."""
    import torch

    from vmonf.train import chunked

    comp = chunked(model.component_log_prob, pts)  # (N, K)
    r = torch.softmax(comp + model.log_pi, -1)
    share = r.mean(0)
    loglik = (r * comp).sum(0) / r.sum(0).clamp_min(1e-12)
    active = model.active
    return {"active": active.cpu().numpy().astype(np.int8),
            "comp_params": np.asarray(model.component_parameter_counts()[0], dtype=np.int64),
            "comp_share": share.cpu().numpy().astype(np.float32),
            "comp_loglik": torch.where(active, loglik, torch.nan).cpu().numpy().astype(np.float32)}


def _warp_lines(model: VMoNFModel, n_lines: int = 13, n_points: int = 40, extent: float = 2.5) -> torch.Tensor:
    """A square grid of lines in the base space, pushed through every component's flow to data space.

    Returns ``(K, 2 * n_lines, n_points, 2)``: for component k, the images of the horizontal and the
    vertical lines of the grid ``[-extent, extent]^2``. Shows students how each flow bends space.
    """
    import torch

    ticks = torch.linspace(-extent, extent, n_lines, device=model.shift.device)
    along = torch.linspace(-extent, extent, n_points, device=model.shift.device)
    horiz = torch.stack([along.expand(n_lines, -1), ticks[:, None].expand(-1, n_points)], -1)
    lines = torch.cat([horiz, horiz.flip(-1)])  # (2L, P, 2): horizontal, then vertical lines
    k = model.config.n_components
    z = lines.reshape(1, -1, 2).expand(k, -1, -1).contiguous()
    x, _ = model.flows.inverse(z)
    return (x * model.scale + model.shift).reshape(k, *lines.shape)


def _history_arrays(history: list[dict], k: int) -> dict[str, np.ndarray]:
    def col(name):
        return np.array([row.get(name, np.nan) for row in history], dtype=np.float32)

    pi = np.array([row["pi"] for row in history], dtype=np.float32).reshape(-1, k)
    return {"hist_step": col("step"), "hist_elbo": col("val_elbo"), "hist_val_loglik": col("val_loglik"),
            "hist_ari": col("ari"), "hist_nmi": col("nmi"), "hist_pi": pi}

"""Capturing :class:`~vmonf.studio.snapshot.Snapshot` frames from a model (torch; runs in the worker or the CLI).

A :class:`View` fixes what every frame of a run shows (points, grid, sample noise), so frames line up.
:func:`take_snapshot` evaluates the model on it and leaves both the model's mode and the caller's history
as they were; :func:`record_scores` is how a caller keeps the frame's ARI/NMI in its curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vmonf.studio.snapshot import Snapshot

if TYPE_CHECKING:  # torch loads lazily: a preview frame of the data needs numpy alone
    import torch

    from vmonf.model import VMoNFModel


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
    given: np.ndarray | None = None  # (P,) the label each labelled point was given (-1: none)


def make_view(x: np.ndarray, y: np.ndarray | None, labels: np.ndarray | None = None, *, max_points: int = 2000,
              grid: int = 64, seed: int = 0, margin: float = 0.15, bounds: list | None = None, **kw) -> View:
    """Pick the points and grid once per run, so frames line up and axes never jump.

    ``labels`` are the labels revealed to training (-1 unlabelled), or a mask of the points whose true cluster
    was revealed; ``y`` the true clusters (-1 where unknown).
    The grid spans the points with ``margin`` on each side, or ``bounds`` (``[x0, x1, y0, y1]``, e.g. a
    drawing canvas) and the points with it.
    """
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(x))[:max_points])
    gx = gy = None
    if x.shape[1] == 2 and grid > 0:
        lo, hi = (x.min(0), x.max(0)) if len(x) else (np.zeros(2, np.float32), np.zeros(2, np.float32))
        pad = margin * (hi - lo)
        lo, hi = lo - pad, hi + pad
        if bounds is not None:
            lo = np.minimum(lo, [bounds[0], bounds[2]]) if len(x) else np.array([bounds[0], bounds[2]])
            hi = np.maximum(hi, [bounds[1], bounds[3]]) if len(x) else np.array([bounds[1], bounds[3]])
        hi = np.where(hi - lo > 1e-6, hi, lo + 1.0)  # one point, or points on a line: still a plane
        gx = np.linspace(lo[0], hi[0], grid, dtype=np.float32)
        gy = np.linspace(lo[1], hi[1], grid, dtype=np.float32)
    labels = None if labels is None else np.asarray(labels)
    if labels is not None and labels.dtype == bool:
        labels = np.where(labels, y, -1) if y is not None else None
    given = None if labels is None else labels[idx]
    return View(x[idx], None if y is None else y[idx], None if given is None else given >= 0, gx, gy, index=idx,
                given=given, **kw)


def data_snapshot(view: View, k: int, meta: dict, assign: np.ndarray | None = None) -> Snapshot:
    """A frame of the data alone, before any model exists: every point unassigned (``assign`` -1), or
    coloured by a starting partition ``assign`` (one value per point of the view). No density yet."""
    n = len(view.points)
    arrays = {"points": view.points.astype(np.float32), "pi": np.full(k, 1.0 / k, dtype=np.float32),
              "assign": (np.full(n, -1) if assign is None else assign).astype(np.int16),
              "confidence": np.ones(n, dtype=np.float32)}
    _label_arrays(view, arrays)
    if view.grid_x is not None:
        arrays.update(grid_x=view.grid_x, grid_y=view.grid_y)
    meta = dict(meta)
    if assign is not None and view.y_true is not None:
        from vmonf.metrics import clustering_scores

        known = (assign >= 0) & (view.y_true >= 0)  # held-out points have no place in the partition
        if known.any():
            meta.update(clustering_scores(view.y_true[known], assign[known].astype(np.int64)))
    return Snapshot.create(meta, arrays)


def _label_arrays(view: View, arrays: dict) -> None:
    """The view's true clusters (``y_true``, -1 unknown), which points were labelled and with what."""
    if view.y_true is not None:
        arrays["y_true"] = view.y_true.astype(np.int16)
    if view.labelled is not None:
        arrays["labelled"] = view.labelled
        if view.given is not None:
            arrays["given"] = view.given.astype(np.int16)


def take_snapshot(model: VMoNFModel, view: View, history: list[dict], meta: dict, seed: int = 0, *,
                  full: bool = True) -> Snapshot:
    """Evaluate the model on the view: densities on the grid, assignments, samples, metrics. q is taken at
    ``meta["temperature"]`` when given (the one training is at), else at 1. With ``full=False`` the frame is
    light: it leaves out :data:`~vmonf.studio.snapshot.LIGHT_SKIPS` and says so in ``meta["light"]``; the rest
    is what a full frame has.

    ``history`` (the run's curve rows, last row this step's) is read, not changed: the frame's curves include
    its own ARI/NMI, and :func:`record_scores` keeps them in ``history`` for later frames. The model is
    evaluated in eval mode and handed back in the mode it came in.
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.flows.same_weights():
            return _take_snapshot(model, view, history, meta, seed, full)
    finally:
        model.train(was_training)


def record_scores(history: list[dict], snap: Snapshot) -> None:
    """Keep a frame's clustering scores (when it has them) in its history row, so later curves show them."""
    if history and "ari" in snap.meta:
        history[-1].update(ari=snap.meta["ari"], nmi=snap.meta["nmi"])


def _take_snapshot(model: VMoNFModel, view: View, history: list[dict], meta: dict, seed: int,
                   full: bool) -> Snapshot:
    import torch

    from vmonf.metrics import clustering_scores, contingency
    from vmonf.train import chunked
    device = model.shift.device
    pts = torch.as_tensor(view.points, device=device)
    temperature = float(meta.get("temperature", 1.0))  # q as training has it at this step (evaluation_row)
    q = chunked(lambda t: model.posterior_log_probs(t, temperature).exp(), pts)
    conf, assign = q.max(1)
    arrays: dict[str, np.ndarray] = {
        "points": view.points.astype(np.float32), "assign": assign.cpu().numpy().astype(np.int16),
        "confidence": conf.cpu().numpy().astype(np.float32), "pi": model.log_pi.exp().cpu().numpy(),
    }
    arrays.update(_component_table(model, pts, q, full))
    meta = dict(meta)
    if not full:
        meta["light"] = True
    _label_arrays(view, arrays)
    known = None if view.y_true is None else view.y_true >= 0  # drawn points have no true cluster
    if known is not None and known.any():
        scores = clustering_scores(view.y_true[known], arrays["assign"][known].astype(np.int64))
        meta.update(scores)
        if history:  # this frame's curves include its own scores
            history = [*history[:-1], {**history[-1], "ari": scores["ari"], "nmi": scores["nmi"]}]
        if view.to_images is not None:
            arrays["contingency"] = contingency(view.y_true[known], arrays["assign"][known].astype(np.int64),
                                                model.config.n_components)
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
        for name, probs in (("q", chunked(lambda t: model.posterior_log_probs(t, temperature).exp(), grid)),
                            ("p", torch.softmax(comp + model.log_pi, -1))):
            conf, arg = probs.max(-1)
            arrays[f"{name}_grid_assign"] = arg.reshape(shape).cpu().numpy().astype(np.int16)
            arrays[f"{name}_grid_conf"] = conf.reshape(shape).cpu().numpy().astype(np.float32)
        if full:
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
    return Snapshot.create(meta, arrays)


def _component_table(model: VMoNFModel, pts: torch.Tensor, q: torch.Tensor, full: bool = True) -> dict[str, np.ndarray]:
    """Per component: still in the mixture, flow parameters of its own, share of the points (mean p(c|x)),
    and the mean log p(x|c) of the points it explains (NaN for a removed one): the complexity balance.
    Per point (``qp_gap``): how far q(c|x) is from the exact p(c|x), half their L1 distance (0 to 1).
    Without ``full``, only the first two (the rest need the points through every flow)."""
    import torch

    from vmonf.train import chunked

    active = model.active
    table = {"active": active.cpu().numpy().astype(np.int8),
             "comp_params": np.asarray(model.component_parameter_counts()[0], dtype=np.int64)}
    if not full:
        return table
    comp = chunked(model.component_log_prob, pts)  # (N, K)
    r = torch.softmax(comp + model.log_pi, -1)
    share = r.mean(0)
    loglik = (r * comp).sum(0) / r.sum(0).clamp_min(1e-12)
    return {**table, "qp_gap": (0.5 * (q - r).abs().sum(-1)).cpu().numpy().astype(np.float32),
            "comp_share": share.cpu().numpy().astype(np.float32),
            "comp_loglik": torch.where(active, loglik, torch.nan).cpu().numpy().astype(np.float32)}


def _base_grid(n_lines: int, n_points: int, extent: float, device, dtype=None) -> torch.Tensor:
    """A square grid of lines in base space, ``(2 * n_lines, n_points, 2)``: the horizontal lines of
    ``[-extent, extent]^2``, then the vertical ones."""
    import torch

    ticks = torch.linspace(-extent, extent, n_lines, device=device, dtype=dtype)
    along = torch.linspace(-extent, extent, n_points, device=device, dtype=dtype)
    horiz = torch.stack([along.expand(n_lines, -1), ticks[:, None].expand(-1, n_points)], -1)
    return torch.cat([horiz, horiz.flip(-1)])


def _warp_lines(model: VMoNFModel, n_lines: int = 13, n_points: int = 40, extent: float = 2.5) -> torch.Tensor:
    """A square grid of lines in the base space, pushed through every component's flow to data space.

    Returns ``(K, 2 * n_lines, n_points, 2)``: for component k, the images of the horizontal and the
    vertical lines of the grid ``[-extent, extent]^2``. Shows students how each flow bends space.
    """
    lines = _base_grid(n_lines, n_points, extent, model.shift.device)
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


def flow_stages(model: VMoNFModel, component: int, points: np.ndarray, *, n_samples: int = 300, seed: int = 0,
                n_lines: int = 9, n_points: int = 40, extent: float = 3.0) -> dict:
    """One component's flow, layer by layer, for the scrubber: stage 0 is the Gaussian base space, stage
    ``depth + 1`` data space, and stage ``j`` in between what the base looks like after undoing the last
    ``j`` blocks (the component's own shift and scale come last).

    Pushed from the base towards the data (``flows.inverse``, block by block): a square grid of lines,
    circles at 1, 2 and 3 sigma, and ``n_samples`` base samples (their last stage is what
    ``model.sample(component=...)`` draws from the same noise). Pushed from the data towards the base
    (``flows.forward``): ``points``. Returns JSON-able lists: ``names``, and per stage ``lines``
    (list of polylines), ``circles`` (three polylines), ``samples`` and ``points``.
    """
    import torch

    k_all, flows = model.config.n_components, model.flows
    if model.config.dim != 2:
        raise ValueError("The flow scrubber shows 2-D data only.")
    if not 0 <= component < k_all:
        raise ValueError(f"component must be in [0, {k_all - 1}], got {component}.")
    device, dtype = model.shift.device, model.shift.dtype
    grid = _base_grid(n_lines, n_points, extent, device, dtype)  # (2L, P, 2)
    angle = torch.linspace(0, 2 * math.pi, 61, device=device, dtype=dtype)
    unit = torch.stack([angle.cos(), angle.sin()], -1)
    circles = torch.stack([r * unit for r in (1.0, 2.0, 3.0)])  # (3, 61, 2)
    gen = torch.Generator(device=device).manual_seed(seed)
    samples = torch.randn(n_samples, 2, generator=gen, device=device, dtype=dtype)
    base = torch.cat([grid.reshape(-1, 2), circles.reshape(-1, 2), samples])
    pts = torch.tensor(np.asarray(points, dtype=np.float32), device=device, dtype=dtype)  # a copy: frames are read-only
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            cur = base.unsqueeze(0).expand(k_all, -1, -1).contiguous()
            up = [cur[component]]
            for block in reversed(flows.blocks):
                cur, _ = block.inverse(cur)
                up.append(cur[component])
            x, _ = flows.affine.inverse(cur)
            up.append(x[component] * model.scale + model.shift)
            cur, _ = flows.affine(model._standardize(pts).unsqueeze(0).expand(k_all, -1, -1).contiguous())
            down = [cur[component]]
            for block in flows.blocks:
                cur, _ = block(cur)
                down.append(cur[component])
            down = [*reversed(down), pts]  # stage 0 (base) ... stage depth + 1 (data)
    finally:
        model.train(was_training)
    n_grid, n_circ = grid.shape[0] * grid.shape[1], circles.shape[0] * circles.shape[1]
    depth = len(flows.blocks)
    names = ["Gaussian base space"] + [f"after undoing block {depth - j + 1}" for j in range(1, depth + 1)]
    names[-1] = f"after undoing block 1 (all {depth})" if depth > 1 else names[-1]
    names.append("data space (the component's shift and scale too)")
    stages = []
    for a, b in zip(up, down, strict=True):
        a = a.cpu().numpy().astype(np.float64)
        stages.append({"lines": a[:n_grid].reshape(grid.shape).round(4).tolist(),
                       "circles": a[n_grid:n_grid + n_circ].reshape(circles.shape).round(4).tolist(),
                       "samples": a[n_grid + n_circ:].round(4).tolist(),
                       "points": b.cpu().numpy().astype(np.float64).round(4).tolist()})
    return {"component": component, "names": names, "stages": stages}

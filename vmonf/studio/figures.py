"""Pure plotly builders: a :class:`~vmonf.studio.snapshot.Snapshot` in, a figure out. No streamlit here.

Each ``*_spec`` function returns a plain plotly figure dict with numpy arrays packed as base64 typed
arrays (what plotly >= 6 sends anyway); it costs about a millisecond, where building a validated
``go.Figure`` took ~25 ms per live frame. The matching ``*_figure`` function wraps the same spec
in a validated ``go.Figure`` for replay, export and tests.

Axes, colours and colour ranges depend only on the run (grid, K), never on one frame's values,
so successive frames line up and nothing jumps during live updates or replay.
"""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

from vmonf.studio.snapshot import Snapshot

#: One colour per component (qualitative, colour-blind friendly first, then more).
PALETTE = [
    "#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#F28E2B", "#8C564B", "#17BECF", "#7F7F7F",
    "#BCBD22", "#1F77B4", "#D62728", "#9467BD", "#2CA02C", "#FF7F0E", "#E377C2", "#393B79", "#637939", "#843C39",
]
#: Paul Tol's "muted" scheme: nine colours that stay apart with each common colour-vision deficiency (simulated
#: in tests/test_figures.py); beyond nine components the colours repeat.
SAFE_PALETTE = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"]
#: The palettes a figure can be drawn in, by name (the ``palette=`` of a link).
PALETTES = {"default": PALETTE, "safe": SAFE_PALETTE}
#: White where the density is low, grey where it is high, so coloured points stay readable on top.
DENSITY_SCALE = [[0.0, "#ffffff"], [0.5, "#d4d4d4"], [1.0, "#5f5f5f"]]
#: Log-density shown this many nats below the peak; lower values are clipped (keeps the colour scale stable).
LOG_DENSITY_RANGE = 8.0


def color(k: int, palette: list[str] = PALETTE) -> str:
    return palette[k % len(palette)]


def rgba(k: int, alpha: float, palette: list[str] = PALETTE) -> str:
    """Component ``k``'s colour with opacity ``alpha``."""
    h = color(k, palette)
    return f"rgba({int(h[1:3], 16)},{int(h[3:5], 16)},{int(h[5:7], 16)},{alpha:.2f})"


def packed(a: np.ndarray) -> dict:
    """A numpy array as a plotly typed-array spec (float32, base64, with its shape)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    spec = {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ", ".join(str(n) for n in a.shape)
    return spec


#: Colour of a point no component has yet (the data before a start exists).
UNASSIGNED = "rgba(90,90,90,0.55)"


#: How the initialisation methods (``TrainConfig.init``) are named for people.
INIT_LABELS = {"kmeans": "k-means", "spectral": "spectral", "local": "local-scale spectral",
               "ncut": "repeated two-way cut", "ward": "Ward",
               "gmm": "Gaussian mixture", "labels": "label spreading", "random": "random", "auto": "automatic"}


def stage_label(meta) -> str | None:
    """What a frame from before training shows (the data, a starting partition, a candidate start), or None."""
    stage, total = meta.get("stage"), meta.get("candidate_total", 1)
    name = INIT_LABELS.get(meta.get("candidate", ""), meta.get("candidate", ""))
    which = f"{name} {meta.get('candidate_index', 1)}/{total}" if total > 1 else name
    if stage == "data":
        return "the data"
    if stage == "partition":
        cut = meta.get("cut")
        return f"starting partition: {which}" + (f" · normalised cut {cut:.3f}" if cut is not None else "")
    if stage == "candidate":
        return f"trying initialisation {which}"
    return None


def _title(snap: Snapshot, what: str) -> str:
    m = snap.meta
    stage = stage_label(m)
    if m.get("stage") in ("data", "partition"):
        parts = [stage]
    else:
        parts = ([stage] if stage else []) + [f"{what} · step {snap.step}"]
    if m.get("val_elbo") is not None and np.isfinite(m.get("val_elbo", np.nan)):
        parts.append(f"ELBO {m['val_elbo']:.3f}")
    if m.get("ari") is not None:
        parts.append(f"ARI {m['ari']:.2f}")
    return " · ".join(parts)


def density_figure(snap: Snapshot, **kw) -> go.Figure:
    """:func:`density_spec` as a validated ``go.Figure``."""
    return go.Figure(density_spec(snap, **kw))


def density_spec(
    snap: Snapshot, *, component: int | None = None, show_points: bool = True, show_samples: bool = False,
    log_scale: bool = True, height: int = 520, title: str | None = None, zrange: tuple[float, float] | None = None,
    background: str = "density", warp: int | None = None, raster_points: bool = False, palette: str = "default",
) -> dict:
    """The mixture density (or one component's) as a heatmap, with points coloured by argmax q(c|x).

    Each point's opacity is its confidence max_c q(c|x). Labelled points are drawn as diamonds.
    ``zrange`` fixes the log-density colour range (a replay passes one range for all its frames).
    ``background="q"`` or ``"p"`` paints the plane by the cluster of the variational posterior q(c|x)
    or of the exact posterior p(c|x) instead, paler where it is less sure. ``warp=k`` draws a square
    grid of the base space as component k's flow bends it into data space.

    ``raster_points`` leaves the unlabelled points out of the traces and puts them in the figure's ``"points"``
    (:func:`canvas_points`), which only the live chart draws, on a canvas: a 1,000-point SVG trace was two thirds
    of the browser's time per update. Replay and export keep the vector points. ``palette`` names one of
    :data:`PALETTES`.
    """
    pal = PALETTES[palette]
    gx, gy = snap.get("grid_x"), snap.get("grid_y")
    if gx is None:
        raise ValueError("This snapshot has no 2-D density grid (is the data 2-D?).")
    if component is None or snap.get("comp_log_density") is None:
        z = snap.get("log_density")
        what = "mixture density"
    else:
        z = snap.get("comp_log_density")[component]
        what = f"density of component {component + 1}"
    blank = z is None  # the data alone, before any flow exists: no density to draw
    if blank:
        z = np.full((len(gy), len(gx)), np.nan, dtype=np.float32)
        background = "density"
    z = np.asarray(z, dtype=np.float32)
    peak = float(np.nanmax(z)) if np.isfinite(z).any() else 0.0
    if log_scale:
        zmin, zmax = zrange or (peak - LOG_DENSITY_RANGE, peak)
        z = np.clip(z, zmin, None)
    else:
        z = np.exp(z - peak)
        zmin, zmax = 0.0, 1.0
    if blank:
        # Every cell at the scale's white bottom, the plot's own background: Plotly makes no picture for a heatmap of
        # NaN alone, and with one already there the live chart draws the first density into it without Plotly.
        z = np.full_like(z, zmin)
    hover = dict(hoverinfo="skip") if blank else dict(
        hovertemplate="x=%{x:.2f}<br>y=%{y:.2f}<br>" + ("log p=%{z:.2f}" if log_scale else "p/p_max=%{z:.2f}")
        + "<extra></extra>")
    traces = [dict(
        type="heatmap", x=packed(gx), y=packed(gy), z=packed(z), zmin=zmin, zmax=zmax, colorscale=DENSITY_SCALE,
        showscale=False, name="density", **hover,
    )]
    k = len(snap.get("pi"))
    point_layer = None
    if show_points:
        # One SVG trace with per-point RGBA colours: in software-rendered Chromium it drew in ~42 ms per
        # update, against ~63 ms for one WebGL trace per cluster. Empty traces carry the legend.
        pts, assign, conf = snap.get("points"), snap.get("assign"), snap.get("confidence")
        labelled = snap.get("labelled")
        free = np.ones(len(pts), bool) if labelled is None else ~labelled
        alpha = np.clip(conf, 0.15, 1.0)
        if raster_points:
            point_layer = canvas_points(pts[free], assign[free], alpha[free], palette=pal)
        else:
            traces.append(dict(
                type="scatter", x=packed(pts[free, 0]), y=packed(pts[free, 1]), mode="markers", showlegend=False,
                marker=dict(size=5, color=[rgba(int(c), float(a), pal) if c >= 0 else UNASSIGNED
                                           for c, a in zip(assign[free], alpha[free], strict=True)]),
                hoverinfo="skip", name="points",
            ))
        traces += [dict(type="scatter", x=[None], y=[None], mode="markers", name=f"cluster {c + 1}",
                        marker=dict(color=color(c, pal), size=7)) for c in range(k)]
        if labelled is not None and labelled.any():
            lab = labelled
            traces.append(dict(
                type="scatter", x=packed(pts[lab, 0]), y=packed(pts[lab, 1]), mode="markers", name="labelled",
                marker=dict(symbol="diamond", size=9, color=[color(int(t), pal) for t in given_labels_of(snap)[lab]],
                            line=dict(color="black", width=1.5)),
                hovertemplate="labelled point<extra></extra>",
            ))
    if show_samples and snap.get("samples") is not None:
        s, sc = snap.get("samples"), snap.get("sample_comp")
        traces.append(dict(
            type="scatter", x=packed(s[:, 0]), y=packed(s[:, 1]), mode="markers", name="samples",
            marker=dict(symbol="x", size=5, color=[color(int(c), pal) for c in sc]),
            hovertemplate="sample<extra></extra>",
        ))
    layout = dict(
        title=dict(text=title or _title(snap, what), x=0.01, font=dict(size=14)), height=height,
        margin=dict(l=45, r=10, t=40, b=10), uirevision="keep", plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=-0.12, x=0),
        meta=dict(step=snap.step, dataset=snap.meta.get("dataset"), k=len(snap.get("pi")),
                  stage=snap.meta.get("stage", "training"), candidate=snap.meta.get("candidate"),
                  ari=snap.meta.get("ari"), points=len(snap.get("points"))),
        xaxis=dict(range=[float(gx[0]), float(gx[-1])], showgrid=False, zeroline=False),
        yaxis=dict(range=[float(gy[0]), float(gy[-1])], showgrid=False, zeroline=False, scaleanchor="x"),
    )
    if warp is not None and snap.get("warp") is not None:
        lines = snap.get("warp")[warp]  # (lines, points, 2)
        gap = np.full((len(lines), 1, 2), np.nan, dtype=np.float32)
        path = np.concatenate([lines, gap], 1).reshape(-1, 2)  # NaN breaks the line between grid lines
        traces.append(dict(type="scatter", mode="lines", x=packed(path[:, 0]), y=packed(path[:, 1]),
                           name=f"flow {warp + 1} warps a square grid", hoverinfo="skip",
                           line=dict(color=color(warp, pal), width=1.2), connectgaps=False))
    if background in ("q", "p"):
        traces[0]["opacity"] = 0.0  # keep the heatmap for hover and axes; the picture shows the posterior
        layout["images"] = [posterior_image(snap, background, pal)]
        layout["title"]["text"] = (title or _title(snap, "variational posterior q(c|x)" if background == "q"
                                                   else "exact posterior p(c|x)"))
    fig = dict(data=traces, layout=layout)
    if point_layer is not None:
        fig["points"] = point_layer  # not Plotly's: the live chart's JavaScript draws them (canvas_points)
    return fig


#: Colour of unassigned points on the live chart's canvas (RGB; their opacity is the alpha given).
_UNASSIGNED_RGB = (90, 90, 90)


def given_labels_of(snap: Snapshot) -> np.ndarray:
    """The label each labelled point of ``snap`` was given: its own array, or (older frames) the true cluster."""
    given = snap.get("given")
    return given if given is not None else snap.get("y_true")


def ring(x: float, y: float, radius_px: int = 7, color: str = "black") -> dict:
    """A layout shape: a ring of ``radius_px`` pixels around the data point ``(x, y)`` (the pinned probe point,
    a suggested point to label)."""
    return {"type": "circle", "xref": "x", "yref": "y", "xsizemode": "pixel", "ysizemode": "pixel",
            "xanchor": x, "yanchor": y, "x0": -radius_px, "x1": radius_px, "y0": -radius_px, "y1": radius_px,
            "line": {"color": color, "width": 2}}


def given_labels_trace(snap: Snapshot, given: dict[int, int], palette: str = "default") -> dict:
    """Points labelled by clicking (view index -> cluster), as diamonds in their cluster's colour."""
    points = snap.get("points")
    idx = [i for i in given if i < len(points)]
    return {"type": "scatter", "mode": "markers", "x": packed(points[idx, 0]), "y": packed(points[idx, 1]),
            "name": "labelled by you", "hoverinfo": "skip",
            "marker": {"symbol": "diamond", "size": 11, "color": [color(given[i], PALETTES[palette]) for i in idx],
                       "line": {"color": "black", "width": 1.5}}}


def canvas_points(points: np.ndarray, assign: np.ndarray, alpha: np.ndarray, *,
                  palette: list[str] = PALETTE) -> dict:
    """The points for the live chart's own canvas: ``{"n", "xy", "rgba"}``, base64 of float32 ``(n, 2)``
    coordinates and of uint8 ``(n, 4)`` colours (component ``assign[i]``'s colour, grey when negative, with
    opacity ``alpha[i]``), least sure first, so the sure ones are drawn on top.

    The chart's JavaScript draws them over the plot area after each update and again when the view is zoomed
    or panned. As a PNG layout image they cost the server ~9 ms a frame to encode and the browser a decode and
    a raster of the whole image; as an SVG trace ~60 ms of the browser per update (docs/RESULTS.md,
    "The live loop").
    """
    order = np.argsort(alpha, kind="stable")
    table = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in palette] + [_UNASSIGNED_RGB], dtype=np.uint8)
    a = np.asarray(assign)[order]
    rgba = np.empty((len(order), 4), dtype=np.uint8)
    rgba[:, :3] = table[np.where(a >= 0, a % len(palette), len(palette))]
    rgba[:, 3] = np.clip(np.asarray(alpha, dtype=np.float64)[order] * 255 + 0.5, 0, 255).astype(np.uint8)
    xy = np.ascontiguousarray(np.asarray(points, dtype=np.float32)[order])
    return {"n": len(order), "xy": base64.b64encode(xy.tobytes()).decode("ascii"),
            "rgba": base64.b64encode(rgba.tobytes()).decode("ascii")}


def posterior_image(snap: Snapshot, which: str, palette: list[str] = PALETTE) -> dict:
    """The plane coloured by argmax of q(c|x) (``which="q"``) or p(c|x) (``"p"``), as a layout image."""
    import io

    from PIL import Image

    assign, conf = snap.get(f"{which}_grid_assign"), snap.get(f"{which}_grid_conf")
    k = max(len(snap.get("pi")), 1)
    rgb = np.array([[int(color(c, palette)[i:i + 2], 16) for i in (1, 3, 5)] for c in range(k)], dtype=np.float32)
    w = np.clip((conf - 1 / k) / (1 - 1 / k + 1e-9), 0, 1)[..., None] * 0.55  # 1/k (unsure) -> white
    pixels = (rgb[assign] * w + 255 * (1 - w)).astype(np.uint8)[::-1]  # image rows run top-down
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    gx, gy = snap.get("grid_x"), snap.get("grid_y")
    return dict(source="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), xref="x", yref="y",
                x=float(gx[0]), y=float(gy[-1]), sizex=float(gx[-1] - gx[0]), sizey=float(gy[-1] - gy[0]),
                sizing="stretch", layer="below", xanchor="left", yanchor="top")


#: The presenter view's two looks: the charts' background and text, and the density's colours (on a dark
#: background the density is lighter where it is higher, so the points keep their contrast).
THEMES = {
    "light": {"paper": "white", "plot": "white", "font": "#262730", "density": DENSITY_SCALE},
    "dark": {"paper": "#0e1117", "plot": "#0e1117", "font": "#fafafa",
             "density": [[0.0, "#0e1117"], [0.5, "#2f3440"], [1.0, "#6b7280"]]},
}


def presented(fig: dict, theme: str = "light", *, scale: float = 1.0, height: int | None = None) -> dict:
    """``fig`` (a spec from this module) in the ``theme``'s colours, its type ``scale`` times larger and, with
    ``height``, that tall: the presenter view, for a projector at the back of a lecture hall. A new dict."""
    t = THEMES[theme]
    layout = {**fig["layout"], "paper_bgcolor": t["paper"], "plot_bgcolor": t["plot"],
              "font": {**fig["layout"].get("font", {}), "color": t["font"], "size": round(12 * scale)}}
    if isinstance(layout.get("title"), dict):
        layout["title"] = {**layout["title"], "font": {"size": round(14 * scale), "color": t["font"]}}
    if layout.get("annotations"):
        layout["annotations"] = [{**a, "font": {**a.get("font", {}), "size": round(13 * scale), "color": t["font"]}}
                                 for a in layout["annotations"]]
    if height is not None:
        layout["height"] = height
    data = [{**tr, "colorscale": t["density"]} if tr.get("type") == "heatmap" else tr for tr in fig["data"]]
    return {**fig, "data": data, "layout": layout}


def curves_figure(snap: Snapshot, **kw) -> go.Figure:
    """:func:`curves_spec` as a validated ``go.Figure``."""
    return go.Figure(curves_spec(snap, **kw))


def curves_spec(snap: Snapshot, *, height: int = 300, palette: str = "default") -> dict:
    """Validation ELBO and log-likelihood, the mixture weights pi, and ARI/NMI (when labels are known)."""
    steps = packed(snap.get("hist_step"))
    ari = snap.get("hist_ari")
    has_ari = ari is not None and np.isfinite(ari).any()
    cols = 3 if has_ari else 2
    gap = 0.07
    width = (1 - gap * (cols - 1)) / cols
    layout = dict(height=height, margin=dict(l=10, r=10, t=30, b=10), uirevision="keep",
                  legend=dict(orientation="h", y=-0.2), meta=dict(step=snap.step), annotations=[])
    titles = ["held-out ELBO and log p(x)", "mixture weights π", "ARI / NMI vs true labels"][:cols]
    for i, text in enumerate(titles):
        lo = i * (width + gap)
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = dict(domain=[lo, lo + width], anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}")
        layout["annotations"].append(dict(text=text, x=lo + width / 2, y=1.0, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))

    def line(y, name, col, color_, **extra):
        axis = "" if col == 1 else str(col)
        return dict(type="scatter", mode="lines", x=steps, y=packed(y), name=name, xaxis=f"x{axis}",
                    yaxis=f"y{axis}", line=dict(color=color_, **extra.pop("line", {})), **extra)

    traces = [line(snap.get("hist_elbo"), "ELBO", 1, "#4477AA"),
              line(snap.get("hist_val_loglik"), "log p(x)", 1, "#EE6677", line=dict(dash="dot"))]
    pi = snap.get("hist_pi")
    traces += [line(pi[:, c], f"π{c + 1}", 2, color(c, PALETTES[palette]), showlegend=False)
               for c in range(pi.shape[1])]
    layout["yaxis2"]["range"] = [0, max(1.0, float(np.nanmax(pi)) * 1.1) if pi.size else 1]
    if has_ari:
        traces += [line(ari, "ARI", 3, "#228833"), line(snap.get("hist_nmi"), "NMI", 3, "#AA3377")]
        layout["yaxis3"]["range"] = [-0.05, 1.05]
    return dict(data=traces, layout=layout)


def image_grid_figure(snap: Snapshot, *, height: int | None = None) -> go.Figure:
    """Samples from each component as a grid of images: one row per component."""
    imgs = snap.get("component_images")
    if imgs is None:
        raise ValueError("This snapshot has no component images (is it an image data set?).")
    k, m, h, w = imgs.shape
    pad = 2
    canvas = np.ones((k * (h + pad), m * (w + pad)), dtype=np.float32)
    for c in range(k):
        for j in range(m):
            canvas[c * (h + pad): c * (h + pad) + h, j * (w + pad): j * (w + pad) + w] = imgs[c, j]
    fig = go.Figure(go.Heatmap(z=canvas[::-1], colorscale="Greys", reversescale=True, zmin=0, zmax=1,
                               showscale=False, hoverinfo="skip"))
    fig.update_layout(
        title=dict(text=f"samples from each component (rows) · step {snap.step}", x=0.01, font=dict(size=14)),
        height=height or max(260, 40 * k + 60), margin=dict(l=60, r=10, t=40, b=10), uirevision="keep",
        meta=dict(step=snap.step),
        xaxis=dict(visible=False), yaxis=dict(
            tickvals=[(k - c - 1) * (h + pad) + h / 2 for c in range(k)], ticktext=[f"comp {c + 1}" for c in range(k)],
            scaleanchor="x", showgrid=False, zeroline=False),
    )
    return fig


def contingency_figure(snap: Snapshot, class_names: list[str] | None = None, *, height: int | None = None):
    """How each component is made up of the true classes (counts), one row per component."""
    table = snap.get("contingency")
    if table is None:
        raise ValueError("This snapshot has no contingency table (no true labels).")
    k, n_cls = table.shape
    names = class_names or [str(i) for i in range(n_cls)]
    fig = go.Figure(go.Heatmap(
        z=table[::-1], x=names, y=[f"comp {c + 1}" for c in range(k)][::-1], colorscale="Blues", showscale=False,
        text=table[::-1], texttemplate="%{text}", hovertemplate="%{y}, true %{x}: %{z}<extra></extra>",
    ))
    fig.update_layout(title=dict(text="make-up of each component by true class", x=0.01, font=dict(size=14)),
                      height=height or max(260, 40 * k + 60), margin=dict(l=70, r=10, t=40, b=40),
                      xaxis=dict(title=dict(text="true class"), type="category"), uirevision="keep",
                      meta=dict(step=snap.step))
    return fig


def stage_spec(stages: dict, index: int, assign: np.ndarray | None = None, *, height: int = 460) -> dict:
    """One stage of :func:`vmonf.studio.capture.flow_stages` (the flow scrubber): the base grid (grey lines),
    circles at 1, 2 and 3 sigma (dashed), base samples pushed this far (black) and the data pushed back this
    far (coloured by ``assign``, the cluster of each point, when given). Axes fit each stage."""
    stage = stages["stages"][index]
    data: list[dict] = []
    xs: list = []
    ys: list = []
    for line in stage["lines"]:
        xs += [p[0] for p in line] + [None]
        ys += [p[1] for p in line] + [None]
    data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": "base grid", "hoverinfo": "skip",
                 "line": {"color": "rgba(80,80,80,0.35)", "width": 1}})
    for r, circle in zip((1, 2, 3), stage["circles"], strict=True):
        data.append({"type": "scatter", "mode": "lines", "x": [p[0] for p in circle], "y": [p[1] for p in circle],
                     "name": f"{r} σ", "line": {"color": "black", "width": 1.5, "dash": "dash"}, "hoverinfo": "name"})
    points = np.asarray(stage["points"], dtype=float).reshape(-1, 2)
    if assign is not None and len(assign) == len(points):
        colours = [PALETTE[int(a) % len(PALETTE)] if a >= 0 else "#999999" for a in assign]
    else:
        colours = "#999999"
    data.append({"type": "scatter", "mode": "markers", "x": packed(points[:, 0]), "y": packed(points[:, 1]),
                 "name": "data pushed this far", "marker": {"size": 4, "color": colours, "opacity": 0.6},
                 "hoverinfo": "skip"})
    samples = np.asarray(stage["samples"], dtype=float).reshape(-1, 2)
    data.append({"type": "scatter", "mode": "markers", "x": packed(samples[:, 0]), "y": packed(samples[:, 1]),
                 "name": "base samples pushed this far", "marker": {"size": 4, "color": "black", "symbol": "x"},
                 "hoverinfo": "skip"})
    last = len(stages["stages"]) - 1
    title = f"component {stages['component'] + 1}, stage {index} of {last}: {stages['names'][index]}"
    layout = {"height": height, "title": {"text": title}, "margin": {"l": 40, "r": 10, "t": 50, "b": 30},
              "xaxis": {"zeroline": False}, "yaxis": {"zeroline": False, "scaleanchor": "x", "scaleratio": 1},
              "legend": {"orientation": "h", "y": -0.08}, "uirevision": f"stages{stages['component']}",
              "meta": {"stage": index, "step": stages.get("step", 0)}}
    return {"data": data, "layout": layout}


def scrubber_spec(stages: dict, assign: np.ndarray | None = None, *, start: int | None = None,
                  height: int = 500) -> dict:
    """The flow scrubber as one figure: every stage of :func:`stage_spec` in it, and Plotly's own slider to move
    between them (``start``: the stage shown first, data space by default).

    Moving the slider happens in the browser alone (it only changes which traces are visible, the title and
    ``meta.stage``): scrubbing through a slider that reran the page cost the training a quarter of its speed
    on 2 cores (docs/RESULTS.md, "Touch the model").
    """
    n = len(stages["stages"])
    start = n - 1 if start is None else start
    figs = [stage_spec(stages, i, assign, height=height) for i in range(n)]
    per = len(figs[0]["data"])
    data = []
    for i, fig in enumerate(figs):
        for trace in fig["data"]:
            data.append({**trace, "visible": i == start, "showlegend": i == start or None})
    steps = [{"label": str(i), "method": "update",
              "args": [{"visible": [j // per == i for j in range(len(data))],
                        "showlegend": [j // per == i for j in range(len(data))]},
                       {"title.text": fig["layout"]["title"]["text"], "meta.stage": i}]}
             for i, fig in enumerate(figs)]
    layout = {**figs[start]["layout"], "margin": {"l": 40, "r": 10, "t": 50, "b": 90},
              "sliders": [{"name": "flow layer", "active": start, "steps": steps, "pad": {"t": 40},
                           "currentvalue": {"prefix": "flow layer ", "font": {"size": 13}}}]}
    layout["legend"] = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"}
    return {"data": data, "layout": layout}

"""Pure plotly builders: a :class:`~vmonf.snapshot.Snapshot` in, a ``go.Figure`` out. No streamlit here.

Axes, colours and colour ranges depend only on the run (grid, K), never on one frame's values,
so successive frames line up and nothing jumps during live updates or replay.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vmonf.snapshot import Snapshot

#: One colour per component (qualitative, colour-blind friendly first, then more).
PALETTE = [
    "#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#F28E2B", "#8C564B", "#17BECF", "#7F7F7F",
    "#BCBD22", "#1F77B4", "#D62728", "#9467BD", "#2CA02C", "#FF7F0E", "#E377C2", "#393B79", "#637939", "#843C39",
]
#: Log-density shown this many nats below the peak; lower values are clipped (keeps the colour scale stable).
LOG_DENSITY_RANGE = 8.0


def color(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def _title(snap: Snapshot, what: str) -> str:
    m = snap.meta
    parts = [f"{what} · step {snap.step}"]
    if m.get("val_elbo") is not None and np.isfinite(m.get("val_elbo", np.nan)):
        parts.append(f"ELBO {m['val_elbo']:.3f}")
    if m.get("ari") is not None:
        parts.append(f"ARI {m['ari']:.2f}")
    return " · ".join(parts)


def density_figure(
    snap: Snapshot, *, component: int | None = None, show_points: bool = True, show_samples: bool = False,
    log_scale: bool = True, height: int = 520, title: str | None = None,
) -> go.Figure:
    """The mixture density (or one component's) as a heatmap, with points coloured by argmax q(c|x).

    Each point's opacity is its confidence max_c q(c|x). Labelled points are drawn as diamonds.
    """
    gx, gy = snap.get("grid_x"), snap.get("grid_y")
    if gx is None:
        raise ValueError("This snapshot has no 2-D density grid (is the data 2-D?).")
    if component is None:
        z = snap.get("log_density")
        what = "mixture density"
    else:
        z = snap.get("comp_log_density")[component]
        what = f"density of component {component + 1}"
    z = np.asarray(z, dtype=np.float32)
    peak = float(np.nanmax(z)) if np.isfinite(z).any() else 0.0
    if log_scale:
        z = np.clip(z, peak - LOG_DENSITY_RANGE, None)
        zmin, zmax = peak - LOG_DENSITY_RANGE, peak
    else:
        z = np.exp(z - peak)
        zmin, zmax = 0.0, 1.0
    fig = go.Figure(go.Heatmap(
        x=gx, y=gy, z=z.astype(np.float32), zmin=zmin, zmax=zmax, colorscale="Greys", reversescale=False,
        showscale=False, name="density",
        hovertemplate="x=%{x:.2f}<br>y=%{y:.2f}<br>" + ("log p=%{z:.2f}" if log_scale else "p/p_max=%{z:.2f}")
        + "<extra></extra>",
    ))
    k = len(snap.get("pi"))
    if show_points:
        pts, assign, conf = snap.get("points"), snap.get("assign"), snap.get("confidence")
        labelled = snap.get("labelled")
        for c in range(k):
            sel = assign == c
            if labelled is not None:
                sel = sel & ~labelled
            fig.add_trace(go.Scattergl(
                x=pts[sel, 0], y=pts[sel, 1], mode="markers", name=f"cluster {c + 1}", legendgroup=str(c),
                marker=dict(color=color(c), size=5, opacity=np.clip(conf[sel], 0.15, 1.0).astype(np.float32)),
                hovertemplate=f"cluster {c + 1}<extra></extra>",
            ))
        if labelled is not None and labelled.any():
            lab = labelled
            fig.add_trace(go.Scattergl(
                x=pts[lab, 0], y=pts[lab, 1], mode="markers", name="labelled",
                marker=dict(symbol="diamond", size=9, color=[color(int(t)) for t in snap.get("y_true")[lab]],
                            line=dict(color="black", width=1.5)),
                hovertemplate="labelled point<extra></extra>",
            ))
    if show_samples and snap.get("samples") is not None:
        s, sc = snap.get("samples"), snap.get("sample_comp")
        fig.add_trace(go.Scattergl(
            x=s[:, 0], y=s[:, 1], mode="markers", name="samples",
            marker=dict(symbol="x", size=5, color=[color(int(c)) for c in sc]), hovertemplate="sample<extra></extra>",
        ))
    fig.update_layout(
        title=dict(text=title or _title(snap, what), x=0.01, font=dict(size=14)), height=height,
        margin=dict(l=45, r=10, t=40, b=10), uirevision="keep", plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=-0.12, x=0), meta=dict(step=snap.step),
        xaxis=dict(range=[float(gx[0]), float(gx[-1])], showgrid=False, zeroline=False),
        yaxis=dict(range=[float(gy[0]), float(gy[-1])], showgrid=False, zeroline=False, scaleanchor="x"),
    )
    return fig


def curves_figure(snap: Snapshot, *, height: int = 300) -> go.Figure:
    """Validation ELBO and log-likelihood, the mixture weights pi, and ARI/NMI (when labels are known)."""
    steps = snap.get("hist_step")
    has_ari = snap.get("hist_ari") is not None and np.isfinite(snap.get("hist_ari")).any()
    cols = 3 if has_ari else 2
    titles = ["held-out ELBO and log-likelihood", "mixture weights π"]
    titles += ["ARI / NMI vs true labels"] if has_ari else []
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, horizontal_spacing=0.07)
    fig.add_trace(go.Scatter(x=steps, y=snap.get("hist_elbo"), name="ELBO", line=dict(color="#4477AA")), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=snap.get("hist_val_loglik"), name="log p(x)",
                             line=dict(color="#EE6677", dash="dot")), 1, 1)
    pi = snap.get("hist_pi")
    for c in range(pi.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=pi[:, c], name=f"π{c + 1}", line=dict(color=color(c)),
                                 showlegend=False), 1, 2)
    if has_ari:
        fig.add_trace(go.Scatter(x=steps, y=snap.get("hist_ari"), name="ARI", line=dict(color="#228833")), 1, 3)
        fig.add_trace(go.Scatter(x=steps, y=snap.get("hist_nmi"), name="NMI", line=dict(color="#AA3377")), 1, 3)
        fig.update_yaxes(range=[-0.05, 1.05], row=1, col=3)
    fig.update_yaxes(range=[0, max(1.0, float(np.nanmax(pi)) * 1.1) if pi.size else 1], row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), uirevision="keep",
                      legend=dict(orientation="h", y=-0.2), meta=dict(step=snap.step))
    return fig


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
                      height=height or max(260, 40 * k + 60), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="true class", type="category"), uirevision="keep", meta=dict(step=snap.step))
    return fig

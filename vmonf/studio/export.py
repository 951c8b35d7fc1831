"""Replay and export of recorded runs: a client-side plotly animation, standalone HTML, GIF, MP4, PNG frames and
vector frames (SVG, PDF) for LaTeX.

Frames are drawn with matplotlib, so they need no browser (kaleido needs Chrome, which a
projector laptop may lack). In the vector formats the points, axes and text are vectors and the density
behind them is one embedded image per frame. MP4 uses the ffmpeg binary that the ``imageio-ffmpeg`` package ships.
Every function takes the frames of a :class:`~vmonf.studio.runfile.Run` (2-D runs) and returns bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from vmonf.studio.figures import LOG_DENSITY_RANGE, PALETTES, density_spec, given_labels_of
from vmonf.studio.snapshot import Snapshot

ProgressFn = Callable[[int, int], None]  # (frames done, frames in all)
FORMATS = ("html", "gif", "mp4", "png", "svg", "pdf")
#: What each format's file is: the frame formats come as a zip of frames (and, for LaTeX, a Beamer snippet).
EXTENSIONS = {"html": "html", "gif": "gif", "mp4": "mp4", "png": "zip", "svg": "zip", "pdf": "zip"}


def _check(frames: Sequence[Snapshot]) -> None:
    if not frames:
        raise ValueError("There are no frames to export.")
    if frames[0].get("grid_x") is None:
        raise ValueError("Only 2-D runs (with a density grid) can be animated.")


def density_range(frames: Sequence[Snapshot]) -> tuple[float, float]:
    """One colour range for the whole run, so the colours mean the same in every frame."""
    peak = max(float(np.nanmax(f.get("log_density"))) for f in frames)
    return peak - LOG_DENSITY_RANGE, peak


def caption(snap: Snapshot) -> str:
    elbo = snap.meta.get("val_elbo")
    text = f"step {snap.step}"
    if elbo is not None and np.isfinite(elbo):
        text += f" · ELBO {elbo:.3f}"
    return text


# -- client-side animation (replay page, HTML export) ------------------------------------------------
def animation_figure(frames: Sequence[Snapshot], *, title: str = "", frame_ms: int = 150, height: int = 620,
                     show_samples: bool = False, palette: str = "default") -> go.Figure:
    """A plotly figure whose frames play in the browser (Play/Pause, speed, slider), no server round trip.

    Axes and the colour range are fixed for the whole run, so nothing jumps between frames.
    """
    _check(frames)
    zrange = density_range(frames)
    specs = [density_spec(f, zrange=zrange, show_samples=show_samples, height=height, palette=palette,
                          title=f"{title + ' · ' if title else ''}{caption(f)}") for f in frames]
    fig = go.Figure(specs[0])
    fig.frames = [go.Frame(data=s["data"], name=str(i), layout=dict(title=s["layout"]["title"]))
                  for i, s in enumerate(specs)]

    def play(ms: int) -> dict:
        return dict(frame=dict(duration=ms, redraw=True), fromcurrent=True, transition=dict(duration=0))

    buttons = [dict(label="▶ Play", method="animate", args=[None, play(frame_ms)]),
               dict(label="❚❚ Pause", method="animate",
                    args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])]
    buttons += [dict(label=f"{speed}×", method="animate", args=[None, play(int(frame_ms / speed))])
                for speed in (0.5, 2, 4)]
    slider_steps = [dict(method="animate", label=str(f.step),
                         args=[[str(i)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                             transition=dict(duration=0))]) for i, f in enumerate(frames)]
    fig.update_layout(
        updatemenus=[dict(type="buttons", direction="left", buttons=buttons, x=0, y=-0.08, xanchor="left",
                          yanchor="top", showactive=False, pad=dict(t=10, r=10))],
        sliders=[dict(steps=slider_steps, currentvalue=dict(prefix="step "), x=0.35, len=0.65, y=-0.05,
                      pad=dict(t=30))],
        margin=dict(b=110),
    )
    return fig


def export_html(frames: Sequence[Snapshot], *, title: str = "", frame_ms: int = 150, palette: str = "default") -> bytes:
    """A standalone HTML page with plotly.js inlined: plays offline, e.g. on a projector laptop."""
    fig = animation_figure(frames, title=title, frame_ms=frame_ms, palette=palette)
    return fig.to_html(include_plotlyjs=True, full_html=True, auto_play=False).encode()


# -- raster frames (GIF, MP4, PNG) -------------------------------------------------------------------
def _rgba(assign: np.ndarray, alpha: np.ndarray, palette: str = "default") -> np.ndarray:
    from matplotlib.colors import to_rgba_array

    pal = PALETTES[palette]
    base = to_rgba_array([pal[int(a) % len(pal)] if a >= 0 else "#999999" for a in assign])
    base[:, 3] = np.clip(alpha, 0.15, 1.0)
    return base


def render_frame(snap: Snapshot, *, size: tuple[int, int] = (640, 480), zrange: tuple[float, float] | None = None,
                 title: str = "", overlay: bool = True, palette: str = "default", panels: bool = False) -> np.ndarray:
    """One frame as an RGB ``uint8`` array of shape ``(height, width, 3)``, drawn with matplotlib."""
    return _raster(frame_figure(snap, size=size, zrange=zrange, title=title, overlay=overlay, palette=palette,
                                panels=panels))


def _raster(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


#: The three panels of ``panels=True``: what each one shows.
PANELS = ("the data (true clusters)", "mixture density log p(x)", "clusters: argmax q(c|x)")


def frame_figure(snap: Snapshot, *, size: tuple[int, int] = (640, 480), zrange: tuple[float, float] | None = None,
                 title: str = "", overlay: bool = True, palette: str = "default", panels: bool = False):
    """One frame as a matplotlib ``Figure`` (``size`` pixels at 100 dpi), for :func:`render_frame` or a vector file.

    ``palette`` names one of ``vmonf.studio.figures.PALETTES``. With ``panels`` the frame is three panels side by
    side (:data:`PANELS`): the points in their true clusters (grey where none is known), the density with the
    points coloured by argmax q(c|x), and the plane coloured by argmax q(c|x) where the frame recorded it (else
    the points alone); give it a wide ``size``, e.g. 1280x480."""
    from matplotlib.figure import Figure

    w, h = size
    if w < 64 or h < 64 or w > 4096 or h > 4096:
        raise ValueError(f"Frame size must be between 64 and 4096 pixels a side, got {w}x{h}.")
    zmin, zmax = zrange or density_range([snap])
    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    top = 0.84 if title else 0.88
    gx, gy = snap.get("grid_x"), snap.get("grid_y")
    extent = (gx[0], gx[-1], gy[0], gy[-1])
    pts, labelled = snap.get("points"), snap.get("labelled")
    colours = _rgba(snap.get("assign"), snap.get("confidence"), palette)
    if panels:
        axes = [fig.add_axes((0.04 + i * 0.325, 0.07, 0.29, top - 0.02)) for i in range(3)]
    else:
        axes = [fig.add_axes((0.06, 0.06, 0.9, top + 0.02))]
    ax = axes[1] if panels else axes[0]
    density = np.asarray(snap.get("log_density"), np.float32)  # shipped examples keep it in half precision
    ax.imshow(np.clip(density, zmin, zmax), origin="lower", cmap="Greys", vmin=zmin, vmax=zmax, extent=extent,
              aspect="auto", interpolation="bilinear", alpha=0.7)
    ax.scatter(pts[:, 0], pts[:, 1], s=6, c=colours, linewidths=0)
    if labelled is not None and labelled.any():
        ax.scatter(pts[labelled, 0], pts[labelled, 1], s=40, marker="D", edgecolors="black", linewidths=1.0,
                   c=_rgba(given_labels_of(snap)[labelled], np.ones(int(labelled.sum())), palette))
    if panels:
        truth = snap.get("y_true")
        truth = np.full(len(pts), -1) if truth is None else truth
        axes[0].scatter(pts[:, 0], pts[:, 1], s=6, c=_rgba(truth, np.ones(len(pts)), palette), linewidths=0)
        assign, conf = snap.get("q_grid_assign"), snap.get("q_grid_conf")
        if assign is not None:
            k = max(len(snap.get("pi")), 1)
            plane = _rgba(assign.ravel(), np.ones(assign.size), palette)[:, :3].reshape(*assign.shape, 3)
            fade = np.clip((conf - 1 / k) / (1 - 1 / k + 1e-9), 0, 1)[..., None] * 0.55  # unsure -> white
            axes[2].imshow(plane * fade + (1 - fade), origin="lower", extent=extent, aspect="auto")
        axes[2].scatter(pts[:, 0], pts[:, 1], s=6, c=colours, linewidths=0)
        for a, name in zip(axes, PANELS, strict=True):
            a.set_title(name, fontsize=9)
    for a in axes:
        a.set_xlim(gx[0], gx[-1])
        a.set_ylim(gy[0], gy[-1])
        a.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11, y=0.98)
    if overlay:
        axes[0].text(0.02, 0.97, caption(snap), transform=axes[0].transAxes, va="top", ha="left", fontsize=9,
                     bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=2))
    return fig


def _figures(frames, size, title, overlay, progress, **look):
    _check(frames)
    zrange = density_range(frames)
    for i, f in enumerate(frames):
        yield frame_figure(f, size=size, zrange=zrange, title=title, overlay=overlay, **look)
        if progress:
            progress(i + 1, len(frames))


def _rendered(frames, size, title, overlay, progress, **look):
    return (_raster(fig) for fig in _figures(frames, size, title, overlay, progress, **look))


def export_gif(frames: Sequence[Snapshot], *, fps: int = 10, size=(640, 480), title: str = "", overlay: bool = True,
               progress: ProgressFn | None = None, **look) -> bytes:
    from PIL import Image

    images = [Image.fromarray(a).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
              for a in _rendered(frames, size, title, overlay, progress, **look)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def export_mp4(frames: Sequence[Snapshot], *, fps: int = 10, size=(640, 480), title: str = "", overlay: bool = True,
               progress: ProgressFn | None = None, **look) -> bytes:
    """H.264 MP4 (yuv420p, plays in PowerPoint, Keynote and browsers). Width and height are rounded to even."""
    import os
    import tempfile

    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise ValueError("MP4 export needs the imageio-ffmpeg package: pip install imageio-ffmpeg.") from exc
    size = (size[0] // 2 * 2, size[1] // 2 * 2)
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(path, size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=2, ffmpeg_log_level="error")
        writer.send(None)
        for a in _rendered(frames, size, title, overlay, progress, **look):
            writer.send(np.ascontiguousarray(a))
        writer.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def beamer_snippet(n_frames: int, fps: int, prefix: str = "frames/frame-") -> str:
    """LaTeX for Beamer: plays the PNG frames with the animate package."""
    return (
        "% In the preamble: \\usepackage{animate}\n"
        "% Unzip next to your .tex file; the frames are frames/frame-0.png ... "
        f"frames/frame-{n_frames - 1}.png\n"
        "\\begin{frame}{Training animation}\n"
        "  \\centering\n"
        f"  \\animategraphics[autoplay,loop,controls,width=0.9\\linewidth]{{{fps}}}{{{prefix}}}"
        f"{{0}}{{{n_frames - 1}}}\n"
        "\\end{frame}\n"
    )


def export_png_zip(frames: Sequence[Snapshot], *, fps: int = 10, size=(640, 480), title: str = "",
                   overlay: bool = True, progress: ProgressFn | None = None, **look) -> bytes:
    """A zip of PNG frames (frames/frame-N.png) plus ``beamer.tex`` with an ``\\animategraphics`` snippet."""
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        n = 0
        for i, a in enumerate(_rendered(frames, size, title, overlay, progress, **look)):
            png = io.BytesIO()
            Image.fromarray(a).save(png, format="PNG")
            z.writestr(f"frames/frame-{i}.png", png.getvalue())
            n += 1
        z.writestr("beamer.tex", beamer_snippet(n, fps))
    return buf.getvalue()


def export_svg_zip(frames: Sequence[Snapshot], *, fps: int = 10, size=(640, 480), title: str = "",
                   overlay: bool = True, progress: ProgressFn | None = None, **look) -> bytes:
    """A zip of SVG frames (``frames/frame-N.svg``: vector points, axes and text over the density image)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, fig in enumerate(_figures(frames, size, title, overlay, progress, **look)):
            svg = io.BytesIO()
            fig.savefig(svg, format="svg")
            z.writestr(f"frames/frame-{i}.svg", svg.getvalue())
    return buf.getvalue()


def export_pdf_zip(frames: Sequence[Snapshot], *, fps: int = 10, size=(640, 480), title: str = "",
                   overlay: bool = True, progress: ProgressFn | None = None, **look) -> bytes:
    """``frames.pdf`` (one page per frame, vector points, axes and text) and ``beamer.tex``, whose
    ``\\animategraphics`` plays the pages in a Beamer slide; each page also goes into a thesis as a still
    (``\\includegraphics[page=N]{frames.pdf}``)."""
    from matplotlib.backends.backend_pdf import PdfPages

    pdf = io.BytesIO()
    n = 0
    with PdfPages(pdf, metadata={"Title": title or "VMoNF run", "Creator": "VMoNF Studio"}) as pages:
        for fig in _figures(frames, size, title, overlay, progress, **look):
            pages.savefig(fig)
            n += 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("frames.pdf", pdf.getvalue())
        z.writestr("beamer.tex", beamer_pdf_snippet(n, fps))
    return buf.getvalue()


def beamer_pdf_snippet(n_frames: int, fps: int, file: str = "frames") -> str:
    """LaTeX for Beamer: plays the pages of ``frames.pdf`` with the animate package."""
    return (
        "% In the preamble: \\usepackage{animate}\n"
        f"% Unzip next to your .tex file: frames.pdf holds the {n_frames} frames, one per page.\n"
        "\\begin{frame}{Training animation}\n"
        "  \\centering\n"
        f"  \\animategraphics[autoplay,loop,controls,width=0.9\\linewidth]{{{fps}}}{{{file}}}{{}}{{}}\n"
        "\\end{frame}\n"
        "% A single frame as a figure: \\includegraphics[page=1,width=\\linewidth]{frames.pdf}\n"
    )


def export(frames: Sequence[Snapshot], fmt: str, **kw) -> bytes:
    """Export in ``fmt`` (one of :data:`FORMATS`); keyword arguments go to that format's function. Every format
    takes ``palette``; the frame formats (all but HTML) also take ``panels``, as :func:`frame_figure` does."""
    if fmt == "html":
        return export_html(frames, title=kw.get("title", ""), frame_ms=int(1000 / kw.get("fps", 10)),
                           palette=kw.get("palette", "default"))
    if fmt == "gif":
        return export_gif(frames, **kw)
    if fmt == "mp4":
        return export_mp4(frames, **kw)
    if fmt == "png":
        return export_png_zip(frames, **kw)
    if fmt == "svg":
        return export_svg_zip(frames, **kw)
    if fmt == "pdf":
        return export_pdf_zip(frames, **kw)
    raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def thin(frames: Sequence[Snapshot], max_frames: int) -> list[Snapshot]:
    """At most ``max_frames`` frames, evenly spread, always keeping the first and the last."""
    if max_frames < 2 or len(frames) <= max_frames:
        return list(frames)
    idx = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
    return [frames[i] for i in idx]

"""Streamlit helpers shared by the pages: the per-session runs, the training controls, the smooth live chart.

Only UI files (app.py, pages/, this module) import streamlit; the library in vmonf/ never does.
"""

from __future__ import annotations

import faulthandler
import gc
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st

from vmonf.studio import pool, states
from vmonf.studio.figures import INIT_LABELS
from vmonf.studio.job import ARI_REACHED, BusyError, TrainingJob, live_jobs, stop_all
from vmonf.studio.snapshot import Snapshot
from vmonf.studio.worker import JobSpec

STATIC = Path(__file__).resolve().parent / "static"

# `kill -USR1 <server pid>` prints the stack of every thread of the server to its log: for a page that stopped
# updating or a shutdown that hangs (the browser tests do this when they time out). Once per server process.
if hasattr(signal, "SIGUSR1"):
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _bound_the_shutdown(seconds: float = 5.0) -> None:
    """Give the server's open connections ``seconds`` to close when it stops, then close them. Streamlit runs
    uvicorn with no such limit, so one connection that never closed kept a stopped server (and its training
    workers) alive: the SIGTERM browser test saw it now and then, on a machine still warming up."""
    try:
        import uvicorn
    except ImportError:  # another server underneath: nothing to bound
        return
    for obj in gc.get_objects():  # ~25 ms, once per server process
        if isinstance(obj, uvicorn.Server) and obj.config.timeout_graceful_shutdown is None:
            obj.config.timeout_graceful_shutdown = seconds


_bound_the_shutdown()
ACTIVE_STATES = states.ACTIVE
STATE_LABELS = {
    "created": "not started", "starting": "starting the training process…", "initializing": "initialising…",
    "running": "training", "stepping": "taking a few steps", "paused": "paused", "finished": "paused at the step limit",
    "diverged": "stopped: training diverged", "stopping": "stopping…", "stopped": "stopped (model kept)",
    "error": "error",
}


#: plotly.js's own cartesian bundle (npm ``plotly.js-cartesian-dist-min``, MIT, its licence beside it): every trace
#: type the live charts draw (``tests/test_figures.py`` checks), 1.5 MB against the full bundle's 4.6 MB. On 2 cores
#: a page's chart came 1.2-1.7 s sooner: evaluating plotly.js was most of the wait after it arrived
#: (docs/RESULTS.md, "Where the first paint goes").
CARTESIAN_JS = STATIC / "vendor" / "plotly-cartesian.min.js"


def plotly_js_version(path: Path) -> str | None:
    """The version in a plotly.js bundle's header ("plotly.js ... v4.1.1"), or ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(400).decode("latin-1")
    except OSError:
        return None
    found = re.search(r"plotly\.js[^\n]*? v(\d+\.\d+\.\d+)", head)
    return found.group(1) if found else None


def plotly_js_source() -> Path:
    """The plotly.js the live charts load: the cartesian bundle where it is the plotly package's own version (the
    figures are written for it), else the package's full bundle."""
    full = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    version = plotly_js_version(CARTESIAN_JS)
    return CARTESIAN_JS if version is not None and version == plotly_js_version(full) else full


def ensure_plotly_js() -> None:
    """Copy plotly.js (:func:`plotly_js_source`) to ``static/`` once, so the live chart loads it offline."""
    target = STATIC / "plotly.min.js"
    source = plotly_js_source()
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        STATIC.mkdir(exist_ok=True)
        # A name of its own per copy: sessions starting together must never write into one shared file
        # (a browser could then load a half-written plotly.js, and the chart would never draw).
        fd, tmp = tempfile.mkstemp(dir=STATIC, suffix=".tmp")
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


#: Seconds after the server's first page run before its fork server starts importing torch: started at
#: once, its imports slowed the first page down (first paint 4.3-7.5 s against 3.2-3.6 s on 2 cores).
WARM_DELAY = float(os.environ.get("VMONF_WARM_DELAY", "3"))
_warm_timer: threading.Timer | None = None


def warm_workers() -> None:
    """Have this server's fork server start soon (once), so that a Start finds a worker ready (vmonf.studio.pool).
    A Start before then starts it itself."""
    global _warm_timer
    if _warm_timer is None:
        _warm_timer = threading.Timer(WARM_DELAY, pool.warm)
        _warm_timer.daemon = True
        _warm_timer.start()


# -- the smooth live chart --------------------------------------------------------------------------
# One <div> per chart; every update calls Plotly.react on it, so the chart is never re-mounted,
# nothing flickers and uirevision keeps the user's zoom. The JavaScript only ever receives figure
# JSON built by vmonf.studio.figures (data, never user-provided HTML), inline or from a LiveFeed's file.
_LIVE_JS = """
export default function (component) {
  const { data, parentElement } = component;
  let el = parentElement.querySelector(".vmonf-live");
  if (!el) {
    el = document.createElement("div");
    el.className = "vmonf-live";
    el.dataset.updates = "0";
    parentElement.appendChild(el);
  }
  if (!window.__vmonfPlotly) {
    window.__vmonfPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) { resolve(window.Plotly); return; }
      const s = document.createElement("script");
      s.src = "./app/static/plotly.min.js";
      s.onload = () => {
        if (window.Plotly) { resolve(window.Plotly); return; }
        window.__vmonfPlotly = null;  // loaded but did not define Plotly (a cut-off file): load it again next time
        reject(new Error("plotly.js did not define Plotly"));
      };
      s.onerror = () => { window.__vmonfPlotly = null; reject(new Error("plotly.js failed to load")); };
      document.head.appendChild(s);
    });
  }
  if (!window.__vmonfKeys) {
    // Keyboard shortcuts for a lecture: space pauses or resumes (or starts), "s" steps, "r" resets. They press
    // the page's own buttons (hidden ones too, with hide=controls), never while typing in a field.
    window.__vmonfKeys = true;
    document.addEventListener("keydown", (ev) => {
      const t = ev.target, tag = (t && t.tagName) || "";
      if (ev.ctrlKey || ev.metaKey || ev.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(tag) ||
          (t && t.isContentEditable) || (t && t.getAttribute && t.getAttribute("role") === "slider")) { return; }
      const press = (...names) => {
        for (const name of names) {
          const b = Array.from(document.querySelectorAll("button")).find(
            (x) => x.textContent.trim() === name && !x.disabled);
          if (b) { b.click(); return true; }
        }
        return false;
      };
      const done = ev.key === " " ? press("Pause", "Resume", "Start") : ev.key === "s" ? press("Step")
        : ev.key === "r" ? press("Reset") : false;
      if (done) {
        ev.preventDefault();
        document.body.dataset.vmonfKeys = String(Number(document.body.dataset.vmonfKeys || 0) + 1);
      }
    });
  }
  // The chart's counters, read by the tests and the bench (frames received and drawn, glides, polls, ...).
  const tally = (name, by = 1) => { el.dataset[name] = String(Number(el.dataset[name] || 0) + by); };
  const b64bytes = (b64) => {
    // A plain loop: Uint8Array.from with a mapping function took ~5 ms a frame for the density and the points.
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) { out[i] = s.charCodeAt(i); }
    return out;
  };
  const paintPoints = (ranges) => {
    // The points (figures.canvas_points) on a canvas over the plot area, between Plotly's plot layer and its
    // hover layer, mapped through the axes as they are now (or as a pan in progress has them: ``ranges``).
    const P = el.__vmonfPoints, L = el._fullLayout;
    let cv = el.querySelector("canvas.vmonf-points");
    const plot = el.querySelector(".svg-container > svg.main-svg");
    if (!P || !L || !L.xaxis || !L.yaxis || !plot) { if (cv) { cv.style.display = "none"; } return; }
    if (!cv) {
      cv = document.createElement("canvas");
      cv.className = "vmonf-points";
      cv.style.cssText = "position:absolute;pointer-events:none";
    }
    if (cv.previousElementSibling !== plot) { plot.after(cv); }
    if (!P.decoded) { P.decoded = { xy: new Float32Array(b64bytes(P.xy).buffer), rgba: b64bytes(P.rgba) }; }
    const xa = L.xaxis, ya = L.yaxis, w = xa._length, h = ya._length, dpr = window.devicePixelRatio || 1;
    Object.assign(cv.style, { left: xa._offset + "px", top: ya._offset + "px", width: w + "px", height: h + "px",
                              display: "" });
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const [x0, x1] = (ranges && ranges.x) || xa.range, [y0, y1] = (ranges && ranges.y) || ya.range;
    const sx = w / (x1 - x0), sy = h / (y1 - y0), { xy, rgba } = P.decoded, r = 2.4;
    let fill = -1;
    for (let i = 0; i < P.n; i++) {
      const px = (xy[2 * i] - x0) * sx, py = (y1 - xy[2 * i + 1]) * sy;
      if (px < -r || py < -r || px > w + r || py > h + r) { continue; }
      const c = (rgba[4 * i] << 16) | (rgba[4 * i + 1] << 8) | rgba[4 * i + 2];
      if (c !== fill) { fill = c; ctx.fillStyle = `rgb(${rgba[4 * i]},${rgba[4 * i + 1]},${rgba[4 * i + 2]})`; }
      ctx.globalAlpha = rgba[4 * i + 3] / 255;
      ctx.beginPath();
      ctx.arc(px, py, r, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  };
  const hex = (c) => (/^#[0-9a-f]{6}$/i.test(c) ? [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)) : null);
  // The figure's first trace if it is a heatmap this chart can paint itself: packed values, hex colour stops.
  const paintable = (fig) => {
    const hm = fig.data && fig.data[0];
    return hm && hm.type === "heatmap" && hm.z && hm.z.bdata && hm.z.shape && Array.isArray(hm.colorscale) &&
      hm.colorscale.every((s) => hex(s[1])) ? hm : null;
  };
  const quickKey = (fig) => {
    // A frame that differs from the last one Plotly drew only in the heatmap's values, the title and meta can be
    // drawn without Plotly (quickDraw); anything else (warp lines, samples, the posterior view, a slider, a new
    // legend) goes through Plotly.react. The heatmap's hover text may differ too (a frame with no density yet has
    // none): Plotly's next redraw brings it (FULL_MS). null: never quick.
    const hm = paintable(fig), title = fig.layout && fig.layout.title;
    if (!hm || hm.opacity === 0 || fig.layout.sliders || (title && /[<&]/.test(title.text || ""))) { return null; }
    return JSON.stringify([{ ...hm, z: null, zmin: null, zmax: null, hovertemplate: null, hoverinfo: null },
                           fig.data.slice(1),
                           { ...fig.layout, title: { ...title, text: null }, meta: null }]);
  };
  const paintHeat = (h) => {
    // A density picture h = {z, nx, ny, lo, span, stops} into the <image> Plotly made for the heatmap (a
    // zsmooth-free heatmap on a regular grid is one pixel per cell, scaled by the browser).
    const img = el.querySelector(".heatmaplayer image");
    if (!img) { return false; }
    const { z, nx, ny, lo, span, stops } = h;
    const cv = el.__vmonfHeat || (el.__vmonfHeat = document.createElement("canvas"));
    cv.width = nx;
    cv.height = ny;
    const ctx = cv.getContext("2d"), pix = ctx.createImageData(nx, ny), d = pix.data;
    for (let k = 0; k < ny; k++) {
      for (let c = 0; c < nx; c++) {
        const v = z[k * nx + c], o = ((ny - 1 - k) * nx + c) * 4;  // image rows run top-down, y up
        if (!Number.isFinite(v)) { d[o + 3] = 0; continue; }
        const t = Math.min(1, Math.max(0, (v - lo) / span));
        let j = 1;
        while (j < stops.length - 1 && stops[j][0] < t) { j++; }
        const [t0, a] = stops[j - 1], [t1, b] = stops[j], f = t1 > t0 ? (t - t0) / (t1 - t0) : 0;
        d[o] = Math.round(a[0] + (b[0] - a[0]) * f);
        d[o + 1] = Math.round(a[1] + (b[1] - a[1]) * f);
        d[o + 2] = Math.round(a[2] + (b[2] - a[2]) * f);
        d[o + 3] = 255;
      }
    }
    ctx.putImageData(pix, 0, 0);
    img.setAttributeNS("http://www.w3.org/1999/xlink", "xlink:href", cv.toDataURL("image/png"));
    return true;
  };
  const heatOf = (fig) => {
    const hm = paintable(fig);
    if (!hm) { return null; }
    const [ny, nx] = hm.z.shape.split(",").map(Number), z = new Float32Array(b64bytes(hm.z.bdata).buffer);
    if (!(nx > 0 && ny > 0) || z.length !== nx * ny) { return null; }
    return { z, nx, ny, lo: hm.zmin, span: hm.zmax - hm.zmin || 1, finite: z.some(Number.isFinite),
             stops: hm.colorscale.map((s) => [Number(s[0]), hex(s[1])]), scale: JSON.stringify(hm.colorscale) };
  };
  // Between two frames the density glides from the one shown to the new one, in steps of TWEEN_MS over about the
  // time frames have been coming apart (at most TWEEN_MAX_MS): a frame's density is fully shown that long after it
  // arrives. Only the picture moves (a 64x64 image, ~1 ms a step); the points, the title and the hover values are
  // the new frame's at once. dataset.tweens counts these in-between pictures, dataset.updates the frames.
  const TWEEN_MS = 80, TWEEN_MAX_MS = 500;
  const glide = (to) => {
    const from = el.__vmonfShown, token = {};
    el.__vmonfTween = token;
    const now = performance.now();
    if (el.__vmonfArrived) { el.__vmonfGap = 0.7 * (el.__vmonfGap || 250) + 0.3 * (now - el.__vmonfArrived); }
    el.__vmonfArrived = now;
    const same = from && from.finite && from.nx === to.nx && from.ny === to.ny && from.scale === to.scale;
    const dur = same ? Math.min(TWEEN_MAX_MS, 0.9 * (el.__vmonfGap || 250)) : 0;
    const step = () => {
      if (el.__vmonfTween !== token || !el.isConnected) { return; }  // a newer frame took over
      const a = dur > 0 ? Math.min(1, (performance.now() - now) / dur) : 1;
      let shown = to;
      if (a < 1) {
        const z = new Float32Array(to.z.length);
        for (let i = 0; i < z.length; i++) { z[i] = from.z[i] + (to.z[i] - from.z[i]) * a; }
        shown = { ...to, z, lo: from.lo + (to.lo - from.lo) * a, span: from.span + (to.span - from.span) * a };
      }
      if (!paintHeat(shown)) { return; }
      el.__vmonfShown = shown;
      if (a < 1) {
        tally("tweens");
        setTimeout(step, TWEEN_MS);
      }
    };
    if (dur > 0) { setTimeout(step, TWEEN_MS); } else { step(); }
  };
  const quickDraw = (fig) => {
    // The heatmap's picture drawn here (glide), and the title's text set in place; Plotly.react per frame was most
    // of this page's time in the browser (docs/RESULTS.md, "The live loop").
    const text = el.querySelector(".g-gtitle .gtitle"), to = heatOf(fig);
    if (!to || !el.querySelector(".heatmaplayer image")) { return false; }
    glide(to);
    if (text && fig.layout.title) { text.textContent = fig.layout.title.text || ""; }
    el.__vmonfPoints = fig.points || null;
    paintPoints();
    return true;
  };
  // Plotly redraws a frame drawn without it (its hover values and its own picture) FULL_MS after it last drew. A
  // feed's chart does it between frames, when a poll finds no newer one, or with the next frame after FULL_MAX_MS:
  // a new frame never waits for Plotly while a busy browser (four tabs on two cores) keeps them coming. While a run
  // trains, only with the pointer on the chart: Plotly's data is read only by its hover labels, its modebar's
  // download and a zoom, all with the pointer there, and its redraw once a second was ~50 ms of the tab's main thread
  // a second plus its paint, out of the core that frames and training share (docs/RESULTS.md, "The live loop").
  const FULL_MS = 1000, FULL_MAX_MS = 3000;
  const fullWanted = () => !el.__vmonfLive || !!el.__vmonfOver;
  const plotFull = async (Plotly, fig) => {
    // A figure with a Plotly slider (the flow scrubber) keeps the stage the user slid to when a newer
    // figure of the same slider arrives (training went on): the slider lives in the browser.
    const was = el.layout && el.layout.sliders && el.layout.sliders[0];
    const now = fig.layout && fig.layout.sliders && fig.layout.sliders[0];
    const keep = was && now && was.name === now.name && was.steps.length === now.steps.length &&
      was.active !== now.active ? was.active : null;
    const t0 = performance.now(), key = quickKey(fig);
    el.__vmonfPoints = fig.points || null;
    el.__vmonfPainted = false;  // Plotly's afterplot paints them once, if it fires; else once after react
    el.__vmonfOwed = null;
    await Plotly.react(el, fig.data, fig.layout, { responsive: true, displaylogo: false });
    if (!el.__vmonfPointHooks) {
      el.__vmonfPointHooks = true;
      el.on("plotly_afterplot", () => { el.__vmonfPainted = true; paintPoints(); });  // also zoom, pan, resize
      el.on("plotly_relayouting", (ev) => {  // a pan or zoom while it lasts
        const x = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
        const y = [ev["yaxis.range[0]"], ev["yaxis.range[1]"]];
        paintPoints(x[0] === undefined || y[0] === undefined ? null : { x, y });
      });
    }
    if (!el.__vmonfPainted) { paintPoints(); }
    if (keep !== null) {
      await Plotly.update(el, now.steps[keep].args[0], { ...now.steps[keep].args[1], "sliders[0].active": keep });
    }
    el.__vmonfQuickKey = key;
    el.__vmonfFull = t0;
    el.__vmonfTween = null;  // Plotly drew this frame's own picture: the next glide starts from it
    el.__vmonfShown = key === null ? null : heatOf(fig);
    el.__vmonfArrived = performance.now();
  };
  const catchUp = () => {
    // The frame on screen, drawn without Plotly, through Plotly (see FULL_MS); between frames only.
    const fig = el.__vmonfOwed;
    if (!fig || performance.now() - el.__vmonfFull < FULL_MS || !fullWanted()) { return Promise.resolve(); }
    return window.__vmonfPlotly.then(async (Plotly) => {
      const t0 = performance.now();
      await plotFull(Plotly, fig);
      tally("caughtUp");  // Plotly redrew a frame on screen
      tally("renderMs", performance.now() - t0);
    });
  };
  const draw = (fig, fullAfter = FULL_MS) => {
    tally("received");  // new frames; "updates" counts drawn ones
    el.style.height = ((fig.layout && fig.layout.height) || 450) + "px";
    return window.__vmonfPlotly.then(async (Plotly) => {
      const t0 = performance.now();
      const key = quickKey(fig), quick = key !== null && key === el.__vmonfQuickKey &&
        (t0 - el.__vmonfFull < fullAfter || !fullWanted()) && quickDraw(fig);
      if (quick) {
        tally("quick");
        el.__vmonfOwed = fig;
      } else {
        // Why Plotly drew it (the tests tell a changed figure from a due redraw): "changed" (more than the
        // density, the points and the title), "due" (Plotly last drew fullAfter ago), "picture" (none to paint).
        el.dataset.fullWhy = key === null || key !== el.__vmonfQuickKey ? "changed"
          : t0 - el.__vmonfFull >= fullAfter ? "due" : "picture";
        if (el.dataset.fullWhy === "due") { tally("caughtUp"); }
        await plotFull(Plotly, fig);
      }
      tally("renderMs", performance.now() - t0);
      tally("updates");
      el.dataset.step = String((fig.layout.meta && fig.layout.meta.step) || "");
      el.dataset.run = JSON.stringify(fig.layout.meta || {});  // which run it shows (tests check isolation)
      // When each stage of a run was first drawn (the wall clock, ms): bench/live_ui.py times Start by them.
      const meta = fig.layout.meta || {}, drawn = JSON.parse(el.dataset.firstAt || "{}");
      const stage = (meta.step || 0) > 0 ? "trained" : meta.stage;
      if (stage && !(stage in drawn)) {
        drawn[stage] = Date.now();
        el.dataset.firstAt = JSON.stringify(drawn);
      }
    });
  };
  el.__vmonfSet = component.setStateValue;
  const opts = data && typeof data === "object" ? data : {};
  el.__vmonfProbe = !!opts.probe;
  el.__vmonfTool = opts.tool || "probe";
  if (!el.__vmonfMouse) {
    // The mouse, reported to Python as state values (each carries a count "n", so a second click on the same
    // spot is news). Tools "probe" and "label": the mouse's place in data coordinates ("hover", at most every
    // 400 ms: each one reruns the live panel on the server, which on 2 cores comes out of training; null on
    // leaving) and a click that is not a drag ("pin"). Tool "add": a click ("pin") or a drag ("stroke", the
    // path) adds points; "box" and "lasso": a drag ("erase", a box or a polygon) or a click ("pin") removes
    // them. The drag is drawn over the chart while it lasts.
    el.__vmonfMouse = true;
    el.style.position = "relative";
    let last = 0, timer = null, down = null, path = null, px = null, count = 0;
    const at = (ev) => {
      const L = el._fullLayout;
      if (!L || !L.xaxis || !L.yaxis || !L.xaxis.p2c) { return null; }
      const r = el.getBoundingClientRect();
      const x = ev.clientX - r.left - L.xaxis._offset, y = ev.clientY - r.top - L.yaxis._offset;
      if (x < 0 || y < 0 || x > L.xaxis._length || y > L.yaxis._length) { return null; }
      return { x: L.xaxis.p2c(x), y: L.yaxis.p2c(y) };
    };
    const send = (name, value) => { if (el.__vmonfProbe && el.__vmonfSet) { el.__vmonfSet(name, value); } };
    const NS = "http://www.w3.org/2000/svg";
    const overlay = () => {
      let svg = el.querySelector("svg.vmonf-drag");
      if (!svg) {
        svg = document.createElementNS(NS, "svg");
        svg.setAttribute("class", "vmonf-drag");
        svg.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none;z-index:10";
        el.appendChild(svg);
      }
      return svg;
    };
    const sketch = () => {  // the drag so far, in the chart's pixels
      const svg = overlay(), tool = el.__vmonfTool;
      svg.innerHTML = "";
      if (!px || px.length < 1) { return; }
      const shape = document.createElementNS(NS, tool === "box" ? "rect" : "polyline");
      if (tool === "box") {
        const [a, b] = [px[0], px[px.length - 1]];
        shape.setAttribute("x", Math.min(a[0], b[0])); shape.setAttribute("y", Math.min(a[1], b[1]));
        shape.setAttribute("width", Math.abs(a[0] - b[0])); shape.setAttribute("height", Math.abs(a[1] - b[1]));
      } else {
        shape.setAttribute("points", px.map((p) => p.join(",")).join(" "));
      }
      shape.setAttribute("fill", tool === "add" ? "none" : "rgba(220,50,50,0.12)");
      shape.setAttribute("stroke", tool === "add" ? "#333" : "#c33");
      shape.setAttribute("stroke-dasharray", tool === "add" ? "" : "4 3");
      svg.appendChild(shape);
    };
    const pixel = (ev) => { const r = el.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
    // During a drag Plotly lays a cover over the page that takes the mouse events: follow them on the window.
    window.addEventListener("mousemove", (ev) => {
      if (!path) { return; }
      const tool = el.__vmonfTool, p = at(ev), q = pixel(ev), end = px[px.length - 1];
      if (!p || Math.hypot(q[0] - end[0], q[1] - end[1]) < (tool === "add" ? 12 : 4)) { return; }
      if (tool === "box") { path[1] = p; px[1] = q; } else if (path.length < 400) { path.push(p); px.push(q); }
      sketch();
    });
    el.addEventListener("mousemove", (ev) => {
      const tool = el.__vmonfTool;
      if (path || (tool !== "probe" && tool !== "label")) { return; }
      const p = at(ev);
      if (!p) { return; }
      clearTimeout(timer);
      const wait = 400 - (performance.now() - last);
      const go = () => { last = performance.now(); el.dataset.hover = JSON.stringify(p); send("hover", p); };
      if (wait <= 0) { go(); } else { timer = setTimeout(go, wait); }
    });
    el.addEventListener("mouseenter", () => { el.__vmonfOver = true; });  // Plotly catches up (fullWanted)
    el.addEventListener("mouseleave", () => {
      el.__vmonfOver = false;
      clearTimeout(timer);
      // Only news is sent: a value the page does not need would rerun it, and Streamlit folds a button's
      // click that comes meanwhile into that run of the chart's panel alone.
      if (el.dataset.hover && el.dataset.hover !== "null") { el.dataset.hover = "null"; send("hover", null); }
    });
    el.addEventListener("mousedown", (ev) => {
      down = [ev.clientX, ev.clientY];
      const tool = el.__vmonfTool, p = at(ev);
      if (p && (tool === "add" || tool === "box" || tool === "lasso")) {
        path = [p, p].slice(0, tool === "box" ? 2 : 1);
        px = [pixel(ev), pixel(ev)].slice(0, tool === "box" ? 2 : 1);
        ev.preventDefault();
      }
    });
    window.addEventListener("mouseup", (ev) => {
      if (!path) { return; }
      const tool = el.__vmonfTool, drawn = path;
      const moved = down && Math.abs(ev.clientX - down[0]) + Math.abs(ev.clientY - down[1]) > 4;
      path = px = null;
      overlay().innerHTML = "";
      if (!moved) { return; }  // a click: the click handler sends it
      if (tool === "add") { send("stroke", { points: drawn, n: ++count }); }
      else if (tool === "box") {
        send("erase", { box: [drawn[0].x, drawn[1].x, drawn[0].y, drawn[1].y], n: ++count });
      } else if (drawn.length >= 3) { send("erase", { lasso: drawn, n: ++count }); }
    });
    el.addEventListener("click", (ev) => {
      const p = at(ev);
      if (!p || !down || Math.abs(ev.clientX - down[0]) + Math.abs(ev.clientY - down[1]) > 4) { return; }
      const pin = { x: p.x, y: p.y, n: ++count };
      el.dataset.pin = JSON.stringify(pin);
      send("pin", pin);
    });
  }
  if (data && typeof data === "object" && data.feed) {
    // A live feed: this chart fetches its frames itself, as often as it can draw them (no page rerun per frame).
    el.__vmonfLive = data.live;
    el.__vmonfEvery = 1000 * (data.every || 0.06);
    if (el.__vmonfFeed === data.feed) { return; }
    el.__vmonfFeed = data.feed;
    el.__vmonfHeld = null;  // an inline figure held off screen is older than the feed's frames
    el.dataset.firstAt = "{}";  // another run
    el.__vmonfData = null;
    const feed = data.feed;
    const frames = feed.slice(0, -4);  // less ".txt": the pointer names the newest frame, <token>.<n>.json.gz
    (async () => {
      let seen = null, lastFresh = -Infinity;
      while (el.isConnected && el.__vmonfFeed === feed) {
        const started = performance.now();
        let fresh = false;
        try {
          const r = await fetch(feed, { cache: "no-cache" });
          const n = r.ok ? (await r.text()).trim() : "";
          if (n && n !== seen) {
            const f = await fetch(`${frames}.${Number(n)}.json.gz`);
            if (f.ok) {
              await draw(await new Response(f.body.pipeThrough(new DecompressionStream("gzip"))).json(), FULL_MAX_MS);
              seen = n;
              fresh = true;
            }
          } else if (n) {
            await catchUp();
          }
        } catch (e) { seen = null; }  // not there yet, or cut off: fetch again
        tally("polls");  // bench/live_ui.py prints them a second
        // While frames come about as fast as the polls (one came within two poll intervals), the next poll comes
        // EVERY after this one began, and at least a quarter of it (half after a poll that found nothing) after it
        // ended: the two fetches and the drawing took ~65 ms on two busy cores, and a full pause after them
        // showed ~6.8 of the ~8.7 frames a second the run sent (docs/RESULTS.md, "The live loop"). Otherwise a
        // full pause after the poll, however long it took: a run slower than the polls, or a loaded server, spaces
        // them out (a pause counted from the poll's start alone had eight busy sessions polling back to back).
        const every = el.__vmonfLive ? el.__vmonfEvery : 400, now = performance.now();
        if (fresh) { lastFresh = now; }
        const pause = now - lastFresh < 2 * every ? Math.max(fresh ? every / 4 : every / 2, every - (now - started))
          : every;
        await new Promise((ok) => setTimeout(ok, pause));
      }
    })();
    return;
  }
  el.__vmonfFeed = null;  // inline figures from here on: a feed's loop ends
  // The panel re-sends the last frame between updates; parsing and re-plotting it again would only
  // cost the browser (and, on one machine, the training) time.
  const fig = data && typeof data === "object" ? data.inline : data;
  if (!fig || el.__vmonfData === fig) { return; }
  el.__vmonfData = fig;
  const drawInline = (f) => draw(typeof f === "string" ? JSON.parse(f) : f).catch(() => { el.__vmonfData = null; });
  // A chart scrolled off screen (the curves under the density, on most screens) keeps its newest figure and draws
  // it when it comes into view: each Plotly.react of the curves cost the tab as much as a few density frames.
  if (!el.__vmonfSeen && "IntersectionObserver" in window) {
    el.__vmonfSeen = new IntersectionObserver((entries) => {
      el.__vmonfOnScreen = entries[entries.length - 1].isIntersecting;
      const held = el.__vmonfHeld;
      if (el.__vmonfOnScreen && held && !el.__vmonfFeed) { el.__vmonfHeld = null; drawInline(held); }
    });
    el.__vmonfSeen.observe(el);
  }
  if (el.__vmonfOnScreen === false && Number(el.dataset.updates) > 0) {
    el.__vmonfHeld = fig;
    tally("held");
    return;
  }
  el.__vmonfHeld = null;
  drawInline(fig);
}
"""
_live_component = st.components.v2.component("vmonf_live_plot", js=_LIVE_JS, isolate_styles=False)


def live_figure(fig: go.Figure | dict | Callable[[], dict], *, key: str, token: tuple | None = None,
                tool: str | None = None):
    """Show ``fig`` (a figure, a ``vmonf.studio.figures`` spec dict, or a function making one) in a chart that
    updates in place.

    With a ``token`` (e.g. the snapshot and the view options), a function is only called again when the
    token changes; otherwise the last payload is re-sent. The live panel re-runs several times per new
    snapshot, and with 8 sessions training the server spent most of its time redrawing unchanged figures.
    With a ``tool`` the chart reports the mouse as :func:`live_feed` does, and the result is returned.
    """
    memo = st.session_state.get(f"_live_{key}")
    if token is not None and memo is not None and memo[0] == token:
        payload, height = memo[1], memo[2]
    else:
        if callable(fig):
            fig = fig()
        if isinstance(fig, go.Figure):
            payload, height = fig.to_json(), fig.layout.height
        else:
            payload, height = json.dumps(fig, allow_nan=False, default=float), fig["layout"].get("height")
        if token is not None:
            st.session_state[f"_live_{key}"] = (token, payload, height)
    if tool is None:
        return _live_component(data=payload, key=key, height=int(height or 450))
    return _live_component(data={"inline": payload, "probe": True, "tool": tool}, key=key, height=int(height or 450),
                           **MOUSE_EVENTS)


#: Where this server's live feeds write their frames (served at ./app/static/live/<pid>/).
LIVE_ROOT = STATIC / "live"
LIVE_DIR = LIVE_ROOT / str(os.getpid())


class LiveFeed:
    """A live chart's frames as files the browser fetches itself, a new one whenever the job sends a frame.

    Through the page, every frame cost a rerun of the live panel: ~90 ms of the browser's time on top of
    drawing it, which on a 2-core machine came out of the training (docs/RESULTS.md, "Live feed"). Here the
    job's relay thread builds each frame's figure (no Streamlit call) and writes it; the chart polls the feed's
    pointer file, and the panel reruns only for the status line. The files are named by a random token and
    removed with the feed.
    """

    def __init__(self, every: float = 0.0) -> None:
        self.every = every  # at least this many seconds between two writes (a slow chart: the curves)
        self._written = 0.0
        self.token = secrets.token_urlsafe(16)
        # Each frame is a new file, compressed here once: served as .json (application/json), the server gzipped
        # it again for every fetch, at level 9, in its event loop; with 30 watchers that was a quarter of a core
        # (docs/RESULTS.md, "Watchers"). A .gz file goes out as application/gzip, which it leaves alone. A file
        # is never rewritten: the server stats a file before it opens it, and a file replaced in between went
        # out with the old length (a logged error, a cut-off fetch). Only the pointer, a fixed-size file naming
        # the newest frame, is replaced, and with the same length that race is harmless.
        self.path = LIVE_DIR / f"{self.token}.txt"
        self.url = f"./app/static/live/{os.getpid()}/{self.token}.txt"
        self._seq = 0
        self._kept: list[tuple[float, Path]] = []  # the frames on disk, oldest first, with when they went out
        self._lock = threading.Lock()
        self._job: TrainingJob | None = None
        self._build: Callable[[Snapshot], dict] | None = None
        self._view: tuple | None = None
        self._key: tuple | None = None  # (snapshot, view) last written

    def follow(self, job: TrainingJob, build: Callable[[Snapshot], dict], view: tuple) -> None:
        """From now on draw ``job``'s frames with ``build`` (``view`` names its options; a new view redraws the
        latest frame at once, a paused run included)."""
        with self._lock:
            old, self._job, self._build = self._job, job, build
            self._view = view
        if old is not job:
            if old is not None:
                old.unsubscribe(self.publish)
            job.subscribe(self.publish)
        if (snap := job.latest()) is not None:
            self.publish(snap, now=True)

    def publish(self, snap: Snapshot, now: bool = False) -> None:
        """Write ``snap``'s figure (skipped if it is the one written, or, unless ``now``, if the last write was
        less than :attr:`every` seconds ago; a build that returns ``None`` writes nothing)."""
        with self._lock:
            if self._build is None or self._key == (snap, self._view):
                return
            if not now and time.monotonic() - self._written < self.every:
                return
            fig = self._build(snap)
            if fig is None:
                return
            data = gzip.compress(json.dumps(fig, allow_nan=False, default=float).encode(), 6, mtime=0)
            LIVE_DIR.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            frame = LIVE_DIR / f"{self.token}.{self._seq}.json.gz"
            frame.write_bytes(data)  # no one fetches it before the pointer names it
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(f"{self._seq:012d}")
            os.replace(tmp, self.path)
            t = time.monotonic()
            self._kept.append((t, frame))
            # A browser that has just read the pointer fetches the frame it names within moments; a frame that
            # has been superseded for FEED_KEEP_S seconds is fetched by no one.
            while len(self._kept) > 1 and self._kept[1][0] <= t - FEED_KEEP_S:
                self._kept.pop(0)[1].unlink(missing_ok=True)
            self._key, self._written = (snap, self._view), t

    def close(self) -> None:
        with self._lock:
            job, self._job, self._build = self._job, None, None
        if job is not None:
            job.unsubscribe(self.publish)
        remove_feed(self.token)


#: How long a superseded frame stays on disk for the browsers that read the pointer just before it moved on.
FEED_KEEP_S = 5.0


def remove_feed(token: str) -> None:
    """Remove feed ``token``'s files (its pointer and its frames)."""
    for path in LIVE_DIR.glob(f"{token}.*"):
        path.unlink(missing_ok=True)


def _clear_stale_feeds() -> None:
    """Remove the feed folders of servers that have exited (each server writes into a folder of its own)."""
    if not LIVE_ROOT.exists():
        return
    for folder in LIVE_ROOT.iterdir():
        if folder.name.isdigit() and not Path(f"/proc/{folder.name}").exists() and folder != LIVE_DIR:
            shutil.rmtree(folder, ignore_errors=True)


if os.path.isdir("/proc"):  # where process folders tell which servers still run
    _clear_stale_feeds()


def _ignore() -> None:
    """The probe's state values are read from the component's result; the callbacks only declare them."""


#: The mouse's state values (see the chart's JavaScript); the callbacks only declare them.
MOUSE_EVENTS = {f"on_{name}_change": _ignore for name in ("hover", "pin", "stroke", "erase")}


def live_feed(key: str, job: TrainingJob, build: Callable[[Snapshot], dict], *, view: tuple, height: int,
              probe: bool = False, tool: str = "probe"):
    """A live chart (component ``key``) that shows ``job``'s frames drawn by ``build``, fetched by the browser
    from this session's :class:`LiveFeed` for ``key``. With ``probe`` the chart reports the mouse: the result's
    ``hover`` (``{"x", "y"}`` in data coordinates, or ``None``) and ``pin`` (the last click, with a count ``n``);
    with ``tool`` ``"add"``, ``"box"`` or ``"lasso"`` also ``stroke`` (``{"points": [...], "n"}``, a drag) and
    ``erase`` (``{"box": [x0, x1, y0, y1]}`` or ``{"lasso": [...]}``, with ``n``)."""
    feeds = session_runs().feeds
    feed = feeds.get(key)
    if feed is None:
        feed = feeds[key] = LiveFeed()
    feed.follow(job, build, view)
    # With several runs on one server, each chart fetches less often (its browser may be on the same machine).
    every = min(1.0, max(0.06, 0.075 * len(live_jobs())))
    return _live_component(data={"feed": feed.url, "live": job.state in ACTIVE_STATES, "every": every,
                                 "probe": probe, "tool": tool}, key=key, height=height, **MOUSE_EVENTS)


def probe_panel(job: TrainingJob, point: dict | None, pinned: dict | None) -> None:
    """Ask the run for its numbers at the mouse (or the pinned point) and show the latest answer: q(c|x) and
    p(c|x) per component, log pi_k + log p(x|k), log p(x), the ELBO and its gap KL(q || p)."""
    answer, latest = job.probe_result, job.latest()
    stale = answer is not None and latest is not None and latest.step > answer["step"]  # training went on
    if point and (point != st.session_state.get(f"_probe_sent_{id(job)}") or stale):
        st.session_state[f"_probe_sent_{id(job)}"] = point
        job.probe(point["x"], point["y"], wait=0.3)  # a paused run's panel does not rerun by itself
        answer = job.probe_result
    if not answer:
        st.caption("Point probe: move the mouse over the density to read the model at that point; click to pin it.")
        return
    x, y = answer["x"]
    where = "pinned point" if pinned and [pinned["x"], pinned["y"]] == answer["x"] else "mouse"
    lines = [f"**Point probe** ({where}) at x = ({x:.4f}, {y:.4f}), step {answer['step']:,}: "
             f"log p(x) = {answer['log_p']:.4f} · ELBO(x) = {answer['elbo']:.4f} · "
             f"gap log p(x) − ELBO(x) = KL(q ‖ p) = {answer['gap']:.4f}", "",
             "| component | q(c\\|x) | p(c\\|x) | log π_c + log p(x\\|c) |", "|---|---|---|---|"]
    lines += [f"| {c + 1} | {q:.4f} | {p:.4f} | {lj:.4f} |"
              for c, (q, p, lj) in enumerate(zip(answer["q"], answer["p"], answer["log_joint"], strict=True))]
    st.markdown("\n".join(lines))


# -- watching a run ----------------------------------------------------------------------------------
#: Seconds between a watcher's fetches of the density and of the curves, and between the runs of its page's
#: status panel. A watcher costs the server its panel runs and its fetches of two shared files, never a figure
#: of its own; on 2 cores with 30 of them these add up (bench/watch_load.py, docs/RESULTS.md "Watchers").
WATCH_FETCH_S = 0.4
WATCH_CURVES_S = 4.0
WATCH_PANEL_S = 5.0
#: The watchers' density is drawn at most this often: a little more often than they fetch it (so each fetch
#: still finds a new frame), not at the rate the run makes frames, which nobody watching would see.
WATCH_DRAW_S = 0.3
_watch_lock = threading.Lock()


def watch_feeds(job: TrainingJob, how: dict) -> tuple[LiveFeed, LiveFeed]:
    """The two feeds every watcher of ``job`` who draws it as ``how`` (:func:`look`) fetches: its mixture density
    and its curves, each drawn once per frame for all of them (made by the first such watcher; the files go
    when the job does)."""
    from vmonf.studio import figures

    key = tuple(sorted(how.items()))
    with _watch_lock:
        feeds = job.extras.setdefault("watch_feeds", {}).get(key)
        if feeds is None:
            feeds = job.extras["watch_feeds"][key] = (LiveFeed(every=WATCH_DRAW_S), LiveFeed(every=WATCH_CURVES_S / 2))
            for feed in feeds:
                weakref.finalize(job, remove_feed, feed.token)
    density, curves = feeds
    palette = how["palette"]
    density.follow(job, lambda frame: styled(figures.density_spec(frame, raster_points=True, palette=palette), how,
                                             PRESENT_HEIGHT), ("watch",))
    curves.follow(job, lambda frame: None if frame.get("hist_step") is None
                  else styled(figures.curves_spec(frame, palette=palette), how), ("curves",))
    return feeds


def watch_chart(feed: LiveFeed, key: str, *, live: bool, height: int, every: float = WATCH_FETCH_S,
                probe: bool = False):
    """A chart that shows a shared :func:`watch_feeds` feed, fetched every ``every`` seconds (with ``probe``,
    reporting the mouse like :func:`live_feed`)."""
    return _live_component(data={"feed": feed.url, "live": live, "every": every, "probe": probe,
                                 "tool": "probe"}, key=key, height=height, **MOUSE_EVENTS)


def watch_link(job: TrainingJob) -> str:
    """The address at which anybody can watch ``job`` (read-only), on the server this page came from."""
    here = (st.context.url or "").split("?")[0].rstrip("/")
    return f"{here.rsplit('/', 1)[0] if here.count('/') > 2 else here}/watch?run={job.watch_token}"


def watch_box(job: TrainingJob) -> None:
    """The run's watch link, for a class to follow it on their own screens."""
    with st.expander("Let others watch this run (read-only link)", icon=":material/visibility:"):
        st.code(watch_link(job), language=None, wrap_lines=True)
        st.caption("Anybody opening this link sees this run's frames, curves and point probe live, as it trains. "
                   "They cannot change it, and watching trains nothing. When you start a new run they follow you "
                   "to it; when you close this tab they keep the recording.")


def throttled(key: str, seconds: float) -> bool:
    """True at most once every ``seconds`` per ``key`` in this session (for slow-changing charts)."""
    now = time.monotonic()
    if now - st.session_state.get(f"_throttle_{key}", 0.0) >= seconds:
        st.session_state[f"_throttle_{key}"] = now
        return True
    return False


# -- one set of runs per browser session --------------------------------------------------------------
#: Seconds a session's runs outlive its connection. Streamlit releases session-scoped resources whenever the
#: websocket drops (Wi-Fi, a sleeping laptop, a server too busy to answer pings), not only when the tab closes,
#: and the page then reconnects to the same session: its runs must still be there. A closed tab's runs stop
#: after this long.
RECONNECT_GRACE_S = float(os.environ.get("VMONF_RECONNECT_GRACE", "60"))


class SessionRuns:
    """The training jobs of one browser session, by page. Stopped once the session's connection has been gone
    for :data:`RECONNECT_GRACE_S` seconds."""

    def __init__(self) -> None:
        self.jobs: dict[str, TrainingJob] = {}
        self.feeds: dict[str, LiveFeed] = {}  # by chart key
        self.seen = time.monotonic()  # the last script run of the session (see session_runs)

    def released(self, grace: float) -> None:
        """The connection dropped: stop every run unless the session runs again within ``grace`` seconds."""
        dropped = time.monotonic()

        def check() -> None:
            if self.seen <= dropped:
                self.close()

        timer = threading.Timer(grace, check)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        for job in self.jobs.values():
            job.owner_left = True  # its watchers are told why it stopped
        stop_all(list(self.jobs.values()), timeout=5)
        for feed in self.feeds.values():
            feed.close()


@st.cache_resource(scope="session", on_release=lambda runs: runs.released(RECONNECT_GRACE_S), show_spinner=False)
def _connected_runs() -> SessionRuns:
    # Released on every disconnect, made again on the first run after a reconnect: the runs themselves live in
    # the session's state, which survives a reconnect.
    return st.session_state.setdefault("_vmonf_runs", SessionRuns())


def session_runs() -> SessionRuns:
    runs = _connected_runs()
    runs.seen = time.monotonic()
    return runs


def current_job(page: str) -> TrainingJob | None:
    return session_runs().jobs.get(page)


def _start(page: str, spec: JobSpec) -> None:
    runs = session_runs()
    job = runs.jobs.get(page)
    if job is not None and job.spec == spec and job.state in ACTIVE_STATES:
        return  # already running: a rerun or a double click never starts a second worker
    old = job
    if old is not None:
        old.stop(timeout=5)  # first: its training slot is the new run's
    job = TrainingJob(spec)
    try:
        job.start()
    except BusyError as exc:
        st.session_state[f"{page}_flash"] = str(exc)
        return
    if old is not None:
        old.extras["next"] = job.watch_token  # its watchers follow the owner to the new run
    runs.jobs[page] = job


def _reset(page: str) -> None:
    job = session_runs().jobs.pop(page, None)
    if job is not None:
        job.stop(timeout=5)


#: What ``hide=`` in a link can hide (comma-separated): the sidebar, the run's buttons, the explanations.
HIDEABLE = ("sidebar", "controls", "text")
_HIDE_CSS = {
    "sidebar": '[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none !important; }',
    "controls": ".st-key-run_controls { display: none !important; }",
    "text": '[data-testid="stMain"] [data-testid="stCaptionContainer"] { display: none !important; }',
}


#: The presenter view's larger type, for every page (Streamlit sizes its text in rem).
_PRESENT_CSS = "html { font-size: 125% !important; }"
#: How much larger the presenter view draws the charts' type, and the live density chart's height there.
PRESENT_SCALE = 1.5
PRESENT_HEIGHT = 760


def teacher_mode() -> dict:
    """The presentation options of the link the session opened with (read once): ``hide`` (a list of
    :data:`HIDEABLE` parts), ``autoplay``, ``present`` (``""``, ``"1"`` or ``"dark"``: the presenter view) and
    ``palette``; hides those parts of every page. The last two start the sidebar's Display options."""
    mode = st.session_state.get("_teacher")
    if mode is None:
        q = st.query_params
        hide = [h for h in q.get("hide", "").split(",") if h in HIDEABLE]
        present = q.get("present", "") if q.get("present", "") in ("1", "dark") else ""
        mode = st.session_state["_teacher"] = {"hide": hide, "autoplay": q.get("autoplay", "") == "1",
                                               "present": present}
        st.session_state.setdefault("display_present", bool(present))
        st.session_state.setdefault("display_safe", q.get("palette", "") == "safe")
    css = [_HIDE_CSS[h] for h in mode["hide"]] + ([_PRESENT_CSS] if st.session_state.get("display_present") else [])
    if css:
        st.html("<style>" + "\n".join(css) + "</style>")
    return mode


def teacher_query() -> dict[str, str]:
    """The presentation options as query parameters, to keep in a link the page rewrites."""
    mode = st.session_state.get("_teacher") or {}
    return {**({"hide": ",".join(mode["hide"])} if mode.get("hide") else {}),
            **({"autoplay": "1"} if mode.get("autoplay") else {}),
            **({"present": mode["present"]} if mode.get("present") else {}),
            **({"embed_options": "dark_theme"} if mode.get("present") == "dark" else {}),
            **({"palette": "safe"} if st.session_state.get("display_safe") else {})}


def display_controls() -> None:
    """The sidebar's Display options (every page): the colour-blind-safe palette and the presenter view."""
    with st.sidebar.expander("Display", icon=":material/palette:"):
        st.toggle("colour-blind-safe colours", key="display_safe",
                  help="Paul Tol's muted colours: up to nine clusters stay apart with red-green or blue-yellow "
                       "colour blindness (beyond nine the colours repeat). In charts, replays and exports. "
                       "palette=safe in a link.")
        st.toggle("presenter view", key="display_present",
                  help="Large type and a larger chart, for a projector at the back of a room. present=1 in a link; "
                       "present=dark also turns the page dark. The page's own theme (light or dark) is under ⋮ → "
                       "Settings; the charts follow it.")


def look() -> dict:
    """How this session's figures are drawn: ``palette`` (a ``figures.PALETTES`` name), ``theme`` (the page's
    Streamlit theme, ``"light"`` or ``"dark"``) and ``present`` (the presenter view)."""
    theme = getattr(getattr(st.context, "theme", None), "type", None)
    return {"palette": "safe" if st.session_state.get("display_safe") else "default",
            "theme": "dark" if theme == "dark" else "light", "present": bool(st.session_state.get("display_present"))}


def styled(fig: dict, how: dict, height: int | None = None) -> dict:
    """``fig`` drawn for ``how`` (:func:`look`): the dark theme's colours, and in the presenter view larger type
    and, given ``height``, that height (the caller knows which chart may grow)."""
    from vmonf.studio import figures

    if how["theme"] == "light" and not how["present"]:
        return fig
    return figures.presented(fig, how["theme"], scale=PRESENT_SCALE if how["present"] else 1.0,
                             height=height if how["present"] else None)


def autoplay(page: str, spec: JobSpec, blocked: str | None = None) -> None:
    """With ``autoplay=1`` in the link, start the run it describes once, as the page opens (no click)."""
    mode = st.session_state.get("_teacher") or {}
    if mode.get("autoplay") and not blocked and not st.session_state.get(f"_{page}_autoplayed"):
        st.session_state[f"_{page}_autoplayed"] = True
        if current_job(page) is None:
            _start(page, spec)


def controls(page: str, spec: JobSpec, blocked: str | None = None) -> TrainingJob | None:
    """Start / Pause / Resume / Step / Stop / Reset buttons; returns the page's job, if any. ``blocked`` says
    why these settings cannot start a run yet (Start is disabled, and the reason shown)."""
    job = current_job(page)
    box = st.container()  # one slot for the messages: as they come and go the charts below keep their place
    if msg := st.session_state.pop(f"{page}_flash", None):
        box.warning(msg, icon=":material/hourglass_top:")
    changed = job is not None and job.spec != spec
    if blocked:
        box.info(blocked, icon=":material/draw:")
    elif changed:
        box.warning("You changed the data or model settings. The current run still uses the old ones. "
                    "Starting again throws the trained run away.", icon=":material/warning:")
    state = job.state if job else "created"
    cols = st.container(key="run_controls").columns(6)  # hide=controls hides this row (the keys still work)
    ended = state in states.ENDED
    cols[0].button("Discard and start" if changed else ("Start again" if ended else "Start"), key=f"{page}_start",
                   type="primary", on_click=_start, args=(page, spec), width="stretch",
                   disabled=bool(blocked) or not (job is None or changed or ended),
                   help="Start training a new run with these settings, in the background. To go on with a "
                        "paused run, use Resume.")
    cols[1].button("Pause", key=f"{page}_pause", on_click=lambda: job and job.pause(),
                   disabled=state not in states.PAUSABLE, width="stretch",
                   help="Pause training; the plots keep the current state. Pressed while the initialisation is "
                        "chosen, the run pauses as soon as it begins.")
    cols[2].button("Resume", key=f"{page}_resume", on_click=lambda: job and job.resume(),
                   disabled=state not in states.RESUMABLE, width="stretch",
                   help="Continue training from where it paused.")
    cols[3].button("Step", key=f"{page}_step", on_click=lambda: job and job.step(25),
                   disabled=state not in states.RESUMABLE, width="stretch",
                   help="Take 25 training steps, then pause again: watch the model change bit by bit.")
    cols[4].button("Stop", key=f"{page}_stop", on_click=lambda: job and job.stop(),
                   disabled=not (job and job.alive), width="stretch",
                   help="End training. The trained model and its recording are kept.")
    cols[5].button("Reset", key=f"{page}_reset", on_click=_reset, args=(page,), disabled=job is None,
                   width="stretch", help="Throw this run away.")
    return current_job(page)


def init_progress(snap: Snapshot | None) -> str:
    """What the worker is doing before training proper, from its latest frame."""
    m = snap.meta if snap is not None else {}
    stage, name = m.get("stage"), INIT_LABELS.get(m.get("candidate", ""), m.get("candidate", ""))
    if stage not in ("partition", "candidate"):
        return "Loading the data and choosing how the components start…"
    total = m.get("candidate_total", 1)
    which = f"{name} {m.get('candidate_index', 1)}/{total}" if total > 1 else name
    if stage == "partition":
        if m.get("cut") is not None:
            return (f"Choosing an initialisation: **{which}**, normalised cut {m['cut']:.3f}. Each candidate "
                    "partition colours the points in turn; the one that cuts the fewest strong neighbour links "
                    "is kept.")
        return f"Choosing an initialisation: **{which}**. Its starting partition colours the points; q(c|x) learns it."
    return (f"Choosing an initialisation: **{which}**, step {snap.step} of {m.get('init_steps', 0)}. Each candidate "
            "trains briefly and the one with the best held-out ELBO is kept.")


def init_summary(job: TrainingJob) -> str | None:
    """Which initialisation the run kept, and what the others scored (None before it is known)."""
    init = job.info.get("init")
    if not init:
        return None
    scores = job.info.get("init_scores") or {}
    text = f"Initialisation: **{INIT_LABELS.get(init, init)}**"
    if len(scores) > 1:
        others = ", ".join(f"{INIT_LABELS.get(n, n)} {v:.3f}" for n, v in scores.items() if n != init)
        if job.info.get("init_criterion") == "elbo":
            text += f", kept for its held-out ELBO {scores[init]:.3f} ({others})"
        else:
            text += (f", kept for the lowest normalised cut of the data's neighbourhood graph, {scores[init]:.3f} "
                     f"({others})")
    for name, twin in (job.info.get("init_skipped") or {}).items():
        text += f"; {INIT_LABELS.get(name, name)} gave the same partition as {INIT_LABELS.get(twin, twin)}"
    return text + "."


def status_line(job: TrainingJob | None, snap: Snapshot | None, hint: str = "", owner: bool = True) -> None:
    """Step counter, speed and state, what the start is doing, plus a clear message for errors or divergence.

    Its messages share one container, so the charts after it keep their place (and are never re-mounted)
    as messages come and go. ``hint`` is shown before the first Start. A watcher (not the ``owner``) is not told
    which buttons to press.
    """
    state = job.state if job else "created"
    c1, c2, c3, c4 = st.columns(4)
    training = snap is not None and job is not None and snap.meta.get("stage", "training") == "training"
    c1.metric("step", f"{snap.step:,}" if training else "–",  # candidate starts count their own steps (below)
              help="Training steps of the run's model. While the initialisation is chosen, each candidate's steps "
                   "are in the line below.")
    measured = states.TRAINING | {states.RunState.INITIALIZING}
    rate = snap.meta.get("steps_per_sec", 0) if snap and state in measured else 0
    c2.metric("steps / s", f"{rate:.0f}" if rate else "–")
    c3.metric("device", job.info.get("device", "…") if job else "–")
    c4.metric("state", STATE_LABELS.get(state, state))
    box = st.container()
    if job is None:
        if hint:
            box.info(hint, icon=":material/arrow_back:")
        return
    notes = [init_summary(job) if state not in states.PREPARING else None]
    if job.ari_reached is not None:
        seconds, step = job.ari_reached
        notes.append(f"ARI ≥ {ARI_REACHED:g} reached {seconds:.1f} s after Start (step {step:,})")
    if state == "error":
        box.error(f"Training stopped: {job.message}", icon=":material/error:")
    elif state == "diverged":
        box.error(job.message, icon=":material/report:")
    elif state == "finished":
        box.success(f"{job.message}" + (" Press Resume to train on, or Stop to keep the model." if owner else ""),
                    icon=":material/flag:")
    elif state in states.PREPARING:
        box.info(init_progress(snap), icon=":material/hourglass_top:")
    if any(notes):
        box.caption(" · ".join(n for n in notes if n))


def before_first_frame(key: str) -> None:
    """What a part of the page outside the live panel shows until the run's first frame: that part is drawn in
    the page's full runs, and none comes by itself when training begins; the button runs the page."""
    st.caption("Available once the run shows its first frame.")
    st.button("Show it", key=key, help="Run the page again, to show the run's latest frame here.")


def controls_state(state: str) -> tuple:
    """What the page around the live panel shows for ``state``: which buttons are enabled, and whether the
    panel refreshes itself. States with the same value need no full rerun of the page (a full run took
    ~0.5 s on 2 cores: several of them made Start look slow)."""
    return state in states.PAUSABLE, state in states.RESUMABLE, state in states.ENDED, state in states.ACTIVE


def refresh_interval(job: TrainingJob, every: float = 0.15) -> float:
    """Seconds between live-panel runs: ``every``, stretched when many runs train on this server, and
    never much shorter than the time between the job's snapshots (at most 2 s).

    Each session's panel run costs the server ~20-40 ms and the browser about as much; at 0.15 s for
    8 sessions the server alone needed more than the one core its GIL allows, and every page lagged.
    At ``0.075 s x live runs`` the server's total stays near 13 runs a second. A loaded worker sends a
    snapshot every few seconds, so running the panel more often only redraws the same frame.
    """
    return min(2.0, max(every, 0.075 * len(live_jobs()), 0.8 * job.snapshot_interval))


def live_panel(page: str, render: Callable[[TrainingJob | None, Snapshot | None], None], every: float = 0.15,
               preview: Snapshot | None = None) -> None:
    """Re-run ``render(job, snapshot)`` about every ``every`` seconds while the page's job trains.

    ``preview`` (the data alone) is drawn before Start and until the job's first frame arrives, in the same
    place, so pressing Start never shows an empty chart.
    """
    job = current_job(page)
    drawn_state = job.state if job else "created"
    drawn_controls = controls_state(drawn_state)
    interval = refresh_interval(job, every) if job else every

    @st.fragment(run_every=interval if drawn_state in ACTIVE_STATES else None)
    def panel() -> None:
        j = current_job(page)
        snap = j.latest() if j is not None else None
        if j is None or snap is None:
            render(j, preview)
        else:
            render(j, snap)
        if j is None:
            return
        # A full run from inside the panel is kept to what needs one. Under load (8 sessions on 2 cores) such
        # reruns racing the panel's own timed runs now and then crashed Streamlit's page ("Bad delta path index",
        # a blank page; docs/RESULTS.md, "The live loop"), so none comes with an ordinary start.
        if controls_state(j.state) != drawn_controls:
            st.rerun()  # e.g. paused, finished or failed: redraw the controls to match
        if not 0.5 <= refresh_interval(j, every) / interval <= 2:
            st.rerun()  # the load changed a lot: a full run sets the new interval (only it can)

    panel()

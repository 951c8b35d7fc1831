"""Figures are pure: a snapshot in, a valid plotly figure out, with axes that never move between frames."""

import base64
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from vmonf.data import make_toy
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.studio import figures
from vmonf.studio.capture import make_view, take_snapshot


@pytest.fixture(scope="module")
def frames():
    x, y = make_toy("moons", 300, seed=0)
    xt = torch.as_tensor(x)
    model = VMoNFModel(ModelConfig(2, 2, depth=2, hidden=16))
    model.set_standardization(xt.mean(0), xt.std(0))
    labelled = np.zeros(len(x), bool)
    labelled[:6] = True
    view = make_view(x, y, labelled, grid=30)
    out, history = [], []
    for step in range(2):
        with torch.no_grad():
            for p in model.flows.parameters():
                p.add_(0.05 * torch.randn_like(p))
        history.append({"step": step, "pi": [0.5, 0.5], "val_elbo": -1.0 - step, "val_loglik": -0.9})
        out.append(take_snapshot(model, view, history, {"step": step}))
    return out


def test_density_figure_is_valid_and_stable(frames):
    a, b = (figures.density_figure(f, show_samples=True) for f in frames)
    assert isinstance(a, go.Figure)
    assert a.layout.xaxis.range == b.layout.xaxis.range and a.layout.yaxis.range == b.layout.yaxis.range
    assert a.layout.uirevision == "keep" and "step 0" in a.layout.title.text and "step 1" in b.layout.title.text
    names = [t.name for t in a.data]
    assert "labelled" in names and "samples" in names and "cluster 1" in names
    heat = a.data[0]
    assert heat.zmax - heat.zmin == pytest.approx(figures.LOG_DENSITY_RANGE)


def test_component_density_and_curves(frames):
    f = figures.density_figure(frames[1], component=1, show_points=False)
    assert "component 2" in f.layout.title.text and len(f.data) == 1
    c = figures.curves_figure(frames[1])
    assert isinstance(c, go.Figure) and len(c.data) == 2 + 2 + 2  # ELBO, log p, two pi, ARI, NMI


def test_packed_round_trips():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    spec = figures.packed(a)
    import base64

    assert spec["shape"] == "2, 3"
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(spec["bdata"]), np.float32).reshape(2, 3), a)


def test_canvas_points_carry_every_point_its_colour_and_opacity_least_sure_first():
    import base64

    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], dtype=np.float32)
    out = figures.canvas_points(pts, np.array([1, -1, 0]), np.array([0.9, 0.2, 0.5]))
    xy = np.frombuffer(base64.b64decode(out["xy"]), np.float32).reshape(-1, 2)
    rgba = np.frombuffer(base64.b64decode(out["rgba"]), np.uint8).reshape(-1, 4)
    assert out["n"] == 3
    np.testing.assert_array_equal(xy, pts[[1, 2, 0]])  # opacity 0.2, 0.5, 0.9: the surest drawn last
    rgb = [tuple(int(figures.PALETTE[k][i:i + 2], 16) for i in (1, 3, 5)) for k in (0, 1)]
    assert [tuple(c) for c in rgba[:, :3]] == [(90, 90, 90), *rgb]
    np.testing.assert_array_equal(rgba[:, 3], [51, 128, 230])


def test_live_points_leave_the_traces(frames):
    live = figures.density_spec(frames[1], raster_points=True)
    still = figures.density_spec(frames[1])
    labelled = frames[1].get("labelled")
    assert live["points"]["n"] == len(frames[1].get("points")) - (0 if labelled is None else int(labelled.sum()))
    assert "points" not in [t.get("name") for t in live["data"]] and "points" in [t.get("name") for t in still["data"]]
    assert "points" not in still


@pytest.mark.parametrize("log_scale", [True, False])
def test_the_data_alone_has_a_blank_density_of_the_same_heatmap(log_scale):
    """Before a model exists the heatmap is there, blank (every cell at the scale's white bottom) and with no hover
    values, so the live chart can draw the first density into it; apart from z and hover it is the same trace."""
    from vmonf.studio.capture import data_snapshot

    x, y = make_toy("moons", 200, seed=1)
    view = make_view(x, y, grid=20)
    data = figures.density_spec(data_snapshot(view, 2, {"step": 0}), log_scale=log_scale)
    hm = data["data"][0]
    z = np.frombuffer(base64.b64decode(hm["z"]["bdata"]), np.float32)
    assert hm["type"] == "heatmap" and np.all(z == hm["zmin"]) and hm["colorscale"][0][1] == "#ffffff"
    assert hm["hoverinfo"] == "skip" and "hovertemplate" not in hm
    model = VMoNFModel(ModelConfig(2, 2, depth=1, hidden=8))
    with torch.no_grad():
        trained = figures.density_spec(take_snapshot(model, view, [], {"step": 1}), log_scale=log_scale)["data"][0]
    drop = ("z", "zmin", "zmax", "hoverinfo", "hovertemplate")
    assert {k: v for k, v in hm.items() if k not in drop} == {k: v for k, v in trained.items() if k not in drop}
    assert np.isfinite(np.frombuffer(base64.b64decode(trained["z"]["bdata"]), np.float32)).all()


def test_image_figures_need_image_snapshots(frames):
    with pytest.raises(ValueError, match="image"):
        figures.image_grid_figure(frames[0])


@pytest.mark.parametrize("which", ["q", "p"])
def test_posterior_views(frames, which):
    fig = figures.density_figure(frames[1], background=which)
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,") and image.sizing == "stretch"
    assert ("q(c|x)" if which == "q" else "p(c|x)") in fig.layout.title.text
    assert frames[1].get(f"{which}_grid_assign").shape == frames[1].get("log_density").shape


def test_flow_warp_lines_follow_the_flow(frames):
    warp = frames[1].get("warp")
    assert warp.shape[0] == 2 and warp.shape[-1] == 2 and np.isfinite(warp).all()
    fig = figures.density_figure(frames[1], component=1, warp=1)
    assert any(t.name and "warps a square grid" in t.name for t in fig.data)


def test_warp_is_the_inverse_flow():
    from vmonf.studio.capture import _warp_lines

    model = VMoNFModel(ModelConfig(2, 2, depth=2, hidden=8))
    model.set_standardization(torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.5]))
    lines = _warp_lines(model, n_lines=3, n_points=4)  # identity flows: just the standardisation undone
    z = torch.linspace(-2.5, 2.5, 4)
    torch.testing.assert_close(lines[0, 0, :, 0], z * 2.0 + 1.0)
    torch.testing.assert_close(lines[1, 0, :, 1], torch.full((4,), -2.5 * 0.5 - 1.0))


@pytest.mark.parametrize("training", [True, False])
def test_take_snapshot_leaves_model_and_history_as_they_were(training):
    from vmonf.studio.capture import record_scores

    x, y = make_toy("moons", 200, seed=1)
    model = VMoNFModel(ModelConfig(2, 2, depth=1, hidden=8)).train(training)
    history = [{"step": 0, "pi": [0.5, 0.5], "val_elbo": -1.0}]
    snap = take_snapshot(model, make_view(x, y, grid=8), history, {"step": 0})
    assert model.training is training
    assert "ari" not in history[0] and np.isfinite(snap.get("hist_ari")[-1])  # the frame's curve has its score
    record_scores(history, snap)
    assert history[0]["ari"] == snap.meta["ari"]


def test_a_light_frame_leaves_out_the_warp_and_the_table_and_is_filled_in_from_a_full_one():
    from vmonf.studio.snapshot import LIGHT_SKIPS

    x, y = make_toy("moons", 200, seed=1)
    model = VMoNFModel(ModelConfig(2, 2, depth=2, hidden=8))
    view = make_view(x, y, grid=8)
    history = [{"step": 4, "pi": [0.5, 0.5], "val_elbo": -1.0}]
    full = take_snapshot(model, view, history, {"step": 3})
    light = take_snapshot(model, view, history, {"step": 4}, full=False)
    assert light.meta["light"] and "light" not in full.meta
    assert all(full.get(name) is not None and light.get(name) is None for name in LIGHT_SKIPS)
    for name, values in light.arrays.items():  # the rest is what the full frame of the same model has
        np.testing.assert_array_equal(values, full.get(name), err_msg=name)
    filled = light.filled_from(full)
    assert filled.step == 4 and filled.meta["heavy_step"] == 3
    assert all(filled.get(name) is full.get(name) for name in LIGHT_SKIPS)
    assert filled.get("log_density") is light.get("log_density")
    edited = take_snapshot(model, make_view(x[:150], y[:150], grid=8), history, {"step": 3})
    assert light.filled_from(edited) is light  # its per-point numbers are of other points


def test_flow_stages_run_from_the_base_gaussian_to_the_components_samples():
    from vmonf.studio.capture import flow_stages

    model = VMoNFModel(ModelConfig(3, 2, depth=3, hidden=8))
    with torch.no_grad():
        for p in model.flows.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.set_standardization(torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.5]))
    x, _ = make_toy("moons", 50, seed=0)
    out = flow_stages(model, 1, x, n_samples=40, seed=5)
    stages = out["stages"]
    assert len(stages) == len(out["names"]) == 3 + 2 and out["names"][0] == "Gaussian base space"
    base = torch.randn(40, 2, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(stages[0]["samples"], base.numpy(), atol=1e-4)  # first: the base Gaussian
    drawn, _ = model.sample(40, component=1, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(stages[-1]["samples"], drawn.detach().numpy(), atol=1e-3)  # last: its samples
    radii = [np.hypot(*np.asarray(c).T).mean() for c in stages[0]["circles"]]
    np.testing.assert_allclose(radii, [1, 2, 3], atol=1e-4)
    with torch.no_grad():  # data pushed the other way: all the way down is the flow's own z
        z, _ = model.flows(model._standardize(torch.as_tensor(x)).expand(3, -1, -1))
    np.testing.assert_allclose(stages[0]["points"], z[1].numpy(), atol=1e-3)
    np.testing.assert_allclose(stages[-1]["points"], x, atol=1e-4)
    with pytest.raises(ValueError, match="component"):
        flow_stages(model, 3, x)
    # The scrubber figure holds every stage; each slider step shows exactly one stage's traces.
    fig = figures.scrubber_spec(out, np.zeros(len(x), int))
    json.dumps(fig, allow_nan=False, default=float)
    steps, per = fig["layout"]["sliders"][0]["steps"], len(figures.stage_spec(out, 0)["data"])
    assert len(steps) == len(stages) and fig["layout"]["sliders"][0]["active"] == len(stages) - 1
    for i, step in enumerate(steps):
        shown = [j for j, v in enumerate(step["args"][0]["visible"]) if v]
        assert shown == list(range(i * per, (i + 1) * per)) and step["args"][1]["meta.stage"] == i
    assert [t["visible"] for t in fig["data"]] == steps[-1]["args"][0]["visible"]


# Colour-vision deficiencies as linear-RGB matrices (Machado, Oliveira & Fernandes 2009, severity 1).
_CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def _lab(hex_colour: str, matrix) -> np.ndarray:
    """CIELAB of ``hex_colour`` as someone with the deficiency ``matrix`` sees it (D65 white)."""
    c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lin = np.clip(np.asarray(matrix) @ lin, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    f = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(f > 0.008856, np.cbrt(f), 7.787 * f + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def closest_pair(palette: list[str]) -> float:
    """The smallest colour difference (CIE76 ΔE) between two colours of ``palette``, over normal vision and
    the three deficiencies."""
    out = np.inf
    for matrix in [np.eye(3), *_CVD.values()]:
        lab = [_lab(h, matrix) for h in palette]
        out = min(out, min(np.linalg.norm(a - b) for i, a in enumerate(lab) for b in lab[i + 1:]))
    return out


def test_the_safe_palette_keeps_every_colour_apart_with_each_colour_vision_deficiency():
    assert closest_pair(figures.SAFE_PALETTE) > 12  # 15.6 (protanopia)
    assert closest_pair(figures.PALETTE[:len(figures.SAFE_PALETTE)]) < 8  # the default's ninth colours merge


def test_figures_take_the_palette_everywhere(frames):
    f = frames[1]
    safe = figures.density_spec(f, palette="safe", background="q")
    legend = [t["marker"]["color"] for t in safe["data"] if t.get("name", "").startswith("cluster")]
    assert legend == figures.SAFE_PALETTE[:2]
    plain = figures.density_spec(f, background="q")
    assert safe["layout"]["images"][0]["source"] != plain["layout"]["images"][0]["source"]
    raster = figures.density_spec(f, palette="safe", raster_points=True)["points"]["rgba"]
    assert raster != figures.density_spec(f, raster_points=True)["points"]["rgba"]
    pis = [t["line"]["color"] for t in figures.curves_spec(f, palette="safe")["data"] if t["name"].startswith("π")]
    assert pis == figures.SAFE_PALETTE[:2]


def test_the_presenter_view_is_dark_large_and_leaves_the_figure_alone(frames):
    fig = figures.density_spec(frames[0])
    before = json.dumps(fig, default=str)
    dark = figures.presented(fig, "dark", scale=1.6, height=760)
    assert json.dumps(fig, default=str) == before  # a new figure; the original is untouched
    assert dark["layout"]["paper_bgcolor"] == figures.THEMES["dark"]["paper"] and dark["layout"]["height"] == 760
    assert dark["layout"]["title"]["font"]["size"] > fig["layout"]["title"]["font"]["size"]
    assert dark["data"][0]["colorscale"][0][1] == figures.THEMES["dark"]["density"][0][1]
    go.Figure(dark)  # still a valid figure
    go.Figure(figures.presented(figures.curves_spec(frames[1]), "light", scale=1.5))


def test_every_live_figure_draws_with_the_plotly_js_the_app_serves(frames):
    """The live charts load plotly.js's cartesian bundle (ui.CARTESIAN_JS, a third of the full one): every trace
    type the app's figures use must be one of its trace modules, or Plotly would leave that trace out."""
    import re

    import ui
    from vmonf.studio.capture import flow_stages

    bundle = ui.CARTESIAN_JS.read_text()
    modules = set(re.findall(r'name:"(\w+)",basePlotModule', bundle))
    assert {"scatter", "heatmap"} <= modules and "scattergl" not in modules  # the pattern reads the bundle
    snap = frames[-1]
    specs = [figures.density_spec(snap, show_samples=True, raster_points=raster, background=background)
             for raster in (True, False) for background in ("density", "q", "p")]
    specs += [figures.density_spec(snap, component=0, warp=0), figures.curves_spec(snap),
              {"data": [figures.given_labels_trace(snap, {0: 1, 3: 0})]}]
    model = VMoNFModel(ModelConfig(2, 2, depth=2, hidden=8))
    x, _ = make_toy("moons", 40, seed=0)
    stages = flow_stages(model, 0, x, n_samples=20, seed=0)
    specs += [figures.scrubber_spec(stages, np.zeros(len(x), int)), figures.stage_spec(stages, 0)]
    used = {trace.get("type", "scatter") for spec in specs for trace in spec["data"]}
    assert used and used <= modules, used - modules


def test_the_served_plotly_js_follows_the_plotly_package(tmp_path, monkeypatch):
    """The cartesian bundle is served only where it is the plotly package's own plotly.js version (the figures
    are written for that one); another version, or none, falls back to the package's full bundle."""
    import types

    import ui

    assert ui.plotly_js_version(ui.CARTESIAN_JS) is not None  # the shipped bundle's header is read
    full = tmp_path / "package_data" / "plotly.min.js"
    full.parent.mkdir()
    monkeypatch.setattr(ui, "plotly", types.SimpleNamespace(__file__=str(tmp_path / "__init__.py")))
    cartesian = tmp_path / "plotly-cartesian.min.js"
    monkeypatch.setattr(ui, "CARTESIAN_JS", cartesian)
    full.write_text("/**\n* plotly.js v4.1.1\n* Copyright 2012-2026, Plotly, Inc.\n*/\n")
    cartesian.write_text("/**\n* plotly.js (cartesian - minified) v4.1.1\n*/\n")
    assert ui.plotly_js_source() == cartesian
    cartesian.write_text("/**\n* plotly.js (cartesian - minified) v4.0.0\n*/\n")
    assert ui.plotly_js_source() == full
    cartesian.unlink()
    assert ui.plotly_js_source() == full

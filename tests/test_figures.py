"""Figures are pure: a snapshot in, a valid plotly figure out, with axes that never move between frames."""

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

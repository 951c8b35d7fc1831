"""Recorded runs: save/load round trips, hostile files refused, and every export format decodes."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vmonf.data import make_toy
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.studio import export as ex
from vmonf.studio.capture import make_view, take_snapshot
from vmonf.studio.runfile import Run, load_run, run_bytes, save_run
from vmonf.studio.snapshot import Recording


def make_run() -> Run:
    """A short real recording of a 3-component model on pinwheel (also used by test_faults)."""
    x, y = make_toy("pinwheel", 300, wings=3, seed=0)
    xt = torch.as_tensor(x)
    model = VMoNFModel(ModelConfig(3, 2, depth=2, hidden=16))
    model.set_standardization(xt.mean(0), xt.std(0))
    view = make_view(x, y, np.arange(len(x)) < 5, grid=24)
    rec, history = Recording(max_frames=8), []
    for step in range(0, 120, 10):
        with torch.no_grad():
            for p in model.flows.parameters():
                p.add_(0.02 * torch.randn_like(p))
        history.append({"step": step, "pi": [1 / 3] * 3, "val_elbo": -1.0, "val_loglik": -0.9})
        rec.append(take_snapshot(model, view, history, {"step": step}))
    return Run({"dataset": "pinwheel"}, rec.snapshot_list(), b"weights", {"note": "test"})


@pytest.fixture(scope="module")
def run() -> Run:
    return make_run()


def test_recording_bounded_and_ordered(run):
    steps = [f.step for f in run.frames]
    assert 2 <= len(steps) <= 8 and steps == sorted(steps) and steps[0] == 0


def test_save_load_round_trip(run, tmp_path):
    save_run(tmp_path / "r.vmonf", run)
    back = load_run(tmp_path / "r.vmonf")
    assert back.settings == run.settings and back.checkpoint == run.checkpoint and back.info == run.info
    assert [f.step for f in back.frames] == [f.step for f in run.frames]
    for a, b in zip(run.frames, back.frames, strict=True):
        assert set(a.arrays) == set(b.arrays)
        np.testing.assert_array_equal(a.get("log_density"), b.get("log_density"))


def _zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_hostile_run_files_are_refused(run):
    good = run_bytes(run)
    pickled = io.BytesIO()
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    evil_frame = _zip({"arr.npy": pickled.getvalue()})
    cases = {
        "truncated": good[: len(good) // 2],
        "not a zip": b"hello",
        "wrong format": _zip({"run.json": json.dumps({"format": "other"})}),
        "pickled frame": _zip({"run.json": json.dumps({"format": "vmonf-run", "version": 1}),
                               "frames/00000.npz": evil_frame}),
        "no frames": _zip({"run.json": json.dumps({"format": "vmonf-run", "version": 1})}),
    }
    for name, blob in cases.items():
        with pytest.raises(ValueError):
            load_run(blob)
        assert name


@pytest.mark.parametrize("fmt", list(ex.FORMATS))
def test_every_export_format_decodes(run, fmt):
    frames = run.frames
    data = ex.export(frames, fmt, fps=5, **({} if fmt == "html" else {"size": (320, 240), "title": "t"}))
    n = len(frames)
    if fmt == "gif":
        im = Image.open(io.BytesIO(data))
        assert im.n_frames == n and im.size == (320, 240)
    elif fmt == "mp4":
        import os
        import tempfile

        import imageio_ffmpeg

        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
            f.write(data)
        try:
            count, _ = imageio_ffmpeg.count_frames_and_secs(f.name)
            reader = imageio_ffmpeg.read_frames(f.name)
            meta = next(reader)
            reader.close()
        finally:
            os.unlink(f.name)
        assert count == n and tuple(meta["size"]) == (320, 240)
    elif fmt == "png":
        z = zipfile.ZipFile(io.BytesIO(data))
        pngs = sorted(p for p in z.namelist() if p.endswith(".png"))
        assert len(pngs) == n and Image.open(z.open(pngs[0])).size == (320, 240)
        assert f"{{0}}{{{n - 1}}}" in z.read("beamer.tex").decode()
    elif fmt == "svg":
        import xml.etree.ElementTree as ET

        z = zipfile.ZipFile(io.BytesIO(data))
        svgs = sorted(p for p in z.namelist() if p.endswith(".svg"))
        assert len(svgs) == n
        root = ET.fromstring(z.read(svgs[0]))  # valid XML, an SVG of the frame's size
        assert root.tag.endswith("svg") and root.get("width").startswith("230.4pt")  # 320 px at 100 dpi = 3.2 in
        uses = root.findall(".//{http://www.w3.org/2000/svg}use")  # one vector marker per point
        assert len(uses) >= len(frames[0].get("points"))
    elif fmt == "pdf":
        from pypdf import PdfReader

        z = zipfile.ZipFile(io.BytesIO(data))
        pdf = PdfReader(io.BytesIO(z.read("frames.pdf")))
        assert len(pdf.pages) == n  # one page per frame
        assert [round(float(v)) for v in pdf.pages[0].mediabox[2:]] == [230, 173]  # 3.2 x 2.4 in, in points
        assert "step" in pdf.pages[-1].extract_text()  # the corner's text is text, not pixels
        assert "{frames}{}{}" in z.read("beamer.tex").decode()
    else:
        html = data.decode()
        assert "Plotly.newPlot" in html and len(html) > 3_000_000  # plotly.js itself is inlined
        assert '<script src="http' not in html and "<script src='http" not in html  # nothing loads from the web
        assert html.count('"name":"') >= n  # one named frame per recorded frame


def test_animation_figure_is_stable(run):
    fig = ex.animation_figure(run.frames)
    assert len(fig.frames) == len(run.frames)
    zs = {(f.data[0].zmin, f.data[0].zmax) for f in fig.frames}
    assert len(zs) == 1  # one colour range for the whole run
    assert [f.layout.title.text.split("step ")[1].split(" ")[0] for f in fig.frames] == [
        str(f.step) for f in run.frames]


def test_thin_keeps_ends():
    items = list(range(100))
    assert ex.thin(items, 10)[0] == 0 and ex.thin(items, 10)[-1] == 99 and len(ex.thin(items, 10)) == 10


def test_bad_size_is_refused(run):
    with pytest.raises(ValueError, match="Frame size"):
        ex.export(run.frames, "gif", size=(10, 10))


def test_the_shipped_examples_open_and_match_their_presets():
    from vmonf.checkpoint import load_checkpoint
    from vmonf.studio.examples import HEAVY, shipped_runs
    from vmonf.studio.presets import PRESETS

    runs = shipped_runs()
    assert list(runs) == list(PRESETS)  # one per preset (bench/shipped_runs.py makes them)
    assert sum(p.stat().st_size for p in runs.values()) < 7.5e6  # small enough to ship (about 1 MB a preset)
    for title, path in runs.items():
        run = load_run(path)
        assert run.settings["preset"] == title and run.settings["n_components"] == PRESETS[title].settings["k"]
        assert len(run.frames) >= 20 and run.frames[-1].step >= 1000 and not set(HEAVY) & set(run.frames[0].arrays)
        model = load_checkpoint(run.checkpoint)[0]
        assert model.config.n_components == PRESETS[title].settings["k"]
        if "failure" in title:  # the paper's named failure, recorded as it happens: the rings cut in half-planes
            assert run.frames[-1].meta["ari"] < 0.5
        elif "paper's recipe" in title:  # the method as published: as good or as bad as that seed made it
            assert run.settings["train"]["init"] == "random" and run.settings["train"]["temperature_decay"] == 1e-3
        else:
            assert run.frames[-1].meta["ari"] > 0.9


def test_side_by_side_panels_and_the_safe_palette_reach_the_exported_frames(run):
    import xml.etree.ElementTree as ET

    from vmonf.studio.figures import SAFE_PALETTE

    frame = run.frames[-1]
    fig = ex.frame_figure(frame, size=(960, 360), panels=True, palette="safe")
    assert [a.get_title() for a in fig.axes] == list(ex.PANELS)
    single = ex.frame_figure(frame, size=(960, 360))
    assert len(single.axes) == 1
    # The exported SVG draws the points in the safe palette's colours, and not in the default's.
    z = zipfile.ZipFile(io.BytesIO(ex.export(run.frames[-1:], "svg", size=(960, 360), panels=True, palette="safe")))
    svg = z.read(z.namelist()[0]).decode()
    ET.fromstring(svg)
    svg = svg.lower()
    k = len(frame.get("pi"))
    assert all(c.lower() in svg for c in SAFE_PALETTE[:k])
    default = zipfile.ZipFile(io.BytesIO(ex.export(run.frames[-1:], "svg", size=(960, 360))))
    assert SAFE_PALETTE[0].lower() not in default.read(default.namelist()[0]).decode().lower()
    a = ex.render_frame(frame, size=(960, 360), panels=True, palette="safe")
    assert a.shape == (360, 960, 3)

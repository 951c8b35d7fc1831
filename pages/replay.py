"""Replay and export: play a recorded run in the browser and export it for slides or a thesis defence."""

import json

import streamlit as st

import ui
from vmonf.studio import export as ex
from vmonf.studio.examples import shipped_runs
from vmonf.studio.runfile import Run, check_checkpoint, load_run, run_bytes

st.title("Replay and export")
st.caption("Every run records its frames as it trains. Play one back here, then take it to your slides: "
           "a standalone HTML page, a GIF, an MP4, or PNG frames with a LaTeX Beamer snippet.")


@st.cache_data(max_entries=8, show_spinner="Checking the model (it is loaded as plain weights, never as code)…")
def checked(data: bytes) -> dict:
    return check_checkpoint(data)


def model_summary(data: bytes, what: str) -> None:
    """Check a checkpoint in a separate process and say what it holds, or why it was refused."""
    info = checked(data)
    if not info["ok"]:
        st.error(f"Refused {what}: {info['message']}", icon=":material/error:")
        return
    c = info["config"]
    st.success(f"Checked {what}: K={c['n_components']} {c['flow']} flows of depth {c['depth']} on {c['dim']}-D data, "
               f"{info['parameters']:,} parameters" + (f", trained {info['step']:,} steps" if info.get("step") else "")
               + ".", icon=":material/check_circle:")


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def trained_model(data: bytes):
    """The run's model, loaded as plain weights (``weights_only``) after :func:`checked` accepted it."""
    from vmonf.checkpoint import load_checkpoint

    return load_checkpoint(data)[0]


def flow_scrubber(run: Run) -> None:
    """The run's trained model, one component's flow layer by layer, with the last frame's points."""
    from vmonf.studio import figures
    from vmonf.studio.capture import flow_stages

    model, last = trained_model(run.checkpoint), run.frames[-1]
    k = model.config.n_components
    component = st.selectbox("component", list(range(k)), format_func=lambda c: f"component {c + 1}",
                             key="replay_scrub_component")
    stages = flow_stages(model, component, last.get("points"), seed=int(run.settings.get("data_seed", 0)))
    st.caption("Slide *flow layer* under the chart from the component's Gaussian base space (0) through each "
               "block to data space: the grid, 1-2-3 σ circles and samples move forward, the data points back.")
    ui.live_figure(lambda: figures.scrubber_spec(stages, last.get("assign")), key="replay_stages",
                   token=(id(run.checkpoint), component))


@st.cache_resource(max_entries=8, show_spinner=False)
def example_run(path: str) -> Run:
    """A shipped example run, read once per server (its frames are read-only)."""
    return load_run(path)


def session_run() -> Run | None:
    """The 2-D run of this session: its own, or else the one it watched (kept when its owner left)."""
    job = ui.current_job("toy") or st.session_state.get("_watching")
    if job is None or not len(job.recording):
        return None
    return Run(json.loads(job.spec.to_json()), job.recording.snapshot_list(), job.checkpoint)


EXAMPLE = "a recorded example (no training)"
source = st.radio("run", ["this session's 2-D run", EXAMPLE, "a saved run file"], horizontal=True,
                  key="replay_source",
                  help="The run from the 2-D playground, one of the paper's experiments recorded beforehand (it "
                       "opens at once: a lecture can begin before anything trains), or a .vmonf file saved earlier.")
run = None
if source == EXAMPLE:
    examples = shipped_runs()
    if not examples:
        st.info("No recorded examples here: `python bench/shipped_runs.py` makes them.", icon=":material/info:")
    else:
        title = st.selectbox("example", list(examples), key="replay_example",
                             help="Each preset of the 2-D playground, trained as the app trains it and recorded.")
        try:
            run = example_run(str(examples[title]))
        except ValueError as exc:
            st.error(f"Could not open the example: {exc}", icon=":material/error:")
        else:
            s = run.settings
            st.caption(f"{s.get('dataset')}, K={s.get('n_components')}, {run.info.get('steps', run.frames[-1].step):,} "
                       f"steps, recorded by `{run.info.get('made_by', 'the app')}`.")
elif source.startswith("this"):
    run = session_run()
    if run is None:
        st.info("No run yet in this session. Train one on the 2-D playground, watch one, or load a saved run file.",
                icon=":material/arrow_back:")
else:
    upload = st.file_uploader("run file (.vmonf) or model checkpoint (.pt)", type=["vmonf", "pt"], key="replay_upload",
                              help="A run file is written by 'Save this run' in the app or by `python -m vmonf train`; "
                                   "a .pt checkpoint by 'Download the trained model'.")
    if upload is not None and upload.name.lower().endswith(".pt"):
        model_summary(upload.getvalue(), upload.name)
        st.info("A checkpoint holds a trained model but no recorded frames, so there is nothing to replay. "
                "Load it in Python with `vmonf.VMoNF.load(path)`.", icon=":material/info:")
    elif upload is not None:
        try:
            run = load_run(upload.getvalue())
        except ValueError as exc:
            st.error(f"Could not open {upload.name}: {exc}", icon=":material/error:")
        else:
            if run.checkpoint is not None:
                model_summary(run.checkpoint, f"the model in {upload.name}")
if run is None:
    st.stop()
if run.frames[0].get("grid_x") is None:
    st.warning("This run has no 2-D density frames (image runs cannot be animated yet).", icon=":material/warning:")
    st.stop()

c1, c2, c3 = st.columns(3)
n_frames = c1.slider("frames", 2, max(2, len(run.frames)), min(len(run.frames), 100), key="replay_frames",
                     help="Frames used, evenly spread over the run (first and last always kept).")
fps = c2.slider("frames per second", 1, 30, 8, key="replay_fps", help="Playback and export speed.")
title = c3.text_input("title", value=str(run.settings.get("dataset", "")), max_chars=80, key="replay_title",
                      help="Drawn above the animation and in exports.")
frames = ex.thin(run.frames, n_frames)
st.caption(f"{len(run.frames)} frames recorded, steps {run.frames[0].step}–{run.frames[-1].step}. "
           "Press ▶ Play under the chart; drag the slider to scrub. It plays in your browser, no server needed.")
how = ui.look()
st.plotly_chart(ex.animation_figure(frames, title=title, frame_ms=int(1000 / fps), palette=how["palette"]),
                key="replay_chart", config={"displaylogo": False})

if run.checkpoint is not None and checked(run.checkpoint)["ok"]:
    with st.expander("Scrub through a flow of the trained model", icon=":material/layers:"):
        flow_scrubber(run)

st.subheader("Export")
e1, e2, e3 = st.columns(3)
fmt = e1.selectbox("format", ["gif", "mp4", "html", "png", "pdf", "svg"], key="replay_fmt",
                   format_func={"gif": "GIF", "mp4": "MP4 video", "html": "HTML page (works offline)",
                                "png": "PNG frames + Beamer snippet (zip)",
                                "pdf": "PDF vector frames + Beamer snippet (zip)",
                                "svg": "SVG vector frames (zip)"}.get,
                   help="GIF and MP4 go into PowerPoint or Keynote; the PNG and PDF zips go into a LaTeX Beamer deck "
                        "(PDF pages also go into a thesis as vector figures: points, axes and text stay sharp, the "
                        "density behind them is an image); SVG frames go into web pages and drawing programs.")
size = e2.selectbox("size", ["640x480", "800x600", "1024x768", "1280x720"], key="replay_size",
                    help="Pixels of each frame (GIF, MP4, PNG; the vector frames' size at 100 dpi).")
overlay = e3.toggle("step and ELBO in the corner", value=True, key="replay_overlay",
                    help="Write each frame's training step and ELBO in its top-left corner.")
panels = e3.toggle("three panels side by side", key="replay_panels",
                   help="Each frame as " + ", ".join(ex.PANELS) + " (the third paints the plane when the run "
                        "recorded q on its grid, else shows the points). Choose a wide size, e.g. 1280x720. The "
                        "colours follow Display → colour-blind-safe colours in the sidebar.")
if st.button("Prepare the export", key="replay_export", type="primary"):
    w, h = (int(v) for v in size.split("x"))
    bar = st.progress(0.0, text="drawing frames…")
    kw = {"fps": fps, "title": title, "palette": how["palette"]}
    if fmt != "html":
        kw.update(size=(w, h), overlay=overlay, panels=panels,
                  progress=lambda done, total: bar.progress(done / total, text=f"drawing frame {done} of {total}"))
    try:
        st.session_state["replay_file"] = (fmt, ex.export(frames, fmt, **kw))
    except ValueError as exc:
        st.error(f"Export failed: {exc}", icon=":material/error:")
    bar.empty()
if (ready := st.session_state.get("replay_file")) and ready[0] == fmt:
    name = f"vmonf-{(title or 'run').replace(' ', '-')}.{ex.EXTENSIONS[fmt]}"
    st.download_button(f"Download {name} ({len(ready[1]) / 1e6:.1f} MB)", ready[1], file_name=name,
                       key="replay_download")
st.download_button("Save this run (.vmonf)", lambda: run_bytes(run), file_name="vmonf-run.vmonf", key="replay_save",
                   help="Settings, trained model and frames in one file: load it here later, or export from the CLI.")

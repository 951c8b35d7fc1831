"""Watch a run: anybody with a run's watch link sees its live frames, its curves and the point probe, read-only.

Watching never trains and never takes a training slot; the run's owner keeps the controls. Every watcher
fetches the same two files, drawn once per frame for all of them (``ui.watch_feeds``).
"""

import json
from urllib.parse import parse_qs, urlparse

import streamlit as st

import ui
from vmonf.studio import states
from vmonf.studio.job import watched
from vmonf.studio.settings import DEFAULTS

st.title("Watch a run")


def token_from(text: str) -> str:
    """The run token of a pasted watch link (or of the token itself)."""
    text = text.strip()
    if "run=" in text:
        return (parse_qs(urlparse(text).query).get("run") or [""])[0]
    return text


token = st.query_params.get("run", "")
if not token:
    st.caption("A run's owner finds its watch link under the playground's buttons. Open it, or paste it here.")
    pasted = st.text_input("watch link", key="watch_paste", placeholder="http://…/watch?run=…",
                           help="The link the run's owner shares: it shows their run live, and nothing you do here "
                                "changes it.")
    if not pasted:
        st.stop()
    token = token_from(pasted)
    st.query_params["run"] = token

held = st.session_state.get("_watching")
job = held if held is not None and held.watch_token == token else watched(token)
if job is None:
    st.info("No run with this link is on this server: it ended and nobody kept it, or the server restarted. "
            "Recorded runs open at once on the Replay page.", icon=":material/link_off:")
    st.page_link("pages/replay.py", label="Replay a recorded run", icon=":material/movie:")
    st.stop()
st.session_state["_watching"] = job  # kept while this session lasts: the recording stays when the run ends
if job.state in states.ENDED and (nxt := watched(job.extras.get("next", ""))) is not None:
    st.session_state["_watching"] = nxt  # the owner started a new run: follow them to it
    st.query_params["run"] = nxt.watch_token
    st.toast("The owner started a new run; this page now shows it.", icon=":material/fiber_new:")
    st.rerun()

s = job.spec
n_points = len(s.points) if s.points is not None else s.n_samples
data = "drawn or uploaded points" if s.dataset == "csv" else s.dataset
depth = s.model.get("depth", DEFAULTS["depth"])
st.caption(f"Read-only: {data}, {n_points:,} points, K = {s.n_components}, depth {depth}. "
           "The run's owner "
           "has the controls; watching trains nothing on this server. Move the mouse over the chart to probe the "
           "model at a point.")
how = ui.look()
feeds = ui.watch_feeds(job, how)


def ended_notice() -> None:
    snap = job.latest()
    step = f" at step {snap.step:,}" if snap is not None else ""
    why = "The owner's session ended, so the run stopped" if job.owner_left else "The owner stopped the run"
    st.warning(f"{why}{step}. Its recording stays here while this page is open: replay or export it on the Replay "
               "page (*this session's 2-D run*), or save it.", icon=":material/stop_circle:")
    if len(job.recording):
        from vmonf.studio.runfile import Run, run_bytes  # imports torch: only once a recording is to be saved

        run = Run(json.loads(s.to_json()), job.recording.snapshot_list(), job.checkpoint)
        st.download_button("Save the recording (.vmonf)", lambda: run_bytes(run), file_name="vmonf-watched.vmonf",
                           key="watch_save", help="Settings, frames and (once saved by the worker) the trained model.")


if job.state in states.ENDED:
    ended_notice()
drawn = job.state


@st.fragment(run_every=ui.WATCH_PANEL_S if drawn in ui.ACTIVE_STATES else None)
def panel() -> None:
    snap = job.latest()
    ui.status_line(job, snap, owner=False)
    mouse = ui.watch_chart(feeds[0], "watch_density", live=job.alive, probe=True,
                           height=ui.PRESENT_HEIGHT if how["present"] else 520)
    if snap is not None:
        ui.probe_panel(job, mouse.hover, None)
    ui.watch_chart(feeds[1], "watch_curves", live=job.alive, height=300, every=ui.WATCH_CURVES_S)
    if (job.state in ui.ACTIVE_STATES) != (drawn in ui.ACTIVE_STATES):
        st.rerun()  # the run ended (or was resumed): the page says so


panel()

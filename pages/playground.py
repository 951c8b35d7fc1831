"""2-D playground: pick a toy data set, K and the flow depth, and watch the mixture learn live."""

import os
import platform
from urllib.parse import urlencode

import numpy as np
import streamlit as st

import ui
from vmonf.data import TOY_DATASETS
from vmonf.studio import editing, figures
from vmonf.studio.editing import Editor, PointSet
from vmonf.studio.presets import PRESETS
from vmonf.studio.settings import DEFAULTS, SETTINGS, TOY_PARAMS, Setting, from_query, to_query, to_spec, true_k
from vmonf.studio.uploads import MIN_CSV_ROWS as MIN_POINTS
from vmonf.studio.uploads import parse_points_csv
from vmonf.studio.worker import JobSpec, load_spec_data, preview_frame

PAGE = "toy"


def widget_key(setting: Setting, dataset: str) -> str:
    """A setting's widget key; K has one per data set (each remembers its own number of clusters)."""
    return f"toy_k_{dataset}" if setting.key == "k" else f"toy_{setting.key}"


def setting_widget(setting: Setting, dataset: str, *, key: str | None = None, high=None, default=None, **kw):
    """The sidebar control for one setting, built from its schema entry (label, range, default, help)."""
    sb, key = st.sidebar, key or widget_key(setting, dataset)
    value = setting.default if default is None else default
    common = dict(key=key, help=setting.help, **kw)
    if setting.widget == "slider":
        return sb.slider(setting.label, setting.low, setting.high if high is None else high, value, setting.step,
                         **common)
    if setting.widget == "select_slider":
        return sb.select_slider(setting.label, list(setting.choices), value, format_func=setting.text, **common)
    if setting.widget == "selectbox":
        return sb.selectbox(setting.label, list(setting.choices), list(setting.choices).index(value),
                            format_func=setting.text, **common)
    return sb.number_input(setting.label, setting.low, setting.high, value, **common)


def widget_state(settings: dict) -> dict:
    """Settings (a preset or a shared link) as values of this page's widget keys."""
    s = {**DEFAULTS, **settings}
    ds = s["dataset"]
    state = {"toy_dataset": ds, **{widget_key(setting, ds): s[key] for key, setting in SETTINGS.items()}}
    state.update({f"toy_{ds}_{p}": v for p, v in s["params"].items()})
    return state


def choose_preset() -> None:
    """Widget callback: remember the preset; :func:`apply_pending` sets the widgets at the top of the run."""
    preset = PRESETS.get(st.session_state["toy_preset"])
    if preset is not None:
        st.session_state["_toy_pending"] = widget_state(preset.settings)


def apply_pending() -> None:
    if pending := st.session_state.pop("_toy_pending", None):
        st.session_state.update(pending)


def apply_shared_link() -> None:
    """Once per session: open the experiment that the URL's query parameters describe."""
    if st.session_state.get("_toy_link_read"):
        return
    st.session_state["_toy_link_read"] = True  # only the link the session opened with, never our own writes
    if "ds" not in st.query_params:
        return
    query = st.query_params.to_dict()
    if query.get("ds") == "draw":  # drawn points travel in the link itself
        try:
            points = editing.from_query(query.pop("pts", ""), SETTINGS["k"].high)
        except ValueError as exc:
            st.session_state["toy_link_problems"] = [f"the link's points cannot be used: {exc}"]
            return
        st.session_state["toy_editor"] = Editor(points, ("draw",), editing.bounds_of(points.x))
        settings, problems = from_query({**query, "ds": DEFAULTS["dataset"]})
        settings = {**settings, "dataset": DRAW}
        st.session_state.update(widget_state(settings))
        if problems:
            st.session_state["toy_link_problems"] = problems
        return
    settings, problems = from_query(query)
    if settings:
        st.session_state.update(widget_state(settings))
    if problems:
        st.session_state["toy_link_problems"] = problems


def devices() -> list[str]:
    """Device choices, guessed without importing torch (slow); the run reports the device it really used."""
    out = ["auto", "cpu"]
    if os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0"):
        out.append("cuda")
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        out.append("mps")
    return out


CSV = "your own CSV file"
DRAW = "draw your own points"
#: The chart's mouse tools (the JavaScript's names) and what the toolbar calls them.
TOOLS = {"probe": "probe", "add": "add points", "box": "box erase", "lasso": "lasso erase"}
EDIT_TOOLS = ("add", "box", "lasso")


def data_base(settings: dict, upload: bytes | None) -> tuple:
    """What an edit starts from: the data settings (or the uploaded file); another base drops the edits."""
    if settings["dataset"] == DRAW:
        return ("draw",)
    if settings["dataset"] == CSV:
        return ("csv", hash(upload))
    return ("toy", settings["dataset"], settings["n"], settings["data_seed"], tuple(sorted(settings["params"].items())),
            settings["labels"])


def current_editor(base: tuple) -> Editor | None:
    """The point set being edited, if it started from ``base`` (an empty canvas for a drawing)."""
    editor = st.session_state.get("toy_editor")
    if editor is not None and editor.base != base:
        editor = st.session_state["toy_editor"] = None  # other data chosen: its edits are gone
    if editor is None and base == ("draw",):
        editor = st.session_state["toy_editor"] = Editor(PointSet.create(np.zeros((0, 2))), base,
                                                         editing.bounds_of(np.zeros((0, 2))))
    return editor


def edited_spec(spec: JobSpec, editor: Editor) -> JobSpec:
    """``spec`` training on the editor's points: the data set is the user's own, labels as given by hand."""
    from dataclasses import replace

    pts = editor.points
    return replace(spec, dataset="csv", points=pts.x.tolist(),
                   point_labels=None if pts.truth is None else pts.truth.tolist(),
                   given_labels=pts.given.tolist() if pts.n_given else None, labelled_per_class=0,
                   bounds=editor.bounds)


def too_few(spec: JobSpec) -> str | None:
    """Why ``spec``'s own points cannot be trained on yet (``None`` when they can)."""
    if spec.dataset != "csv":
        return None
    n, need = len(spec.points), max(spec.n_components, MIN_POINTS)
    return None if n >= need else f"{n} point{'s' * (n != 1)} so far: draw at least {need} to train."


def csv_ui() -> tuple[list, list | None, bytes] | None:
    """Upload and check a CSV of 2-D points; returns ``(points, labels, file)`` or None (with the reason shown)."""
    upload = st.sidebar.file_uploader("CSV file", type=["csv", "txt"], key="toy_csv",
                                      help="Two columns x, y (and optionally a third with integer labels); "
                                           "a header row is fine. Up to 20,000 rows.")
    if upload is None:
        st.info("Upload a CSV of 2-D points in the sidebar: columns x, y and, if you know them, a label.",
                icon=":material/arrow_back:")
        return None
    try:
        x, y = parse_points_csv(upload.getvalue())
    except ValueError as exc:
        st.error(f"{upload.name} cannot be used: {exc}", icon=":material/error:")
        return None
    st.sidebar.caption(f"{len(x):,} points" + (f", {len(set(y[y >= 0].tolist()))} labelled classes"
                                                if y is not None else ""))
    return x.tolist(), None if y is None else y.tolist(), upload.getvalue()


def parse_depths(text: str, k: int) -> tuple[int, ...] | None:
    """``"2, 6"`` -> ``(2, 6)``: one depth from 1 to 10 per component. Raises ValueError saying what is wrong."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        return None
    try:
        depths = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"use whole numbers separated by commas, e.g. {', '.join(['4'] * k)}") from None
    if len(depths) != k:
        raise ValueError(f"give one depth per component: {k} numbers, not {len(depths)}")
    if not all(1 <= d <= 10 for d in depths):
        raise ValueError("each depth must be between 1 and 10")
    return depths


def beyond_ui(k: int, depth: int) -> tuple[dict, dict]:
    """The paper's future-work options, as ModelConfig and TrainConfig fields. All off by default."""
    with st.sidebar.expander("Beyond the paper", icon=":material/science:"):
        st.caption("Options the paper lists as future work; docs/BEYOND.md has what each measured. "
                   "Consistency is on by default (it made clustering reliable across seeds); the rest are off.")
        setting = SETTINGS["consistency"]
        consistency = st.select_slider(setting.label, list(setting.choices), setting.default, key="toy_consistency",
                                       format_func=setting.text, help=setting.help)
        share = st.toggle("share weights between components", key="toy_share",
                          help="One set of flow networks for all components, each told apart by a small learned "
                               "embedding: far fewer parameters.")
        prune = st.select_slider(
            "remove components below", [0.0, 0.02, 0.05, 0.1], 0.0, key="toy_prune",
            format_func=lambda v: "never" if v == 0 else f"{v:.0%} of the points",
            help="Annihilation: a component that explains less than this share of the points is removed during "
                 "training (the mixture weights are learned then). Start with K too large and watch.")
        pressure = st.select_slider(
            "annihilation pressure", [0.0, 1.0, 2.0, 5.0], 0.0, key="toy_pressure", disabled=not prune,
            help="Adds this x the entropy of the mixture weights to the loss, so the weights concentrate and "
                 "redundant components shrink until they are removed (needs a removal threshold above).")
        text = st.text_input("depth of each component", "", key="toy_depths", placeholder=f"all {depth}",
                             help="Uneven complexity, e.g. '1, 6' gives component 1 one layer and component 2 six. "
                                  "Empty: every component uses the flow depth above.")
        try:
            depths = parse_depths(text, k)
        except ValueError as exc:
            st.error(f"Depths ignored: {exc}.", icon=":material/error:")
            depths = None
    model = {"share_weights": True} if share else {}
    if depths is not None:
        model["depths"] = list(depths)
    train = {"consistency": consistency, **{key: v for key, v in (("prune_below", prune),
                                                                  ("weight_entropy", pressure if prune else 0.0)) if v}}
    return model, train


def components_ui(job, snap) -> None:
    """Per component: its share of the points, its parameters and how well it fits its points; and a
    button that takes one out of the mixture (controlled annihilation)."""
    if snap is None or snap.get("comp_params") is None or snap.get("comp_share") is None:
        ui.before_first_frame("toy_components_show")
        return
    active = snap.get("active").astype(bool)
    rows = [{"component": c + 1, "in the mixture": bool(active[c]), "share of points": float(snap.get("comp_share")[c]),
             "flow parameters": int(snap.get("comp_params")[c]),
             "mean log p(x | c) of its points": float(snap.get("comp_loglik")[c])} for c in range(len(active))]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"share of points": st.column_config.ProgressColumn(format="%.2f", min_value=0,
                                                                                   max_value=1)})
    st.caption("A deeper flow has more parameters and can fit a curved cluster better (a higher mean log p); "
               "a component with a tiny share is a candidate for removal.")
    live = [c for c in range(len(active)) if active[c]]
    left, right = st.columns([2, 1])
    pick = left.selectbox("component to remove", [c + 1 for c in live], key="toy_remove_pick",
                          label_visibility="collapsed")
    right.button("Remove component", key="toy_remove", disabled=not job.alive or len(live) < 2,
                 on_click=lambda: job.remove_component(int(pick) - 1), width="stretch",
                 help="Take this component out of the mixture: its points go to the others as training goes on.")


def settings_ui() -> JobSpec | None:
    """The sidebar: data, model and training settings, returned as one immutable JobSpec (None: no data yet)."""
    sb = st.sidebar
    sb.selectbox("preset", ["custom"] + list(PRESETS), key="toy_preset", on_change=choose_preset,
                 help="The paper's experiments, one click each: sets the data, K, depth and training.")
    sb.header("Data")
    name = sb.selectbox("data set", [*TOY_DATASETS, DRAW, CSV], key="toy_dataset",
                        help="A 2-D toy data set with known true clusters, points you draw on the chart, or your own "
                             "CSV file. Any of them can be edited on the chart (the chart tools above it).")
    own = csv_ui() if name == CSV else None
    if name == CSV and own is None:
        return None
    if name == DRAW:
        sb.caption("Click on the chart to add a point, drag to spray several. The brush gives them a label "
                   "(semi-supervised) or none.")
        n = SETTINGS["n"].default
    elif name != CSV:
        sb.caption(TOY_DATASETS[name][1])
        n = setting_widget(SETTINGS["n"], name)
    else:
        n = len(own[0])
    params = {p.key: setting_widget(p, name, key=f"toy_{name}_{p.key}") for p in TOY_PARAMS.get(name, [])}
    if name != DRAW:
        setting_widget(SETTINGS["data_seed"], name)
    sb.header("Model")
    max_k = min(SETTINGS["k"].high, n)  # never more components than points
    if st.session_state.get(f"toy_k_{name}", 0) > max_k:  # e.g. a smaller CSV replaced a bigger one
        st.session_state[f"toy_k_{name}"] = max_k
    k = setting_widget(SETTINGS["k"], name, high=max_k,
                       default=2 if name == DRAW else min(true_k(name, params), max_k))
    depth = setting_widget(SETTINGS["depth"], name)
    setting_widget(SETTINGS["hidden"], name)
    setting_widget(SETTINGS["prior"], name)
    sb.header("Training")
    for key in ("lr", "batch", "labels", "init", "temperature", "steps", "seed"):
        if not (key == "labels" and name == DRAW):  # drawn points are labelled with the brush
            setting_widget(SETTINGS[key], name)
    beyond_model, beyond_train = beyond_ui(k, depth)
    device = sb.selectbox("device", devices(), key="toy_device",
                          help="auto uses a GPU when there is one, otherwise the CPU.")
    settings = {key: st.session_state.get(widget_key(setting, name), setting.default)
                for key, setting in SETTINGS.items() if key not in ("n", "consistency")}
    settings.update(dataset=name, n=int(n), params=params, consistency=beyond_train.pop("consistency"))
    if beyond_train.get("prune_below"):
        settings["prior"] = 1  # removing components reads their learned weights
    base = st.session_state["_toy_base"] = data_base(settings, None if own is None else own[2])
    editor = current_editor(base)
    if own is not None:
        spec = to_spec(settings, device=device, model=beyond_model, train=beyond_train, dataset="csv",
                       points=own[0], point_labels=own[1])
    else:
        spec = to_spec({**settings, "dataset": DEFAULTS["dataset"]} if name == DRAW else settings, device=device,
                       model=beyond_model, train=beyond_train)
    st.session_state["_toy_spec_edits"] = None if editor is None else editor.edits
    if editor is not None:
        spec = edited_spec(spec, editor)
        sb.caption(f"Edited on the chart: {len(editor.points):,} points"
                   + (f", {editor.points.n_given} labelled by you" if editor.points.n_given else "") + ".")
    if own is not None:
        return spec
    query = to_query(settings)
    if editor is not None:
        shared = editing.to_query(editor.points)
        query = {**to_query({**settings, "dataset": DEFAULTS["dataset"], "params": {}}), "ds": "draw"}
        if shared is not None:
            query["pts"] = shared
    query.update(ui.teacher_query())  # a lecture's link keeps its presentation options
    if st.query_params.to_dict() != query:
        # Best effort: Streamlit shows this in the address bar one interaction late (the browser sends
        # its old query with the next rerun), so the share box below is the link to hand out.
        st.query_params.from_dict(query)
    with sb.expander("Share this experiment", icon=":material/link:"):
        if editor is not None and "pts" not in query:
            st.warning(f"{len(editor.points):,} edited points are too many for a link (at most "
                       f"{editing.MAX_SHARED_POINTS}): share the CSV (download it below the chart) instead.",
                       icon=":material/link_off:")
        else:
            base = (st.context.url or "").split("?")[0]
            shared = {k: v for k, v in query.items() if k not in ("hide", "autoplay", "present", "embed_options",
                                                                  "palette")}
            c1, c2 = st.columns(2)
            if c1.checkbox("start on opening", key="toy_share_autoplay",
                           help="autoplay=1: the run starts as the page opens, with no click (a lecture's demo)."):
                shared["autoplay"] = "1"
            hide = [part for part, label in (("sidebar", "hide the sidebar"), ("controls", "hide the buttons"),
                                             ("text", "hide the explanations"))
                    if (c1 if part == "sidebar" else c2).checkbox(label, key=f"toy_share_hide_{part}",
                                                                  help=f"hide={part} in the link.")]
            if hide:
                shared["hide"] = ",".join(hide)
            present = c1.selectbox("presenter view", ["off", "light", "dark"], key="toy_share_present",
                                   help="present=1: large type and a large chart, for a projector; dark also turns "
                                        "the page dark (embed_options=dark_theme, Streamlit's own dark theme).")
            if present != "off":
                shared["present"] = "dark" if present == "dark" else "1"
                if present == "dark":
                    shared["embed_options"] = "dark_theme"
            if c2.checkbox("colour-blind-safe colours", key="toy_share_safe", value=bool(st.session_state.get(
                    "display_safe")), help="palette=safe: nine colours that stay apart with colour blindness."):
                shared["palette"] = "safe"
            st.code(f"{base}?{urlencode(shared)}", language=None, wrap_lines=True)
            st.caption("Anyone opening this link gets the same data, model and seeds. Keys on the page: space "
                       "pauses and resumes, s steps, r resets.")
    return spec


def render(job, snap) -> None:
    ui.status_line(job, snap, hint="Choose a data set and settings in the sidebar, then press **Start**.")
    if snap is None:
        return
    comp = st.session_state.get("toy_view_comp", "mixture")
    background = {"posterior q(c|x)": "q", "true posterior p(c|x)": "p"}.get(comp, "density")
    component = int(comp.split()[-1]) - 1 if comp.startswith(("component", "flow warp")) else None
    warp = component if comp.startswith("flow warp") else None
    if component is not None and component >= len(snap.get("pi")):
        component = None
    how = ui.look()
    height = ui.PRESENT_HEIGHT if how["present"] else 520
    options = dict(component=component, show_samples=st.session_state.get("toy_samples", False),
                   log_scale=st.session_state.get("toy_log", True), background=background, warp=warp,
                   raster_points=True, palette=how["palette"])
    editor = st.session_state.get("toy_editor")
    if editor is not None and editor.edits != st.session_state.get("_toy_spec_edits"):
        # An edit (Undo, Clear) whose page run Streamlit folded into a run of this panel alone (a chart event
        # was on its way): the page runs again, so the sidebar, the spec and the run get the edited points.
        st.rerun()
    tool = st.session_state.get("toy_tool") or "probe"
    editing_now = tool in EDIT_TOOLS
    if job is None:  # the data before Start, drawn here
        def still() -> dict:
            fig = ui.styled(figures.density_spec(snap, **options), how, height)
            if editing_now:
                fig["layout"]["dragmode"] = False  # a drag draws or erases instead of zooming
            return fig

        mouse = ui.live_figure(still, key="toy_density", token=(snap, tuple(options.items()), tool, *how.items()),
                               tool=tool if editing_now else None)
        if editing_now and mouse is not None:
            edit_events(mouse, tool)
    else:
        job.full_frames(warp is not None)  # the warp view wants each frame's own warp lines (light frames lack them)
        pinned = st.session_state.get("toy_pin")
        given = given_labels(job)
        suggested = st.session_state.get("toy_suggest")

        def build(frame) -> dict:
            fig = ui.styled(figures.density_spec(frame, **options), how, height)
            fig["layout"]["meta"]["timeline"] = dict(job.timeline)  # how long each stage of Start took (bench)
            shapes = []
            if pinned:  # the pinned probe point, as a ring
                shapes.append(figures.ring(pinned["x"], pinned["y"]))
            if given:  # labels given by clicking, as diamonds in their cluster's colour
                fig["data"].append(figures.given_labels_trace(frame, given, how["palette"]))
            if suggested is not None and suggested < len(frame.get("points")):
                shapes.append(figures.ring(*map(float, frame.get("points")[suggested]), radius_px=10, color="#F28E2B"))
            if shapes:  # none: the layout as the chart had it before Start, so the first frame after it is quick
                fig["layout"].setdefault("shapes", []).extend(shapes)
            if editing_now:
                fig["layout"]["dragmode"] = False  # a drag draws or erases instead of zooming
            return fig

        view = (*options.items(), ("pin", tuple(pinned.values()) if pinned else None),
                ("given", tuple(sorted(given.items()))), ("suggested", suggested), ("tool", tool), *how.items())
        mouse = ui.live_feed("toy_density", job, build, view=view, height=height, probe=True, tool=tool)
        if editing_now:
            edit_events(mouse, tool)
        elif (click := news(mouse, "pin")) is not None:
            if st.session_state.get("toy_label_mode"):
                label_click(job, snap, click)
            else:
                st.session_state["toy_pin"] = pinned = {"x": click["x"], "y": click["y"]}
        ui.probe_panel(job, mouse.hover or pinned, pinned)
        label_ui(job, snap)
        if warp is not None:
            scrub_ui(job, snap, warp)
    if snap.get("hist_step") is None:
        return  # the data alone: no curves yet
    if (job.state not in ui.ACTIVE_STATES or ui.throttled("toy_curves", 1.0)  # curves change slowly
            or st.session_state.get("_toy_curves_look") != how):
        st.session_state["toy_curves_fig"] = ui.styled(figures.curves_spec(snap, palette=how["palette"]), how)
        st.session_state["_toy_curves_look"] = how
    ui.live_figure(st.session_state["toy_curves_fig"], key="toy_curves")


def news(mouse, name: str) -> dict | None:
    """The chart's state value ``name`` (a click, a drag) if it has not been handled yet, else ``None``."""
    value = getattr(mouse, name, None)
    if not value or value == st.session_state.get(f"_toy_seen_{name}"):
        return None
    st.session_state[f"_toy_seen_{name}"] = value
    return value


def editor_for_edit() -> Editor | None:
    """The editor the next edit changes: the current one, or one made now from the data the chart shows."""
    editor = st.session_state.get("toy_editor")
    if editor is None:
        spec = st.session_state.get("_toy_spec")
        try:
            data, labels = load_spec_data(spec)
        except (ValueError, TypeError):
            return None
        editor = Editor(PointSet.create(data.x, data.y, labels), st.session_state["_toy_base"],
                        editing.bounds_of(data.x))
        st.session_state["toy_editor"] = editor
    return editor


def edit_events(mouse, tool: str) -> None:
    """Apply the chart's clicks and drags to the points (add, spray, erase), then run the page again: the
    edited points are the data from now on, and a run that is going on trains on them."""
    events = {name: news(mouse, name) for name in ("pin", "stroke", "erase")}
    if not any(events.values()):
        return
    editor = editor_for_edit()
    if editor is None:
        return
    pts, span, brush = editor.points, editor.span, int(st.session_state.get("toy_draw_brush", -1))
    new = pts
    if (click := events["pin"]) is not None:
        if tool == "add":
            new = new.add([[click["x"], click["y"]]], brush)
        elif (row := new.nearest(click["x"], click["y"], 0.02 * span)) is not None:
            new = new.keep(np.arange(len(new)) != row)
    if (stroke := events["stroke"]) is not None and tool == "add":
        path = [[p["x"], p["y"]] for p in stroke.get("points", [])]
        new = new.add(editing.spray(path, 0.012 * span, seed=int(stroke.get("n", 0))), brush)
    if (erase := events["erase"]) is not None:
        if "box" in erase:
            new = new.keep(~new.inside_box(*erase["box"]))
        elif "lasso" in erase:
            lasso = erase["lasso"]
            new = new.keep(~new.inside_polygon([p["x"] for p in lasso], [p["y"] for p in lasso]))
    if len(new) != len(pts):  # an erase that held no point is no edit (and no undo step)
        editor.apply(new)
        st.session_state["toy_edited"] = True
        st.rerun()


def edit_toolbar(job) -> None:
    """The chart's tools: read the model, add points, erase them; the brush; undo, clear and the CSV."""
    t1, t2, t3, t4, t5 = st.columns([3.4, 1.2, 0.8, 0.8, 1.2], vertical_alignment="bottom")
    first = {} if "toy_tool" in st.session_state else {
        "default": "add" if st.session_state.get("toy_dataset") == DRAW else "probe"}  # drawing starts with a pen
    t1.segmented_control(
        "chart tool", list(TOOLS), format_func=TOOLS.get, key="toy_tool", **first,
        help="What the mouse does on the chart. *probe*: hover reads the model at the mouse, a click pins the "
             "point (or labels it, when labelling is on). *add points*: a click adds one, a drag sprays several. "
             "*box erase* / *lasso erase*: drag around points, or click one, to remove them. A run that is going "
             "on keeps its model and trains on the edited points.")
    k = st.session_state.get(widget_key(SETTINGS["k"], st.session_state.get("toy_dataset", "")), 2)
    t2.selectbox("brush", [-1, *range(int(k))], key="toy_draw_brush",
                 format_func=lambda c: "unlabelled" if c < 0 else f"cluster {c + 1}",
                 help="The label added points get: none, or a cluster (semi-supervised: q(c|x) is told it).")
    editor = st.session_state.get("toy_editor")
    t3.button("Undo", key="toy_undo", icon=":material/undo:", disabled=editor is None or not editor.history,
              on_click=undo_edit, width="stretch", help="Take back the last edit of the points.")
    t4.button("Clear", key="toy_clear", icon=":material/delete_sweep:", disabled=editor is None or not len(
        editor.points), on_click=clear_edit, width="stretch", help="Remove every point (Undo brings them back).")
    if editor is not None:
        t5.download_button("Points (CSV)", editor.points.to_csv(), file_name="vmonf-points.csv", key="toy_points_csv",
                           icon=":material/download:", width="stretch",
                           help="The edited points as x, y, label (blank: not known); the CSV upload reads it back.")


def undo_edit() -> None:
    editor = st.session_state.get("toy_editor")
    if editor is not None and editor.undo():
        st.session_state["toy_edited"] = True


def clear_edit() -> None:
    editor = editor_for_edit()
    if editor is not None:
        editor.clear()
        st.session_state["toy_edited"] = True


def given_labels(job) -> dict[int, int]:
    """Labels given to this run by clicking: view point -> cluster (0-based)."""
    return st.session_state.setdefault("toy_given", {}).setdefault(id(job), {})


def label_click(job, snap, click: dict) -> None:
    """Label mode: give the point nearest to the click (within 4 % of the plot's span) the brush's label."""
    brush = int(st.session_state.get("toy_brush", 0))
    editor = st.session_state.get("toy_editor")
    if editor is not None:  # the points are the user's own: a label is an edit, kept with them
        row = editor.points.nearest(click["x"], click["y"], 0.04 * editor.span)
        if row is None:
            st.toast("No point there: click on a point to label it.", icon=":material/touch_app:")
            return
        editor.apply(editor.points.labelled(row, brush))
        st.session_state["toy_edited"] = True
        st.rerun()
    points = snap.get("points")
    span = np.ptp(points, axis=0) + 1e-9
    d = np.hypot(*((points - [click["x"], click["y"]]) / span).T)
    nearest = int(d.argmin())
    if d[nearest] > 0.04:
        st.toast("No point there: click on a point to label it.", icon=":material/touch_app:")
        return
    given_labels(job)[nearest] = brush
    st.session_state.pop("toy_suggest", None)
    job.label(nearest, brush)


def label_ui(job, snap) -> None:
    """Label by clicking: a brush, a suggestion, and accuracy on the unlabelled points against labels used."""
    on = st.toggle("label points by clicking", key="toy_label_mode",
                   help="Semi-supervised by hand: while on, a click on the chart gives the nearest point the "
                        "brush's label (a diamond) and training uses it from the next step; off, a click pins "
                        "the point probe.")
    if not on:
        return
    k = len(snap.get("pi"))
    left, mid, right = st.columns([1, 1, 2])
    left.selectbox("brush", list(range(k)), format_func=lambda c: f"cluster {c + 1}", key="toy_brush",
                   help="The label a click gives.")
    given = given_labels(job)
    rule = left.selectbox("suggest where", list(editing.SUGGEST), key="toy_suggest_rule",
                          help="Where a label helps most: where the network q(c|x) is least sure, or where it "
                               "disagrees most with the flows' exact posterior p(c|x) (the ELBO's gap is large "
                               "there).")
    if mid.button("Suggest a point", key="toy_suggest_button", icon=":material/lightbulb:",
                  help="Rings (orange) the unlabelled point the rule beside it ranks first: label it next."):
        st.session_state["toy_suggest"] = editing.suggest_point(snap, list(given), rule)
    if job.message.startswith(("Point labelled", "That point is held out", "label must")):
        mid.caption(job.message)  # what the run did with the last click
    y, assign = snap.get("y_true"), snap.get("assign")
    if y is None or assign is None:
        right.caption("The data has no true labels, so accuracy is not shown.")
        return
    unlabelled = np.ones(len(y), bool)
    unlabelled[list(given)] = False
    if snap.get("labelled") is not None:
        unlabelled &= ~snap.get("labelled").astype(bool)
    from vmonf.metrics import clustering_scores

    accuracy = clustering_scores(y[unlabelled], assign[unlabelled].astype(np.int64))["accuracy"]
    curve = st.session_state.setdefault("toy_label_curve", {}).setdefault(id(job), {})
    curve[int(job.info.get("n_labels", 0))] = accuracy  # the latest accuracy with this many labels
    right.caption(f"Accuracy on the unlabelled points: **{accuracy:.3f}** with {job.info.get('n_labels', 0)} labels.")
    if len(curve) > 1:
        right.line_chart({"labels used": list(curve), "accuracy (unlabelled points)": list(curve.values())},
                         x="labels used", y="accuracy (unlabelled points)", height=160)


def scrub_ui(job, snap, component: int) -> None:
    """The flow scrubber: one component's flow layer by layer, from its Gaussian base space to data space,
    with the base grid, 1-2-3 sigma circles and samples pushed up and the data pushed down."""
    answer = job.stages_result
    fresh = answer is not None and answer["component"] == component
    if not fresh or (snap.step > answer["step"] and ui.throttled("toy_stages", 1.0)):
        job.flow_stages(component, wait=0.5)
        answer = job.stages_result
    if answer is None or answer["component"] != component:
        st.caption("The flow scrubber appears once the run has a model (after its start is chosen).")
        return
    st.caption("Slide *flow layer* under the chart from the component's Gaussian base space (0) through each "
               "coupling block to data space: the grid, the 1, 2 and 3 σ circles and the samples move forward "
               "through the flow, and the data points move back. At 0 you see which points this component claims "
               "and how Gaussian they have become. The slider moves in your browser, with no round trip "
               "to the server.")
    assign = snap.get("assign")
    ui.live_figure(lambda: figures.scrubber_spec(answer, assign), key="toy_stages_fig",
                   token=(answer["id"], component))


def preview(spec: JobSpec):
    """The data alone, as the run's first frame will show it (cached per spec for this session)."""
    key = spec.to_json()
    memo = st.session_state.get("_toy_preview")
    if memo is None or memo[0] != key:
        memo = (key, preview_frame(spec))
        st.session_state["_toy_preview"] = memo
    return memo[1]


def compare_ui(job) -> None:
    """VMoNF's current state next to a full-covariance GMM fitted on the same points and split."""
    snap = job.latest()
    if snap is None or snap.get("grid_x") is None:
        ui.before_first_frame("toy_compare_show")
        return
    if not st.button("Fit the Gaussian mixture", key="toy_gmm",
                     help="Fits sklearn's GaussianMixture with the same K on the same training points (a second)."):
        return
    from vmonf.data import make_toy
    from vmonf.studio.baselines import gmm_snapshot

    s = job.spec
    if s.dataset == "csv":
        x = np.asarray(s.points, dtype=np.float32)
        y = None if s.point_labels is None else np.asarray(s.point_labels)
    else:
        x, y = make_toy(s.dataset, s.n_samples, seed=s.data_seed, **s.toy_params)
    with st.spinner("Fitting the Gaussian mixture…"):
        gmm = gmm_snapshot(x, y, s.n_components, snap, seed=s.train.get("seed", 0), val_fraction=s.val_fraction)
    left, right = st.columns(2)
    for col, name, shot in ((left, "VMoNF", snap), (right, "Gaussian mixture", gmm)):
        m = shot.meta
        col.markdown(f"**{name}** · held-out log-likelihood **{m.get('val_loglik', float('nan')):.3f}**"
                     + (f" · ARI **{m['ari']:.3f}**" if "ari" in m else ""))
        col.plotly_chart(figures.density_figure(shot, height=420, title=name), key=f"toy_cmp_{name}")


st.title("2-D playground")
st.caption("Each colour is one component: a normalizing flow that bends a Gaussian to fit its cluster. "
           "The grey background is the mixture density log p(x); faint points are ones the model is unsure about.")
apply_shared_link()
apply_pending()
spec = settings_ui()
if spec is None:
    st.stop()
st.session_state["_toy_spec"] = spec
running = ui.current_job(PAGE)
blocked = too_few(spec)
if st.session_state.pop("toy_edited", False) and running is not None and running.alive and not blocked:
    running.edit_data(spec)  # the run goes on with the edited points
notes = st.container()  # one slot: a note that goes (the link's, shown once) leaves the charts in their place
if problems := st.session_state.pop("toy_link_problems", None):
    notes.warning("Some settings in the link were not valid and were left at their defaults: " + "; ".join(problems),
                  icon=":material/link:")
preset = PRESETS.get(st.session_state.get("toy_preset", ""))
if preset is not None and all(st.session_state.get(k) == v for k, v in widget_state(preset.settings).items()):
    notes.info(f"**{preset.title}.** {preset.watch}", icon=":material/school:")
ui.autoplay(PAGE, spec, blocked)
job = ui.controls(PAGE, spec, blocked=blocked)
# The watch link's slot is there before Start too: an element that came with the run moved the live chart one
# place down, and Streamlit then made the chart anew (it lost the frame on screen and its zoom).
watch = st.container()
if job is not None:
    with watch:
        ui.watch_box(job)
v1, v2, v3 = st.columns([2, 1, 1])
v1.selectbox("show", ["mixture", "posterior q(c|x)", "true posterior p(c|x)"]
             + [f"component {c + 1}" for c in range(spec.n_components)]
             + [f"flow warp of component {c + 1}" for c in range(spec.n_components)], key="toy_view_comp",
             help="The mixture density; which cluster the network q(c|x) or the exact posterior p(c|x) gives each "
                  "place (paler = less sure); the density of one component flow alone; or how that flow bends "
                  "a square grid of its Gaussian base space.")
v2.toggle("show samples", key="toy_samples", help="Crosses: points drawn from the model, coloured by component.")
v3.toggle("log scale", value=True, key="toy_log", help="Log density shows the tails; linear shows the peaks.")
edit_toolbar(job)
# The status line and curves once a second: the chart shows every frame (its title has the step, ELBO and ARI) by
# itself, and each run of the panel cost the browser about as much as two frames (docs/RESULTS.md, "The live loop").
ui.live_panel(PAGE, render, every=1.0, preview=preview(spec))
if job is not None:
    with st.expander("Compare with a Gaussian mixture (scikit-learn, same K)", icon=":material/balance:"):
        compare_ui(job)
    with st.expander("Components: share, size and fit; remove one", icon=":material/extension:"):
        components_ui(job, job.latest())
    if job.checkpoint:
        st.download_button("Download the trained model (.pt)", job.checkpoint, file_name=f"vmonf-{spec.dataset}.pt",
                           key="toy_download", help="A checkpoint that vmonf.VMoNF.load reads (no code inside).")

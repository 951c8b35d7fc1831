"""AppTest smoke tests: every page renders, and the main controls drive a real background run."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def current_step(at: AppTest) -> int | None:
    value = next((m.value for m in at.metric if m.label == "step"), "–")
    return None if value in ("–", None) else int(value.replace(",", ""))


def wait_for_step(at: AppTest, min_step: int, timeout: float = 60) -> int:
    """Rerun the script (AppTest never fires fragment timers) until the run passes ``min_step``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        assert not at.exception, at.exception
        step = current_step(at)
        if step is not None and step >= min_step:
            return step
        time.sleep(0.3)
    raise AssertionError(f"no step >= {min_step} within {timeout}s; metrics: {[(m.label, m.value) for m in at.metric]}")


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def start_small_run(at: AppTest, n: int = 300) -> int:
    """Start a quick playground run (few points, k-means start) and wait for its first frame."""
    at.run()
    at.sidebar.slider(key="toy_n").set_value(n)
    at.sidebar.selectbox(key="toy_init").set_value("kmeans")
    at.run()
    button(at, "Start").click().run()
    return wait_for_step(at, 1)


def reset_runs(at: AppTest) -> None:
    """AppTest instances share one session: drop this test's runs so the next test starts clean."""
    for page in ("pages/playground.py", "pages/images.py"):
        at.switch_page(page).run()
        for b in at.button:
            if b.label == "Reset" and not b.disabled:
                b.click().run()


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=60)
    yield at
    reset_runs(at)


def test_playground_trains_pauses_and_keeps_the_model(app):
    app.run()
    assert not app.exception
    assert app.title[0].value == "2-D playground"
    assert all(w.help for w in app.sidebar.slider), "every slider explains itself"
    app.sidebar.slider(key="toy_n").set_value(400)
    app.sidebar.selectbox(key="toy_init").set_value("kmeans")
    app.run()
    button(app, "Start").click().run()
    assert not app.exception
    first = wait_for_step(app, 1)
    later = wait_for_step(app, first + 20)
    assert later > first
    button(app, "Pause").click().run()
    time.sleep(1.0)
    app.run()
    paused = current_step(app)
    time.sleep(1.0)
    app.run()
    assert current_step(app) == paused
    button(app, "Stop").click().run()
    app.run()
    assert any(b.label.startswith("Download the trained model") for b in app.get("download_button"))
    assert not app.error


def test_changed_settings_ask_before_discarding(app):
    start_small_run(app)
    app.sidebar.slider(key="toy_depth").set_value(2)
    app.run()
    assert any("throws the trained run away" in w.value for w in app.warning)
    assert button(app, "Discard and start") is not None


def test_images_page_digits(app):
    app.switch_page("pages/images.py").run()
    assert not app.exception
    app.sidebar.selectbox(key="img_source").set_value("scikit-learn digits (8×8)").run()
    button(app, "Start").click().run()
    wait_for_step(app, 1, timeout=90)
    labels = {m.label for m in app.metric}
    assert {"accuracy (best matching)", "NMI", "ARI"} <= labels
    assert not app.exception


def test_images_page_trains_with_consistency(app):
    """The consistency option reaches the worker, which makes shifted and rotated copies of the images."""
    app.switch_page("pages/images.py").run()
    app.sidebar.selectbox(key="img_source").set_value("scikit-learn digits (8×8)")
    app.sidebar.select_slider(key="img_consistency").set_value(2.0).run()
    button(app, "Start").click().run()
    wait_for_step(app, 1, timeout=90)
    from vmonf.studio.job import live_jobs

    jobs = [j for j in live_jobs() if j.spec.dataset == "digits"]
    assert [j.spec.train.get("consistency") for j in jobs] == [2.0] and jobs[0].state == "running"
    assert jobs[0].spec.train["init"] == "gmm"  # the page's default start
    assert not app.exception


def test_how_it_works_renders_with_live_numbers(app):
    app.switch_page("pages/how_it_works.py").run()
    assert not app.exception
    assert len(app.get("latex")) >= 5
    app.switch_page("pages/playground.py").run()
    app.sidebar.slider(key="toy_n").set_value(300)
    app.sidebar.selectbox(key="toy_init").set_value("kmeans")
    app.run()
    button(app, "Start").click().run()
    wait_for_step(app, 1)
    app.switch_page("pages/how_it_works.py").run()
    assert not app.exception
    formulas = " ".join(x.proto.body for x in app.get("latex"))
    assert "KL" in formulas and "underbrace" in formulas
    app.session_state["toy_pin"] = {"x": 0.1, "y": -0.2}  # as a click on the playground's chart pins it
    app.run()
    pinned = " ".join(x.proto.body for x in app.get("latex"))
    assert "At the point you pinned, x = (0.100, -0.200)" in " ".join(m.value for m in app.markdown)
    assert r"\log\big(e^{" in pinned and "q(k \\mid x)" in pinned
    app.switch_page("pages/playground.py").run()


def test_replay_page_plays_and_exports_the_session_run(app):
    start_small_run(app)
    time.sleep(1.0)
    button(app, "Stop").click().run()
    app.switch_page("pages/replay.py").run()
    assert not app.exception
    chart = app.get("plotly_chart")
    assert chart, "the replay animation is shown"
    spec = chart[0].proto.spec
    assert '"frames"' in spec and 'Play"' in spec and 'Pause"' in spec
    app.selectbox(key="replay_fmt").set_value("gif").run()
    button(app, "Prepare the export").click().run()
    assert not app.exception and not app.error
    assert any(b.label.startswith("Download vmonf-") for b in app.get("download_button"))
    scrubber = json.loads(app.session_state["_live_replay_stages"][1])  # the trained model's flow, all stages
    steps = scrubber["layout"]["sliders"][0]["steps"]
    assert "stage 0 of" in steps[0]["args"][1]["title.text"] and "data space" in steps[-1]["args"][1]["title.text"]
    app.switch_page("pages/playground.py").run()


def test_missing_full_mnist_offers_a_download(app, tmp_path, monkeypatch):
    monkeypatch.setenv("VMONF_DATA", str(tmp_path))  # an empty cache: the full MNIST is not here
    app.switch_page("pages/images.py").run()
    app.sidebar.selectbox(key="img_source").set_value("MNIST: all 70,000 digits").run()
    assert not app.exception
    assert any("not on this machine" in w.value for w in app.warning)
    assert any(b.label == "Download now" for b in app.button)
    assert not any(b.label == "Start" for b in app.button)  # nothing to train on yet


@pytest.mark.parametrize("title", list(__import__("vmonf.studio.presets", fromlist=["PRESETS"]).PRESETS))
def test_every_preset_trains(title):
    from vmonf.studio.presets import PRESETS
    from vmonf.studio.settings import DEFAULTS

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.selectbox(key="toy_preset").set_value(title).run()
    assert not at.exception
    preset = PRESETS[title]
    assert at.sidebar.selectbox(key="toy_dataset").value == preset.settings["dataset"]
    # The paper's failure is shown with the paper's plain ELBO; the others with the default consistency term.
    expected = preset.settings.get("consistency", DEFAULTS["consistency"])
    assert at.sidebar.select_slider(key="toy_consistency").value == expected
    assert any(preset.watch in i.value for i in at.info)
    try:
        button(at, "Start").click().run()
        wait_for_step(at, 1, timeout=90)
        assert not at.exception and not at.error
    finally:
        reset_runs(at)


def test_shared_link_round_trips_the_settings():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"ds": "moons", "k": "3", "depth": "2", "seed": "7", "p_noise": "0.12", "lr": "0.001",
                            "cons": "0"})
    at.run()
    assert not at.exception
    assert at.sidebar.select_slider(key="toy_consistency").value == 0.0  # the paper's plain ELBO, as shared
    assert at.sidebar.selectbox(key="toy_dataset").value == "moons"
    assert at.sidebar.slider(key="toy_k_moons").value == 3
    assert at.sidebar.slider(key="toy_depth").value == 2
    assert at.sidebar.number_input(key="toy_seed").value == 7
    assert at.sidebar.slider(key="toy_moons_noise").value == pytest.approx(0.12)
    at.sidebar.slider(key="toy_depth").set_value(5).run()
    q = dict(at.query_params)
    assert q["ds"] in ("moons", ["moons"]) and str(q["depth"]).strip("[]'") == "5"
    assert str(q["cons"]).strip("[]'") == "0"  # a setting off its default travels with the link


def test_bad_link_values_are_named_and_skipped():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"ds": "pinwheel", "k": "999", "depth": "abc", "p_wings": "3"})
    at.run()
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "k='999'" in text and "depth='abc'" in text
    assert at.sidebar.slider(key="toy_pinwheel_wings").value == 3


def test_own_csv_trains_and_bad_csv_is_explained(app):
    from vmonf.data import make_toy

    app.run()
    app.sidebar.selectbox(key="toy_dataset").set_value("your own CSV file").run()
    assert not app.exception and not any(b.label == "Start" for b in app.button)
    app.sidebar.get("file_uploader")[0].set_value(("bad.csv", b"x,y\n1,2\n3,oops\n" * 10, "text/csv")).run()
    assert any("cannot be used" in e.value and "not a number" in e.value for e in app.error)
    x, y = make_toy("moons", 300, seed=0)
    text = "x,y,label\n" + "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(x, y, strict=True))
    app.sidebar.get("file_uploader")[0].set_value(("moons.csv", text.encode(), "text/csv")).run()
    assert not app.error
    app.sidebar.selectbox(key="toy_init").set_value("kmeans").run()
    button(app, "Start").click().run()
    wait_for_step(app, 1)
    assert {"step"} <= {m.label for m in app.metric} and not app.exception


def test_gmm_side_by_side(app):
    start_small_run(app, 400)
    button(app, "Fit the Gaussian mixture").click().run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "**Gaussian mixture** · held-out log-likelihood" in text and "ARI" in text
    assert len(app.get("plotly_chart")) == 2


def test_beyond_the_paper_options_and_removing_a_component(app):
    app.run()
    app.sidebar.slider(key="toy_n").set_value(300)
    app.sidebar.selectbox(key="toy_init").set_value("kmeans")
    app.sidebar.text_input(key="toy_depths").input("1, x").run()
    assert any("Depths ignored" in e.value and "whole numbers" in e.value for e in app.sidebar.error)
    k = app.sidebar.slider(key="toy_k_pinwheel").value
    app.sidebar.text_input(key="toy_depths").input(", ".join(str(1 + c % 3) for c in range(k))).run()
    app.sidebar.toggle(key="toy_share").set_value(True)
    app.sidebar.select_slider(key="toy_consistency").set_value(1.0).run()
    assert not app.sidebar.error
    button(app, "Start").click().run()
    wait_for_step(app, 1)
    table = app.dataframe[0].value
    assert len(table) == k and table["in the mixture"].all()
    assert table["flow parameters"].nunique() == 3  # three different depths
    button(app, "Remove component").click().run()
    end = time.monotonic() + 30
    while time.monotonic() < end and app.dataframe[0].value["in the mixture"].all():
        time.sleep(0.3)
        app.run()
    left = app.dataframe[0].value
    assert left["in the mixture"].sum() == k - 1 and left.loc[~left["in the mixture"], "share of points"].max() == 0
    assert not app.exception


def test_flow_scrubber_runs_from_the_base_to_the_data(app):
    import json

    start_small_run(app)
    app.selectbox(key="toy_view_comp").set_value("flow warp of component 2").run()
    assert not app.exception
    deadline = time.monotonic() + 30
    while "_live_toy_stages_fig" not in app.session_state and time.monotonic() < deadline:
        time.sleep(0.3)
        app.run()
    token, payload, _ = app.session_state["_live_toy_stages_fig"]
    fig = json.loads(payload)
    slider = fig["layout"]["sliders"][0]
    assert slider["active"] == len(slider["steps"]) - 1 and "data space" in fig["layout"]["title"]["text"]
    first = slider["steps"][0]["args"][1]["title.text"]  # where the slider's left end takes the chart
    assert "component 2, stage 0" in first and "Gaussian base space" in first
    names = [t["name"] for t, shown in zip(fig["data"], slider["steps"][0]["args"][0]["visible"], strict=True)
             if shown]
    assert names[1:4] == ["1 σ", "2 σ", "3 σ"]
    reset_runs(app)


def test_a_drawing_link_opens_its_points_and_the_share_box_gives_them_back(app):
    app.query_params.update({"ds": "draw", "k": "2", "pts": ";".join(f"{i * 0.1:.1f},{i % 3 - 1}" for i in range(12))
                             + ";0.5,0.5,1"})
    app.run()
    assert not app.exception
    assert app.sidebar.selectbox(key="toy_dataset").value == "draw your own points"
    editor = app.session_state["toy_editor"]
    assert len(editor.points) == 13 and editor.points.given.tolist()[-1] == 1
    shared = [c.value for c in app.sidebar.code]
    assert shared and "ds=draw" in shared[0] and "pts=" in shared[0] and "0.500%2C0.500%2C1" in shared[0]
    assert not app.button(key="toy_start").disabled  # 13 points, K=2: enough to train
    app.button(key="toy_clear").click().run()
    assert len(app.session_state["toy_editor"].points) == 0 and app.button(key="toy_start").disabled
    assert any("draw at least 10" in i.value for i in app.info)
    app.button(key="toy_undo").click().run()
    assert len(app.session_state["toy_editor"].points) == 13


def test_a_bad_drawing_link_says_what_is_wrong(app):
    app.query_params.update({"ds": "draw", "pts": "1,2;oops"})
    app.run()
    assert not app.exception
    assert any("point 2" in w.value for w in app.warning)


def test_many_edited_points_are_shared_as_a_csv_not_a_link(app):
    from vmonf.studio.editing import Editor, PointSet

    app.query_params.update({"ds": "moons", "k": "2"})
    app.run()
    x = np.random.default_rng(0).normal(size=(400, 2))
    base = app.session_state["_toy_base"]
    app.session_state["toy_editor"] = Editor(PointSet.create(x), base, [-4, 4, -4, 4])
    app.run()
    assert not app.exception
    assert any("too many for a link" in w.value for w in app.sidebar.warning)
    assert app.get("download_button") and any("Edited on the chart: 400 points" in c.value for c in app.sidebar.caption)


def test_the_share_box_offers_a_lecture_link(app):
    app.run()
    app.sidebar.checkbox(key="toy_share_autoplay").check().run()
    app.sidebar.checkbox(key="toy_share_hide_sidebar").check().run()
    app.sidebar.checkbox(key="toy_share_hide_text").check().run()
    assert not app.exception
    link = app.sidebar.code[0].value
    assert "autoplay=1" in link and "hide=sidebar%2Ctext" in link and "ds=pinwheel" in link


def test_a_shipped_example_opens_on_the_replay_page_without_training(app):
    from vmonf.studio.job import live_jobs

    before = set(live_jobs())  # runs of earlier tests may still be ending
    app.switch_page("pages/replay.py").run()
    app.radio(key="replay_source").set_value("a recorded example (no training)").run()
    assert not app.exception
    assert app.get("plotly_chart") and set(live_jobs()) <= before  # it started no run
    app.selectbox(key="replay_example").set_value("Pinwheel, 5 wings").run()
    assert not app.exception and "pinwheel, K=5" in " ".join(c.value for c in app.caption)


def test_a_live_feed_never_rewrites_a_frame_and_its_pointer_keeps_one_length(monkeypatch):
    """The server stats a file before it opens it, so a file replaced in between would go out with the wrong
    length: every frame is a new file, and only the fixed-length pointer to the newest is replaced."""
    import gzip

    import ui

    class Job:  # what a feed uses of a TrainingJob
        def __init__(self):
            self.listeners, self.snap = [], None

        def subscribe(self, f):
            self.listeners.append(f)

        def unsubscribe(self, f):
            self.listeners.remove(f)

        def latest(self):
            return self.snap

    monkeypatch.setattr(ui, "FEED_KEEP_S", 0.0)
    job, feed = Job(), ui.LiveFeed()
    feed.follow(job, lambda snap: {"step": snap["step"]}, ("v",))
    sizes, frames = set(), []
    for step in (1, 20, 300, 4000):
        job.snap = {"step": step}
        for listener in job.listeners:
            listener(job.snap)
        seq = feed.path.read_text()
        sizes.add(len(seq))
        frame = ui.LIVE_DIR / f"{feed.token}.{int(seq)}.json.gz"
        assert json.loads(gzip.decompress(frame.read_bytes())) == {"step": step}
        frames.append(frame)
    assert len(sizes) == 1 and len(set(frames)) == 4  # one pointer length; a new file per frame
    assert [f.exists() for f in frames] == [False, False, False, True]  # superseded frames go
    feed.close()
    assert not list(ui.LIVE_DIR.glob(f"{feed.token}.*")) and not job.listeners


def test_a_presenter_link_turns_the_display_options_on_and_the_replay_follows_the_palette():
    from vmonf.studio.figures import PALETTE, SAFE_PALETTE

    def replay_colours(at):
        at.switch_page("pages/replay.py").run()
        at.radio(key="replay_source").set_value("a recorded example (no training)").run()
        assert not at.exception
        spec = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
        return {c for c in PALETTE + SAFE_PALETTE if c.lower() in spec.lower() or
                f"rgba({int(c[1:3], 16)},{int(c[3:5], 16)},{int(c[5:7], 16)}" in spec}

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"present": "1", "palette": "safe"})
    at.run()
    assert at.toggle(key="display_safe").value and at.toggle(key="display_present").value
    assert any("font-size: 125%" in h.proto.body for h in at.get("html"))  # the presenter's large type
    safe = replay_colours(at)
    assert safe and safe <= set(SAFE_PALETTE)

    plain = AppTest.from_file(APP, default_timeout=60)
    plain.run()
    assert not plain.toggle(key="display_safe").value and not plain.toggle(key="display_present").value
    default = replay_colours(plain)
    assert default and not default & set(SAFE_PALETTE)


def test_the_status_line_names_each_start_and_why_one_was_kept():
    """While the start is chosen the status line names the candidate and its normalised cut; afterwards it
    says which start was kept and by which rule, beside the others' scores."""
    from types import SimpleNamespace

    import ui

    snap = SimpleNamespace(step=0, meta={"stage": "partition", "candidate": "local", "candidate_index": 3,
                                         "candidate_total": 5, "cut": 0.021})
    text = ui.init_progress(snap)
    assert "local-scale spectral 3/5" in text and "0.021" in text
    job = SimpleNamespace(info={"init": "local", "init_criterion": "cut", "init_skipped": {"ward": "local"},
                                "init_scores": {"kmeans": 0.128, "local": 0.021}})
    text = ui.init_summary(job)
    assert text.startswith("Initialisation: **local-scale spectral**") and "normalised cut" in text
    assert "k-means 0.128" in text and "Ward gave the same partition" in text
    job.info["init_criterion"] = "elbo"
    assert "held-out ELBO 0.021" in ui.init_summary(job)

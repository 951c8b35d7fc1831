"""Live UI benchmark: how fast Start shows something, chart updates per second, training speed with the UI live.

Starts `streamlit run app.py` on localhost, opens the default playground run in Debian's Chromium (Playwright),
waits until the server's fork server is ready (as it is a few seconds after the server starts), presses Start
and times, from the click, what the page shows: the points, the starting partition, the first trained frame,
and the status line's "ARI >= 0.95 reached". Then it counts chart updates and training steps for --seconds,
and, in the same run, trains the same model headless (a bare Trainer loop in its own process) for the same
time, so the speed ratio compares like with like. Then the same for --seconds with the mouse moving over the
density chart (the point probe asks the run at every place), and, showing a component's flow warp, for --seconds
without and --seconds with the flow scrubber's slider moving. Then four sessions press Start together.

    python bench/live_ui.py [--seconds 15] [--sessions 4] [--rounds 1] [--sessions-only]

"frames the server wrote" counts the density chart's feed pointer (the frames the run sent and the server built):
"new frames" below it are the ones the chart drew, so a chart that falls behind shows as the gap between them.

``--rounds N`` repeats the sessions pressing Start together N times (each round stops its runs and waits for their
workers to end before the next), and prints each round and the median over rounds: on two shared cores one round
varies by seconds. ``--sessions-only`` leaves out the one-session part.

The server keeps each start it chose (vmonf.startmemo), so a run started again replays its start: after the
one-session part, the sessions' default run does. ``--fresh`` gives each round a run this server has not started
(the default run with training seed 100 + the round's number): one of its sessions chooses the start while the
others wait for it and replay it.

The first trained frame is timed by the page itself: the chart stamps the wall clock when it first draws a frame
past step 0 (``dataset.firstAt``), against the wall clock just before the click. The bench's own polls of the
pages (one after the other, each waiting for its tab) are printed beside it: with several tabs they see it late.

Stage shares come from the job's own timeline (vmonf.studio.job.TrainingJob.timeline, passed to the chart's meta):
worker ready (its first message), data (first frame), start choice (the initialisation kept), first trained frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    live_updates,
    run_meta,
    step_counter,
    streamlit_server,
    wait_for_fork_server,
    worker_pids,
)

HEADLESS = """
import json, sys, time, torch
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.train import Trainer, TrainConfig
from vmonf.data import make_toy
from vmonf.studio.worker import JobSpec
from vmonf.perf import tune_process
spec = JobSpec()
torch.set_num_threads(spec.threads)
tune_process()  # as the worker does
x = torch.as_tensor(make_toy(spec.dataset, spec.n_samples, seed=spec.data_seed)[0])
m = VMoNFModel(ModelConfig(spec.n_components, 2)); m.set_standardization(x.mean(0), x.std(0))
tr = Trainer(m, x[100:], None, TrainConfig(q_hold_steps=0), x_val=x[:100])
tr.run(50)
t0, n0 = time.perf_counter(), tr.step_count
while time.perf_counter() - t0 < float(sys.argv[1]):
    tr.step()
print(json.dumps({"steps_per_sec": (tr.step_count - n0) / (time.perf_counter() - t0)}))
"""
ARI_TEXT = "ARI ≥ 0.95 reached"  # the status line says so once the kept model gets there


def headless_rate(seconds: float) -> float:
    """Steps/s of the default run's model after its q hold (consistency on), as the live run trains then."""
    out = subprocess.run([sys.executable, "-c", HEADLESS, str(seconds)], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_sec"]


def open_page(browser, url: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
    page.wait_for_function("document.querySelector('.vmonf-live') && "
                           "Number(document.querySelector('.vmonf-live').dataset.updates) >= 1", timeout=60_000)
    return page


def watch_start(pages: list, timeout: float) -> list[dict]:
    """Press Start on every page at once; per page, seconds from its click to each thing it shows."""
    clicks, seen = [], [{} for _ in pages]
    for page, s in zip(pages, seen, strict=True):
        s["clicked_at"] = time.time()  # the wall clock, which the page's own stamps (dataset.firstAt) use
        page.get_by_role("button", name="Start", exact=True).click()
        clicks.append(time.monotonic())
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all("ari" in s and "trained" in s for s in seen):
        for page, t0, s in zip(pages, clicks, seen, strict=True):
            now = time.monotonic() - t0
            meta = run_meta(page)
            if meta.get("stage") in ("data", "partition", "candidate", "training"):
                s.setdefault("points", now)
            if meta.get("stage") in ("partition", "candidate", "training"):
                s.setdefault("partition", now)
            if (meta.get("step") or 0) > 0:
                s.setdefault("trained", now)
            if "timeline" in meta:
                s["timeline"] = meta["timeline"]
            if "ari" not in s and page.get_by_text(ARI_TEXT).count():
                s["ari"] = now
        time.sleep(0.05)
    return seen


def later_timelines(pages: list, seen: list[dict]) -> None:
    """Each page's job timeline as its latest frame carries it (moments after the polls above ended included), and
    the page's own clock of its first trained frame."""
    for page, s in zip(pages, seen, strict=True):
        if "timeline" in (meta := run_meta(page)):
            s["timeline"] = meta["timeline"]
        # The page's own clock of when it drew the first trained frame: the polls above see it late when
        # several tabs share the machine (each poll waits for its tab's main thread).
        drawn = json.loads(page.evaluate("document.querySelector('.vmonf-live').dataset.firstAt || '{}'"))
        if "trained" in drawn:
            s["trained_drawn"] = drawn["trained"] / 1000 - s["clicked_at"]


def cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each part of the live loop (Linux ``/proc``; empty elsewhere): the server, the
    training worker, its drawing process, Chromium's renderers and Chromium's other processes."""
    import os

    from browser import _processes

    if not Path("/proc/self/stat").exists():
        return {}
    tick, procs = os.sysconf("SC_CLK_TCK"), _processes()
    workers = {pid for pid, _, comm, _ in procs if comm == "vmonf-worker"}
    out: dict[str, float] = {}
    for pid, ppid, _comm, cmd in procs:
        if pid == server_pid:
            role = "server"
        elif pid in workers:
            role = "drawing process" if ppid in workers else "training worker"
        elif b"chrom" in cmd[:200]:
            role = "Chromium renderers" if b"--type=renderer" in cmd else "Chromium, other processes"
        else:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


TWEENS = "Number(document.querySelector('.vmonf-live').dataset.tweens || 0)"
POLLS = "Number(document.querySelector('.vmonf-live').dataset.polls || 0)"  # the chart's requests for a new frame
#: The number of the newest frame the server wrote for the density chart (its feed's pointer): frames sent so far.
SENT = ("fetch(document.querySelector('.vmonf-live').__vmonfFeed, {cache: 'no-cache'})"
        ".then((r) => r.text()).then((t) => Number(t))")


def rates(page, seconds: float, hover: bool = False, scrub: bool = False) -> tuple[float, float, float, float]:
    """(chart updates/s, training steps/s, ms of browser time per density update, in-between pictures/s) over
    ``seconds``; with
    ``hover`` the mouse wanders over the density chart all the while (the point probe asks the run at each
    place); with ``scrub`` the flow scrubber's slider moves to another layer every 0.3 s."""
    u0, s0, w0 = live_updates(page)[0][0], step_counter(page), time.monotonic()
    r0 = page.evaluate("Number(document.querySelector('.vmonf-live').dataset.renderMs)")
    g0 = page.evaluate(TWEENS)
    box = page.locator(".vmonf-live").first.bounding_box()
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        if hover:
            page.mouse.move(box["x"] + box["width"] * (0.2 + 0.6 * ((i * 0.37) % 1)),
                            box["y"] + box["height"] * (0.2 + 0.6 * ((i * 0.61) % 1)))
        if scrub and i % 3 == 0:  # click along the scrubber's slider (Plotly's own, under its chart)
            rail = page.locator(".vmonf-live .slider-rail-touch-rect").first.bounding_box()
            page.mouse.click(rail["x"] + rail["width"] * ((i // 3) % 6) / 5, rail["y"] + rail["height"] / 2)
        time.sleep(0.1)
    u1, s1, w1 = live_updates(page)[0][0], step_counter(page), time.monotonic()
    r1 = page.evaluate("Number(document.querySelector('.vmonf-live').dataset.renderMs)")
    g1 = page.evaluate(TWEENS)
    return (u1 - u0) / (w1 - w0), (s1 - s0) / (w1 - w0), (r1 - r0) / max(1, u1 - u0), (g1 - g0) / (w1 - w0)


def fmt(v: float | None) -> str:
    return "   never" if v is None else f"{v:7.2f}s"


def stage_shares(t: dict) -> str:
    """How long each stage of Start took (job timeline) and its share of the time until training proper."""
    if "data" not in t:
        return "no timeline"
    spans = [("worker ready", t.get("worker", 0.0)), ("data", t["data"] - t.get("worker", 0.0)),
             ("start choice", t.get("chosen", t["data"]) - t["data"])]
    total = max(t.get("chosen", 0.0), t.get("first_trained", 0.0), 1e-9)
    text = ", ".join(f"{name} {v:.2f}s ({v / total:.0%})" for name, v in spans)
    return text + f"; first trained frame at {t.get('first_trained', float('nan')):.2f}s"


def sessions_together(browser, url: str, server_pid: int, n: int, seed: int | None = None) -> tuple[list[dict], int]:
    """``n`` sessions press Start together: what each showed when (watch_start), and how many moved on within 3 s.
    Their runs are stopped and their tabs closed before this returns, once their workers have ended. ``seed``:
    the default run with this training seed instead."""
    if seed is not None:
        url = f"{url.rstrip('/')}/?ds=pinwheel&seed={seed}"
    pages = [open_page(browser, url) for _ in range(n)]
    wait_for_fork_server(server_pid)
    before = set(worker_pids(server_pid))
    many = watch_start(pages, timeout=60)
    time.sleep(1)
    later_timelines(pages, many)
    later = [run_meta(p).get("step") or 0 for p in pages]
    time.sleep(3)
    trains = sum((run_meta(p).get("step") or 0) != step for p, step in zip(pages, later, strict=True))
    mine = set(worker_pids(server_pid)) - before
    for page in pages:
        stop = page.get_by_role("button", name="Stop", exact=True)
        if stop.count() and stop.is_enabled():
            stop.click()
    end = time.monotonic() + 60
    while set(worker_pids(server_pid)) & mine and time.monotonic() < end:
        time.sleep(0.5)
    for page in pages:
        page.context.close()
    return many, trains


def print_sessions(many: list[dict], trains: int) -> float | None:
    """Print one round of sessions pressing Start together; returns its slowest first trained frame drawn."""
    firsts = [s.get("trained_drawn") for s in many]
    polled = [s.get("trained") for s in many]
    worst = None if None in firsts else max(firsts)
    print(f"\n{len(many)} sessions pressing Start together")
    print(f"{'Start -> first trained frame drawn, each (s)':<52}{', '.join(fmt(v).strip() for v in firsts)}")
    print(f"{'slowest first trained frame drawn':<52}{fmt(worst)}   <= 5 s")
    print(f"{'  the same, seen by the polls (s)':<52}{', '.join(fmt(v).strip() for v in polled)}")
    aris = [s.get("ari") for s in many]
    print(f"{'Start -> ARI >= 0.95 shown, each (s)':<52}{', '.join(fmt(v).strip() for v in aris)}")
    print(f"{'sessions whose chart moved on in the next 3 s':<52}{trains:>7d}/{len(many)}   all")
    for i, s in enumerate(many):
        print(f"  session {i + 1} stages: {stage_shares(s.get('timeline', {}))}")
    medians = statistics.median([v for v in firsts if v is not None]) if any(firsts) else None
    print(f"{'median first trained frame':<52}{fmt(medians)}")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="times the sessions press Start together")
    parser.add_argument("--sessions-only", action="store_true", help="leave out the one-session part")
    parser.add_argument("--fresh", action="store_true",
                        help="each round starts a run this server has not started (its own training seed)")
    args = parser.parse_args()

    def rounds_of_sessions(browser, url, pid):
        return [sessions_together(browser, url, pid, args.sessions, 100 + r if args.fresh else None)
                for r in range(args.rounds)]

    from playwright.sync_api import sync_playwright

    with streamlit_server() as (url, proc), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        if args.sessions_only:
            rounds = rounds_of_sessions(browser, url, proc.pid)
            browser.close()
            report_rounds(rounds, args.fresh)
            return
        t0 = time.monotonic()
        page = open_page(browser, url)
        first_paint = time.monotonic() - t0
        wait_for_fork_server(proc.pid)
        one = watch_start([page], timeout=60)[0]
        time.sleep(1)
        later_timelines([page], [one])
        cpu0, w0, polls0, sent0 = cpu_by_role(proc.pid), time.monotonic(), page.evaluate(POLLS), page.evaluate(SENT)
        ui_updates, ui_rate, render_ms, ui_tweens = rates(page, args.seconds)
        cpu1, wall, polls = cpu_by_role(proc.pid), time.monotonic() - w0, page.evaluate(POLLS) - polls0
        sent = (page.evaluate(SENT) - sent0) / wall
        cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
        hover_updates, hover_rate, _, _ = rates(page, args.seconds, hover=True)
        probes = page.locator('[data-testid="stMarkdownContainer"]', has_text="Point probe").count()
        page.mouse.move(5, 5)  # off the chart
        page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name="flow warp of component 1").click()
        page.locator(".vmonf-live .slider-rail-touch-rect").first.wait_for(timeout=30_000)
        page.locator(".vmonf-live .slider-rail-touch-rect").first.scroll_into_view_if_needed()
        time.sleep(2)
        warp_updates, warp_rate, _, _ = rates(page, args.seconds)
        scrub_updates, scrub_rate, _, _ = rates(page, args.seconds, scrub=True)
        scrubbed = page.evaluate("() => { for (const e of document.querySelectorAll('.vmonf-live')) {"
                                 " if (e.layout && e.layout.sliders && e.layout.sliders.length)"
                                 " return e.layout.sliders[0].active; } return null; }")
        page.context.close()
        time.sleep(2)
        rounds = rounds_of_sessions(browser, url, proc.pid)
        browser.close()
    base = headless_rate(args.seconds)
    print("one session, default playground run (pinwheel, K=5, depth 4, initialisation auto), Chromium on this machine")
    print(f"{'measure':<52}{'value':>10}   target")
    print(f"{'first paint (page load to chart shown)':<52}{first_paint:>9.2f}s   < 3 s")
    print(f"{'Start -> points drawn':<52}{fmt(one.get('points'))}   <= 0.5 s")
    print(f"{'Start -> starting partition drawn':<52}{fmt(one.get('partition'))}")
    print(f"{'Start -> first trained frame (drawn, the page clock)':<52}{fmt(one.get('trained_drawn'))}   <= 2 s")
    print(f"{'Start -> first trained frame (seen by the polls)':<52}{fmt(one.get('trained'))}")
    print(f"{'Start -> ARI >= 0.95 shown in the status line':<52}{fmt(one.get('ari'))}   <= 6 s")
    print(f"{'density chart updates per second (new frames)':<52}{ui_updates:>10.1f}   >= 8")
    print(f"{'  frames the server wrote for it per second':<52}{sent:>10.1f}")
    print(f"{'  pictures in between (the density gliding)':<52}{ui_tweens:>10.1f}")
    print(f"{'browser time per density update (Plotly.react)':<52}{render_ms:>8.0f}ms")
    print(f"{'feed polls per second (the chart asking for a frame)':<52}{polls / wall:>10.1f}")
    print(f"{'training steps/s, UI live in Chromium':<52}{ui_rate:>10.1f}")
    print(f"{'training steps/s, headless (same model, same run)':<52}{base:>10.1f}")
    print(f"{'UI-live speed as a share of headless':<52}{ui_rate / base:>9.0%}   >= 85 %")
    for role, used in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"{'  CPU, ' + role:<52}{used / wall:>7.2f} cores   "
              f"{1000 * used / max(1.0, ui_updates * wall):.0f} ms per chart update")
    print(f"{'mouse over the chart (point probe): updates per second':<52}{hover_updates:>10.1f}"
          f"   probe shown: {'yes' if probes else 'NO'}")
    print(f"{'mouse over the chart: training steps/s':<52}{hover_rate:>10.1f}   "
          f"{hover_rate / ui_rate:.0%} of the same run without the mouse")
    print(f"{'flow warp shown, no mouse: updates per second':<52}{warp_updates:>10.1f}")
    print(f"{'flow warp shown, no mouse: training steps/s':<52}{warp_rate:>10.1f}")
    print(f"{'scrubbing the flow: updates per second':<52}{scrub_updates:>10.1f}"
          f"   slider left at layer {scrubbed}")
    print(f"{'scrubbing the flow: training steps/s':<52}{scrub_rate:>10.1f}   "
          f"{scrub_rate / warp_rate:.0%} of the same view without scrubbing")
    print(f"stages of Start (job timeline, s from Start): {stage_shares(one.get('timeline', {}))}")
    report_rounds(rounds, args.fresh)


def report_rounds(rounds: list[tuple[list[dict], int]], fresh: bool) -> None:
    print("\nsessions pressing Start together: " + (
        "each round a run this server had not started (training seeds 100, 101, ...)" if fresh else
        "the default run each round (its start replayed once the server has chosen it)"))
    worst = [print_sessions(many, trains) for many, trains in rounds]
    if len(rounds) > 1:
        drawn = [w for w in worst if w is not None]
        firsts = [s["trained_drawn"] for many, _ in rounds for s in many if s.get("trained_drawn") is not None]
        slowest = fmt(statistics.median(drawn) if drawn else None).strip()
        every = fmt(statistics.median(firsts) if firsts else None).strip()
        within = sum(w is not None and w <= 5 for w in worst)
        each = ", ".join(fmt(w).strip() for w in worst)
        print(f"\n{len(rounds)} rounds: slowest first trained frame per round {each}"
              f"; median of those {slowest}; every session's first trained frame, median {every}"
              f"; rounds where all drew it within 5 s: {within}/{len(rounds)}")


if __name__ == "__main__":
    main()

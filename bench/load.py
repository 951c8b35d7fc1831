"""Load benchmark: N browser sessions train at once on one server; how responsive does each page stay?

For each setting (workers at lowered priority, the default, and at normal priority), starts
`streamlit run app.py` on localhost, opens N sessions in Debian's Chromium (one browser context each,
each on its own experiment), presses Start in all, then measures per session: seconds to the first
drawn frame, chart updates per second, seconds for Pause to show "paused", and training steps per
second. Also the server's CPU share and whether each page shows its own run.

    python bench/load.py [--sessions 8] [--window 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SESSION_RUNS,
    load_figures,
    open_sessions,
    poll,
    run_meta,
    streamlit_server,
    worker_pids,
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(browser, sessions: int, window: float, nice: str) -> dict:
    env = {"VMONF_MAX_JOBS": str(sessions), "VMONF_WORKER_NICE": nice, "VMONF_RECONNECT_GRACE": "5"}
    with streamlit_server(env, strict=False) as (url, proc):
        t0 = time.monotonic()
        pages = open_sessions(browser, url, sessions)
        first = [poll(lambda p=p: run_meta(p).get("step"), 300) and time.monotonic() - t0 for p in pages]
        own = sum((run_meta(p).get("dataset"), run_meta(p).get("k")) == SESSION_RUNS[i] for i, p in enumerate(pages))
        steps0 = [run_meta(p).get("step", 0) for p in pages]
        cpu0, t1 = cpu_seconds(proc.pid), time.monotonic()
        rows = load_figures(pages, window)  # ends by pausing every page
        server_cores = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t1)
        steps = [(r["run"].get("step", 0) - s0) / window for r, s0 in zip(rows, steps0, strict=True)]
        for p in pages:
            p.context.close()
        poll(lambda: not worker_pids(proc.pid), 60)
    pauses = [r["pause_s"] for r in rows]
    return {"first_frame_s": first, "updates_per_s": [r["updates_per_s"] for r in rows], "pause_s": pauses,
            "steps_per_s": steps, "own_run": own, "server_cores": server_cores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--window", type=float, default=20.0, help="seconds of measuring while all train")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    def fmt(values):
        ok = [v for v in values if v is not None]
        missing = len(values) - len(ok)
        if not ok:
            return "none"
        return f"median {statistics.median(ok):6.2f}  max {max(ok):6.2f}" + (f"  ({missing} never)" if missing else "")

    print(f"{args.sessions} sessions training at once, {os.cpu_count()} CPUs, window {args.window:g} s")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for label, nice in (("workers niced (default)", "10"), ("workers at normal priority", "0")):
            r = measure(browser, args.sessions, args.window, nice)
            print(f"\n{label}")
            print(f"  seconds to first frame    {fmt(r['first_frame_s'])}")
            print(f"  chart updates per second  {fmt(r['updates_per_s'])}")
            print(f"  seconds for Pause         {fmt(r['pause_s'])}")
            print(f"  training steps per second {fmt(r['steps_per_s'])}  (total {sum(r['steps_per_s']):.0f})")
            print(f"  pages showing their own run {r['own_run']}/{args.sessions}; server process "
                  f"{r['server_cores']:.2f} cores")
        browser.close()


if __name__ == "__main__":
    main()

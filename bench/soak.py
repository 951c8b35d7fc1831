"""Soak benchmark: an hour of start/stop cycles in a real browser; do threads, memory or workers leak?

Starts `streamlit run app.py` on localhost and drives one browser session through cycles of
Start -> train a few seconds -> one of (Stop, then Reset | close the tab while training and open a
new one | drop the network for a few seconds while training, so the page reconnects, then Reset).
After every cycle it records the server's resident memory, thread count and open files, and the
number of live training workers. It prints a row per few minutes and, at the end, the first and last
figures side by side.

    python bench/soak.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, CHROMIUM_ARGS, metric, poll, run_meta, streamlit_server, worker_pids  # noqa: E402


def server_figures(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())), "workers": len(worker_pids(pid))}


def dump_threads(pid: int) -> None:
    """Print the server's Python stacks (and its workers') with py-spy, where installed: what is it waiting on?"""
    if not shutil.which("py-spy"):
        return
    for p in [pid, *worker_pids(pid)]:
        out = subprocess.run(["py-spy", "dump", "--pid", str(p)], capture_output=True, text=True, timeout=60)
        print(out.stdout[-6000:] or out.stderr[-500:], flush=True)


def open_page(browser, url: str):
    page = browser.new_context(viewport={"width": 1300, "height": 950}).new_page()
    page.goto(f"{url}/?ds=moons&k=2&n=400&init=kmeans")
    page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
    return page


def click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def train_a_little(page, seconds: float) -> bool:
    click(page, "Start")
    ok = poll(lambda: run_meta(page).get("step"), 120) is not None
    time.sleep(seconds)
    return ok


def cycle(browser, url: str, page, i: int, server_pid: int) -> tuple[object, str]:
    """One start/stop cycle; returns the page to use next and what went wrong ('' if nothing)."""
    if not train_a_little(page, 3):
        busy = page.get_by_text("training slots on this server are busy").count() > 0
        return page, (f"no frame within 120 s (state {metric(page, 'state')!r}, busy message shown: {busy}, "
                      f"{len(worker_pids(server_pid))} workers)")
    kind = i % 3
    if kind == 0:  # Stop keeps the model; Reset throws it away
        click(page, "Stop")
        if not poll(lambda: metric(page, "state") == "stopped (model kept)", 30):
            return page, "Stop was not confirmed"
        click(page, "Reset")
        page.get_by_role("button", name="Start", exact=True).wait_for(timeout=30_000)
        return page, ""
    if kind == 1:  # close the tab mid-training: its worker must go
        page.context.close()
        if not poll(lambda: not worker_pids(server_pid), 60):
            return open_page(browser, url), "a closed tab's worker lived on"
        return open_page(browser, url), ""
    # Network drop mid-training: the page reconnects to the same session; no second worker appears.
    page.context.set_offline(True)
    time.sleep(4)
    page.context.set_offline(False)
    problem = ""
    if not poll(lambda: metric(page, "state") == "training", 60):
        problem = "the run was not shown again after the reconnect"
    elif len(worker_pids(server_pid)) != 1:
        problem = f"{len(worker_pids(server_pid))} workers after a reconnect"
    click(page, "Reset")
    page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
    return page, problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--report-every", type=float, default=5.0, help="minutes between printed rows")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    rows, problems = [], []
    with streamlit_server({"VMONF_RECONNECT_GRACE": "5"}, strict=False) as (url, proc), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_page(browser, url)
        baseline = server_figures(proc.pid)
        print(f"{'minute':>6} {'cycles':>6} {'RSS MB':>7} {'threads':>7} {'fds':>5} {'workers':>7}")
        print(f"{0:6.1f} {0:6d} {baseline['rss_mb']:7.1f} {baseline['threads']:7d} {baseline['fds']:5d} "
              f"{baseline['workers']:7d}   (before the first run)", flush=True)
        t0, next_report, i = time.monotonic(), args.report_every, 0
        while (minute := (time.monotonic() - t0) / 60) < args.minutes:
            try:
                page, problem = cycle(browser, url, page, i, proc.pid)
            except Exception as exc:  # a stuck page is a finding to report, not the end of the soak
                problem = f"{['stop/reset', 'tab close', 'reconnect'][i % 3]} cycle: {type(exc).__name__}: " \
                          f"{str(exc).splitlines()[0][:160]}"
                page.context.close()
                page = open_page(browser, url)
            i += 1
            if problem:
                problems.append(f"cycle {i}, minute {minute:.1f}: {problem}")
                print("  " + problems[-1], flush=True)
                if len(problems) == 1:
                    dump_threads(proc.pid)
            poll(lambda: not worker_pids(proc.pid), 30)  # let the last worker exit before sampling
            rows.append({"minute": minute, **server_figures(proc.pid)})
            if minute >= next_report:
                r = rows[-1]
                print(f"{minute:6.1f} {i:6d} {r['rss_mb']:7.1f} {r['threads']:7d} {r['fds']:5d} {r['workers']:7d}",
                      flush=True)
                next_report += args.report_every
        browser.close()
    tenth = max(1, len(rows) // 10)
    first, last = rows[:tenth], rows[-tenth:]
    print(f"\n{len(rows)} cycles in {args.minutes:g} min; {len(problems)} problems")
    for p in problems[:20]:
        print("  " + p)
    for key in ("rss_mb", "threads", "fds", "workers"):
        a, b = statistics.median(r[key] for r in first), statistics.median(r[key] for r in last)
        print(f"{key:>8}: first tenth median {a:8.1f}, last tenth median {b:8.1f}, change {b - a:+8.1f}")


if __name__ == "__main__":
    main()

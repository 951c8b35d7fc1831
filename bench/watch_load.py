"""Load benchmark: one run trains, a class of watchers follows it through its watch link.

Starts `streamlit run app.py` on localhost. The owner is a real Chromium page that starts the default
playground run. After measuring its training speed alone, N watchers open the run's watch link:

* ``--browsers`` of them are real Chromium pages (each draws every frame it gets);
* the rest are protocol clients that do what the watch page's browser does, minus the drawing: they hold a
  Streamlit session over the websocket (`/_stcore/stream`, the page's script run and its panel's timed
  reruns) and fetch the run's two feed files as often as the page's JavaScript does, with the same
  conditional requests. In a classroom each student's browser draws on their own laptop; here their
  clients share the server's 2 cores, at nice 19.

Prints, for the window with the watchers: the trainer's steps/s against its solo speed, each watcher's new
frames per second, the server's memory (before, with the watchers, after they left) and CPU, and whether
the server started any training for them. Then, with the watchers still there, 8 more sessions press Start:
with the default 8 slots one holds the owner's run, 7 start, and the 8th (the 9th training session) must get
the busy message.

    python bench/watch_load.py [--watchers 30] [--browsers 2] [--window 20]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    live_updates,
    open_sessions,
    poll,
    run_meta,
    streamlit_server,
    worker_pids,
)

FEED = re.compile(rb"\./app/static/live/\d+/[A-Za-z0-9_-]+\.txt")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Watcher(threading.Thread):
    """One watcher as a protocol client: a Streamlit session on the watch page, and the feeds' fetches."""

    def __init__(self, url: str, token: str, every: tuple[float, float]):
        super().__init__(daemon=True)
        self.url, self.token, self.every = url, token, every  # seconds between fetches: density, curves
        self.feeds: list[str] = []
        self.new_frames = 0  # new versions of the density feed fetched
        self.fetches = 0
        self.failed = 0  # fetches that failed or found no frame
        self.panel_runs = 0
        self.error: str | None = None
        self.stop = threading.Event()
        self.counting = threading.Event()

    def _rerun(self, ws, page_hash: str = "", fragment: str = "") -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = f"run={self.token}"
        cs.page_name = "watch"
        if page_hash:
            cs.page_script_hash = page_hash
        if fragment:
            cs.fragment_id, cs.is_auto_rerun = fragment, True
        ws.send(msg.SerializeToString())

    def run(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.sync.client import connect

        u = urlparse(self.url)
        try:
            with connect(f"ws://{u.netloc}/_stcore/stream", subprotocols=["streamlit"], origin=self.url,
                         max_size=None, open_timeout=60) as ws:
                self._watch(ws, http.client.HTTPConnection(u.hostname, u.port, timeout=30), ForwardMsg)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            self.error = repr(exc)

    def _watch(self, ws, conn, ForwardMsg) -> None:  # noqa: N803
        tags: dict[str, str] = {}
        seen: dict[str, str] = {}  # the newest frame fetched, per feed
        page_hash, fragment, interval, due = "", "", 0.0, 0.0
        next_fetch = [0.0, 0.0]
        self._rerun(ws)
        try:
            while not self.stop.is_set():
                while True:  # what the server sent meanwhile
                    try:
                        raw = ws.recv(timeout=0)
                    except TimeoutError:
                        break
                    msg = ForwardMsg()
                    msg.ParseFromString(raw)
                    kind = msg.WhichOneof("type")
                    if kind == "new_session":
                        page_hash = msg.new_session.page_script_hash
                    elif kind == "auto_rerun":
                        fragment, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
                        due = time.monotonic() + interval
                    elif kind == "delta":
                        for found in FEED.findall(raw):
                            if (path := "/" + found.decode()[2:]) not in self.feeds:
                                self.feeds.append(path)
                if fragment and time.monotonic() >= due:
                    self._rerun(ws, page_hash, fragment)
                    self.panel_runs += self.counting.is_set()
                    due = time.monotonic() + interval
                now = time.monotonic()
                for i, path in enumerate(self.feeds[:2]):
                    if now < next_fetch[i]:
                        continue
                    next_fetch[i] = now + self.every[i]
                    # As the chart's JavaScript does: the pointer (conditionally), then the frame it names if new.
                    head = {"Accept-Encoding": "gzip", "Cache-Control": "no-cache"}
                    if path in tags:
                        head["If-None-Match"] = tags[path]
                    try:
                        conn.request("GET", path, headers=head)
                        r = conn.getresponse()
                        seq = r.read().decode().strip()
                        if r.status == 200 and seq and seq != seen.get(path):
                            tags[path] = r.getheader("etag") or ""
                            conn.request("GET", f"{path[:-4]}.{int(seq)}.json.gz", headers={"Accept-Encoding": "gzip"})
                            f = conn.getresponse()
                            f.read()
                            if f.status == 200:
                                seen[path] = seq
                                self.new_frames += i == 0 and self.counting.is_set()
                            else:
                                self.failed += self.counting.is_set()
                    except (http.client.HTTPException, OSError):
                        self.failed += self.counting.is_set()
                        conn.close()
                        continue
                    self.fetches += self.counting.is_set()
                time.sleep(0.05)
        finally:
            conn.close()


def steps_of(page) -> int:
    return (live_updates(page) or [(0, 0)])[0][1]


def speed(page, seconds: float) -> float:
    s0, t0 = steps_of(page), time.monotonic()
    time.sleep(seconds)
    return (steps_of(page) - s0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--watchers", type=int, default=30)
    ap.add_argument("--browsers", type=int, default=2, help="how many of the watchers are real Chromium pages")
    ap.add_argument("--window", type=float, default=20.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    import ui

    with sync_playwright() as p, streamlit_server({"VMONF_RECONNECT_GRACE": "5"}, strict=False) as (url, proc):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        owner = browser.new_page(viewport={"width": 1300, "height": 950})
        owner.goto(url + "/?init=kmeans")
        owner.get_by_role("button", name="Start", exact=True).click()
        poll(lambda: steps_of(owner) > 200, 120)
        owner.get_by_text("Let others watch this run").first.click()
        link = owner.locator('[data-testid="stCode"]', has_text="/watch?run=").first.inner_text().strip()
        token = link.split("run=")[1]
        workers = set(worker_pids(proc.pid))
        time.sleep(3)
        solo = speed(owner, args.window)
        mem0 = rss_mb(proc.pid)

        pages = []
        for _ in range(args.browsers):
            page = browser.new_context(viewport={"width": 1300, "height": 950}).new_page()
            page.goto(link)
            pages.append(page)
        os.nice(19)  # the clients below stand in for the students' laptops
        every = (ui.WATCH_FETCH_S, ui.WATCH_CURVES_S)
        clients = [Watcher(url, token, every) for _ in range(args.watchers - args.browsers)]
        mem_part, part = None, max(1, len(clients) // 3)
        for i, c in enumerate(clients):
            c.start()
            time.sleep(0.1)
            if i + 1 == part:
                poll(lambda: all(len(c.feeds) >= 2 or c.error for c in clients[:part]), 120)
                time.sleep(2)
                mem_part = rss_mb(proc.pid)
        poll(lambda: all(len(c.feeds) >= 2 or c.error for c in clients) and all(live_updates(pg) for pg in pages),
             120)
        time.sleep(3)
        for c in clients:
            c.counting.set()
        print(f"measuring: server pid {proc.pid}", file=sys.stderr, flush=True)
        drawn0 = [live_updates(pg)[0][0] for pg in pages]
        cpu0, t0, s0 = cpu_seconds(proc.pid), time.monotonic(), steps_of(owner)
        time.sleep(args.window)
        took = time.monotonic() - t0
        watched = (steps_of(owner) - s0) / took
        for c in clients:
            c.counting.clear()
        server_cores = (cpu_seconds(proc.pid) - cpu0) / took
        mem1 = rss_mb(proc.pid)
        rates = [c.new_frames / took for c in clients]
        drawn = [(live_updates(pg)[0][0] - d0) / took for pg, d0 in zip(pages, drawn0, strict=True)]
        same_run = sum(run_meta(pg).get("dataset") == run_meta(owner).get("dataset") for pg in pages)
        added = set(worker_pids(proc.pid)) - workers

        # With the watchers still there: 8 more sessions press Start (the owner's run holds one of 8 slots).
        others = open_sessions(browser, url, 8, first=1)
        busy = poll(lambda: [pg for pg in others if pg.get_by_text("training slots on this server are busy").count()],
                    90) or []
        started = poll(lambda: len(set(worker_pids(proc.pid)) - workers) >= 7 and set(worker_pids(proc.pid)), 180)
        errors = [c.error for c in clients if c.error]
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        for pg in [*pages, *others]:
            pg.context.close()
        time.sleep(8)  # the watchers' sessions are released
        mem2 = rss_mb(proc.pid)
        browser.close()

    print(f"owner: default playground run (pinwheel, K=5, depth 4, k-means start), Chromium; {args.watchers} watchers "
          f"({args.browsers} Chromium pages, {args.watchers - args.browsers} protocol clients), "
          f"{args.window:g} s windows")
    print(f"trainer steps/s: alone {solo:.0f}, with the watchers {watched:.0f} ({watched / solo:.0%} of alone)")
    if rates:
        print(f"protocol watchers, new frames/s: median {statistics.median(rates):.2f}, min {min(rates):.2f}, "
              f"max {max(rates):.2f}; panel runs/s each {statistics.mean(c.panel_runs for c in clients) / took:.2f}")
    if drawn:
        print(f"Chromium watchers, frames drawn/s: {', '.join(f'{d:.2f}' for d in drawn)}; showing the owner's "
              f"run: {same_run}/{len(pages)}")
    print(f"server: {server_cores:.2f} cores with the watchers; memory {mem0:.0f} MB before, {mem_part:.0f} MB with "
          f"{args.browsers + part} watchers, {mem1:.0f} MB with all {args.watchers} "
          f"({(mem1 - mem_part) / max(1, len(clients) - part):.1f} MB per further watcher), {mem2:.0f} MB after "
          "everybody left")
    fetches, failed = sum(c.fetches for c in clients), sum(c.failed for c in clients)
    print(f"training workers the watchers added: {len(added)}; client errors: {len(errors)} {errors[:2]}; "
          f"fetches {fetches / took:.0f}/s, {failed} failed ({failed / max(1, fetches):.1%})")
    print(f"then 8 more sessions pressed Start: {len(busy)} told the slots are busy "
          f"({'ok' if len(busy) == 1 else 'NOT as expected'}), workers now {len(started or [])}")


if __name__ == "__main__":
    main()

"""Helpers for real-browser tests: a Streamlit server on a free localhost port, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("VMONF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Lines the server must never log during a browser test: a traceback or stack, or a deprecated Streamlit call (each
#: call logs a warning on every script run; the log filled up, see ``streamlit_server``).
BAD_LOG_LINES = ("Traceback", "Stack (most recent call last)", "deprecat", "will be removed", "please replace")


@contextlib.contextmanager
def streamlit_server(env: dict | None = None, strict: bool = True):
    """Run ``streamlit run app.py`` on 127.0.0.1; yields ``(url, process)``.

    The server's output goes to a file, never to an unread pipe: a pipe holds 64 kB, and once a
    deprecation warning logged on every run had filled it, every script run of the server blocked in
    its logging call (the soak "broke" after ~150 cycles, and 8 sessions got no frame). With ``strict``,
    a server that logged any of :data:`BAD_LOG_LINES` fails the test at the end.
    """
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="vmonf-streamlit-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    url, text, ok = f"http://127.0.0.1:{port}", "", False
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start: " + Path(log.name).read_text()[-2000:]) from None
                time.sleep(0.3)
        proc.log_path = log.name  # for failure messages (tests/test_browser.py)
        yield url, proc
        ok = True
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        text = Path(log.name).read_text(errors="replace")
        os.unlink(log.name)
    bad = [line for line in text.splitlines() if any(b.lower() in line.lower() for b in BAD_LOG_LINES)]
    if ok and strict and bad:
        raise AssertionError("the server logged:\n" + "\n".join(bad[:5]) + "\n...\n" + text[-3000:])


def _processes() -> list[tuple[int, int, str, bytes]]:
    """``(pid, ppid, comm, cmdline)`` of every process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            comm = (entry / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(entry.name), ppid, comm, cmd))
    return out


def fork_server_pid(server_pid: int) -> int | None:
    """The server's fork server (vmonf.studio.pool), once its imports are done and it waits for work."""
    return next((pid for pid, ppid, comm, _ in _processes() if ppid == server_pid and comm == "vmonf-forksrv"), None)


def wait_for_fork_server(server_pid: int, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while (pid := fork_server_pid(server_pid)) is None:
        if time.monotonic() > end:
            raise AssertionError("the fork server did not get ready")
        time.sleep(0.2)
    return pid


def worker_pids(server_pid: int) -> list[int]:
    """PIDs of the server's training workers: forked by its fork server, or started directly."""
    procs = _processes()
    forksrv = {pid for pid, ppid, _, cmd in procs if ppid == server_pid and b"--fork-server" in cmd}
    return [pid for pid, ppid, comm, cmd in procs if b"vmonf.studio.worker" in cmd and (
        (ppid in forksrv and comm == "vmonf-worker") or (ppid == server_pid and b"--fork-server" not in cmd))]


#: An init script that keeps every WebSocket a page opens in ``window.__vmonfSockets`` (see ``drop_connection``).
TRACK_SOCKETS = ("window.__vmonfSockets = []; window.WebSocket = class extends window.WebSocket { "
                 "constructor(...args) { super(...args); window.__vmonfSockets.push(this); } };")


def drop_connection(page) -> int:
    """Close the page's websocket to the server, as a network drop would; Streamlit's page then reconnects.
    The page must have been opened after ``page.add_init_script(TRACK_SOCKETS)``. Returns how many it closed."""
    return page.evaluate("window.__vmonfSockets.filter(s => s.readyState === WebSocket.OPEN)"
                         ".map(s => s.close()).length")


def live_updates(page) -> list[tuple[int, int]]:
    """``(updates, step)`` of every live chart on the page."""
    return [tuple(v) for v in page.evaluate(
        "Array.from(document.querySelectorAll('.vmonf-live')).map(e => [Number(e.dataset.updates || 0), "
        "Number(e.dataset.step || 0)])")]


def frames_received(page) -> list[int]:
    """New frames each live chart was sent (``live_updates`` counts the ones it finished drawing)."""
    return page.evaluate("Array.from(document.querySelectorAll('.vmonf-live')).map(e => Number(e.dataset.received "
                         "|| 0))")


def step_counter(page) -> int | None:
    """The value of the "step" metric, or None before the first frame."""
    text = page.evaluate(
        "(() => { for (const m of document.querySelectorAll('[data-testid=\"stMetric\"]')) {"
        "  const l = m.querySelector('[data-testid=\"stMetricLabel\"]');"
        "  if (l && l.innerText.trim() === 'step') return m.querySelector('[data-testid=\"stMetricValue\"]').innerText;"
        "} return null; })()")
    if not text or not text.strip().replace(",", "").isdigit():
        return None
    return int(text.strip().replace(",", ""))


# -- many sessions at once (tests/test_browser.py and bench/load.py) ------------------------------------
#: Distinct experiments, one per session, so each page can check it shows its own run: (data set, K).
SESSION_RUNS = [("pinwheel", 3), ("two circles", 2), ("moons", 4), ("gaussian mixture", 5), ("spirals", 6),
                ("banana", 7), ("checkerboard", 8), ("pinwheel", 9), ("moons", 10), ("spirals", 11)]


def run_meta(page) -> dict:
    """What the density chart last drew: ``{"step", "dataset", "k"}`` ({} before the first frame)."""
    text = page.evaluate("(() => { const e = document.querySelector('.vmonf-live'); "
                         "return e ? (e.dataset.run || '{}') : '{}'; })()")
    import json

    return json.loads(text)


def metric(page, label: str) -> str | None:
    """The text of the metric called ``label``."""
    return page.evaluate(
        "(label) => { for (const m of document.querySelectorAll('[data-testid=\"stMetric\"]')) {"
        "  const l = m.querySelector('[data-testid=\"stMetricLabel\"]');"
        "  if (l && l.innerText.trim() === label) return m.querySelector('[data-testid=\"stMetricValue\"]').innerText;"
        "} return null; }", label)


def page_report(page, chars: int = 600) -> str:
    """What a page shows, for a failure message: its state metric, any exception, the start of its text."""
    try:
        text = " ".join(page.evaluate("document.body.innerText").split())[:chars]
        errors = page.locator('[data-testid="stException"]').count()
        return f"state {metric(page, 'state')!r}, {errors} exceptions, text: {text!r}"
    except Exception as exc:  # noqa: BLE001 - a crashed or closed page says so
        return f"page not readable: {exc}"


def poll(fn, timeout: float, every: float = 0.1):
    """Call ``fn`` until it returns something truthy; that value, or None after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := fn():
            return value
        time.sleep(every)
    return None


def open_sessions(browser, url: str, n: int, points: int = 400, first: int = 0) -> list:
    """Open ``n`` separate browser sessions (contexts), session i on experiment ``SESSION_RUNS[i]``
    (``i`` from ``first``), and press Start in all of them."""
    pages = []
    for i in range(first, first + n):
        ds, k = SESSION_RUNS[i % len(SESSION_RUNS)]
        ctx = browser.new_context(viewport={"width": 1300, "height": 950})
        page = ctx.new_page()
        page.goto(f"{url}/?ds={ds.replace(' ', '+')}&k={k}&n={points}&init=kmeans&seed={i}")
        page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
        pages.append(page)
    for page in pages:  # press Start on all of them as close together as possible
        page.get_by_role("button", name="Start", exact=True).click()
    return pages


def load_figures(pages, window: float = 10.0) -> list[dict]:
    """Per session, while all train: chart updates per second over ``window`` s, the run it shows, and
    how long Pause takes to show "paused" (a full round trip through the busy server)."""
    first = [live_updates(p)[0][0] for p in pages]
    t0 = time.monotonic()
    time.sleep(window)
    rows = []
    for p, u0 in zip(pages, first, strict=True):
        rows.append({"updates_per_s": (live_updates(p)[0][0] - u0) / (time.monotonic() - t0), "run": run_meta(p)})
    for p, row in zip(pages, rows, strict=True):
        button = p.get_by_role("button", name="Pause", exact=True)
        if not poll(lambda b=button: b.is_enabled(), 60):  # still choosing its start, or the page never caught up
            row["pause_s"], row["state"] = None, metric(p, "state")
            continue
        t = time.monotonic()
        button.click()
        row["pause_s"] = time.monotonic() - t if poll(lambda p=p: metric(p, "state") == "paused", 30) else None
        row["state"] = metric(p, "state")
    return rows

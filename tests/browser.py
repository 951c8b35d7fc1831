"""Helpers for real-browser tests: a Streamlit server on a free localhost port, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
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


@contextlib.contextmanager
def streamlit_server(env: dict | None = None):
    """Run ``streamlit run app.py`` on 127.0.0.1; yields ``(url, process)``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start: " + proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def worker_pids(server_pid: int) -> list[int]:
    """PIDs of ``vmonf.worker`` processes whose parent is the server."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"vmonf.worker" in cmd and ppid == server_pid:
            out.append(int(entry.name))
    return out


def live_updates(page) -> list[tuple[int, int]]:
    """``(updates, step)`` of every live chart on the page."""
    return [tuple(v) for v in page.evaluate(
        "Array.from(document.querySelectorAll('.vmonf-live')).map(e => [Number(e.dataset.updates || 0), "
        "Number(e.dataset.step || 0)])")]


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

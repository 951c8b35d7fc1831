"""Blank-page benchmark: eight sessions press Start together while another process keeps one core busy.

Each round starts `streamlit run app.py` on localhost, starts a process that spins on one core, opens eight
sessions in Debian's Chromium (one browser context each, each on its own experiment, as
`tests/test_browser.py::test_eight_sessions_train_at_once_each_sees_its_own_run` does) and presses Start in all.
It then waits up to --wait seconds for every page to draw a trained frame, and counts the pages that did not,
the pages whose text is empty (Streamlit's page code crashed and left a blank page) and the page errors the
browser reported, by message.

    python bench/blank_pages.py [--rounds 5] [--wait 100]

A round takes 2-3 minutes on 2 cores. The spinning process stands for a CI machine that is slower and busier
than this one.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, CHROMIUM_ARGS, SESSION_RUNS, poll, run_meta, streamlit_server  # noqa: E402

SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def one_round(playwright, wait: float) -> dict:
    errors: collections.Counter = collections.Counter()
    spin = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=wait + 200)])
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # a fresh one, as a test has
    try:
        with streamlit_server({"VMONF_MAX_JOBS": "8", "VMONF_RECONNECT_GRACE": "10"}, strict=False) as (url, _):
            pages = []
            for i in range(8):
                ds, k = SESSION_RUNS[i % len(SESSION_RUNS)]
                page = browser.new_context(viewport={"width": 1300, "height": 950}).new_page()
                page.on("pageerror", lambda e: errors.update([str(e).split("\n")[0][:80]]))
                page.goto(f"{url}/?ds={ds.replace(' ', '+')}&k={k}&n=400&init=kmeans&seed={i}")
                page.get_by_role("button", name="Start", exact=True).wait_for(timeout=120_000)
                pages.append(page)
            for page in pages:
                page.get_by_role("button", name="Start", exact=True).click()
            t0 = time.monotonic()
            poll(lambda: all(run_meta(p).get("step") for p in pages), wait)
            seconds = time.monotonic() - t0
            missing = [i for i, p in enumerate(pages) if not run_meta(p).get("step")]
            blank = [i for i in missing if not pages[i].evaluate("document.body.innerText").strip()]
    finally:
        browser.close()
        spin.kill()
        spin.wait()
    return {"seconds": seconds, "missing": missing, "blank": blank, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wait", type=float, default=100.0, help="seconds for all eight pages to draw a trained frame")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    total = collections.Counter()
    errors: collections.Counter = collections.Counter()
    with sync_playwright() as pw:
        for r in range(args.rounds):
            row = one_round(pw, args.wait)
            errors.update(row["errors"])
            total.update(rounds=1, failed=bool(row["missing"]), missing=len(row["missing"]), blank=len(row["blank"]))
            print(f"round {r + 1}: {8 - len(row['missing'])}/8 pages drew a trained frame "
                  f"({row['seconds']:.1f} s); blank pages {row['blank'] or 'none'}", flush=True)
    print(f"\n{total['rounds']} rounds of 8 sessions: {total['failed']} rounds with a page that drew no frame "
          f"({total['missing']} pages, {total['blank']} of them blank)")
    for message, n in errors.most_common():
        print(f"  page error x{n}: {message}")


if __name__ == "__main__":
    main()

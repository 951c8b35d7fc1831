"""Live UI benchmark: chart updates per second, training speed with the UI live vs headless, first paint.

Starts `streamlit run app.py` on localhost, opens it in Debian's Chromium (Playwright), presses Start on
the default run, and measures for --seconds. In the same run, the same model trains headless (a bare
Trainer loop in its own process) for the same time, so the ratio compares like with like.

    python bench/live_ui.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, CHROMIUM_ARGS, live_updates, step_counter, streamlit_server  # noqa: E402

HEADLESS = """
import json, sys, time, torch
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.train import Trainer, TrainConfig
from vmonf.data import make_toy
from vmonf.worker import JobSpec
spec = JobSpec()
torch.set_num_threads(spec.threads)
x = torch.as_tensor(make_toy(spec.dataset, spec.n_samples, seed=spec.data_seed)[0])
m = VMoNFModel(ModelConfig(spec.n_components, 2)); m.set_standardization(x.mean(0), x.std(0))
tr = Trainer(m, x[100:], None, TrainConfig(), x_val=x[:100])
tr.run(50)
t0, n0 = time.perf_counter(), tr.step_count
while time.perf_counter() - t0 < float(sys.argv[1]):
    tr.step()
print(json.dumps({"steps_per_sec": (tr.step_count - n0) / (time.perf_counter() - t0)}))
"""


def headless_rate(seconds: float) -> float:
    out = subprocess.run([sys.executable, "-c", HEADLESS, str(seconds)], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with streamlit_server() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(url)
        page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
        first_paint = time.perf_counter() - t0
        t1 = time.perf_counter()
        page.get_by_role("button", name="Start", exact=True).click()
        while not (live_updates(page) and live_updates(page)[0][0] >= 1):
            time.sleep(0.05)
        first_frame = time.perf_counter() - t1
        time.sleep(2)  # let the start-up transient pass
        u0, s0, w0 = live_updates(page)[0][0], step_counter(page), time.perf_counter()
        time.sleep(args.seconds)
        u1, s1, w1 = live_updates(page)[0][0], step_counter(page), time.perf_counter()
        render_ms = page.evaluate("Number(document.querySelector('.vmonf-live').dataset.renderMs)") / max(
            1, live_updates(page)[0][0])
        browser.close()
    ui_updates = (u1 - u0) / (w1 - w0)
    ui_rate = (s1 - s0) / (w1 - w0)
    base = headless_rate(args.seconds)
    print(f"{'measure':<44}{'value':>10}   target")
    print(f"{'first paint (page load to controls shown)':<44}{first_paint:>9.2f}s   < 3 s")
    print(f"{'Start to first live frame':<44}{first_frame:>9.2f}s")
    print(f"{'density chart updates per second':<44}{ui_updates:>10.1f}   >= 5")
    print(f"{'browser time per density update (Plotly.react)':<44}{render_ms:>8.0f}ms")
    print(f"{'training steps/s, UI live in Chromium':<44}{ui_rate:>10.1f}")
    print(f"{'training steps/s, headless (same model)':<44}{base:>10.1f}")
    print(f"{'UI-live speed as a share of headless':<44}{ui_rate / base:>9.0%}   >= 70 %")


if __name__ == "__main__":
    main()

"""Time to export a 100-frame animation of a 2-D run in each format, and the file sizes.

Trains the default pinwheel model, recording a frame every 50 steps (5,000 steps), then exports
the 100 frames at 640x480 and 10 fps. Target: under 30 s per format on 2 cores.

    python bench/export_speed.py [--frames 100] [--size 640x480]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import time

import numpy as np
import torch

from vmonf import VMoNF
from vmonf.data import make_toy
from vmonf.studio import export as ex
from vmonf.studio.capture import make_view, take_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.split("x"))
    x, y = make_toy("pinwheel", 1000, seed=0)
    view = make_view(x, y)
    frames, history = [], []

    def record(trainer):
        if len(frames) < args.frames:  # called every 50 steps
            history.append(trainer.evaluate())
            frames.append(take_snapshot(trainer.model, view, history, {"step": trainer.step_count}))

    VMoNF(5, max_steps=150 + 50 * args.frames, seed=0).fit(x, callback=record)
    frames = frames[: args.frames]
    print(f"{len(frames)} frames of a 2-D run, {w}x{h}, 10 fps")
    print(f"{'format':<8}{'seconds':>9}{'size MB':>9}   target < 30 s")
    for fmt in ex.FORMATS:
        kw = {"fps": 10, "title": "pinwheel"}
        if fmt != "html":
            kw["size"] = (w, h)
        t0 = time.perf_counter()
        data = ex.export(frames, fmt, **kw)
        print(f"{fmt:<8}{time.perf_counter() - t0:>9.1f}{len(data) / 1e6:>9.2f}", flush=True)
    assert np.isfinite(frames[-1].get("log_density")).all()


if __name__ == "__main__":
    main()

"""Regenerate the recorded example runs that ship in examples/runs/: one per preset of the 2-D playground.

Each preset is trained exactly as the app trains it (a real worker through vmonf.studio.job.TrainingJob, the
preset's settings, the CPU) for --steps steps; its recording is thinned to --frames frames, less the arrays
replay does not draw (vmonf.studio.examples.HEAVY), and saved with the trained model as
examples/runs/<name>.vmonf. The replay page opens them with no training, so a lecture can
begin at once. It prints, per run, the steps, the final ARI and the file's size.

    python bench/shipped_runs.py [--steps 1500] [--frames 30] [--out examples/runs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmonf.studio.examples import example_name, slim  # noqa: E402
from vmonf.studio.export import thin  # noqa: E402
from vmonf.studio.job import TrainingJob  # noqa: E402
from vmonf.studio.presets import PRESETS  # noqa: E402
from vmonf.studio.runfile import Run, save_run  # noqa: E402
from vmonf.studio.settings import to_spec  # noqa: E402


def record(title: str, steps: int, frames: int) -> Run:
    preset = PRESETS[title]
    spec = to_spec(preset.settings, device="cpu", max_steps=steps)
    job = TrainingJob(spec)
    job.start()
    try:
        if not job.wait_for(lambda j: j.state in ("finished", "error", "diverged"), timeout=1800):
            raise RuntimeError(f"{title}: not finished after 30 minutes")
        if job.state != "finished":
            raise RuntimeError(f"{title}: {job.state}: {job.message}")
    finally:
        job.stop()
    kept = [slim(f) for f in thin(job.recording.snapshot_list(), frames)]
    return Run({**json.loads(job.spec.to_json()), "preset": title}, kept, job.checkpoint,
               {"made_by": "bench/shipped_runs.py", "steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "runs")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS), metavar="TITLE",
                        help="only these presets (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'preset':<48}{'steps':>7}{'frames':>8}{'ARI':>8}{'MB':>7}{'s':>7}")
    total = 0
    for title in args.presets:
        t0 = time.perf_counter()
        run = record(title, args.steps, args.frames)
        path = args.out / f"{example_name(title)}.vmonf"
        save_run(path, run)
        size = path.stat().st_size
        total += size
        ari = run.frames[-1].meta.get("ari", float("nan"))
        print(f"{title:<48}{run.frames[-1].step:>7}{len(run.frames):>8}{ari:>8.3f}{size / 1e6:>7.2f}"
              f"{time.perf_counter() - t0:>7.0f}", flush=True)
    print(f"{'all':<48}{'':>23}{total / 1e6:>7.2f}")


if __name__ == "__main__":
    main()

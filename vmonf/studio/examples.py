"""Recorded example runs that ship with the studio (``examples/runs/``, made by ``bench/shipped_runs.py``).

One per preset of the 2-D playground, so the replay page can show the paper's experiments before anything
trains. Loading them is :func:`vmonf.studio.runfile.load_run` (no pickle; sizes checked).
"""

from __future__ import annotations

import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "runs"


def example_name(title: str) -> str:
    """A preset's title as a file name: ``"Pinwheel, 5 wings"`` -> ``"pinwheel-5-wings"``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def shipped_runs(folder: Path = EXAMPLES) -> dict[str, Path]:
    """The example runs that are there: preset title -> file, in the presets' order."""
    from vmonf.studio.presets import PRESETS

    return {title: path for title in PRESETS if (path := folder / f"{example_name(title)}.vmonf").is_file()}


#: Frame arrays a shipped example leaves out: the replay and its exports draw the mixture density, the
#: points and the curves, and the flow scrubber uses the model itself. They were ~80 % of a frame's bytes.
HEAVY = ("comp_log_density", "q_grid_assign", "q_grid_conf", "p_grid_assign", "p_grid_conf", "warp", "samples",
         "sample_comp")


def slim(snap):
    """``snap`` without the :data:`HEAVY` arrays, its density grid in half precision (drawn in grey levels,
    it needs no more)."""
    import numpy as np

    from vmonf.studio.snapshot import Snapshot

    arrays = {k: v for k, v in snap.arrays.items() if k not in HEAVY}
    if "log_density" in arrays:
        arrays["log_density"] = np.maximum(arrays["log_density"], -6e4).astype(np.float16)
    return Snapshot.create(dict(snap.meta), arrays)

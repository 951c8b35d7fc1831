"""The automatic start's choice: every candidate starting partition alone, and the one the normalised cut keeps.

For each data set and seed (the toy sets, the shapes of bench/unseen.py, and its further families): the
k-means, spectral, local-scale spectral, Ward (k-NN graph) and Gaussian-mixture partitions of the
standardised points, each one's ARI against the true clusters, and the partition that
``init="auto"`` keeps (the lowest normalised cut, made by :func:`vmonf.starts.scored_partitions`). No training:
what the start alone is worth, and how long it takes to make.

    python bench/starts.py [--seeds 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import time
import warnings

import numpy as np
from unseen import FAMILIES, MORE

from vmonf.data import make_toy
from vmonf.metrics import clustering_scores
from vmonf.starts import initial_partition, scored_partitions, start_candidates
from vmonf.train import TrainConfig


def toy(name: str, **params):
    def make(n: int, rng):
        return make_toy(name, n, seed=int(rng.integers(1 << 30)), **params)
    return make


SETS = {
    "pinwheel, 5 wings": (toy("pinwheel", wings=5, rate=0.4), 5),
    "pinwheel, 3 wings": (toy("pinwheel", wings=3, rate=0.25), 3),
    "two moons": (toy("moons"), 2),
    "two circles": (toy("two circles"), 2),
    "Gaussian blobs": (toy("gaussian mixture"), 4),
    "spirals": (toy("spirals"), 2),
    "bananas": (toy("banana"), 2),
    "checkerboard": (toy("checkerboard"), 8),
    **{f"unseen: {k}": v for k, v in FAMILIES.items()},
    **{f"more: {k}": v for k, v in MORE.items()},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    methods = start_candidates("auto", labelled=False)
    print(f"{args.seeds} seeds, 1,000 points each, standardised; ARI median of each partition alone, and of the "
          "one kept by the lowest normalised cut [seeds >= 0.9]")
    print(f"{'data set':<26}{'kept':>12}{'best':>7} | " + "".join(f"{m:>10}" for m in methods) + "   s/choice  kept")
    for name, (make, k) in SETS.items():
        kept, best, each, seconds, names = [], [], {m: [] for m in methods}, [], []
        for seed in range(args.seeds):
            x, y = make(1000, np.random.default_rng(1000 + seed))
            x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()  # the library's own choice: twins skipped, the first lowest cut kept
                scored, _ = scored_partitions(x, k, TrainConfig(seed=seed), methods)
                choice, part, cut = None, None, float("inf")
                for _, name_, partition, c in scored:
                    if choice is None or c < cut:
                        choice, part, cut = name_, partition, c
                seconds.append(time.perf_counter() - t0)
                scores = {m: clustering_scores(y, initial_partition(x, k, m, seed))["ari"] for m in methods}
            names.append(choice)
            kept.append(clustering_scores(y, part)["ari"])
            best.append(max(scores.values()))
            for m in methods:
                each[m].append(scores[m])
        kept = np.array(kept)
        print(f"{name:<26}{np.median(kept):>7.3f} [{int((kept >= 0.9).sum()):>2}]{np.median(best):>7.3f} | "
              + "".join(f"{np.median(each[m]):>10.3f}" for m in methods)
              + f"   {np.mean(seconds):8.2f}  " + ",".join(sorted(set(names), key=names.count, reverse=True)),
              flush=True)


if __name__ == "__main__":
    main()

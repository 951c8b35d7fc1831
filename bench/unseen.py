"""Clustering on 2-D shapes that none of the defaults were chosen on: the defaults' robustness.

The toy sets (pinwheel, moons, two circles...) are what the defaults were tuned and measured on. The
families here are new, made for this bench only: thin curved arcs that interleave, clusters of very uneven
size and density, a thin ring around an off-centre blob, and two parallel S-shaped bands. For each family
and seed: VMoNF with its default settings (the given K, 1,500 steps) beside scikit-learn's GaussianMixture
(full covariance, 3 fits), ARI on the training points.

    python bench/unseen.py [--seeds 10] [--steps 1500] [--families arcs uneven ...] [--no-learn-prior]
        [--start-choice elbo]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from vmonf import VMoNF
from vmonf.metrics import clustering_scores
from vmonf.perf import tune_process


def _shuffled(parts: list[np.ndarray], rng) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate(parts).astype(np.float32)
    y = np.concatenate([np.full(len(p), c) for c, p in enumerate(parts)]).astype(np.int64)
    order = rng.permutation(len(x))
    return x[order], y[order]


def arcs(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three thin arcs of different radii, each turned a third of a circle from the last, interleaving."""
    parts = []
    for c, radius in enumerate((1.0, 1.6, 2.2)):
        t = rng.uniform(0, 1.3 * np.pi, n // 3) + c * 2 * np.pi / 3
        parts.append(radius * np.stack([np.cos(t), np.sin(t)], 1) + 0.07 * rng.standard_normal((n // 3, 2)))
    return _shuffled(parts, rng)


def uneven(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three elongated blobs holding 70 %, 20 % and 10 % of the points, each with its own spread."""
    sizes = (int(0.7 * n), int(0.2 * n), n - int(0.7 * n) - int(0.2 * n))
    centres, scales = ((0.0, 0.0), (3.2, 1.0), (1.0, 3.0)), ((1.2, 0.45), (0.25, 0.6), (0.15, 0.15))
    parts = [rng.normal(c, s, (m, 2)) for c, s, m in zip(centres, scales, sizes, strict=True)]
    return _shuffled(parts, rng)


def ring_and_blob(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A thin ring and a dense blob inside it, off its centre."""
    t = rng.uniform(0, 2 * np.pi, n // 2)
    ring = 2.0 * np.stack([np.cos(t), np.sin(t)], 1) + 0.08 * rng.standard_normal((n // 2, 2))
    blob = rng.normal((0.7, -0.4), 0.3, (n - n // 2, 2))
    return _shuffled([ring, blob], rng)


def s_bands(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Two parallel S-shaped bands, one above the other."""
    parts = []
    for offset in (0.0, 1.1):
        u = rng.uniform(-np.pi, np.pi, n // 2)
        parts.append(np.stack([u, np.sin(u) + offset], 1) + 0.12 * rng.standard_normal((n // 2, 2)))
    return _shuffled(parts, rng)


def crescent_and_blob(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A half ring with a round blob in its hollow."""
    t = rng.uniform(0, np.pi, n // 2)
    crescent = 2.0 * np.stack([np.cos(t), np.sin(t)], 1) + 0.1 * rng.standard_normal((n // 2, 2))
    return _shuffled([crescent, rng.normal((0.0, 0.6), 0.25, (n - n // 2, 2))], rng)


def lines(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three thin parallel segments of different lengths, close together."""
    m = n // 3
    parts = [np.stack([rng.uniform(0, length, m), height + 0.06 * rng.standard_normal(m)], 1)
             for length, height in ((4.0, 0.0), (2.0, 0.5), (3.0, 1.0))]
    return _shuffled(parts, rng)


def tilted(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussians with random covariances (random tilt and elongation), centres on a circle."""
    parts = []
    for c in range(3):
        a = rng.normal(0, 1, (2, 2))
        centre = 2.2 * np.array([np.cos(2 * np.pi * c / 3), np.sin(2 * np.pi * c / 3)])
        parts.append(rng.multivariate_normal(centre, 0.3 * a @ a.T + 0.05 * np.eye(2), n // 3))
    return _shuffled(parts, rng)


FAMILIES = {"arcs": (arcs, 3), "uneven": (uneven, 3), "ring and blob": (ring_and_blob, 2), "s-bands": (s_bands, 2)}
#: More families, made while building the automatic start's choice and kept apart from the four above, on
#: which it was judged (``--families`` takes them; bench/starts.py scores every family's partitions).
MORE = {"crescent and blob": (crescent_and_blob, 2), "lines": (lines, 3), "tilted blobs": (tilted, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=[*FAMILIES, *MORE])
    ap.add_argument("--learn-prior", action=argparse.BooleanOptionalAction, default=True,
                    help="learn the mixture weights (VMoNF(learn_prior=...), the default); --no-learn-prior: uniform")
    ap.add_argument("--start-choice", choices=["cut", "elbo"], default="cut",
                    help="how init='auto' keeps its start (VMoNF(start_choice=...)); elbo is the older rule")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tune_process()
    print(f"{args.seeds} seeds, 1,000 points each, VMoNF defaults ({args.steps} steps, start chosen by "
          f"{args.start_choice}, {'learned' if args.learn_prior else 'uniform'} mixture weights), 1 thread; ARI")
    print(f"{'family':<15}{'K':>3}{'VMoNF median':>14}{'>= 0.9':>8}{'GMM median':>12}{'>= 0.9':>8}   per seed (VMoNF)")
    for name in args.families:
        make, k = {**FAMILIES, **MORE}[name]
        ours, gmm, t0 = [], [], time.perf_counter()
        for seed in range(args.seeds):
            x, y = make(1000, np.random.default_rng(1000 + seed))
            est = VMoNF(k, max_steps=args.steps, seed=seed, learn_prior=args.learn_prior,
                        start_choice=args.start_choice).fit(x)
            ours.append(clustering_scores(y, est.predict(x))["ari"])
            g = GaussianMixture(k, n_init=3, random_state=seed).fit(x)
            gmm.append(clustering_scores(y, g.predict(x))["ari"])
        ours, gmm = np.array(ours), np.array(gmm)
        print(f"{name:<15}{k:>3}{np.median(ours):>14.3f}{int((ours >= 0.9).sum()):>5}/{len(ours):<2}"
              f"{np.median(gmm):>12.3f}{int((gmm >= 0.9).sum()):>5}/{len(gmm):<2}   "
              f"{' '.join(f'{a:.2f}' for a in ours)}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

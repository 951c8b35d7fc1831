"""Clustering and density quality on the toy sets over several seeds, against a GMM and a single flow.

For each data set and seed: VMoNF with default settings (auto start, 1,500 steps), sklearn's
GaussianMixture with the same K, and one RealNVP flow (K=1) with about the same parameter count.
Prints ARI/NMI on the training points, held-out log-likelihood (mean and median, on fresh points
from the same generator) and the seconds VMoNF took to first reach ARI >= 0.95.

    python bench/quality.py [--seeds 10] [--steps 1500]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import functools
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from vmonf import VMoNF
from vmonf.data import make_toy
from vmonf.metrics import clustering_scores
from vmonf.perf import tune_process

SETS = {  # name: (generator, K, params, labelled points per class)
    "pinwheel-5": ("pinwheel", 5, {"wings": 5, "rate": 0.4}, 0),
    "pinwheel-3": ("pinwheel", 3, {"wings": 3, "rate": 0.25}, 0),
    "moons": ("moons", 2, {}, 0),
    "two circles + 32 labels": ("two circles", 2, {}, 32),
}


@functools.cache
def single_flow_hidden(k: int, depth: int = 4, hidden: int = 64) -> int:
    """Hidden width of a K=1 flow whose parameter count is closest to the K-component mixture's."""
    target = VMoNF(k, depth=depth, hidden=hidden, max_steps=0).fit(np.random.rand(20, 2)).model_.parameter_count()
    return min(range(8, 400, 4), key=lambda h: abs(
        VMoNF(1, depth=depth, hidden=h, max_steps=0).fit(np.random.rand(20, 2)).model_.parameter_count() - target))


def run_one(name: str, seed: int, steps: int) -> dict:
    gen, k, params, n_lab = SETS[name]
    n = 1024 + 2 * n_lab if n_lab else 1000
    x, y = make_toy(gen, n, seed=seed, **params)
    x_test, _ = make_toy(gen, 2000, seed=seed + 10_000, **params)
    labels = None
    if n_lab:
        labels = np.full_like(y, -1)
        for c in range(k):
            labels[np.flatnonzero(y == c)[:n_lab]] = c
    eval_mask = labels < 0 if labels is not None else np.ones(len(y), bool)
    reached: list[float] = []
    t0 = time.perf_counter()

    def watch(trainer):
        if not reached:
            with torch.no_grad():
                pred = trainer.model.responsibilities(torch.as_tensor(x)).argmax(1).numpy()
            if clustering_scores(y[eval_mask], pred[eval_mask])["ari"] >= 0.95:
                reached.append(time.perf_counter() - t0)

    est = VMoNF(k, max_steps=steps, seed=seed).fit(x, labels, callback=watch)
    seconds = time.perf_counter() - t0
    s = clustering_scores(y[eval_mask], est.predict(x)[eval_mask])
    ll = est.score_samples(x_test)
    gmm = GaussianMixture(k, n_init=3, random_state=seed).fit(x)
    g = clustering_scores(y[eval_mask], gmm.predict(x)[eval_mask])
    single = VMoNF(1, hidden=single_flow_hidden(k), max_steps=steps, seed=seed).fit(x)
    sl = single.score_samples(x_test)
    return {"ari": s["ari"], "nmi": s["nmi"], "acc": s["accuracy"], "ll": ll.mean(), "ll_med": np.median(ll),
            "t95": reached[0] if reached else np.nan, "seconds": seconds, "init": est.init_,
            "gmm_ari": g["ari"], "gmm_ll": gmm.score_samples(x_test).mean(),
            "gmm_ll_med": np.median(gmm.score_samples(x_test)),
            "flow_ll": sl.mean(), "flow_ll_med": np.median(sl)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    tune_process()  # what the worker and the CLI switch on
    print(f"{args.seeds} seeds, {args.steps} steps, torch {torch.__version__}, 1 thread")
    head = (f"{'data set':<24}{'ARI med':>8}{'ARI>=.95':>9}{'acc med':>8}{'NMI med':>8}{'t(ARI>=.95) s':>14}"
            f"{'LL mean':>9}{'LL med':>8} | {'GMM ARI':>8}{'GMM LL':>8}{'GMM med':>8} | {'1-flow LL':>10}{'med':>7}")
    print(head)
    for name in args.sets:
        rows = [run_one(name, seed, args.steps) for seed in range(args.seeds)]

        def col(key, rows=rows):
            return np.array([r[key] for r in rows], dtype=float)

        ok = int((col("ari") >= 0.95).sum())
        print(f"{name:<24}{np.median(col('ari')):>8.3f}{ok:>6}/{len(rows):<2}{np.median(col('acc')):>8.3f}"
              f"{np.median(col('nmi')):>8.3f}{np.nanmedian(col('t95')):>14.1f}{col('ll').mean():>9.3f}"
              f"{np.median(col('ll_med')):>8.3f} | {np.median(col('gmm_ari')):>8.3f}{col('gmm_ll').mean():>8.3f}"
              f"{np.median(col('gmm_ll_med')):>8.3f} | {col('flow_ll').mean():>10.3f}"
              f"{np.median(col('flow_ll_med')):>7.3f}",
              flush=True)
        print("   per seed ARI: " + " ".join(f"{a:.2f}" for a in col("ari"))
              + "   starts: " + " ".join(r["init"] for r in rows), flush=True)


if __name__ == "__main__":
    main()

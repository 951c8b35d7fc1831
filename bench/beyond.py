"""Beyond the paper: does each of its four "future work" options help? Every option against the plain model.

    python bench/beyond.py consistency [--seeds 10]  # MNIST-5k, K=10: plain vs consistency vs KMeans / GMM
    python bench/beyond.py sharing [--seeds 3]       # K=10 and 20 blobs: parameters, speed, quality (0: speed only)
    python bench/beyond.py pruning [--seeds 5]       # K over-estimated: components left vs BayesianGaussianMixture
    python bench/beyond.py depths [--seeds 5]        # a blob beside a curved cluster: even vs uneven depths

Each prints one table with the median over seeds and the spread [min-max]. "Held-out LL" is the mean
log-likelihood of 2,000 fresh points from the same generator, which no fit saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from vmonf import VMoNF
from vmonf.data import augmented_features, load_dataset, make_toy
from vmonf.metrics import clustering_scores
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.perf import tune_process
from vmonf.starts import initial_partition, split_indices
from vmonf.train import TrainConfig, Trainer


def fmt(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.3f} [{v.min():.2f}-{v.max():.2f}]"


#: Fresh points drawn for each held-out score: from the same generator as the training set, with a seed no fit
#: used. The estimator's own validation split picks its best state, so it is not held out.
TEST_POINTS, TEST_SEED = 2000, 10_000


def held_out(est: VMoNF, x_test: np.ndarray) -> float:
    """Mean log-likelihood of ``x_test``: points no training, start or best-state choice saw."""
    return float(est.score(x_test))


def consistency(seeds: int) -> None:
    print("MNIST-5k (5,000 real digits, 10 classes), PCA-16, K=10, depth 2, hidden 32, 1500 steps; "
          "accuracy / NMI / ARI, median [min-max] over seeds")
    # "plain" is the paper's ELBO: the consistency term off (it is on by default in the library).
    variants = {"VMoNF plain": {"consistency": 0.0}, "+ cons. q, 5": {"consistency": 5.0, "consistency_flows": False},
                "+ cons. q+p, 2": {"consistency": 2.0}, "+ cons. q+p, 5": {"consistency": 5.0}}
    rows: dict[str, list[dict]] = {name: [] for name in [*variants, "KMeans", "GMM (full)"]}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for seed in range(seeds):
        data = load_dataset("mnist", pca=16, seed=seed)
        x, y = data.x, data.y
        copies = augmented_features(data, copies=4, seed=seed)  # 2-pixel shifts, 12-degree rotations
        for name, kw in variants.items():
            t0 = time.perf_counter()
            est = VMoNF(10, depth=2, hidden=32, max_steps=1500, lr=1e-3, batch_size=256, init="kmeans", seed=seed,
                        **kw).fit(x, X_perturbed=copies if kw["consistency"] else None)
            seconds[name].append(time.perf_counter() - t0)
            rows[name].append(clustering_scores(y, est.predict(x)))
        rows["KMeans"].append(clustering_scores(y, KMeans(10, n_init=10, random_state=seed).fit_predict(x)))
        gmm = GaussianMixture(10, n_init=3, random_state=seed).fit(x)
        rows["GMM (full)"].append(clustering_scores(y, gmm.predict(x)))
        print(f"  seed {seed}: " + ", ".join(f"{n} {r[-1]['accuracy']:.3f}" for n, r in rows.items()), flush=True)
    gmm = np.array([r["accuracy"] for r in rows["GMM (full)"]])
    print(f"{'method':<18}{'accuracy':>20}{'NMI':>20}{'ARI':>20}{'seeds > GMM':>12}{'fit s':>7}")
    for name, rs in rows.items():
        acc = np.array([r["accuracy"] for r in rs])
        print(f"{name:<18}{fmt(acc):>20}{fmt([r['nmi'] for r in rs]):>20}{fmt([r['ari'] for r in rs]):>20}"
              f"{f'{(acc > gmm).sum()}/{len(acc)}':>12}"
              f"{np.median(seconds[name]) if name in seconds else float('nan'):7.1f}")


def steps_per_second(config: ModelConfig, x: np.ndarray, seconds: float = 4.0) -> float:
    xt = torch.as_tensor(x)
    model = VMoNFModel(config)
    model.set_standardization(xt.mean(0), xt.std(0))
    trainer = Trainer(model, xt, config=TrainConfig(q_hold_steps=0))
    trainer.run(20)
    t0, n0 = time.perf_counter(), trainer.step_count
    while time.perf_counter() - t0 < seconds:
        trainer.step()
    return (trainer.step_count - n0) / (time.perf_counter() - t0)


def sharing(seeds: int) -> None:
    print("K Gaussian blobs on a circle (2,000 points), K components, depth 4, hidden 64, 2,000 steps; "
          "steps/s on 1 thread, batch 512 (median of 3 interleaved 3-s runs)")
    print(f"{'K':>3} {'flows':<9}{'parameters':>11}{'steps/s':>9}{'ARI':>20}{'held-out LL':>22}")
    for k in (10, 20):
        x_all = [make_toy("gaussian mixture", 2000, components=k, spread=0.45 * k, std=0.35, seed=s)
                 for s in range(max(seeds, 1))]
        configs = {shared: ModelConfig(k, 2, depth=4, hidden=64, share_weights=shared) for shared in (False, True)}
        speeds = {shared: [] for shared in configs}
        for _ in range(3):  # interleaved, so a busy moment on the machine hits both alike
            for shared, cfg in configs.items():
                speeds[shared].append(steps_per_second(cfg, x_all[0][0], seconds=3.0))
        for shared, cfg in configs.items():
            speed = float(np.median(speeds[shared]))
            if not seeds:
                print(f"{k:>3} {'shared' if shared else 'separate':<9}{VMoNFModel(cfg).parameter_count():>11,}"
                      f"{speed:>9.0f}", flush=True)
                continue
            ari, ll = [], []
            for seed, (x, y) in enumerate(x_all):
                est = VMoNF(k, depth=4, hidden=64, max_steps=2000, share_weights=shared, seed=seed).fit(x)
                ari.append(clustering_scores(y, est.predict(x))["ari"])
                x_test = make_toy("gaussian mixture", TEST_POINTS, components=k, spread=0.45 * k, std=0.35,
                                  seed=TEST_SEED + seed)[0]
                ll.append(held_out(est, x_test))
            print(f"{k:>3} {'shared' if shared else 'separate':<9}{VMoNFModel(cfg).parameter_count():>11,}"
                  f"{speed:>9.0f}{fmt(ari):>20}{fmt(ll):>22}", flush=True)


def pruning(seeds: int) -> None:
    print("Start with K=10 where the data have fewer clusters; depth 2, hidden 32, 2,000 steps, k-means start. "
          "Components left after training (VMoNF: learned pi, removed below 5 % of the points; "
          "BGMM: Dirichlet-process weights above 5 %), and ARI")
    cases = {"pinwheel, 3 wings": ("pinwheel", {"wings": 3}, 3), "4 blobs": ("gaussian mixture", {"components": 4}, 4)}
    variants = {"prune only": {}, "prune + H(pi) x 2": {"weight_entropy": 2.0}}
    print(f"{'data':<18}{'true K':>7}  {'method':<26}{'components left':<24}{'ARI':>20}")
    for label, (name, params, true_k) in cases.items():
        data = [make_toy(name, 1000, seed=seed, **params) for seed in range(seeds)]
        results = {}
        for vname, kw in variants.items():
            left, ari = [], []
            for seed, (x, y) in enumerate(data):
                est = VMoNF(10, depth=2, hidden=32, max_steps=2000, learn_prior=True, prune_below=0.05, init="kmeans",
                            seed=seed, **kw).fit(x)
                left.append(int(est.model_.active.sum()))
                ari.append(clustering_scores(y, est.predict(x))["ari"])
            results[f"VMoNF, {vname}"] = (left, ari)
        left, ari = [], []
        for seed, (x, y) in enumerate(data):
            bgmm = BayesianGaussianMixture(n_components=10, weight_concentration_prior=1e-3, max_iter=500,
                                           random_state=seed).fit(x)
            left.append(int((bgmm.weights_ > 0.05).sum()))
            ari.append(clustering_scores(y, bgmm.predict(x))["ari"])
        results["BayesianGaussianMixture"] = (left, ari)
        for method, (left, ari) in results.items():
            counts = f"{sum(c == true_k for c in left)}/{len(left)} exact, {min(left)}-{max(left)}"
            print(f"{label:<18}{true_k:>7}  {method:<26}{counts:<24}{fmt(ari):>20}", flush=True)


def blob_and_crescent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A round Gaussian blob beside a thin curved crescent: two clusters of very uneven shape."""
    rng = np.random.default_rng(seed)
    half = n // 2
    blob = rng.normal([2.2, 0.0], 0.35, (half, 2))
    t = rng.uniform(0.15 * np.pi, 1.85 * np.pi, n - half)
    crescent = np.stack([np.cos(t), 1.3 * np.sin(t)], 1) + 0.06 * rng.standard_normal((n - half, 2))
    x = np.concatenate([blob, crescent]).astype(np.float32)
    y = np.r_[np.zeros(half), np.ones(n - half)].astype(np.int64)
    order = rng.permutation(n)
    return x[order], y[order]


def depths(seeds: int, init: str = "kmeans") -> None:
    print(f"A blob beside a crescent (1,000 points), K=2, hidden 32, 2,000 steps, {init} start. "
          "Uneven depths give the deep flow to the component that starts on the crescent.")
    print(f"{'depths':<22}{'flow parameters':>16}{'ARI':>20}{'held-out LL':>22}")
    variants = {"even 4 + 4": None, "uneven 1 + 7": "deep on crescent", "uneven 7 + 1 (wrong)": "deep on blob",
                "even 1 + 1": (1, 1), "even 7 + 7": (7, 7)}
    for label, how in variants.items():
        ari, ll, params = [], [], 0
        for seed in range(seeds):
            x, y = blob_and_crescent(1000, seed)
            # The start the estimator will use (same split, same standardisation): which component gets the crescent?
            tr, _ = split_indices(len(x), seed, 0.1)
            xs = (x[tr] - x[tr].mean(0)) / x[tr].std(0, ddof=1)
            part = initial_partition(xs, 2, "spectral" if init == "spectral" else "kmeans", seed)
            crescent_first = np.bincount(part[y[tr] == 1], minlength=2).argmax() == 0
            d = (4, 4) if how is None else how if isinstance(how, tuple) else (
                (7, 1) if crescent_first == (how == "deep on crescent") else (1, 7))
            est = VMoNF(2, depths=d, hidden=32, max_steps=2000, init=init, seed=seed).fit(x)
            params = sum(est.model_.component_parameter_counts()[0])
            ari.append(clustering_scores(y, est.predict(x))["ari"])
            ll.append(held_out(est, blob_and_crescent(TEST_POINTS, TEST_SEED + seed)[0]))
        print(f"{label:<22}{params:>16,}{fmt(ari):>20}{fmt(ll):>22}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["consistency", "sharing", "pruning", "depths"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--init", default="kmeans", choices=["kmeans", "spectral"], help="start (depths only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tune_process()  # what the worker and the CLI switch on
    default = {"consistency": 10, "sharing": 3, "pruning": 5, "depths": 5}[args.which]
    run = globals()[args.which]
    seeds = default if args.seeds is None else args.seeds
    run(seeds, args.init) if args.which == "depths" else run(seeds)


if __name__ == "__main__":
    main()

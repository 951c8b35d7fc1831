"""Image clustering: VMoNF on whitened PCA features against KMeans and GaussianMixture on the same features.

Data: scikit-learn digits (K=10), the 5,000 embedded MNIST digits (K=10), and the paper's digits, MNIST 0-4
(K=5): the 2,500 embedded ones, as PCA features (the paper used MAF on the pixels, so this is not its setting).
Also semi-supervised MNIST-5k with 10 labels per class. Prints Hungarian
accuracy, NMI and ARI, median over seeds (and the spread).

    python bench/images.py [--seeds 3] [--steps 1500] [--pca 16] [--pca-labelled 32] [--consistency 5] [--n-init 3]
                           [--init gmm] [--only MNIST]

``--consistency L`` adds a row: VMoNF with the consistency term of weight L (shifted and rotated copies of
the images, on q and on the flows; docs/BEYOND.md).
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
from sklearn.mixture import GaussianMixture

from vmonf import VMoNF
from vmonf.data import augmented_features, load_dataset
from vmonf.metrics import clustering_scores
from vmonf.perf import tune_process

SETTINGS = {  # name: (data set, classes, K, labels per class)
    "digits (8x8), K=10": ("digits", None, 10, 0),
    "MNIST-5k, K=10": ("mnist", None, 10, 0),
    "MNIST 0-4 (the paper's digits, not its setting), K=5": ("mnist", [0, 1, 2, 3, 4], 5, 0),
    "MNIST-5k, 10 labels/class": ("mnist", None, 10, 10),
}


def fmt(values: list[float]) -> str:
    v = np.asarray(values)
    return f"{np.median(v):.3f} [{v.min():.2f}-{v.max():.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pca", type=int, default=16, help="PCA dimensions of the unsupervised settings")
    parser.add_argument("--pca-labelled", type=int, default=32,
                        help="PCA dimensions of the semi-supervised setting (docs/RESULTS.md: 32 beat 16)")
    parser.add_argument("--only", default="", help="run only the settings whose name contains this text")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--consistency", type=float, default=0.0, help="also run VMoNF with this consistency weight")
    parser.add_argument("--init", default="kmeans", choices=["kmeans", "gmm"],
                        help="VMoNF's start without labels (with labels: 'auto'); gmm: the GaussianMixture's")
    parser.add_argument("--n-init", type=int, default=1,
                        help="VMoNF fits per seed, the highest-likelihood one kept (GMM rows use n_init=3 throughout)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tune_process()  # what the worker and the CLI switch on
    print(f"PCA {args.pca} ({args.pca_labelled} with labels), depth {args.depth}, hidden {args.hidden}, "
          f"{args.steps} steps, {args.seeds} seeds, VMoNF start {args.init}, n_init {args.n_init}; "
          "accuracy / NMI / ARI as median [min-max]")
    print(f"{'setting':<28}{'method':<10}{'accuracy':>20}{'NMI':>20}{'ARI':>20}{'seconds':>9}")
    for name, (dataset, classes, k, n_lab) in SETTINGS.items():
        if args.only not in name:
            continue
        results: dict[str, list[dict]] = {"VMoNF": [], **({"+cons.": []} if args.consistency else {}),
                                          "KMeans": [], "GMM": []}
        seconds: dict[str, list[float]] = {"VMoNF": [], "+cons.": []}
        for seed in range(args.seeds):
            data = load_dataset(dataset, pca=args.pca_labelled if n_lab else args.pca, classes=classes, seed=seed)
            x, y = data.x, data.y
            labels = None
            if n_lab:
                rng = np.random.default_rng(seed)
                labels = np.full_like(y, -1)
                for c in range(k):
                    labels[rng.permutation(np.flatnonzero(y == c))[:n_lab]] = c
            mask = labels < 0 if labels is not None else np.ones(len(y), bool)
            for method in [m for m in results if m in seconds]:
                t0 = time.perf_counter()
                cons = args.consistency if method == "+cons." else 0.0
                copies = augmented_features(data, copies=4, seed=seed) if cons else None
                est = VMoNF(k, depth=args.depth, hidden=args.hidden, max_steps=args.steps, lr=1e-3, batch_size=256,
                            init=args.init if labels is None else "auto", seed=seed * args.n_init, consistency=cons,
                            n_init=args.n_init).fit(x, labels, X_perturbed=copies)
                seconds[method].append(time.perf_counter() - t0)
                results[method].append(clustering_scores(y[mask], est.predict(x)[mask]))
            results["KMeans"].append(clustering_scores(y[mask], KMeans(k, n_init=10, random_state=seed)
                                                       .fit_predict(x)[mask]))
            results["GMM"].append(clustering_scores(y[mask], GaussianMixture(k, n_init=3, random_state=seed)
                                                    .fit(x).predict(x)[mask]))
        for method, rows in results.items():
            t = f"{np.median(seconds[method]):>9.1f}" if seconds.get(method) else ""
            print(f"{name:<28}{method:<10}{fmt([r['accuracy'] for r in rows]):>20}{fmt([r['nmi'] for r in rows]):>20}"
                  f"{fmt([r['ari'] for r in rows]):>20}{t}", flush=True)


if __name__ == "__main__":
    main()

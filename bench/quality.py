"""Clustering and density quality on the toy sets over several seeds, against a GMM and a single flow.

For each data set and seed: VMoNF with default settings (auto start, 1,500 steps), sklearn's
GaussianMixture with the same K, and one RealNVP flow (K=1) with about the same parameter count.
Prints ARI/NMI on the training points, held-out log-likelihood (mean and median, on fresh points
from the same generator) and the seconds VMoNF took to first reach ARI >= 0.95.

    python bench/quality.py [--seeds 10] [--steps 1500] [--recipe paper] [--consistency 0]
    python bench/quality.py --ablation [--seeds 10] [--rows start default ...]

``--recipe paper`` runs the method as published (``vmonf.PAPER_RECIPE``) in place of the defaults.
``--ablation`` goes from the paper's recipe to the default one step at a time (each row adds one thing to
the row above), beside the starting partitions alone (no training), on the toy sets and on two circles
without labels, the paper's named failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import functools
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from vmonf import VMoNF
from vmonf.data import make_toy
from vmonf.metrics import clustering_scores
from vmonf.perf import tune_process
from vmonf.starts import initial_partition

SETS = {  # name: (generator, K, params, labelled points per class)
    "pinwheel-5": ("pinwheel", 5, {"wings": 5, "rate": 0.4}, 0),
    "pinwheel-3": ("pinwheel", 3, {"wings": 3, "rate": 0.25}, 0),
    "moons": ("moons", 2, {}, 0),
    "two circles + 32 labels": ("two circles", 2, {}, 32),
}
#: The paper's named failure: without labels a mixture of two flows splits two rings into half-planes.
FAILURE = {"two circles, no labels": ("two circles", 2, {}, 0)}

#: The paper's choices, spelled out so that each row below can change one of them.
_PAPER = {"init": "random", "depth": 8, "temperature_decay": 1e-3, "consistency": 0.0, "learn_prior": False}
ABLATION = [  # (row, estimator settings, TrainConfig fields the estimator has no setting for)
    ("paper recipe", {"recipe": "paper"}, {}),
    ("+ our start (auto / labels, q pre-fitted)", {**_PAPER, "init": "auto"}, {"q_hold_steps": 0, "keep_best": False}),
    ("+ q held for 200 steps", {**_PAPER, "init": "auto"}, {"keep_best": False}),
    # Best-state keeping changes nothing until the end of a fit, so one fit gives both rows: its last state,
    # then the best one it kept.
    (("+ consistency 5", "+ best validation state kept"), {**_PAPER, "init": "auto", "consistency": 5.0}, {}),
    ("the default (also depth 4, no temperature, learned mixture weights)", {}, {}),
    # Not a step: the default with the older rule for choosing its start (each candidate trains 150 steps and
    # the best validation ELBO is kept), beside the default's normalised cut.
    ("the default, start chosen by ELBO", {"start_choice": "elbo"}, {}),
]
#: Partitions scored alone ("labels": label spreading).
STARTS = ["kmeans", "spectral", "local", "ward", "gmm", "ncut", "labels"]


class Variant(VMoNF):
    """``VMoNF`` with some :class:`~vmonf.train.TrainConfig` fields set: the ablation's steps that the
    estimator has no setting for (the q hold, best-state keeping)."""

    train_overrides: dict = {}

    def _configs(self, dim: int):
        model_cfg, train_cfg = super()._configs(dim)
        return model_cfg, replace(train_cfg, **self.train_overrides)


@functools.cache
def single_flow_hidden(k: int, depth: int = 4, hidden: int = 64) -> int:
    """Hidden width of a K=1 flow whose parameter count is closest to the K-component mixture's."""
    target = VMoNF(k, depth=depth, hidden=hidden, max_steps=0).fit(np.random.rand(20, 2)).model_.parameter_count()
    return min(range(8, 400, 4), key=lambda h: abs(
        VMoNF(1, depth=depth, hidden=h, max_steps=0).fit(np.random.rand(20, 2)).model_.parameter_count() - target))


def problem(name: str, seed: int):
    """Data set ``name`` for ``seed``: training points, their classes, the labels given (or ``None``), the
    points scored (the unlabelled ones) and fresh test points from the same generator."""
    gen, k, params, n_lab = {**SETS, **FAILURE}[name]
    n = 1024 + 2 * n_lab if n_lab else 1000
    x, y = make_toy(gen, n, seed=seed, **params)
    x_test, _ = make_toy(gen, 2000, seed=seed + 10_000, **params)
    labels = None
    if n_lab:
        labels = np.full_like(y, -1)
        for c in range(k):
            labels[np.flatnonzero(y == c)[:n_lab]] = c
    eval_mask = labels < 0 if labels is not None else np.ones(len(y), bool)
    return k, x, y, labels, eval_mask, x_test


#: Estimator settings every fit of this run gets unless its row says otherwise (``--start-choice``).
COMMON: dict = {}


def ablation_one(name: str, seed: int, steps: int, only: list[str] | None = None) -> dict:
    """ARI (of the unlabelled points) and held-out log-likelihood of every ablation row (or of the rows whose
    name contains one of ``only``), and the ARI of every starting partition alone, for one data set and seed."""
    k, x, y, labels, eval_mask, x_test = problem(name, seed)
    out = {}
    for row, settings, overrides in ABLATION:
        names = row if isinstance(row, tuple) else (row,)
        if only and not any(o in n for o in only for n in names):
            continue
        est = Variant(k, max_steps=steps, seed=seed, **{**COMMON, **settings})
        est.train_overrides = overrides
        last = {}

        def at_the_end(trainer, est=est, last=last):
            if trainer.step_count >= steps:  # the kept fit's last step, before its best state is restored
                with torch.no_grad():
                    pred = trainer.model.responsibilities(torch.as_tensor(x)).argmax(1).numpy()
                    ll = trainer.model.log_prob(torch.as_tensor(x_test)).numpy()
                last["scores"] = (clustering_scores(y[eval_mask], pred[eval_mask])["ari"], float(np.median(ll)))

        est.fit(x, labels, callback=at_the_end if isinstance(row, tuple) else None)
        kept = (clustering_scores(y[eval_mask], est.predict(x)[eval_mask])["ari"],
                float(np.median(est.score_samples(x_test))))
        if isinstance(row, tuple):
            out[row[0]], out[row[1]] = last["scores"], kept
        else:
            out[row] = kept
    for method in STARTS:
        if method != "labels" or labels is not None:
            part = initial_partition(x, k, method, seed, labels)
            out[f"start alone: {method}"] = (clustering_scores(y[eval_mask], part[eval_mask])["ari"], np.nan)
    if labels is not None:  # a label-aware baseline that uses no unlabelled point
        from sklearn.svm import SVC

        pred = SVC().fit(x[~eval_mask], labels[~eval_mask]).predict(x[eval_mask])
        out["classifier on the labelled points (RBF SVM)"] = (clustering_scores(y[eval_mask], pred)["ari"], np.nan)
    return out


def ablation(seeds: int, steps: int, sets: list[str], only: list[str] | None = None) -> None:
    print(f"ablation: {seeds} seeds, {steps} steps, start chosen by {COMMON.get('start_choice', 'cut')}; "
          "ARI median [seeds >= 0.95] and held-out log-likelihood "
          "median (fresh points), per data set", flush=True)
    for name in sets:
        t0 = time.perf_counter()
        runs = [ablation_one(name, seed, steps, only) for seed in range(seeds)]
        print(f"\n{name} ({time.perf_counter() - t0:.0f} s)")
        for row in runs[0]:
            ari = np.array([r[row][0] for r in runs])
            ll = np.array([r[row][1] for r in runs])
            held = "" if np.isnan(ll).all() else f"   LL {np.median(ll):7.3f}"
            print(f"  {row:<46} ARI {np.median(ari):.3f} [{int((ari >= 0.95).sum()):>2}/{len(ari)}]{held}"
                  f"   per seed: {' '.join(f'{a:.2f}' for a in ari)}", flush=True)


def run_one(name: str, seed: int, steps: int, recipe: str = "default", consistency: float | None = None) -> dict:
    k, x, y, labels, eval_mask, x_test = problem(name, seed)
    reached: list[float] = []
    t0 = time.perf_counter()

    def watch(trainer):
        if not reached:
            with torch.no_grad():
                pred = trainer.model.responsibilities(torch.as_tensor(x)).argmax(1).numpy()
            if clustering_scores(y[eval_mask], pred[eval_mask])["ari"] >= 0.95:
                reached.append(time.perf_counter() - t0)

    kw = {} if consistency is None else {"consistency": consistency}
    est = VMoNF(k, max_steps=steps, seed=seed, recipe=recipe, **COMMON, **kw).fit(x, labels, callback=watch)
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
    parser.add_argument("--sets", nargs="+", default=None, help=f"of {', '.join([*SETS, *FAILURE])}")
    parser.add_argument("--recipe", choices=["default", "paper"], default="default")
    parser.add_argument("--consistency", type=float, default=None, help="the consistency weight (default: the "
                        "library's, 5); 0 is the paper's plain ELBO")
    parser.add_argument("--ablation", action="store_true", help="the paper's recipe to the default, step by step")
    parser.add_argument("--rows", nargs="+", default=None, help="with --ablation: only the rows whose name contains "
                        "one of these (the starting partitions alone are always scored)")
    parser.add_argument("--start-choice", choices=["cut", "elbo"], default="cut", help="how init='auto' keeps "
                        "its start: the normalised cut (the default) or the older ELBO rule (VMoNF(start_choice=...))")
    parser.add_argument("--learn-prior", action=argparse.BooleanOptionalAction, default=None,
                        help="learn the mixture weights pi, or keep them uniform (default: the library's)")
    args = parser.parse_args()
    COMMON["start_choice"] = args.start_choice
    if args.learn_prior is not None:
        COMMON["learn_prior"] = args.learn_prior
    torch.set_num_threads(1)
    tune_process()  # what the worker and the CLI switch on
    if args.ablation:
        ablation(args.seeds, args.steps, args.sets or [*SETS, *FAILURE], args.rows)
        return
    args.sets = args.sets or list(SETS)
    print(f"{args.seeds} seeds, {args.steps} steps, recipe {args.recipe}, start chosen by {args.start_choice}"
          + ("" if args.learn_prior is None else f", learn_prior {args.learn_prior}")
          + ("" if args.consistency is None else f", consistency {args.consistency:g}")
          + f", torch {torch.__version__}, 1 thread")
    head = (f"{'data set':<24}{'ARI med':>8}{'ARI>=.95':>9}{'acc med':>8}{'NMI med':>8}{'t(ARI>=.95) s':>14}"
            f"{'LL mean':>9}{'LL med':>8} | {'GMM ARI':>8}{'GMM LL':>8}{'GMM med':>8} | {'1-flow LL':>10}{'med':>7}")
    print(head)
    for name in args.sets:
        rows = [run_one(name, seed, args.steps, args.recipe, args.consistency) for seed in range(args.seeds)]

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

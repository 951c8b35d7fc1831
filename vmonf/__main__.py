"""Headless CLI.

    python -m vmonf train --dataset pinwheel --components 5 --steps 3000 --out runs/pinwheel
    python -m vmonf export runs/pinwheel/run.vmonf --format gif --fps 10 --out pinwheel.gif
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vmonf.checkpoint import atomic_write_bytes, checkpoint_bytes, save_checkpoint
from vmonf.data import IMAGE_DATASETS, TOY_DATASETS, augmented_features, load_dataset, pick_labels
from vmonf.estimator import VMoNF
from vmonf.metrics import clustering_scores, loglik_summary
from vmonf.perf import tune_process
from vmonf.studio.capture import make_view, record_scores, take_snapshot
from vmonf.studio.export import EXTENSIONS, FORMATS, export, thin
from vmonf.studio.runfile import Run, load_run, save_run
from vmonf.studio.settings import add_cli_flags
from vmonf.studio.snapshot import Recording
from vmonf.train import evaluation_row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vmonf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a mixture and write a checkpoint and metrics",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--dataset", default="pinwheel", choices=sorted(TOY_DATASETS) + sorted(IMAGE_DATASETS))
    add_cli_flags(t)  # --samples, --components, --depth, --hidden, --lr, --batch-size, --labels, --init, ...
    t.add_argument("--flow", default="realnvp", choices=["realnvp", "maf"])
    t.add_argument("--pca", type=int, default=16, help="PCA dimensions (image data sets)")
    t.add_argument("--n-init", type=int, default=1,
                   help="independent fits (seeds seed, seed+1, ...); the one with the highest log-likelihood is kept")
    t.add_argument("--recipe", default="default", choices=["default", "paper"],
                   help="paper: the method as published (random start, uniform pi, temperature on q, depth 8, plain "
                        "ELBO, last state); it replaces every option left at its default (vmonf.PAPER_RECIPE)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for small models)")
    t.add_argument("--record-every", type=int, default=0,
                   help="steps between recorded frames (2-D data), from step 0; 0: about 100 frames over the run")
    t.add_argument("--max-frames", type=int, default=200, help="frames kept in the recording (thinned evenly)")
    t.add_argument("--out", type=Path, required=True, help="output folder")
    e = sub.add_parser("export", help="export a recorded run as an animation",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("run", type=Path, help="a .vmonf run file (written by train, or saved from the app)")
    e.add_argument("--format", choices=FORMATS, default="gif",
                   help="html: standalone page; gif; mp4; png: zip of PNG frames with a Beamer snippet; pdf: zip of "
                        "a PDF of vector frames (one per page) with a Beamer snippet; svg: zip of SVG frames")
    e.add_argument("--fps", type=int, default=10, help="frames per second")
    e.add_argument("--size", default="640x480", help="WIDTHxHEIGHT in pixels (gif, mp4, png; pdf and svg at 100 dpi)")
    e.add_argument("--frames", type=int, default=0, help="use at most this many frames, evenly spread (0 = all)")
    e.add_argument("--title", default="", help="title drawn above the animation")
    e.add_argument("--no-overlay", action="store_true", help="leave out the step and ELBO in the corner")
    e.add_argument("--palette", choices=["default", "safe"], default="default",
                   help="safe: nine colours that stay apart with colour blindness (Paul Tol's muted)")
    e.add_argument("--panels", action="store_true",
                   help="three panels side by side: the data, the density, the clusters (not html; use a wide --size)")
    e.add_argument("--out", type=Path, required=True,
                   help="output file, or a folder to write run.<ext> into (.zip for png, pdf, svg)")
    return parser


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    tune_process()
    data = load_dataset(args.dataset, n=args.samples, seed=args.seed, pca=args.pca)
    test = load_dataset(args.dataset, n=args.samples, seed=args.seed + 10_000) if args.dataset in TOY_DATASETS else None
    y_fit = pick_labels(data.y, args.labels, args.seed)
    est = VMoNF(args.components, depth=args.depth, hidden=args.hidden, flow=args.flow, max_steps=args.steps,
                lr=args.lr, batch_size=args.batch_size, init=args.init, seed=args.seed, device=args.device,
                consistency=args.consistency, temperature_decay=args.temperature_decay, n_init=args.n_init,
                learn_prior=bool(args.learn_prior),
                recipe=args.recipe)
    used = est.effective_params()
    print(f"training {args.dataset}: {len(data.x)} points, {data.x.shape[1]} dims, K={args.components}"
          + (f", the paper's recipe (depth {used['depth']}, init {used['init']}, temperature decay "
             f"{used['temperature_decay']:g}, consistency {used['consistency']:g})" if args.recipe == "paper" else ""),
          flush=True)
    # One recording and history per restart (--n-init); the kept fit's recording is saved. Each entry
    # holds its trainer, so no id is reused while the dict lives.
    runs: dict[int, tuple[object, Recording, list[dict], set[int]]] = {}
    view = make_view(data.x, data.y, None if y_fit is None else y_fit >= 0) if data.x.shape[1] == 2 else None
    if args.record_every < 0:
        raise ValueError(f"--record-every must be 0 (about 100 frames) or a number of steps, got {args.record_every}.")
    every = args.record_every or max(1, args.steps // 100)
    report_every = max(args.steps // 10, 1)

    def on_progress(trainer) -> None:
        step = trainer.step_count
        _, recording, history, printed = runs.setdefault(id(trainer), (trainer, Recording(args.max_frames), [], set()))
        if view is not None:
            evaluated = evaluation_row(trainer.model, trainer.x_val, trainer.temperature())
            history.append({**trainer.progress(), **evaluated})
            snap = take_snapshot(trainer.model, view, history, {"step": step, "temperature": trainer.temperature()},
                                 seed=args.seed)
            record_scores(history, snap)
            recording.append(snap)
        if step // report_every not in printed and step > 0:
            printed.add(step // report_every)
            row = history[-1] if history else (trainer.history[-1] if trainer.history else {})
            fit = f"fit {len(runs)}/{args.n_init}  " if args.n_init > 1 else ""
            print(f"{fit}step {step:6d}/{args.steps}  loss {trainer.last_loss:9.3f}  "
                  f"val log-lik {row.get('val_loglik', float('nan')):9.3f}", flush=True)

    t0 = time.perf_counter()
    # Images are perturbed by shifting and rotating the pixels (what helped on MNIST), 2-D data by noise.
    copies = None
    if used["consistency"] and data.pixels is not None:
        copies = augmented_features(data, copies=4, seed=args.seed)
    est.fit(data.x, y_fit, callback=on_progress, callback_every=every, X_perturbed=copies)
    seconds = time.perf_counter() - t0
    recording = runs[id(est.trainer_)][1] if id(est.trainer_) in runs else Recording(args.max_frames)
    metrics = {
        "dataset": args.dataset, "components": args.components, "steps": est.n_iter_, "seconds": seconds,
        "init": est.init_, "elbo": est.lower_bound_, "train_loglik": loglik_summary(est.score_samples(data.x)),
        "clustering": clustering_scores(data.y, est.predict(data.x)), "weights": est.weights_.tolist(),
    }
    if test is not None:
        metrics["heldout_loglik"] = loglik_summary(est.score_samples(test.x))
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out / "model.pt", est.model_, {"estimator": est.get_params(), "n_iter": est.n_iter_})
    atomic_write_bytes(args.out / "metrics.json", json.dumps(metrics, indent=2).encode())
    if len(recording):
        ckpt = checkpoint_bytes(est.model_, {"estimator": est.get_params(), "n_iter": est.n_iter_})
        save_run(args.out / "run.vmonf", Run(vars(args) | {"out": str(args.out)}, recording.snapshot_list(), ckpt))
    c = metrics["clustering"]
    print(f"done in {seconds:.1f}s: ARI {c['ari']:.3f}  NMI {c['nmi']:.3f}  accuracy {c['accuracy']:.3f}; "
          f"wrote model.pt, metrics.json{' and run.vmonf' if len(recording) else ''} in {args.out}", flush=True)
    return metrics


def export_run(args: argparse.Namespace) -> None:
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {args.size!r}.") from None
    if not 1 <= args.fps <= 60:
        raise ValueError(f"--fps must be between 1 and 60, got {args.fps}.")
    run = load_run(args.run)
    frames = thin(run.frames, args.frames) if args.frames else run.frames
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            print(f"frame {done}/{total}", flush=True)

    kw = {"fps": args.fps, "title": args.title, "palette": args.palette}
    if args.format != "html":
        kw.update(size=(w, h), overlay=not args.no_overlay, progress=progress, panels=args.panels)
    out = args.out / f"run.{EXTENSIONS[args.format]}" if args.out.is_dir() else args.out
    if not out.parent.is_dir():
        raise ValueError(f"--out: the folder {out.parent} does not exist; create it or choose another path.")
    data = export(frames, args.format, **kw)
    atomic_write_bytes(out, data)
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB, {len(frames)} frames) in {time.perf_counter() - t0:.1f}s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
        elif args.command == "export":
            export_run(args)
    except ValueError as exc:  # user errors: a clear message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training on a GPU: correctness checks, steps per second against zuko and normflows, full-size image data.

One script, in sections, each printing what it measured (sized for under 8 minutes on one GPU):

1. correct: the fused flow pass gradchecked in float64 on the device; fused and module paths in float32
   (largest difference); the Adam that ``make_adam`` picks there against ``torch.optim.Adam`` step for step;
   two identical short fits on the device (bitwise equal or not).
2. speed: training steps/s for K in {1, 5, 10, 20}, batch 512 and 4,096, of the batched mixture, of the
   same architecture as K zuko and as K normflows RealNVP flows in a loop (bench/speed.py's contenders), on
   the device; then what the device may offer on top (bfloat16 autocast, torch.compile), each measured.
3. frames: training steps/s with a live frame taken every 0.1 s (the worker's way: weights copied off the
   device in a thread, drawn on the CPU) against none.
4. images: a full-size IDX data set (MNIST when its files are found, else Fashion-MNIST), 16 PCA dims, K=10:
   seconds for the start, steps/s, accuracy over time and seconds to reach a matched accuracy, on the device
   and on the same machine's CPU.

    python bench/gpu.py [--device cuda] [--quick] [--idx-folder DIR --idx-name NAME] [--target 0.5] [--sections ...]

``--device cpu --quick`` tries every section on a machine without a GPU (the figures then say nothing
about a GPU). Needs ``bench/requirements.txt`` (zuko, normflows) for the comparison; without them those
columns are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ... and speed.py's contenders

import argparse
import copy
import logging
import os
import statistics
import threading
import time

import numpy as np
import speed
import torch

from vmonf.data import make_toy
from vmonf.devices import resolve_device
from vmonf.flows import ComponentFlows
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.optim import make_adam
from vmonf.perf import tune_process


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step, device: torch.device, seconds: float) -> float:
    """Steps per second over a window of ``seconds``, the device's queue drained at both ends."""
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync(device)
    return n / (time.perf_counter() - t0)


def stepper(model: torch.nn.Module, x: torch.Tensor, batch: int, autocast: bool = False, compiled: bool = False):
    """One training step of ``model.loss`` on a random batch of ``x`` (indices drawn on the device)."""
    device = x.device
    opt = make_adam(model.parameters(), device, lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    loss_fn = torch.compile(model.loss) if compiled else model.loss

    def step():
        idx = torch.randint(len(x), (batch,), generator=gen, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):  # warm-up (and, compiled, the compile itself)
        step()
    return step


def section_correct(device: torch.device) -> None:
    print(f"\n## 1. correct on {device}")
    torch.manual_seed(0)
    flows = ComponentFlows(2, 3, 2, 4).double().to(device)
    with torch.no_grad():
        for p in flows.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda x, *_: flows(x), (x, *flows.parameters()))
    print(f"fused pass gradcheck, float64: {'passed' if ok else 'FAILED'}")
    flows = ComponentFlows(5, 2, 4, 64).to(device)
    with torch.no_grad():
        for p in flows.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(512, 2, device=device, requires_grad=True)
    worst = {}
    outs = []
    for run in (flows.forward, flows.forward_modules):
        z, ld = run(x.expand(5, -1, -1))
        loss = z.square().sum() + ld.sum()
        outs.append((z, ld, torch.autograd.grad(loss, [x, *flows.parameters()])))
    (z, ld, g), (z2, ld2, g2) = outs
    worst["z"] = float((z - z2).abs().max())
    worst["log-det"] = float((ld - ld2).abs().max())
    worst["grad (relative)"] = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                                   for a, b in zip(g, g2, strict=True))
    print("fused vs modules, float32, K=5 depth 4 width 64, 512 points: largest difference "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    x = torch.as_tensor(make_toy("pinwheel", 1024, seed=0)[0], device=device)
    models = [VMoNFModel(ModelConfig(5, 2, depth=4, hidden=64)).to(device) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [make_adam(models[0].parameters(), device, lr=1e-2),
            torch.optim.Adam([p for p in models[1].parameters() if p.requires_grad], lr=1e-2, foreach=False)]
    diff = 0.0
    for step in range(20):
        for m, o in zip(models, opts, strict=True):
            o.zero_grad(set_to_none=True)
            m.loss(x[step * 32:(step + 1) * 32 + 256]).backward()
            o.step()
        diff = max(diff, max(float((a - b).abs().max()) for a, b in zip(models[0].parameters(),
                                                                        models[1].parameters(), strict=True)))
    print(f"Adam: make_adam gives {type(opts[0]).__name__}(fused={opts[0].defaults.get('fused')}); against "
          f"torch.optim.Adam(foreach=False) over 20 steps the parameters differ by at most {diff:.1e}")
    from vmonf import VMoNF

    xs = make_toy("moons", 600, seed=0)[0]
    fits = [VMoNF(2, max_steps=100, seed=3, device=str(device), init="kmeans").fit(xs) for _ in range(2)]
    same = all(torch.equal(a, b) for a, b in zip(fits[0].model_.state_dict().values(),
                                                  fits[1].model_.state_dict().values(), strict=True))
    print(f"two fits with one seed (moons, 100 steps): parameters {'bitwise equal' if same else 'NOT equal'}")


def section_speed(device: torch.device, ks: list[int], batches: list[int], seconds: float, rounds: int) -> None:
    print(f"\n## 2. steps/s on {device} (depth {speed.DEPTH}, hidden {speed.HIDDEN}; median of {rounds} rounds "
          f"of {seconds:g} s; ratios per round, median)")
    x = torch.as_tensor(make_toy("pinwheel", 8192, seed=0)[0], device=device)
    builders = {"vmonf": speed.ours, "zuko loop": speed.zuko_loop, "normflows loop": speed.normflows_loop}
    print(f"{'K':>3} {'batch':>6} " + "".join(f"{n:>16}" for n in builders) + f"{'/zuko':>8}{'/normflows':>11}")
    for batch in batches:
        for k in ks:
            steps = {}
            for name, build in builders.items():
                torch.manual_seed(0)
                try:
                    steps[name] = stepper(build(k).to(device), x, batch)
                except ImportError:
                    continue
            rates = {n: [] for n in steps}
            for _ in range(rounds):
                for n, s in steps.items():
                    rates[n].append(timed_rate(s, device, seconds))

            def ratio(other, rates=rates):
                if other not in rates:
                    return "n/a"
                return f"{statistics.median(a / b for a, b in zip(rates['vmonf'], rates[other], strict=True)):.2f}x"

            print(f"{k:>3} {batch:>6} " + "".join(f"{statistics.median(rates[n]):>12.0f} st/s" if n in rates
                                                  else f"{'-':>16}" for n in builders)
                  + f"{ratio('zuko loop'):>8}{ratio('normflows loop'):>11}", flush=True)
    k, batch = ks[min(2, len(ks) - 1)], batches[-1]
    base = stepper(speed.ours(k).to(device), x, batch)
    from vmonf.train import TrainConfig, Trainer

    torch.manual_seed(0)
    trainer = Trainer(speed.ours(k).to(device), x, config=TrainConfig(batch_size=batch, consistency=0.0))
    r = [timed_rate(trainer.step, device, seconds) / timed_rate(base, device, seconds) for _ in range(rounds)]
    print(f"K={k} batch {batch}, Trainer.step (finite-loss check and loss read back every step): "
          f"{statistics.median(r):.2f}x the plain step's steps/s")
    options = {"bfloat16 autocast": dict(autocast=True), "torch.compile(model.loss)": dict(compiled=True)}
    for name, kw in options.items():
        t0 = time.perf_counter()
        try:
            other = stepper(speed.ours(k).to(device), x, batch, **kw)
        except Exception as exc:  # a compiler missing on this machine, an op without a bfloat16 kernel...
            print(f"K={k} batch {batch}, {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            continue
        ready = time.perf_counter() - t0
        r = [timed_rate(other, device, seconds) / timed_rate(base, device, seconds) for _ in range(rounds)]
        print(f"K={k} batch {batch}, {name}: {statistics.median(r):.2f}x the plain step's steps/s "
              f"(ready after {ready:.1f} s)")


def section_frames(device: torch.device, seconds: float) -> None:
    print(f"\n## 3. live frames on {device}: K=5, batch 512, a frame every 0.1 s drawn on the CPU")
    from vmonf.studio.capture import make_view, take_snapshot

    data = make_toy("pinwheel", 1000, seed=0)
    x = torch.as_tensor(data[0], device=device)
    model = VMoNFModel(ModelConfig(5, 2, depth=4, hidden=64)).to(device)
    model.set_standardization(x.mean(0), x.std(0))
    step = stepper(model, x, 512)
    view = make_view(*data, grid=64)
    cpu_model = copy.deepcopy(model).cpu()
    busy = threading.Event()

    def draw(state):
        cpu_model.load_state_dict({k: v.cpu() for k, v in state.items()})  # the host copy, off the step's thread
        take_snapshot(cpu_model, view, [], {"step": 0})
        busy.clear()

    def with_frames():
        if not busy.is_set() and time.perf_counter() - last[0] > 0.1:
            busy.set()
            last[0] = time.perf_counter()
            threading.Thread(target=draw, args=({k: v.detach().clone() for k, v in model.state_dict().items()},),
                             daemon=True).start()
        step()

    last = [0.0]
    plain, framed = [], []
    for _ in range(3):
        plain.append(timed_rate(step, device, seconds))
        framed.append(timed_rate(with_frames, device, seconds))
    print(f"without frames {statistics.median(plain):.0f} st/s, with frames {statistics.median(framed):.0f} st/s "
          f"({statistics.median(f / p for f, p in zip(framed, plain, strict=True)):.2f}x)")


def load_images(folder: str | None, name: str | None = None):
    """``(name, pixels, labels, shape)`` of full-size IDX images: those in ``folder``, called ``name`` or named
    by their published checksums (MNIST and Fashion-MNIST files have the same file names; a repacked copy,
    such as Debian's, has other checksums), else MNIST or Fashion-MNIST where vmonf finds them."""
    from vmonf.data.images import FASHION_MNIST, MNIST, _idx_paths, load_idx_dataset, md5_of

    if folder:
        paths = _idx_paths(Path(folder), "train")
        if paths is None:
            raise SystemExit(f"no IDX files (train-images-idx3-ubyte[.gz] ...) in {folder}")
        digest = md5_of(paths[0])
        source = next((s for s in (MNIST, FASHION_MNIST) if s.md5.get(paths[0].name) == digest), None)
        name = name or (source.name if source else f"IDX images in {folder}")
        return (name, *load_idx_dataset(source or MNIST, folder=folder))
    tried = []
    for source in (MNIST, FASHION_MNIST):
        try:
            return (source.name, *load_idx_dataset(source))
        except ValueError as exc:
            tried.append(f"{source.name}: {exc}")
    raise SystemExit("no full-size image data found:\n  " + "\n  ".join(tried))


def section_images(device: torch.device, folder: str | None, name: str | None, target: float, budget: float,
                   steps: int, quick: bool) -> None:
    from sklearn.decomposition import PCA

    from vmonf.metrics import clustering_scores
    from vmonf.starts import start_training
    from vmonf.train import TrainConfig

    name, pixels, y, _ = load_images(folder, name)
    if quick:
        pixels, y = pixels[:6000], y[:6000]
    t0 = time.perf_counter()
    feats = PCA(16, whiten=True, random_state=0).fit_transform(pixels).astype(np.float32)
    print(f"\n## 4. {name}: {len(feats):,} images, 16 PCA dims (whitened, {time.perf_counter() - t0:.1f} s), "
          f"K=10, depth 2, hidden 32, batch 4,096, GMM start, {steps:,} steps or {budget:g} s; matched accuracy "
          f"on 5,000 of the images every 100 steps")
    check = np.random.default_rng(0).permutation(len(feats))[:5000]
    devices = [device] + ([torch.device("cpu")] if device.type != "cpu" else [])
    for dev in devices:
        cfg = TrainConfig(lr=1e-3, batch_size=4096, init="gmm", seed=0, consistency=0.0)
        t0 = time.perf_counter()
        trainer = start_training(feats, None, ModelConfig(10, 16, depth=2, hidden=32), cfg, device=dev).trainer
        started = time.perf_counter() - t0
        xc = torch.as_tensor(feats[check], device=dev)
        train_s = 0.0
        acc, reached, curve = 0.0, None, []
        while trainer.step_count < steps and time.perf_counter() - t0 < budget:
            t1 = time.perf_counter()
            trainer.run(100)
            sync(dev)
            train_s += time.perf_counter() - t1
            with torch.no_grad():
                pred = trainer.model.responsibilities(xc).argmax(1).cpu().numpy()
            acc = clustering_scores(y[check], pred)["accuracy"]
            curve.append(f"{time.perf_counter() - t0:.0f}s:{acc:.3f}")
            if reached is None and acc >= target:
                reached = time.perf_counter() - t0
        where = f"{dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                            f" ({torch.get_num_threads()} threads)")
        result = f"accuracy {target:g} after {reached:.1f} s" if reached else f"accuracy {target:g} not reached"
        print(f"{where}: start {started:.1f} s, {trainer.step_count / train_s:.1f} steps/s, {trainer.step_count} "
              f"steps, final accuracy {acc:.3f}, {result}; accuracy at "
              + " ".join(curve[:: max(1, len(curve) // 10)]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), mps or cpu")
    parser.add_argument("--quick", action="store_true", help="short windows, fewer sizes, 6,000 images")
    parser.add_argument("--sections", nargs="+", default=["correct", "speed", "frames", "images"],
                        choices=["correct", "speed", "frames", "images"])
    parser.add_argument("--idx-folder", default=os.environ.get("VMONF_IDX_FOLDER"),
                        help="a folder with MNIST-layout IDX files (else the cache, or Debian's Fashion-MNIST)")
    parser.add_argument("--idx-name", help="what the files in --idx-folder are, e.g. fashion-mnist (printed)")
    parser.add_argument("--target", type=float, default=0.5, help="matched accuracy to reach (section 4)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: all cores)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    tune_process()
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break notes; the timing is what counts
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"torch {torch.__version__}, device {device} (GPU: {gpu}), CPU threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    if "correct" in args.sections:
        section_correct(device)
    if "speed" in args.sections:
        section_speed(device, [1, 5] if args.quick else [1, 5, 10, 20], [512, 4096], 0.3 if args.quick else 1.0,
                      2 if args.quick else 3)
    if "frames" in args.sections:
        section_frames(device, 0.5 if args.quick else 2.0)
    if "images" in args.sections:
        section_images(device, args.idx_folder, args.idx_name, args.target, 20.0 if args.quick else 75.0,
                       300 if args.quick else 2000, args.quick)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

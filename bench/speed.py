"""Training steps per second of the batched K-flow mixture against Python loops over per-component flows.

Compares, in one run and on the same data: our batched flows (weights with a leading K axis), our
own flows built one per component in a Python loop, and mixtures of zuko and normflows RealNVP flows
of the same architecture (depth 4, hidden 64). All share the same posterior network and exact ELBO.

    python bench/speed.py [--threads 2] [--rounds 5] [--seconds 1] [--default-malloc] [--torch-adam]

Every contender runs in this one process, so all of them get the process settings the worker and the CLI
switch on (``vmonf.perf.tune_process``: denormals flushed, freed memory kept) unless ``--default-malloc`` is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import statistics
import time

import torch
from torch import nn

from vmonf.data import make_toy
from vmonf.flows import ComponentFlows
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.optim import make_adam
from vmonf.perf import keep_freed_memory

DEPTH, HIDDEN, BATCH = 4, 64, 512


class LoopMixture(nn.Module):
    """The straightforward mixture: a list of K flows, log p(x|k) computed one k at a time."""

    def __init__(self, flows: list[nn.Module], log_prob_fn, k: int, d: int = 2):
        super().__init__()
        self.flows = nn.ModuleList(flows)
        self.log_prob_fn = log_prob_fn
        self.posterior = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, k))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        comp = torch.stack([self.log_prob_fn(f, x) for f in self.flows], 1)  # (N, K)
        log_q = torch.log_softmax(self.posterior(x), -1)
        log_pi = -torch.log(torch.tensor(float(comp.shape[1])))
        return -(log_q.exp() * (comp + log_pi - log_q)).sum(-1).mean()


def ours(k):
    return VMoNFModel(ModelConfig(k, 2, depth=DEPTH, hidden=HIDDEN))


def ours_loop(k):
    return LoopMixture([ComponentFlows(1, 2, DEPTH, HIDDEN) for _ in range(k)], lambda f, x: f.log_prob(x)[:, 0], k)


def zuko_loop(k):
    import zuko

    flows = [zuko.flows.RealNVP(2, transforms=DEPTH, hidden_features=(HIDDEN, HIDDEN), activation=nn.Tanh)
             for _ in range(k)]
    return LoopMixture(flows, lambda f, x: f().log_prob(x), k)


def tanh_conditioner() -> nn.Sequential:
    """A 1 -> 2 conditioner with two tanh layers of width HIDDEN, the last layer at zero (identity flow).

    normflows' own ``nets.MLP`` only has (leaky) ReLU layers; ours and zuko's use tanh, and tanh is
    the faster of the two here (normflows ran 4-5 % more steps/s with it), so normflows gets
    this network to keep the architecture the same."""
    net = nn.Sequential(nn.Linear(1, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 2))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def normflows_loop(k):
    import normflows as nf

    def one():
        layers = []
        for _ in range(DEPTH):
            layers.append(nf.flows.AffineCouplingBlock(tanh_conditioner()))
            layers.append(nf.flows.Permute(2, mode="swap"))
        return nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers)

    return LoopMixture([one() for _ in range(k)], lambda f, x: f.log_prob(x), k)


def make_stepper(model: nn.Module, x: torch.Tensor, torch_adam: bool = False):
    """A function that takes one training step of ``model`` on a random batch of ``x``."""
    if torch_adam:  # torch's own fused Adam, with its per-step Python bookkeeping
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    else:  # the same fused Adam for every contender
        opt = make_adam(model.parameters(), x.device, lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(x), (BATCH,), generator=gen)
        loss = model.loss(x[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(10):  # warm-up
        step()
    return step


def steps_per_second(step, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def paired_ratio(rounds: dict[str, list[float]], other: str) -> str:
    """Median [min-max] over rounds of batched steps/s divided by ``other``'s in the same round."""
    if other not in rounds:
        return "n/a"
    r = [a / b for a, b in zip(rounds["vmonf batched"], rounds[other], strict=True)]
    return f"{statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per contender and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; each times every contender once, back to back, so that a ratio compares "
                             "windows a few seconds apart (this machine's speed drifts by 10-20 %% over a minute)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc at its defaults (freed activations go back to the OS)")
    parser.add_argument("--torch-adam", action="store_true",
                        help="every contender uses torch.optim.Adam(fused=True) instead of vmonf's LeanFusedAdam")
    args = parser.parse_args()
    malloc = "default" if args.default_malloc else ("kept" if keep_freed_memory() else "default (no mallopt)")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    x = torch.as_tensor(make_toy("pinwheel", 4096, seed=0)[0])
    builders = {"vmonf batched": ours, "vmonf flows in a loop": ours_loop, "zuko loop": zuko_loop,
                "normflows loop": normflows_loop}
    print(f"torch {torch.__version__}, {args.threads} thread(s), depth {DEPTH}, hidden {HIDDEN}, batch {BATCH}, "
          f"freed memory: {malloc}, Adam: {'torch fused' if args.torch_adam else 'vmonf LeanFusedAdam'}, "
          f"{args.rounds} rounds of {args.seconds:g} s; steps/s are medians over rounds, ratios the median "
          "[min-max] of the per-round ratios")
    print(f"{'K':>3} " + " ".join(f"{name:>22}" for name in builders)
          + f"{'batched/zuko':>22}{'batched/normflows':>22}")
    results = {}
    for k in args.ks:
        steppers = {}
        for name, build in builders.items():
            torch.manual_seed(0)
            try:
                steppers[name] = make_stepper(build(k), x, args.torch_adam)
            except ImportError:
                pass
        rounds: dict[str, list[float]] = {name: [] for name in steppers}
        for _ in range(args.rounds):
            for name, step in steppers.items():
                rounds[name].append(steps_per_second(step, args.seconds))
        row = {name: statistics.median(rounds[name]) if name in rounds else float("nan") for name in builders}
        results[k] = row
        print(f"{k:>3} " + " ".join(f"{row[n]:>16.1f} st/s" for n in builders)
              + f"{paired_ratio(rounds, 'zuko loop'):>22}{paired_ratio(rounds, 'normflows loop'):>22}", flush=True)
    if 1 in results and 10 in results:
        ratio = results[1]["vmonf batched"] / results[10]["vmonf batched"]
        print(f"cost of a K=10 step relative to K=1 (batched): {ratio:.2f}x")


if __name__ == "__main__":
    main()

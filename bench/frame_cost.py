"""What one live frame costs to draw, part by part, and the way back through the flows fused or through the modules.

The default playground run's frame (pinwheel, K=5, depth 4, hidden 64, a 64x64 grid, 1,000 points, 300 samples,
13x40 warp-line points per component), drawn by the worker's own ``FrameDrawer`` on one thread, as the drawing
process does. The model is the untrained one (a frame's cost does not depend on the weights). Prints the median
of ``--rounds`` rounds of ``--frames`` frames, and, in the same rounds, alternating:

- a full frame and a light one (``"full": False``: no warp lines, no per-point and per-component numbers, which
  the live app draws between full frames), and the light one with each conditioner folded at every pass of the
  flows instead of once a frame (``ComponentFlows.same_weights``);
- the frame and its grid density through ``vmonf.fused.coupling_stack_eval`` (what a frame uses: no autograd node,
  ``tanh``'s affine parts folded into the weights, the first coupling computed once per grid value) and through the
  training pass's autograd node ``coupling_stack`` run without gradients;
- the warp lines and samples through ``flows.inverse`` (fused, without gradients) and ``flows.inverse_modules``.

    python bench/frame_cost.py [--rounds 6] [--frames 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` finds vmonf

import argparse
import contextlib
import statistics
import time

import torch

import vmonf.flows
from vmonf.flows import ComponentFlows
from vmonf.fused import coupling_stack, coupling_stack_eval
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.perf import tune_process
from vmonf.studio.capture import _warp_lines
from vmonf.studio.worker import FrameDrawer, JobSpec, load_spec_data, spec_view
from vmonf.train import chunked


def ms(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tune_process()
    spec = JobSpec()
    data, labels = load_spec_data(spec)
    view = spec_view(spec, data, labels)
    model = VMoNFModel(ModelConfig(spec.n_components, 2, **spec.model)).eval()
    x = torch.as_tensor(data.x)
    model.set_standardization(x.mean(0), x.std(0))
    drawer = FrameDrawer(view, 0, lambda snap: None)
    job = {"step": 1, "loss": 1.0, "temperature": 1.0, "seconds": 0.0, "x_val": x[:100], "history": "",
           "meta": {"step": 1}}
    grid = torch.stack(torch.meshgrid(torch.as_tensor(view.grid_x), torch.as_tensor(view.grid_y), indexing="xy"),
                       -1).reshape(-1, 2)
    flows = model.flows
    fused_inverse = flows.inverse

    def way_back() -> None:
        _warp_lines(model)
        model.sample(view.n_samples)

    light = {**job, "full": False}
    same_weights = ComponentFlows.same_weights

    @contextlib.contextmanager
    def fold_every_pass(self):
        yield

    parts: dict[str, list[float]] = {"frame": [], "light frame": [], "light frame, folded at every pass": [],
                                     "grid density": [], "frame, autograd node": [],
                                     "grid density, autograd node": [], "warp lines + samples, fused": [],
                                     "warp lines + samples, modules": []}
    with torch.no_grad():
        drawer.draw(model, job)  # warm-up
        for _ in range(args.rounds):
            def autograd_node(*args, folds=None, **kw):  # (the node folds nothing)
                return coupling_stack(*args, **kw)

            for suffix, forward in (("", coupling_stack_eval), (", autograd node", autograd_node)):
                vmonf.flows.coupling_stack_eval = forward  # what ComponentFlows runs without gradients
                parts["frame" + suffix].append(ms(lambda: drawer.draw(model, job), args.frames))
                if not suffix:
                    parts["light frame"].append(ms(lambda: drawer.draw(model, light), args.frames))
                    ComponentFlows.same_weights = fold_every_pass
                    parts["light frame, folded at every pass"].append(ms(lambda: drawer.draw(model, light),
                                                                         args.frames))
                    ComponentFlows.same_weights = same_weights
                parts["grid density" + suffix].append(ms(lambda: chunked(model.component_log_prob, grid),
                                                         args.frames))
            vmonf.flows.coupling_stack_eval = coupling_stack_eval
            for name, inverse in (("fused", fused_inverse), ("modules", flows.inverse_modules)):
                flows.inverse = inverse
                parts[f"warp lines + samples, {name}"].append(ms(way_back, args.frames))
            del flows.inverse  # the class's own method again
    print(f"one live frame of the default playground run (K={spec.n_components}, {len(view.points)} points, "
          f"{len(view.grid_x)}x{len(view.grid_y)} grid), one thread; median of {args.rounds} rounds of "
          f"{args.frames} frames")
    for name, values in parts.items():
        print(f"{name:<40}{statistics.median(values):8.1f} ms   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    for name, slow, fast in (("frame: full / light", "frame", "light frame"),
                             ("light: folded every pass / once", "light frame, folded at every pass", "light frame"),
                             ("frame: autograd node / eval", "frame, autograd node", "frame"),
                             ("grid: autograd node / eval", "grid density, autograd node", "grid density"),
                             ("way back through the modules / fused", "warp lines + samples, modules",
                              "warp lines + samples, fused")):
        print(f"{name:<40}{statistics.median(parts[slow]) / statistics.median(parts[fast]):8.2f}x")


if __name__ == "__main__":
    main()

"""Adam for a mixture of flows: torch's fused kernel, without its per-step Python bookkeeping on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor


class LeanFusedAdam(torch.optim.Adam):
    """torch's fused Adam, minus the Python bookkeeping it repeats on every step.

    ``torch.optim.Adam.step`` walks every parameter in Python, regroups the tensors by device and dtype,
    then calls one fused kernel. For the few dozen small tensors of a mixture of flows that walk cost
    ~0.2-0.4 ms a step on this CPU, about as much as the update. Here the lists handed to the kernel
    are built once (after the first, ordinary step has created the state) and reused while every
    parameter has a gradient; anything else (a missing gradient, a closure, several groups, a loaded
    state) takes the ordinary path. The state is torch's own, so ``state_dict`` round trips unchanged.
    """

    def __init__(self, params, **kw):
        super().__init__(params, fused=True, **kw)
        self._lists: tuple[list[Tensor], ...] | None = None

    def load_state_dict(self, state_dict) -> None:
        self._lists = None  # the loaded state brings new tensors
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group) -> None:
        self._lists = None
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0] if len(self.param_groups) == 1 else None
        plain = closure is None and group is not None and not any(
            group.get(option) for option in ("amsgrad", "maximize", "capturable", "differentiable",
                                             "decoupled_weight_decay"))  # the last one: torch >= 2.6 only
        grads = [p.grad for p in group["params"]] if plain else []
        if not plain or any(g is None for g in grads):
            self._lists = None
            return super().step(closure)
        if self._lists is None:  # built once the ordinary step has made every parameter's state
            states = [self.state.get(p) for p in group["params"]]
            if not all(states):
                return super().step(closure)
            self._lists = tuple([st[key] for st in states] for key in ("exp_avg", "exp_avg_sq", "step"))
        exp_avgs, exp_avg_sqs, steps = self._lists
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(group["params"], grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                           maximize=False)
        return None


def make_adam(params, device: torch.device, **kw) -> torch.optim.Adam:
    """Adam, fused into one kernel where torch supports it (CPU, CUDA): ~20-30 % faster steps here, and on
    the CPU without its per-step Python bookkeeping (:class:`LeanFusedAdam`)."""
    params = [p for p in params if p.requires_grad]
    if device.type == "cpu":
        try:
            return LeanFusedAdam(params, **kw)
        except RuntimeError:  # torch < 2.4 has no fused Adam on the CPU
            return torch.optim.Adam(params, **kw)
    return torch.optim.Adam(params, fused=device.type == "cuda" or None, **kw)

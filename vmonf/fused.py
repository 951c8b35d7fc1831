"""A RealNVP stack's forward pass and its gradient written out by hand, as one autograd node.

:class:`~vmonf.flows.ComponentFlows` uses it for ``x -> (z, log|det J|)`` whenever its blocks are plain
affine couplings with per-component conditioners (the default). It computes what the modules compute
(tests/test_flows.py compares values and gradients), faster on a CPU (``bench/speed.py``) because:

- points run along the last axis: tensors are ``(K, D, N)``, not ``(K, N, D)``. With the few dimensions
  of the toy sets, every per-dimension slice, sum and elementwise op then works on long contiguous rows;
  in the ``(K, N, D)`` layout ``tanh`` of a strided ``(10, 512, 2)`` slice took 82 µs against 4 µs
  contiguous, and a sum over a last axis of size 2 took 22 µs;
- a coupling only computes what it uses: the conditioner reads the pass-through dimensions and outputs
  the scale and shift of the transformed ones (the module path masks the rest to zero);
- the stack is one autograd node, updating temporaries in place where the backward pass allows.

Without gradients (densities on a grid, evaluation) the forward pass is :func:`coupling_stack_eval`, with no
autograd node and cheaper conditioners (:func:`_folded`), and :func:`coupling_stack_inverse` is the way back
(sampling, warp lines); the way back with a gradient, and the other block types, run through the modules.
Double backward is not supported.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_tanh_backward = torch.ops.aten.tanh_backward  # grad * (1 - y^2), given y = tanh(a)


def _tanh_(a: Tensor) -> Tensor:
    """``tanh`` in place, as ``2 sigmoid(2a) - 1`` (equal to within 2e-7 in float32, 4e-16 in float64).

    torch's CPU ``tanh`` kernel measured about 10x slower than its ``sigmoid`` here, whatever the vector
    instruction set: the conditioners' tanh was a quarter of a training step and half of a density grid
    (docs/RESULTS.md, "tanh"). Where ``tanh`` is fast the four passes cost about the same as one ``tanh``.
    """
    return a.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _first_affine(x: Tensor, loc: Tensor, log_scale: Tensor, base: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The stack's elementwise affine on ``x`` ``(K, N, D)``: ``exp(-log_scale)`` as ``(K, D, 1)``, ``z`` as a new
    ``(K, D, N)`` tensor, and the log-det so far ``(K, N)`` (with ``base``, less the standard normal's constant)."""
    inv_scale = torch.exp(-log_scale).transpose(1, 2)  # (K, D, 1)
    z = (x.transpose(1, 2) - loc.transpose(1, 2)).contiguous().mul_(inv_scale)  # (K, D, N), a new tensor
    log_norm = 0.5 * x.shape[2] * math.log(2 * math.pi) if base else 0.0  # of the standard normal
    return inv_scale, z, (-log_scale.sum(-1) - log_norm).expand(x.shape[:2]).contiguous()


class _CouplingStack(torch.autograd.Function):
    """``(x, plan, bound, base, loc, log_scale, *[W1, b1, W2, b2, W3, b3] per coupling) -> (z^T, logabsdet)``.

    ``x`` is ``(K, N, D)``; ``z^T`` comes back as ``(K, D, N)``. ``plan`` holds, per coupling, the indices
    of the pass-through dims ``c``, of the transformed dims ``t``, and of the conditioner outputs used
    ``(t, D + t)`` (scale and shift of each transformed dim). ``bound`` is the soft-clamp bound. With
    ``base=True`` the second output is ``log p(x)`` under the flow, the log-det plus the standard-normal
    log-density of ``z``, so the caller's few small operations (and their backward nodes) are not needed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, plan: tuple[tuple[Tensor, Tensor, Tensor], ...], bound: float, base: bool,
                loc: Tensor, log_scale: Tensor, *weights: Tensor) -> tuple[Tensor, Tensor]:
        inv_scale, z, logdet = _first_affine(x, loc, log_scale, base)
        saved = [z]
        ones = z.new_ones(z.shape[0], 1, z.shape[2])
        for i, (c, t, outs) in enumerate(plan):
            w1, b1, w2, b2, w3, b3 = weights[6 * i: 6 * i + 6]
            # The first layer's bias rides in its product: a row of ones under z_c, b1 under W1's used rows.
            z_c1 = torch.cat([z.index_select(1, c), ones], dim=1)  # (K, dc + 1, N)
            w1_c1 = torch.cat([w1.index_select(1, c), b1], dim=1)  # (K, dc + 1, H)
            z_t = z.index_select(1, t)
            h1 = _tanh_(torch.bmm(w1_c1.transpose(1, 2), z_c1))
            h2 = _tanh_(torch.bmm(w2.transpose(1, 2), h1).add_(b2.transpose(1, 2)))
            w3_o = w3.index_select(2, outs)  # (K, H, 2 dt)
            out = torch.bmm(w3_o.transpose(1, 2), h2).add_(b3.index_select(2, outs).transpose(1, 2))
            th = _tanh_(out[:, : len(t)].mul_(1.0 / bound))  # s = bound * tanh(raw / bound)
            log_s = th * bound
            logdet.add_(log_s.sum(1))
            exp_s = log_s.exp_()
            z = z.index_copy(1, t, torch.addcmul(out[:, len(t):], z_t, exp_s))
            saved += [z_c1, z_t, h1, h2, th, exp_s, w1_c1, w3_o]
        if base:
            logdet.add_(z.square().sum(1), alpha=-0.5)
        ctx.plan, ctx.base = plan, base
        ctx.save_for_backward(inv_scale, *saved, *weights, *([z] if base else []))
        return z, logdet

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z: Tensor | None, grad_logdet: Tensor | None):
        plan = ctx.plan
        inv_scale, z0, *rest = ctx.saved_tensors
        n = len(plan)
        acts, weights = rest[: 8 * n], rest[8 * n: 8 * n + 6 * n]
        g_ld = z0.new_zeros(z0.shape[0], z0.shape[2]) if grad_logdet is None else grad_logdet  # (K, N)
        if ctx.base:  # the second output also held -|z|^2 / 2 of the last z
            g = rest[-1] * g_ld.unsqueeze(1).neg()  # (K, D, N)
            if grad_z is not None:
                g.add_(grad_z)
        else:
            g = torch.zeros_like(z0) if grad_z is None else grad_z.contiguous()
        grads: list[Tensor] = [None] * (6 * n)  # type: ignore[list-item]
        for i in reversed(range(n)):
            c, t, outs = plan[i]
            z_c1, z_t, h1, h2, th, exp_s, w1_c1, w3_o = acts[8 * i: 8 * i + 8]
            w1, _, w2, _, w3, b3 = weights[6 * i: 6 * i + 6]
            g_t = g.index_select(1, t)
            g_direct = g_t * exp_s  # through z_t * exp(s)
            # d/ds of z_t * exp(s) + s (the log-det), then through s = bound * tanh(raw / bound)
            g_raw = torch.addcmul(g_ld.unsqueeze(1), g_direct, z_t).mul_(1.0 - th * th)
            g_out = torch.cat([g_raw, g_t], dim=1)  # (K, 2 dt, N)
            g_a2 = _tanh_backward(torch.bmm(w3_o, g_out), h2)
            g_a1 = _tanh_backward(torch.bmm(w2, g_a2), h1)
            g_w1_c1 = torch.bmm(z_c1, g_a1.transpose(1, 2))  # (K, dc + 1, H): W1's used rows, then b1
            dc = len(c)
            grads[6 * i: 6 * i + 6] = [
                torch.zeros_like(w1).index_copy_(1, c, g_w1_c1[:, :dc]), g_w1_c1[:, dc:],
                torch.bmm(h1, g_a2.transpose(1, 2)), g_a2.sum(2).unsqueeze(1),
                torch.zeros_like(w3).index_copy_(2, outs, torch.bmm(g_out, h2.transpose(1, 2)).transpose(1, 2)),
                torch.zeros_like(b3).index_copy_(2, outs, g_out.sum(2).unsqueeze(1)),
            ]
            g = g.index_copy(1, t, g_direct).index_add_(1, c, torch.bmm(w1_c1[:, :dc], g_a1))
        # z0 = (x - loc) * exp(-log_scale), logdet0 = -sum(log_scale)
        g_x = g * inv_scale  # (K, D, N)
        g_loc = -g_x.sum(2).unsqueeze(1)
        g_log_scale = (-(g * z0).sum(2) - g_ld.sum(1, keepdim=True)).unsqueeze(1)
        g_x = g_x.transpose(1, 2) if ctx.needs_input_grad[0] else None
        return g_x, None, None, None, g_loc, g_log_scale, *grads


def coupling_stack(x: Tensor, plan: tuple[tuple[Tensor, Tensor, Tensor], ...], bound: float, loc: Tensor,
                   log_scale: Tensor, weights: list[Tensor], *, base: bool = False) -> tuple[Tensor, Tensor]:
    """Elementwise affine then one affine coupling per ``plan`` entry, as one autograd node.

    Returns ``z`` transposed, ``(K, D, N)``, and the log-determinant ``(K, N)``, or with ``base=True``
    the log-density ``log N(z; 0, I) + log|det J|`` in its place; see the module doc.
    """
    return _CouplingStack.apply(x, plan, bound, base, loc, log_scale, *weights)


def _folded(weights: list[Tensor], i: int, c: Tensor, outs: Tensor) -> tuple[Tensor, ...]:
    """Coupling ``i``'s conditioner with ``tanh``'s affine parts folded into its weights, for passes without a
    gradient: ``tanh(a) = 2 sigmoid(2a) - 1``, and the ``2 s - 1`` of a hidden layer is taken up by the next
    layer's weights and bias (``W^T (2s - 1) + b = (2W)^T s + (b - W^T 1)``). Each hidden layer is then one
    product, one bias add and one ``sigmoid_`` over its ``(K, H, N)`` activations, against four or five passes
    (:func:`_tanh_` and the bias). With :func:`_condition_shared`, a live frame's 64x64 density grid ran 1.3-1.4x
    faster (``bench/frame_cost.py``; docs/RESULTS.md, "A frame's density without the autograd node").
    Returns ``(A1, A2^T, c2, A3^T, c3)``: the first layer's weights ``(K, dc + 1, H)`` with its bias as the last
    row, then each later layer's weights transposed and its bias as a column."""
    w1, b1, w2, b2, w3, b3 = weights[6 * i: 6 * i + 6]
    a1 = torch.cat([w1.index_select(1, c), b1], dim=1).mul(2.0)  # sigmoid(2 a1)
    a2 = w2.mul(4.0)  # sigmoid(2 (2 W2^T s1 + b2 - W2^T 1))
    c2 = (b2 - w2.sum(1, keepdim=True)).mul_(2.0)
    w3_o = w3.index_select(2, outs)
    c3 = b3.index_select(2, outs) - w3_o.sum(1, keepdim=True)
    return a1, a2.transpose(1, 2), c2.transpose(1, 2), w3_o.mul(2.0).transpose(1, 2), c3.transpose(1, 2)


def _condition(folded: tuple[Tensor, ...], z_c1: Tensor) -> Tensor:
    """The conditioner's raw output ``(K, 2 dt, N)`` (scale rows, then shift rows) for ``z_c1`` ``(K, dc + 1, N)``
    (the pass-through dims and a row of ones), through :func:`_folded` weights."""
    a1, a2_t, c2, a3_t, c3 = folded
    s1 = torch.bmm(a1.transpose(1, 2), z_c1).sigmoid_()
    s2 = torch.bmm(a2_t, s1).add_(c2).sigmoid_()
    return torch.bmm(a3_t, s2).add_(c3)


def _condition_shared(folded: tuple[Tensor, ...], x_c: Tensor, loc_c: Tensor, inv_scale_c: Tensor) -> Tensor | None:
    """:func:`_condition` of the first coupling when every component reads the same points ``x_c`` ``(N, 1)`` and
    they repeat: computed once per distinct value and spread back. A density grid's first coupling reads one axis,
    so a 1,024-point chunk of a 64x64 grid has 16 or 64 distinct values. ``None`` where under half of them repeat.
    (One column only: torch's ``unique`` over rows compares them one by one, slower than the conditioner.)"""
    values, back = torch.unique(x_c.reshape(-1), return_inverse=True)
    if 2 * len(values) > len(x_c):
        return None
    z_c = (values.view(1, 1, -1) - loc_c).mul_(inv_scale_c)  # (K, 1, U)
    ones = z_c.new_ones(z_c.shape[0], 1, z_c.shape[2])
    return _condition(folded, torch.cat([z_c, ones], dim=1)).index_select(2, back)


def _folded_once(weights: list[Tensor], i: int, c: Tensor, outs: Tensor, folds: dict | None) -> tuple[Tensor, ...]:
    """:func:`_folded`, kept in ``folds`` (by coupling) where the caller keeps one while the weights stay as they are
    (:meth:`vmonf.flows.ComponentFlows.same_weights`): ~0.12 ms a coupling, and a live frame runs the flows six
    times (docs/RESULTS.md, "Light frames")."""
    if folds is None:
        return _folded(weights, i, c, outs)
    if i not in folds:
        folds[i] = _folded(weights, i, c, outs)
    return folds[i]


@torch.no_grad()
def coupling_stack_eval(x: Tensor, plan: tuple[tuple[Tensor, Tensor, Tensor], ...], bound: float, loc: Tensor,
                        log_scale: Tensor, weights: list[Tensor], *, base: bool = False,
                        folds: dict | None = None) -> tuple[Tensor, Tensor]:
    """:func:`coupling_stack` without gradients (densities on a grid, evaluation): the same outputs, through
    :func:`_folded` conditioners, and with the first coupling's conditioner computed once per distinct input where
    every component reads the same points (an ``(N, D)`` batch expanded to ``(K, N, D)``) and they repeat.
    ``folds``: a dict that keeps the folded conditioners between calls with the same weights (:func:`_folded_once`)."""
    inv_scale, z, logdet = _first_affine(x, loc, log_scale, base)
    loc_t = loc.transpose(1, 2)
    ones = z.new_ones(z.shape[0], 1, z.shape[2])
    # One batch, seen by every component; below 64 points finding the distinct values costs more than it saves.
    shared = (x.shape[0] == 1 or x.stride(0) == 0) and x.shape[1] >= 64
    for i, (c, t, outs) in enumerate(plan):
        folded = _folded_once(weights, i, c, outs, folds)
        out = None
        if i == 0 and shared and len(c) == 1:
            out = _condition_shared(folded, x[0].index_select(1, c), loc_t.index_select(1, c),
                                    inv_scale.index_select(1, c))
        if out is None:
            out = _condition(folded, torch.cat([z.index_select(1, c), ones], dim=1))
        log_s = _tanh_(out[:, : len(t)].mul(1.0 / bound)).mul_(bound)
        logdet.add_(log_s.sum(1))
        z = z.index_copy(1, t, torch.addcmul(out[:, len(t):], z.index_select(1, t), log_s.exp_()))
    if base:
        logdet.add_(z.square().sum(1), alpha=-0.5)
    return z, logdet


@torch.no_grad()
def coupling_stack_inverse(z: Tensor, plan: tuple[tuple[Tensor, Tensor, Tensor], ...], bound: float, loc: Tensor,
                           log_scale: Tensor, weights: list[Tensor], *, folds: dict | None = None
                           ) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`coupling_stack` (base space to data space), without gradients.

    ``z`` is ``(K, N, D)``; returns ``x`` ``(K, N, D)`` and the inverse map's log-determinant ``(K, N)``.
    The couplings run last to first, each undoing ``z_t = z_t e^s + t`` with the same conditioner as the forward
    pass (:func:`_folded`), in the same ``(K, D, N)`` layout. The module path took about 1.5x as long for a
    frame's warp lines and samples (``bench/frame_cost.py``; docs/RESULTS.md, "The live loop"). ``folds`` as for
    :func:`coupling_stack_eval`.
    """
    u = z.transpose(1, 2).contiguous()  # (K, D, N)
    logdet = log_scale.sum(-1).expand(z.shape[:2]).contiguous()  # the elementwise affine's, added up front
    ones = u.new_ones(u.shape[0], 1, u.shape[2])
    for i in reversed(range(len(plan))):
        c, t, outs = plan[i]
        out = _condition(_folded_once(weights, i, c, outs, folds), torch.cat([u.index_select(1, c), ones], dim=1))
        log_s = _tanh_(out[:, : len(t)].mul_(1.0 / bound)).mul_(bound)
        logdet.sub_(log_s.sum(1))
        u = u.index_copy(1, t, (u.index_select(1, t) - out[:, len(t):]).mul_(log_s.neg_().exp_()))
    x = u * log_scale.exp().transpose(1, 2) + loc.transpose(1, 2)  # (with no coupling, u may be z itself)
    return x.transpose(1, 2), logdet


def coupling_plan(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Indices ``(pass-through dims, transformed dims, conditioner outputs used)`` of a 0/1 coupling mask."""
    c = torch.nonzero(mask > 0.5).flatten()
    t = torch.nonzero(mask < 0.5).flatten()
    return c, t, torch.cat([t, t + len(mask)])

"""K normalizing flows with one architecture, evaluated together (weights carry a leading K axis).

Bijection contract, for every transform in this module::

    forward(x) -> (z, logabsdet)     # data -> base,  x: (K, N, D), logabsdet: (K, N)
    inverse(z) -> (x, logabsdet)     # base -> data,  logabsdet of the inverse map

so that ``log p_k(x) = log N(z_k; 0, I) + logabsdet_k``. Component k of every tensor
is component k's flow: there is no Python loop over components.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
from torch import Tensor, nn

from vmonf.fused import coupling_plan, coupling_stack, coupling_stack_eval, coupling_stack_inverse

FlowType = Literal["realnvp", "maf"]

#: Bound of the log-scale, ``s = c * tanh(s_raw / c)``. Keeps exp(s) in [e^-c, e^c].
SCALE_BOUND = 3.0


def tanh(a: Tensor) -> Tensor:
    """``tanh(a)`` as ``2 sigmoid(2a) - 1``: torch's CPU tanh kernel is much slower than its sigmoid
    (docs/RESULTS.md, "Training speed"; ``vmonf.fused._tanh_`` is the in-place form the training pass uses)."""
    return torch.sigmoid(2 * a) * 2 - 1


class Tanh(nn.Module):
    """:func:`tanh` as a layer (no parameters: checkpoints are the same as with ``nn.Tanh``)."""

    def forward(self, a: Tensor) -> Tensor:
        return tanh(a)


def soft_clamp(s: Tensor, bound: float = SCALE_BOUND) -> Tensor:
    """Smoothly bound ``s`` to ``(-bound, bound)``; the identity near zero."""
    return bound * tanh(s / bound)


class BatchedLinear(nn.Module):
    """K independent linear maps ``(K, N, i) -> (K, N, o)`` in one ``baddbmm``.

    An optional fixed 0/1 ``mask`` of shape ``(i, o)`` makes it a MADE layer.
    """

    def __init__(self, k: int, i: int, o: int, *, zero: bool = False, mask: Tensor | None = None):
        super().__init__()
        bound = 0.0 if zero else 1.0 / math.sqrt(i)
        self.weight = nn.Parameter(torch.empty(k, i, o).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(k, 1, o))
        self.register_buffer("mask", mask if mask is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.mask is None else self.weight * self.mask
        return torch.baddbmm(self.bias, x, w)


class SharedLinear(nn.Module):
    """One linear map shared by all K components, ``(K, N, i) -> (K, N, o)``.

    With ``embed > 0`` it also adds a per-component term ``e_k @ W_e``: component k is told who it is
    by a learned embedding ``e_k`` of size ``embed`` (the only per-component part of a shared conditioner).
    """

    def __init__(self, k: int, i: int, o: int, *, zero: bool = False, embed: int = 0):
        super().__init__()
        bound = 0.0 if zero else 1.0 / math.sqrt(i)
        self.weight = nn.Parameter(torch.empty(i, o).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(o))
        self.embedding = self.embed_weight = None
        if embed:
            self.embedding = nn.Parameter(torch.randn(k, embed))
            self.embed_weight = nn.Parameter(torch.empty(embed, o).uniform_(-embed**-0.5, embed**-0.5))

    def forward(self, x: Tensor) -> Tensor:
        out = x @ self.weight + self.bias
        if self.embedding is not None:
            out = out + (self.embedding @ self.embed_weight).unsqueeze(1)
        return out


#: Size of the component embedding in a shared conditioner (``ModelConfig.share_weights``).
EMBED_DIM = 8


def shared_mlp(k: int, i: int, hidden: int, o: int) -> nn.Sequential:
    """:func:`batched_mlp` with one set of weights for all components, told apart by an embedding."""
    return nn.Sequential(
        SharedLinear(k, i, hidden, embed=EMBED_DIM),
        Tanh(),
        SharedLinear(k, hidden, hidden),
        Tanh(),
        SharedLinear(k, hidden, o, zero=True),
    )


def batched_mlp(k: int, i: int, hidden: int, o: int, masks: list[Tensor] | None = None) -> nn.Sequential:
    """Two tanh hidden layers of width ``hidden``; the last layer starts at zero (identity flow).

    tanh keeps log p(x) smooth and measured as fast as ReLU and ~10 % faster than SiLU here (bench/speed.py).
    """
    m = masks or [None, None, None]
    return nn.Sequential(
        BatchedLinear(k, i, hidden, mask=m[0]),
        Tanh(),
        BatchedLinear(k, hidden, hidden, mask=m[1]),
        Tanh(),
        BatchedLinear(k, hidden, o, zero=True, mask=m[2]),
    )


class ElementwiseAffine(nn.Module):
    """Per-component ``z = (x - loc_k) * exp(-log_scale_k)``; set from k-means by :meth:`initialize`."""

    def __init__(self, k: int, d: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(k, 1, d))
        self.log_scale = nn.Parameter(torch.zeros(k, 1, d))

    @torch.no_grad()
    def initialize(self, loc: Tensor, scale: Tensor) -> None:
        """Set each component's location and scale, both of shape ``(K, D)``."""
        self.loc.copy_(loc.unsqueeze(1))
        self.log_scale.copy_(scale.clamp_min(1e-3).log().unsqueeze(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum(-1)).expand(x.shape[:2])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * torch.exp(self.log_scale) + self.loc
        return x, self.log_scale.sum(-1).expand(z.shape[:2])


class AffineCoupling(nn.Module):
    """RealNVP affine coupling: dims where ``mask == 1`` pass through and condition the rest.

    .. math:: z = m \\odot x + (1 - m) \\odot (x e^{s(m x)} + t(m x)), \\quad
              \\log|\\det J| = \\sum_i (1 - m_i) s_i
    """

    def __init__(self, k: int, d: int, hidden: int, mask: Tensor, *, shared: bool = False,
                 active: Tensor | None = None):
        super().__init__()
        self.register_buffer("mask", mask)
        # active[k] = 0 makes this block the identity for component k (components of uneven depth).
        self.register_buffer("active", None if active is None else active.view(-1, 1, 1).float())
        self.net = (shared_mlp if shared else batched_mlp)(k, d, hidden, 2 * d)
        for name, idx in zip(("pass_idx", "trans_idx", "out_idx"), coupling_plan(mask), strict=True):
            self.register_buffer(name, idx, persistent=False)  # for the fused path (vmonf/fused.py)

    def _scale_shift(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.net(x_masked).chunk(2, dim=-1)
        keep = 1.0 - self.mask
        if self.active is not None:
            keep = keep * self.active
        return soft_clamp(s) * keep, t * keep

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(x * self.mask)
        return x * torch.exp(s) + t, s.sum(-1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z * self.mask)
        return (z - t) * torch.exp(-s), -s.sum(-1)


def made_masks(d: int, hidden: int, order: Tensor) -> list[Tensor]:
    """MADE connectivity masks for input order ``order`` (a permutation of ``range(d)``).

    Output ``i`` (for both the shift and log-scale halves) sees only inputs earlier in ``order``.
    """
    rank_in = torch.empty(d, dtype=torch.long)
    rank_in[order] = torch.arange(d)
    rank_h = torch.arange(hidden) % max(d - 1, 1)  # degrees 0 .. d-2
    m1 = (rank_in[:, None] <= rank_h[None, :]).float()
    m2 = (rank_h[:, None] <= rank_h[None, :]).float()
    m3 = (rank_h[:, None] < rank_in[None, :]).float().repeat(1, 2)
    return [m1, m2, m3]


class MADEAffine(nn.Module):
    """Masked autoregressive flow block (MAF): ``z_i = (x_i - mu_i(x_<i)) e^{-a_i(x_<i)}``.

    Density evaluation (forward) is one pass; sampling (inverse) takes ``D`` passes.
    """

    def __init__(self, k: int, d: int, hidden: int, order: Tensor, *, active: Tensor | None = None):
        super().__init__()
        self.d = d
        self.register_buffer("active", None if active is None else active.view(-1, 1, 1).float())
        self.net = batched_mlp(k, d, hidden, 2 * d, masks=made_masks(d, hidden, order))

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, a = self.net(x).chunk(2, dim=-1)
        if self.active is not None:
            return mu * self.active, soft_clamp(a) * self.active
        return mu, soft_clamp(a)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, a = self._params(x)
        return (x - mu) * torch.exp(-a), -a.sum(-1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.zeros_like(z)
        for _ in range(self.d):
            mu, a = self._params(x)
            x = z * torch.exp(a) + mu
        return x, a.sum(-1)


def _coupling_masks(d: int, depth: int) -> list[Tensor]:
    """Alternate parity masks and half masks (and their complements) so every dim is transformed."""
    idx = torch.arange(d)
    masks = []
    for layer in range(depth):
        base = (idx % 2 == 0) if (layer // 2) % 2 == 0 or d < 3 else (idx < d // 2)
        masks.append((base if layer % 2 == 0 else ~base).float())
    return masks


class ComponentFlows(nn.Module):
    """``K`` flows ``x -> z`` of ``depth`` blocks each, evaluated on every point at once.

    Args:
        k: number of components.
        d: data dimension (``d >= 2`` for RealNVP, ``d >= 1`` for MAF).
        depth: number of coupling (or MADE) blocks. A RealNVP coupling transforms only the dimensions its
            mask leaves out, so with ``depth=1`` the others pass through the couplings unchanged (only the
            per-component elementwise affine scales and shifts them); ``depth >= 2`` transforms every
            dimension (``tests/test_flows.py`` checks both).
        hidden: width of each conditioner MLP.
        flow: ``"realnvp"`` (affine coupling) or ``"maf"`` (MADE blocks, the paper's MNIST choice).
        depths: optional depth of each component (length ``k``): blocks past component k's depth are the
            identity for it. The batch still runs ``max(depths)`` blocks for every component.
        shared: RealNVP only: one conditioner per block shared by all components, which a learned
            component embedding tells apart (:func:`shared_mlp`); the elementwise affine stays per component.
    """

    def __init__(self, k: int, d: int, depth: int, hidden: int, flow: FlowType = "realnvp", *,
                 depths: tuple[int, ...] | None = None, shared: bool = False):
        super().__init__()
        self.k, self.d = k, d
        self.affine = ElementwiseAffine(k, d)
        if depths is not None:
            depth = max(depths)
        levels = torch.as_tensor(depths) if depths is not None else None
        active = [None if levels is None else (levels > i) for i in range(depth)]
        if flow == "realnvp":
            blocks = [AffineCoupling(k, d, hidden, m, shared=shared, active=a)
                      for m, a in zip(_coupling_masks(d, depth), active, strict=True)]
        elif flow == "maf":
            if shared:
                raise ValueError("Weight sharing is built for RealNVP flows only; use flow='realnvp'.")
            orders = [torch.arange(d) if i % 2 == 0 else torch.arange(d).flip(0) for i in range(depth)]
            blocks = [MADEAffine(k, d, hidden, o, active=a) for o, a in zip(orders, active, strict=True)]
        else:
            raise ValueError(f"flow must be 'realnvp' or 'maf', got {flow!r}")
        self.blocks = nn.ModuleList(blocks)
        # Plain per-component affine couplings run as one hand-differentiated node (vmonf/fused.py).
        self.fused = flow == "realnvp" and not shared and depths is None
        self._fused_weights: list[Tensor] = []  # its weights in the order it takes them (_fused_parameters)
        self._folds: dict | None = None  # folded conditioners, kept while the weights stay (same_weights)

    def parameter_counts(self) -> tuple[list[int], int]:
        """``(per_component, shared)``: parameters that belong to one component (counted only in the blocks
        that component uses) and parameters that every component shares (a shared conditioner's weights)."""
        per = [0] * self.k
        shared = 0
        for block in [self.affine, *self.blocks]:
            active = getattr(block, "active", None)
            uses = [True] * self.k if active is None else active.flatten().bool().tolist()
            for module in block.modules():
                own = [p for n, p in module.named_parameters(recurse=False)
                       if isinstance(module, (BatchedLinear, ElementwiseAffine)) or n == "embedding"]
                for p in module.parameters(recurse=False):
                    if any(p is o for o in own):
                        for c in range(self.k):
                            per[c] += p[c].numel() if uses[c] else 0
                    else:
                        shared += p.numel()
        return per, shared

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` of shape ``(N, D)`` or ``(K, N, D)`` to base space through every component."""
        x = self._per_component(x)
        if self.fused:
            z_t, logdet = self._forward_fused(x)
            return z_t.transpose(1, 2), logdet
        return self.forward_modules(x)

    def _per_component(self, x: Tensor) -> Tensor:
        """``x`` as ``(K, N, D)``: an ``(N, D)`` batch is shared by every component (a view, no copy)."""
        return x.unsqueeze(0).expand(self.k, -1, -1) if x.dim() == 2 else x

    def _forward_fused(self, x: Tensor, base: bool = False) -> tuple[Tensor, Tensor]:
        """The fused forward of ``x`` ``(K, N, D)``: ``z`` transposed to ``(K, D, N)``, and the log-det (or with
        ``base``, the log-density)."""
        plan = tuple((b.pass_idx, b.trans_idx, b.out_idx) for b in self.blocks)
        if torch.is_grad_enabled():
            return coupling_stack(x, plan, SCALE_BOUND, self.affine.loc, self.affine.log_scale,
                                  self._fused_parameters(), base=base)
        return coupling_stack_eval(x, plan, SCALE_BOUND, self.affine.loc, self.affine.log_scale,  # the same values,
                                   self._fused_parameters(), base=base, folds=self._folds)  # no autograd node

    @contextlib.contextmanager
    def same_weights(self):
        """Promise that the weights do not change within the block (a frame drawn between two training steps):
        passes without gradients then fold each coupling's conditioner (:func:`vmonf.fused._folded`) once, not at
        every pass. Nested blocks share the outer one's folds."""
        if self._folds is not None:
            yield
            return
        self._folds = {}
        try:
            yield
        finally:
            self._folds = None

    def _fused_parameters(self) -> list[Tensor]:
        """The couplings' weights, listed once (listing them costs ~50 µs a call) and listed again if the
        Parameter objects were replaced (``load_state_dict(assign=True)``); ``.to()`` keeps them."""
        if not self._fused_weights or self._fused_weights[0] is not self.blocks[0].net[0].weight:
            self._fused_weights = [p for block in self.blocks for i in (0, 2, 4)
                                   for p in (block.net[i].weight, block.net[i].bias)]
        return self._fused_weights

    def forward_modules(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` through the modules one by one (autograd records every operation); ``x`` is
        ``(K, N, D)``. The fused path must agree with it (tests/test_flows.py)."""
        z, total = self.affine(x)
        for block in self.blocks:
            z, ld = block(z)
            total = total + ld
        return z, total

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map base points ``z`` of shape ``(K, N, D)`` to data space, component k through flow k; returns the
        points and the inverse map's log-determinant ``(K, N)``. Without gradients, plain couplings take the
        fused way back (:func:`~vmonf.fused.coupling_stack_inverse`)."""
        if self.fused and not torch.is_grad_enabled():
            plan = tuple((b.pass_idx, b.trans_idx, b.out_idx) for b in self.blocks)
            return coupling_stack_inverse(z, plan, SCALE_BOUND, self.affine.loc, self.affine.log_scale,
                                          self._fused_parameters(), folds=self._folds)
        return self.inverse_modules(z)

    def inverse_modules(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`inverse` through the modules one by one (with autograd); the fused way back must agree with it."""
        total = z.new_zeros(z.shape[:2])
        for block in reversed(self.blocks):
            z, ld = block.inverse(z)
            total = total + ld
        x, ld = self.affine.inverse(z)
        return x, total + ld

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x | c=k)`` for every point and component, shape ``(N, K)``."""
        x = self._per_component(x)
        if self.fused:  # the base density is added inside the fused node
            return self._forward_fused(x, base=True)[1].transpose(0, 1)
        z, logdet = self.forward_modules(x)
        base = -0.5 * (z**2).sum(-1) - 0.5 * self.d * math.log(2 * math.pi)
        return (base + logdet).transpose(0, 1)

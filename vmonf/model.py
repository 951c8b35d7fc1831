"""The variational mixture of normalizing flows (Pires & Figueiredo, ESANN 2020): prior, posterior, ELBO.

.. math::
    \\mathrm{ELBO}(x) = \\sum_k q(k|x) [\\log p(x|k) + \\log \\pi_k - \\log q(k|x)] \\le \\log p(x)

The sum over the K components is exact; nothing is sampled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmonf.flows import ComponentFlows, FlowType, tanh


class _PosteriorTanh(nn.Tanh):
    """``nn.Tanh`` while gradients are on, so training runs as they always have, bit for bit; without them (a live
    frame's q on the grid and the points) the sigmoid form of :func:`vmonf.flows.tanh`, equal to within rounding:
    torch's own CPU kernel was ~2 ms of a playground frame."""

    def forward(self, a: Tensor) -> Tensor:
        return super().forward(a) if torch.is_grad_enabled() else tanh(a)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`VMoNFModel`. Everything needed to rebuild it from a checkpoint."""

    n_components: int  # K, the number of mixture components (clusters)
    dim: int  # D, the data dimension
    depth: int = 4  # coupling (or MADE) blocks per component flow
    hidden: int = 64  # width of every conditioner MLP
    posterior_hidden: int = 64  # width of the posterior network q(c|x)
    flow: FlowType = "realnvp"  # "realnvp" (the paper's toy flows) or "maf" (its MNIST flows)
    # Learned logits, started at the starting partition's shares: with pi fixed uniform (the paper's choice,
    # False) a small cluster's component spreads a 1/K share of the mass into its neighbours
    # (docs/RESULTS.md, "Shapes the defaults were not chosen on").
    learn_prior: bool = True
    # Beyond the paper, its future work (docs/BEYOND.md has what each one measured):
    depths: tuple[int, ...] | None = None  # a depth per component (overrides depth): uneven complexity
    share_weights: bool = False  # RealNVP conditioners shared by all components, plus a component embedding

    def __post_init__(self) -> None:
        object.__setattr__(self, "learn_prior", bool(self.learn_prior))  # links and flags give 0 or 1
        if self.depths is not None:  # JSON gives a list; keep the config hashable
            object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting to change."""
        if self.n_components < 1:
            raise ValueError(f"n_components must be at least 1, got {self.n_components}.")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1 (one coupling layer), got {self.depth}.")
        if self.depths is not None and (len(self.depths) != self.n_components or min(self.depths) < 1):
            raise ValueError(f"depths needs one depth of at least 1 per component ({self.n_components}), "
                             f"got {list(self.depths)}.")
        if self.share_weights and self.flow != "realnvp":
            raise ValueError("share_weights is built for RealNVP flows only; use flow='realnvp'.")
        if self.hidden < 1 or self.posterior_hidden < 1:
            raise ValueError("hidden widths must be at least 1.")
        if self.flow == "realnvp" and self.dim < 2:
            raise ValueError("RealNVP coupling needs at least 2 dimensions; use flow='maf' for 1-D data.")
        if self.flow not in ("realnvp", "maf"):
            raise ValueError(f"flow must be 'realnvp' or 'maf', got {self.flow!r}.")

    def to_dict(self) -> dict:
        return asdict(self)


class PointTerms(NamedTuple):
    """Everything the mixture says about some points (:meth:`VMoNFModel.explain`); ``(N, K)`` or ``(N,)``."""

    q: Tensor  # q(c|x), the variational posterior
    p: Tensor  # p(c|x), the exact posterior
    log_joint: Tensor  # log pi_k + log p(x|k)
    log_p: Tensor  # log p(x)
    elbo: Tensor  # ELBO(x) = E_q[log pi_c + log p(x|c)] + H[q]
    gap: Tensor  # log p(x) - ELBO(x), which is KL(q(c|x) || p(c|x)) >= 0


class ElboTerms(NamedTuple):
    """Per-point parts of the ELBO, each of shape ``(N,)``: ``elbo = loglik + logprior + entropy``."""

    elbo: Tensor
    loglik: Tensor  # E_q[log p(x|c)]
    logprior: Tensor  # E_q[log pi_c]
    entropy: Tensor  # H[q(c|x)]


class VMoNFModel(nn.Module):
    """K flows, a prior pi and a posterior network q(c|x), in one module.

    Data are standardised by fixed buffers ``shift`` and ``scale`` (set by :meth:`set_standardization`);
    every density this module returns is in the original data units.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        k, d = config.n_components, config.dim
        self.flows = ComponentFlows(k, d, config.depth, config.hidden, config.flow, depths=config.depths,
                                    shared=config.share_weights)
        h = config.posterior_hidden
        self.posterior = nn.Sequential(nn.Linear(d, h), _PosteriorTanh(), nn.Linear(h, h), _PosteriorTanh(),
                                       nn.Linear(h, k))
        self.prior_logits = nn.Parameter(torch.zeros(k), requires_grad=config.learn_prior)
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        # Components still in the mixture. A removed one (remove_components) gets pi = 0 and q = 0.
        self.register_buffer("active", torch.ones(k, dtype=torch.bool))
        # The same fact on the host, read by every step: asking the buffer (``bool(active.all())``) would wait
        # for a GPU to finish its queued work, every step. Kept in step by remove_components and state loads.
        self._all_active = True
        self.register_load_state_dict_post_hook(_after_load)

    def _note_active(self) -> None:
        self._all_active = bool(self.active.all())

    @property
    def all_active(self) -> bool:
        """Whether no component has been removed (read without a device synchronisation)."""
        return self._all_active

    @torch.no_grad()
    def set_standardization(self, shift: Tensor, scale: Tensor) -> None:
        """Fix the affine map ``(x - shift) / scale`` applied before the flows and q."""
        self.shift.copy_(shift)
        self.scale.copy_(scale.clamp_min(1e-8))

    def _standardize(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def _mask(self, logits: Tensor) -> Tensor:
        """Logits with removed components at -inf (nothing to do while all are active)."""
        return logits if self._all_active else logits.masked_fill(~self.active, -math.inf)

    @property
    def log_pi(self) -> Tensor:
        """Log mixture weights, shape ``(K,)``; ``-inf`` for removed components."""
        return F.log_softmax(self._mask(self.prior_logits), dim=0)

    @torch.no_grad()
    def remove_components(self, components) -> list[int]:
        """Take components out of the mixture (controlled annihilation); returns those removed now.

        A removed component keeps its weights but gets ``pi = 0`` and ``q = 0``: it never explains a
        point and is never sampled. At least one component always stays.
        """
        removed = []
        for c in sorted({int(c) for c in components}):
            if not 0 <= c < self.config.n_components:
                raise ValueError(f"component must be in [0, {self.config.n_components - 1}], got {c}.")
            if self.active[c] and int(self.active.sum()) > 1:
                self.active[c] = False
                removed.append(c)
        self._note_active()
        return removed

    @torch.no_grad()
    def usage(self, x: Tensor) -> Tensor:
        """Share of the points each component explains, ``mean_x q(c|x)``, shape ``(K,)`` (0 when removed)."""
        return self.posterior_log_probs(x).exp().mean(0)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log p(x | c=k)``, shape ``(N, K)``."""
        return self._component_log_prob_std(self._standardize(x))

    def posterior_log_probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """``log q(c|x)`` with logits divided by ``temperature``, shape ``(N, K)``; ``-inf`` for removed components."""
        return self._posterior_log_probs_std(self._standardize(x), temperature)

    # The two above on already standardised points: loss() standardises a batch once for both.
    def _component_log_prob_std(self, xs: Tensor) -> Tensor:
        return self.flows.log_prob(xs) - self.scale.log().sum()

    def _posterior_log_probs_std(self, xs: Tensor, temperature: float = 1.0) -> Tensor:
        logits = self.posterior(xs)
        return F.log_softmax(self._mask(logits if temperature == 1.0 else logits / temperature), dim=-1)

    def consistency_loss(self, x: Tensor, x_perturbed: Tensor, temperature: float = 1.0, *,
                         flows: bool = False) -> Tensor:
        """Mean ``KL(q(c|x) || q(c|x'))`` with ``x'`` a perturbed copy of ``x`` and ``q(c|x)`` held fixed.

        Zero when q ignores the perturbation; its gradient pulls q at the perturbed point toward q at
        the clean one (the consistency regularisation of the paper's future work).

        With ``flows=True`` it adds ``KL(q(c|x) || p(c|x'))``, ``p(c|x')`` the exact responsibilities of
        the mixture at the perturbed point: the gradient then reaches the flows and the prior, so the
        components themselves must agree on a point and its perturbed copy. On MNIST only this variant
        clustered better than a full-covariance GaussianMixture (docs/BEYOND.md).
        """
        log_joint = self.log_joint(x_perturbed) if flows else None
        log_q, log_q_perturbed = (self.posterior_log_probs(v, temperature) for v in (x, x_perturbed))
        return self._consistency(log_q, log_q_perturbed, log_joint)

    def _consistency(self, log_q: Tensor, log_q_perturbed: Tensor, log_joint_perturbed: Tensor | None) -> Tensor:
        target = log_q.detach()
        p = target.exp()
        neg_entropy = expect(p, target)
        kl = neg_entropy - expect(p, log_q_perturbed)
        if log_joint_perturbed is not None:
            kl = kl + neg_entropy - expect(p, torch.log_softmax(log_joint_perturbed, dim=-1))
        return kl.mean()

    def log_joint(self, x: Tensor) -> Tensor:
        """``log pi_k + log p(x|k)``, shape ``(N, K)``."""
        return self.component_log_prob(x) + self.log_pi

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(x) = logsumexp_k (log pi_k + log p(x|k))``, shape ``(N,)``."""
        return torch.logsumexp(self.log_joint(x), dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Exact posterior ``p(c|x)``, shape ``(N, K)``; rows sum to 1."""
        return torch.softmax(self.log_joint(x), dim=-1)

    @torch.no_grad()
    def explain(self, x: Tensor, temperature: float = 1.0) -> PointTerms:
        """q(c|x) (at ``temperature``), p(c|x), log pi_k + log p(x|k), log p(x), the ELBO and its gap at each
        point, from one pass (what the playground's point probe shows)."""
        log_q = self.posterior_log_probs(x, temperature)
        comp = self.component_log_prob(x)
        log_joint = comp + self.log_pi
        log_p = torch.logsumexp(log_joint, dim=-1)
        elbo = self._terms(log_q, comp).elbo
        return PointTerms(log_q.exp(), torch.softmax(log_joint, dim=-1), log_joint, log_p, elbo, log_p - elbo)

    def elbo_terms(self, x: Tensor, log_q: Tensor | None = None, temperature: float = 1.0, *,
                   component_log_prob: Tensor | None = None) -> ElboTerms:
        """The ELBO and its three parts per point. ``log_q`` overrides the posterior network, and
        ``component_log_prob`` (``log p(x|k)``, if already computed) the flows."""
        if log_q is None:
            log_q = self.posterior_log_probs(x, temperature)
        if component_log_prob is None:
            component_log_prob = self.component_log_prob(x)
        return self._terms(log_q, component_log_prob)

    def _terms(self, log_q: Tensor, comp: Tensor, y: Tensor | None = None) -> ElboTerms:
        """The ELBO's three parts per point, the one place it is written, from ``log q(c|x)`` and ``log p(x|c)``.

        A labelled point (``y >= 0``) takes ``q = onehot(y)``: its ELBO is ``log p(x|y) + log pi_y`` and its
        entropy 0, and no ELBO gradient reaches q there (:meth:`loss` trains q toward the label instead).
        """
        q = log_q.exp()
        # With every component present no value is -inf, so plain sums will do (and save a few operations a step).
        mean = _plain_expect if self._all_active else expect
        entropy = -mean(q, log_q)
        if y is not None:
            labelled = y >= 0
            q = torch.where(labelled[:, None], F.one_hot(y.clamp_min(0), q.shape[-1]).to(q.dtype), q)
            entropy = torch.where(labelled, torch.zeros_like(entropy), entropy)
        loglik, logprior = mean(q, comp), mean(q, self.log_pi.expand_as(q))
        return ElboTerms(loglik + logprior + entropy, loglik, logprior, entropy)

    def elbo(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Per-point ELBO, shape ``(N,)``; always ``<= log_prob(x)``."""
        return self.elbo_terms(x, temperature=temperature).elbo

    def loss(
        self, x: Tensor, y: Tensor | None = None, *, temperature: float = 1.0, label_weight: float = 1.0,
        fit_q: bool = True, entropy_bonus: float = 0.0, x_perturbed: Tensor | None = None,
        consistency: float = 0.0, consistency_flows: bool = True,
    ) -> Tensor:
        """Negative mean objective, the sum of named terms:

        - the ELBO (:meth:`_terms`; labelled points, ``y >= 0``, pin q to their label);
        - ``label_weight *`` the cross-entropy ``-log q(y|x)`` on labelled points, which trains q toward them;
        - ``entropy_bonus * H[q(c|x)]`` for unlabelled points (an entropy warm-up that keeps q soft, so every
          flow still sees some weight from nearby points);
        - ``consistency *`` :meth:`consistency_loss` ``(x, x_perturbed, flows=consistency_flows)``, with the
          clean and the perturbed batch evaluated in one pass through q and the flows (fewer, larger operations).

        ``fit_q=False`` holds q fixed (no gradient reaches the posterior network), so the flows fit
        the current assignment first; :class:`~vmonf.train.Trainer` uses it for a short warm-up.
        """
        n = len(x)
        if x_perturbed is not None and consistency:
            both = self._standardize(torch.cat([x, x_perturbed]))
            log_q_both = self._posterior_log_probs_std(both, temperature)
            comp_both = self._component_log_prob_std(both if consistency_flows else both[:n])
            log_q, comp = log_q_both[:n], comp_both[:n]
            log_joint_perturbed = comp_both[n:] + self.log_pi if consistency_flows else None
            consistent = self._consistency(log_q, log_q_both[n:], log_joint_perturbed)
        else:
            xs = self._standardize(x)
            log_q, comp = self._posterior_log_probs_std(xs, temperature), self._component_log_prob_std(xs)
            consistent = 0
        labels = y if y is not None and bool((y >= 0).any()) else None
        log_q = log_q if fit_q else log_q.detach()  # held: no term trains q
        terms = self._terms(log_q, comp, labels)
        objective = terms.elbo + entropy_bonus * terms.entropy if entropy_bonus else terms.elbo
        loss = -objective.mean()
        if labels is not None:
            known = labels >= 0
            loss = loss + label_weight * F.nll_loss(log_q[known], labels[known], reduction="sum") / n
        return loss + consistency * consistent if consistency and x_perturbed is not None else loss

    @torch.no_grad()
    def sample(
        self, n: int, component: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points from the mixture, or from one ``component``. Returns ``(x, c)``."""
        k = self.config.n_components
        device = self.shift.device
        if component is None:
            c = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=generator)
        else:
            if not 0 <= component < k:
                raise ValueError(f"component must be in [0, {k - 1}], got {component}.")
            if not self.active[component]:
                raise ValueError(f"component {component} was removed from the mixture.")
            c = torch.full((n,), component, dtype=torch.long, device=device)
        z = torch.randn(n, self.config.dim, generator=generator, device=device, dtype=self.shift.dtype)
        # Push every z through every flow (batched), then keep the chosen component's output.
        x_all, _ = self.flows.inverse(z.unsqueeze(0).expand(k, -1, -1).contiguous())  # (K, n, D)
        x = x_all[c, torch.arange(n, device=device)]
        return x * self.scale + self.shift, c

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def component_parameter_counts(self) -> tuple[list[int], int]:
        """Flow parameters of each component alone, and those all components share (see
        :meth:`~vmonf.flows.ComponentFlows.parameter_counts`)."""
        return self.flows.parameter_counts()


def _after_load(model: VMoNFModel, _keys) -> None:
    model._note_active()


def _plain_expect(q: Tensor, values: Tensor) -> Tensor:
    """``sum_k q_k values_k`` per row, for values without ``-inf`` (see :func:`expect`)."""
    return (q * values).sum(-1)


def expect(q: Tensor, values: Tensor) -> Tensor:
    """``sum_k q_k values_k`` per row, where a removed component (``q = 0``, value ``-inf``) adds 0, not NaN.

    The values are cleaned before the product: ``where`` after it would still send NaN gradients (0 * -inf).
    """
    return (q * torch.where(q > 0, values, torch.zeros_like(values))).sum(-1)


def gaussian_log_prob(x: Tensor) -> Tensor:
    """Standard normal log-density per row (an oracle for tests)."""
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)

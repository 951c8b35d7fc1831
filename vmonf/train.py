"""The step-wise :class:`Trainer`: initialisation, Adam on the ELBO, divergence guard, best-state keeping."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from vmonf.model import VMoNFModel, expect
from vmonf.snapshot import append_bounded

#: Evaluation rows a Trainer keeps (even); beyond it every second one is dropped (a long app run grew ~15 MB/h).
MAX_HISTORY = 10_000

InitMethod = Literal["auto", "kmeans", "gmm", "spectral", "ward", "labels", "random"]


class DivergenceError(ValueError):
    """Training produced NaN or inf; the model has been rolled back to its last finite state."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every default is what worked on the toy sets on a 2-core CPU (see FINDINGS)."""

    lr: float = 3e-3  # Adam learning rate; above ~0.05 training tends to diverge
    batch_size: int = 512  # points per step (capped at the data size)
    seed: int = 0  # seeds initialisation, mini-batches and the k-means start
    init: InitMethod = "auto"  # how components start; see :func:`initial_partition`
    init_steps: int = 150  # auto: steps each candidate start trains before the best is kept
    q_pretrain_steps: int = 200  # steps that fit q(c|x) to the starting partition
    q_hold_steps: int = 200  # first steps train the flows with q held at that partition (see Trainer.step)
    temperature_decay: float = 0.0  # the paper's T = exp(-rate * step) on q's logits; 0 disables
    # Extra weight on H[q] after the q hold, fading to 0 over entropy_warmup_steps. Off by default:
    # 2.0 raised pinwheel-5 ARI (0.94 -> 0.96 median over 4 seeds) but broke moons (ARI 1.0 -> 0.07-0.79).
    entropy_warmup: float = 0.0
    entropy_warmup_steps: int = 1000  # steps over which that extra weight fades
    label_weight: float = 1.0  # weight of the cross-entropy on q for labelled points
    weight_decay: float = 0.0  # Adam weight decay
    grad_clip: float = 100.0  # global gradient-norm clip; guards against one wild batch
    eval_every: int = 50  # steps between validation evaluations
    keep_best: bool = True  # remember the state with the best validation log-likelihood
    rollback_every: int = 25  # steps between copies of the last finite state (divergence rollback)
    # Beyond the paper (issue 7; docs/BEYOND.md has what each one measured):
    # Weight of KL(q(c|x) || q(c|x')) (and || p(c|x'), see consistency_flows) for perturbed copies x' of x;
    # 0 disables (the paper's plain objective). On by default because it made toy clustering reliable
    # across seeds: pinwheel-5 ARI >= 0.95 in 10/10 seeds against 7/10 without, moons, pinwheel-3 and
    # two circles as good or better (bench/quality.py, docs/RESULTS.md); a step costs ~1.8x as much.
    consistency: float = 5.0
    consistency_noise: float = 0.1  # x' = x + this * std * N(0, I) when no perturbed copies are given
    consistency_flows: bool = True  # ... and KL(q(c|x) || p(c|x')): the flows must agree too (see model)
    prune_below: float = 0.0  # remove components whose share of the points, mean q(c|x), falls below this
    prune_every: int = 100  # steps between those checks (after the q hold)
    # Annihilation pressure: adds this x H(pi) to the loss (with a learned prior), so the mixture weights
    # concentrate and redundant components shrink toward the pruning threshold; 0 disables.
    weight_entropy: float = 0.0

    def validate(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.init not in get_args(InitMethod):
            raise ValueError(f"init must be one of {', '.join(get_args(InitMethod))}; got {self.init!r}.")
        if min(self.consistency, self.consistency_noise, self.weight_entropy) < 0:
            raise ValueError("consistency, consistency_noise and weight_entropy must be 0 or more.")
        if not 0 <= self.prune_below < 1:
            raise ValueError(f"prune_below is a share of the points, in [0, 1); got {self.prune_below}.")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but no CUDA GPU is available; use 'auto' or 'cpu'.")
    return dev


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks instead of handing them back to the OS after every step.

    A training step allocates and frees the same ~1 MB activations again and again. By default glibc
    returns such blocks to the OS (``munmap``, or trimming the top of the heap) and the next step
    faults the pages back in: with 10 components that cost 10-25 % of every step (``bench/speed.py``
    shows both). This raises the mmap threshold to 32 MB and the trim threshold to 256 MB, for the
    whole process and once; memory then stays at its peak instead of shrinking between steps.
    Returns ``False`` (and changes nothing) where there is no glibc ``mallopt``, e.g. on macOS or Windows.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))
    return _ALLOCATOR_TUNED


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


def initial_partition(x: np.ndarray, k: int, method: str, seed: int, y: np.ndarray | None = None) -> np.ndarray | None:
    """A starting hard assignment of points to components, or ``None`` for the plain random start.

    Why: identity flows with a random q often let one component swallow the data or leave wrong
    splits (pinwheel-5 stuck at ARI 0.4 on 3/3 seeds). Starting each component at a k-means cluster's
    location and scale, with q pre-trained on that partition, works far better, but k-means cuts
    curved clusters (moons) in half, where a nearest-neighbour spectral partition, or Ward linkage
    restricted to a k-NN graph, follows them. No start wins everywhere, so ``auto`` tries all three
    and keeps the highest validation ELBO. With labels, ``labels`` spreads them over a k-NN graph.
    """

    if method == "random" or k == 1:
        return None
    with warnings.catch_warnings():  # sklearn warns about disconnected k-NN graphs; the partition is still usable
        warnings.simplefilter("ignore")
        return _partition(x, k, method, seed, y)


def _partition(x: np.ndarray, k: int, method: str, seed: int, y: np.ndarray | None) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
    from sklearn.neighbors import kneighbors_graph

    if method == "kmeans":
        return KMeans(k, n_init=4, random_state=seed).fit_predict(x)
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed).fit(x).predict(x)
    if method == "spectral":
        n_neighbors = int(min(max(20, len(x) // 50), len(x) - 1))
        sc = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=n_neighbors, random_state=seed,
                                assign_labels="cluster_qr")
        return sc.fit_predict(x)
    if method == "ward":
        graph = kneighbors_graph(x, n_neighbors=min(10, len(x) - 1), include_self=False)
        return AgglomerativeClustering(k, connectivity=graph, linkage="ward").fit_predict(x)
    if method == "labels":
        from sklearn.semi_supervised import LabelSpreading

        if y is None or not (y >= 0).any():
            raise ValueError("init='labels' needs some labelled points (y >= 0).")
        return LabelSpreading(kernel="knn", n_neighbors=min(10, len(x) - 1), max_iter=100).fit(x, y).transduction_
    raise ValueError(f"Unknown init method {method!r}.")


@torch.no_grad()
def evaluation_row(model: VMoNFModel, x_val: Tensor | None) -> dict:
    """The mixture weights and, on held-out points ``x_val``, the ELBO, its three parts and log p(x)."""
    row = {"pi": model.log_pi.exp().cpu().tolist()}
    if x_val is not None:
        terms = model.elbo_terms(x_val)
        ll = model.log_prob(x_val)
        row.update(val_elbo=float(terms.elbo.mean()), val_loglik=float(ll.mean()), val_loglik_median=float(ll.median()),
                   val_expected_loglik=float(terms.loglik.mean()), val_expected_logprior=float(terms.logprior.mean()),
                   val_entropy=float(terms.entropy.mean()))
    return row


class Trainer:
    """Trains a :class:`VMoNFModel` one Adam step at a time on fixed data.

    ``step()`` is the only thing that changes the model; the UI, the CLI and the estimator all call it.

    Args:
        model: the mixture; already standardised to ``x`` (see :meth:`VMoNFModel.set_standardization`).
        x: training data ``(N, D)``.
        y: labels ``(N,)``, ``-1`` for unlabelled points, or ``None``.
        config: training settings.
        x_val: held-out data for validation log-likelihood and best-state keeping.
        x_perturbed: ``(A, N, D)``: ``A`` perturbed copies of ``x`` for the consistency term (e.g. shifted
            and rotated images in feature space); without them it perturbs with Gaussian noise.
    """

    def __init__(self, model: VMoNFModel, x: Tensor, y: Tensor | None = None, config: TrainConfig | None = None,
                 x_val: Tensor | None = None, x_perturbed: Tensor | None = None):
        self.config = config or TrainConfig()
        self.config.validate()
        torch.set_flush_denormal(True)  # without it, speed decayed ~2x over a few thousand steps
        keep_freed_memory()
        self.model, self.x, self.x_val = model, x, x_val
        if x_perturbed is not None and x_perturbed.shape[1:] != x.shape:
            raise ValueError(f"x_perturbed must be (copies, {len(x)}, {x.shape[1]}); got {tuple(x_perturbed.shape)}.")
        self.x_perturbed = x_perturbed
        self.pruned: list[tuple[int, int]] = []  # (step, component) for every component removed
        self.y = y if y is not None and bool((y >= 0).any()) else None
        self.generator = torch.Generator(device=x.device).manual_seed(self.config.seed)
        self.optimizer = make_adam(model.parameters(), x.device, lr=self.config.lr,
                                   weight_decay=self.config.weight_decay)
        self.step_count = 0
        self.q_hold_until = 0  # set by initialize(): steps before which q is held fixed
        self.history: list[dict] = []  # one row per evaluation: step, elbo, val_loglik, pi, seconds
        self.best_val = -math.inf
        self.best_state: dict | None = None
        self.best_step = 0
        self.train_seconds = 0.0
        self.last_loss = math.nan
        self._good_state = self._copy_state()

    # -- state ------------------------------------------------------------------------------------
    def _copy_state(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()), "opt": copy.deepcopy(self.optimizer.state_dict())}

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["opt"])

    def entropy_bonus(self) -> float:
        c = self.config
        if not c.entropy_warmup:
            return 0.0
        since = self.step_count - self.q_hold_until
        return c.entropy_warmup * max(0.0, 1.0 - max(since, 0) / max(c.entropy_warmup_steps, 1))

    def temperature(self) -> float:
        return max(math.exp(-self.config.temperature_decay * self.step_count), 1e-2)

    # -- initialisation ---------------------------------------------------------------------------
    def initialize(self, partition: np.ndarray | None) -> None:
        """Start component k at the location and scale of the points in ``partition == k``, and fit q to it.

        ``None`` keeps the plain start: identity flows over the standardised data and a random q.
        """
        if partition is None:
            return
        model = self.model
        k = model.config.n_components
        xs = model._standardize(self.x)
        part = torch.as_tensor(partition, device=xs.device, dtype=torch.long)
        loc, scale = xs.new_zeros(k, xs.shape[1]), xs.new_ones(k, xs.shape[1])
        for c in range(k):  # K is small; runs once
            members = xs[part == c]
            if len(members) >= 2:
                loc[c], scale[c] = members.mean(0), members.std(0).clamp_min(0.05)
        model.flows.affine.initialize(loc, scale)
        self.q_hold_until = self.step_count + self.config.q_hold_steps
        opt = make_adam(model.posterior.parameters(), xs.device, lr=1e-2)
        for _ in range(self.config.q_pretrain_steps):
            idx = torch.randint(len(xs), (min(self.config.batch_size, len(xs)),), generator=self.generator,
                                device=xs.device)
            loss = torch.nn.functional.nll_loss(model.posterior_log_probs(self.x[idx]), part[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self._good_state = self._copy_state()

    # -- training ---------------------------------------------------------------------------------
    def step(self) -> float:
        """One Adam step on a random mini-batch. Returns the mini-batch loss (negative objective).

        Raises:
            DivergenceError: the loss or a gradient was not finite. The model and optimiser are
                rolled back to the last finite state, which is at most ``rollback_every`` steps old.
        """
        t0 = time.perf_counter()
        c = self.config
        n = len(self.x)
        idx = torch.randint(n, (min(c.batch_size, n),), generator=self.generator, device=self.x.device)
        y = None if self.y is None else self.y[idx]
        # While q is held, each flow fits the points the start gave it before q may move them; without
        # this hold, q drifted from a 99 %-correct label-spreading start to ~92 % in 300 steps (two circles).
        hold = self.step_count < self.q_hold_until
        consistent = c.consistency and not hold and self.model.config.n_components > 1  # K=1: always 0
        loss = self.model.loss(self.x[idx], y, temperature=self.temperature(), label_weight=c.label_weight,
                               fit_q=not hold, entropy_bonus=self.entropy_bonus(),
                               x_perturbed=self.perturb(idx) if consistent else None,
                               consistency=c.consistency if consistent else 0.0, consistency_flows=c.consistency_flows)
        if c.weight_entropy:
            log_pi = self.model.log_pi
            loss = loss - c.weight_entropy * expect(log_pi.exp(), log_pi)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            self._restore(self._good_state)
            raise DivergenceError(
                f"Training diverged at step {self.step_count} (loss or gradient became NaN/inf). "
                f"The model was rolled back to its last finite state; lower the learning rate (now {c.lr:g})."
            )
        self.optimizer.step()
        self.step_count += 1
        self.last_loss = float(loss.detach())
        if self.step_count % c.rollback_every == 0:
            self._good_state = self._copy_state()
        if c.prune_below and self.step_count > self.q_hold_until and self.step_count % c.prune_every == 0:
            self.prune(c.prune_below)
        if self.x_val is not None and self.step_count % c.eval_every == 0:
            self.evaluate()
        self.train_seconds += time.perf_counter() - t0
        return self.last_loss

    def perturb(self, idx: Tensor) -> Tensor:
        """Perturbed copies of the points ``x[idx]``: one of the given copies each, or Gaussian noise."""
        if self.x_perturbed is not None:
            which = torch.randint(len(self.x_perturbed), (len(idx),), generator=self.generator, device=idx.device)
            return self.x_perturbed[which, idx]
        noise = torch.randn(self.x[idx].shape, generator=self.generator, device=self.x.device, dtype=self.x.dtype)
        return self.x[idx] + self.config.consistency_noise * self.model.scale * noise

    @torch.no_grad()
    def prune(self, threshold: float) -> list[int]:
        """Remove components whose share of the training points (mean q(c|x)) is below ``threshold``.

        Returns the components removed. The best-state record restarts, since a state from before the
        removal describes another mixture.
        """
        usage = self.model.usage(self.x[:4096])
        return self.remove(torch.nonzero(self.model.active & (usage < threshold)).flatten().tolist())

    def remove(self, components) -> list[int]:
        """Remove components (the app's "remove component" action, and :meth:`prune`); returns those removed.

        A component that labelled points belong to stays: their ELBO term is pinned to it.
        """
        keep = set() if self.y is None else set(self.y[self.y >= 0].unique().tolist())
        removed = self.model.remove_components([c for c in components if int(c) not in keep])
        if removed:
            self.pruned += [(self.step_count, c) for c in removed]
            self.best_val, self.best_state = -math.inf, None
            self._good_state = self._copy_state()
        return removed

    def run(self, n_steps: int) -> Trainer:
        """Take ``n_steps`` steps."""
        for _ in range(n_steps):
            self.step()
        return self

    def progress(self) -> dict:
        """Where training stands: step, last mini-batch loss, temperature, seconds spent training."""
        return {"step": self.step_count, "loss": self.last_loss, "temperature": self.temperature(),
                "seconds": self.train_seconds}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Append a history row: training ELBO on a batch, validation ELBO and log-likelihood, pi."""
        row = {**self.progress(), **evaluation_row(self.model, self.x_val)}
        if self.config.keep_best and row.get("val_loglik", -math.inf) > self.best_val:
            self.best_val, self.best_step = row["val_loglik"], self.step_count
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.history = append_bounded(self.history, row, MAX_HISTORY)
        return row

    def restore_best(self) -> None:
        """Load the state with the best validation log-likelihood seen, if any."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


@dataclass
class FitResult:
    """What :func:`fit_model` returns besides the trained model."""

    trainer: Trainer
    init_method: str
    candidates: dict[str, float] = field(default_factory=dict)  # init method -> validation ELBO after init_steps
    skipped: dict[str, str] = field(default_factory=dict)  # init method -> the earlier one it duplicated


@dataclass(frozen=True)
class StartEvent:
    """Progress of :func:`choose_start`, for a caller that shows it as it happens (the app's live chart).

    ``stage`` is ``"partition"`` (a candidate's starting partition exists; its trainer is not initialised
    yet), ``"initialized"`` (components and q set from it, step 0), ``"step"`` (after each training step of
    a candidate) or ``"scored"`` (the candidate's validation ELBO is known).
    """

    stage: Literal["partition", "initialized", "step", "scored"]
    candidate: str  # the init method being tried
    index: int  # 1-based, of ``total``
    total: int
    trainer: Trainer
    partition: np.ndarray | None = None  # the hard assignment of every training point (stage "partition")
    score: float | None = None  # validation ELBO (stage "scored")


#: Candidate partitions that agree this closely (adjusted Rand index) are one candidate: training the
#: second only re-measures noise. On 50 runs (10 shapes x 5 seeds) it skipped 29 of 150 candidates and
#: never changed the kept start's quality (docs/RESULTS.md, "Choosing the initialisation").
DUPLICATE_ARI = 0.98


def start_candidates(method: str, labelled: bool) -> list[str]:
    """The init methods :func:`choose_start` tries for ``method`` (``auto``: several)."""
    if method != "auto":
        return [method]
    return ["labels"] if labelled else ["kmeans", "spectral", "ward"]


def choose_start(make_trainer, x_np: np.ndarray, y_np: np.ndarray | None, k: int, config: TrainConfig,
                 on_event=None) -> FitResult:
    """Build a trainer from the best starting partition (see :func:`initial_partition`).

    ``make_trainer()`` returns a fresh, identically seeded :class:`Trainer`. With ``init="auto"``,
    candidate starts each train ``init_steps`` steps and the highest validation ELBO wins; a candidate
    whose partition duplicates an earlier one (:data:`DUPLICATE_ARI`) is skipped. With labels, the
    label-spreading start is used directly.

    ``on_event(StartEvent)`` is called as the choice goes on; returning ``True`` cuts it short: the
    candidate in progress is scored as it is and the best of those scored so far is kept.
    """
    from sklearn.metrics import adjusted_rand_score

    labelled = y_np is not None and bool((y_np >= 0).any())
    candidates = start_candidates(config.init, labelled)[: 1 if k == 1 else None]  # K=1: nothing to choose
    total = len(candidates)

    def notify(stage: str, name: str, index: int, trainer: Trainer, **kw) -> bool:
        return bool(on_event and on_event(StartEvent(stage, name, index, total, trainer, **kw)))

    if total == 1:
        trainer = make_trainer()
        partition = initial_partition(x_np, k, candidates[0], config.seed, y_np)
        if partition is not None:
            notify("partition", candidates[0], 1, trainer, partition=partition)
        trainer.initialize(partition)
        notify("initialized", candidates[0], 1, trainer)
        return FitResult(trainer, candidates[0])
    scores: dict[str, float] = {}
    partitions: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    best: Trainer | None = None
    cut = False
    for index, name in enumerate(candidates, 1):
        partition = initial_partition(x_np, k, name, config.seed, y_np)
        twin = next((other for other, p in partitions.items() if adjusted_rand_score(p, partition) >= DUPLICATE_ARI),
                    None)
        if twin is not None:
            skipped[name] = twin
            continue
        partitions[name] = partition
        trainer = make_trainer()
        cut = notify("partition", name, index, trainer, partition=partition)
        try:
            trainer.initialize(partition)
            cut = notify("initialized", name, index, trainer) or cut
            while not cut and trainer.step_count < config.init_steps:
                trainer.step()
                cut = notify("step", name, index, trainer)
        except DivergenceError:
            continue
        with torch.no_grad():
            xv = trainer.x_val if trainer.x_val is not None else trainer.x
            scores[name] = float(trainer.model.elbo(xv).mean())
        if best is None or scores[name] >= max(scores.values()):
            best, chosen = trainer, name
        cut = notify("scored", name, index, trainer, score=scores[name]) or cut
        if cut:
            break
    if best is None:
        raise DivergenceError("Every starting point diverged; lower the learning rate.")
    return FitResult(best, chosen, scores, skipped)


def split_indices(n: int, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, as every front end splits (so baselines can use the same split)."""
    n_val = int(val_fraction * n) if n >= 20 else 0
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


def start_training(x: np.ndarray, labels: np.ndarray | None, model_config, config: TrainConfig, *,
                   device: torch.device, val_fraction: float = 0.1, x_perturbed: np.ndarray | None = None,
                   on_event=None) -> FitResult:
    """Split off validation points, standardise, build the model and pick its start (:func:`choose_start`).

    The one way every front end (estimator, app worker, CLI) sets up training. ``labels`` holds ``-1``
    for unlabelled points, or is ``None``. ``x_perturbed`` (copies, n, d) feeds the consistency term.
    The split and the model initialisation follow ``config.seed``. ``on_event`` sees the start being chosen
    (:func:`choose_start`); its partitions cover every row of ``x``, ``-1`` for the held-out ones.
    """
    tr, va = split_indices(len(x), config.seed, val_fraction)
    xp = None if x_perturbed is None else torch.as_tensor(np.asarray(x_perturbed)[:, tr], device=device)
    xt = torch.as_tensor(x[tr], device=device)
    xv = torch.as_tensor(x[va], device=device) if len(va) else None
    lab = labels[tr] if labels is not None and (labels >= 0).any() else None
    yt = None if lab is None else torch.as_tensor(lab, device=device)
    shift = xt.mean(0)
    scale = xt.std(0) if len(xt) > 1 else torch.ones_like(shift)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))

    def make_trainer() -> Trainer:
        torch.manual_seed(config.seed)
        model = VMoNFModel(model_config).to(device)
        model.set_standardization(shift, scale)
        return Trainer(model, xt, yt, config, x_val=xv, x_perturbed=xp)

    def relay(event: StartEvent) -> bool:
        if event.partition is None:
            return on_event(event)
        full = np.full(len(x), -1, dtype=np.int64)
        full[tr] = event.partition
        return on_event(dataclasses.replace(event, partition=full))

    x_std = ((xt - shift) / scale).cpu().numpy()  # partitions are found in standardised units
    return choose_start(make_trainer, x_std, lab, model_config.n_components, config, relay if on_event else None)

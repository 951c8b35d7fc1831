"""The step-wise :class:`Trainer`: initialisation, Adam on the ELBO, divergence guard, best-state keeping."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from vmonf.history import append_bounded
from vmonf.model import VMoNFModel, expect
from vmonf.optim import make_adam
from vmonf.perf import flushing_denormals

#: Evaluation rows a Trainer keeps (even); beyond it every second one is dropped (a long app run grew ~15 MB/h).
MAX_HISTORY = 10_000

InitMethod = Literal["auto", "kmeans", "gmm", "spectral", "local", "ncut", "ward", "labels", "random"]
StartChoice = Literal["cut", "elbo"]


class DivergenceError(ValueError):
    """Training produced NaN or inf; the model has been rolled back to its last finite state."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every default is what worked on the toy sets on a 2-core CPU (docs/RESULTS.md)."""

    lr: float = 3e-3  # Adam learning rate; above ~0.05 training tends to diverge
    batch_size: int = 512  # points per step (capped at the data size)
    seed: int = 0  # seeds initialisation, mini-batches and the k-means start
    init: InitMethod = "auto"  # how components start; see :func:`vmonf.starts.initial_partition`
    # How auto picks among its candidate partitions: "cut", the one that cuts the data's neighbourhood graph
    # most cleanly (no training, ~0.1 s); "elbo", each trains init_steps steps and the best validation ELBO
    # is kept (the older rule: ~10 s in the app, and it prefers compact parts that cut through curved
    # clusters; docs/RESULTS.md, "Choosing the initialisation").
    start_choice: StartChoice = "cut"
    init_steps: int = 150  # start_choice "elbo": steps each candidate start trains before the best is kept
    q_pretrain_steps: int = 200  # steps that fit q(c|x) to the starting partition
    q_hold_steps: int = 200  # first steps train the flows with q held at that partition (see Trainer.step)
    # The paper's T = exp(-rate * step) on q's logits; 0 disables. Evaluation (curves, frames, the probe)
    # uses the same T as training at that step (see evaluation_row).
    temperature_decay: float = 0.0
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
    # Beyond the paper, its future work (docs/BEYOND.md has what each one measured):
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
        if self.start_choice not in get_args(StartChoice):
            raise ValueError(f"start_choice must be one of {', '.join(get_args(StartChoice))}; "
                             f"got {self.start_choice!r}.")
        if min(self.consistency, self.consistency_noise, self.weight_entropy) < 0:
            raise ValueError("consistency, consistency_noise and weight_entropy must be 0 or more.")
        if not 0 <= self.prune_below < 1:
            raise ValueError(f"prune_below is a share of the points, in [0, 1); got {self.prune_below}.")

    def to_dict(self) -> dict:
        return asdict(self)


def chunked(fn, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``fn`` over ``x`` in chunks: 1024 points per chunk evaluated an 80x80 grid ~1.5x faster than 4096."""
    return torch.cat([fn(x[i:i + chunk]) for i in range(0, len(x), chunk)])


@torch.no_grad()
def temperature_at(decay: float, step: int) -> float:
    """The paper's temperature on q's logits, ``T = exp(-decay * step)``, kept at 0.01 or above."""
    return max(math.exp(-decay * step), 1e-2)


@torch.no_grad()
def evaluation_row(model: VMoNFModel, x_val: Tensor | None, temperature: float = 1.0) -> dict:
    """The mixture weights and, on held-out points ``x_val``, the ELBO, its three parts and log p(x).

    The ELBO is that of q at ``temperature``, the one training uses at this step (``TrainConfig.temperature_decay``):
    the network's logits are trained divided by it, so q at 1 would be another, softer posterior than the one
    the curve is meant to show. log p(x) and the clusters (argmax) do not depend on it.
    """
    row = {"pi": model.log_pi.exp().cpu().tolist()}
    if x_val is not None:
        comp = model.component_log_prob(x_val)  # once, for both: the flows are most of a row's cost
        terms = model.elbo_terms(x_val, temperature=temperature, component_log_prob=comp)
        ll = torch.logsumexp(comp + model.log_pi, dim=-1)
        row.update(val_elbo=float(terms.elbo.mean()), val_loglik=float(ll.mean()), val_loglik_median=float(ll.median()),
                   val_expected_loglik=float(terms.loglik.mean()), val_expected_logprior=float(terms.logprior.mean()),
                   val_entropy=float(terms.entropy.mean()))
    return row


#: A best-state score below every real one: (accuracy on held-out labels, validation log-likelihood).
NO_SCORE = (-math.inf, -math.inf)


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
        y_val: labels of ``x_val`` (``-1`` unlabelled), never trained on. Where some are given, the best
            state is the one that classifies them best (then the best validation log-likelihood), and the
            start itself is one of the candidates: a semi-supervised fit never ends less accurate on them
            than the partition it started from.
    """

    def __init__(self, model: VMoNFModel, x: Tensor, y: Tensor | None = None, config: TrainConfig | None = None,
                 x_val: Tensor | None = None, x_perturbed: Tensor | None = None, y_val: Tensor | None = None):
        self.config = config or TrainConfig()
        self.config.validate()
        self.model, self.x, self.x_val = model, x, x_val
        self._set_checks(x_val, y_val)
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
        self.best_val = NO_SCORE  # the best state's score (see _consider)
        self.best_state: dict | None = None
        self.best_step = 0
        self.train_seconds = 0.0
        self.last_loss = math.nan
        self._good_state = self._copy_state()

    def set_label(self, row: int, label: int) -> int:
        """Reveal the label of training point ``row`` (``-1`` takes it back): from the next step its q is pinned
        to it and the label's cross-entropy trains q (semi-supervised, as labels given at the start).
        Returns how many training points are labelled now."""
        k = self.model.config.n_components
        if not -1 <= int(label) < k:
            raise ValueError(f"label must be a component from 0 to {k - 1}, or -1; got {label}.")
        if not 0 <= int(row) < len(self.x):
            raise ValueError(f"row must be a training point, 0 to {len(self.x) - 1}; got {row}.")
        if self.y is None:
            self.y = torch.full((len(self.x),), -1, dtype=torch.long, device=self.x.device)
        self.y[int(row)] = int(label)
        count = int((self.y >= 0).sum())
        if count == 0:
            self.y = None
        return count

    def set_data(self, x: Tensor, y: Tensor | None = None, x_val: Tensor | None = None) -> None:
        """Train on other points from the next step on (the playground's edited points), keeping the model, the
        optimiser's moments and the step count: the mixture goes on from where it is.

        The model's standardisation stays as it was (it is part of the model, and moving it would move every
        flow). Perturbed copies given at construction described the old points, so the consistency term
        perturbs with noise from now on. The best-state record restarts: its score was on other points.
        """
        if x.ndim != 2 or x.shape[1] != self.model.config.dim or len(x) < 1:
            raise ValueError(f"x must be (N >= 1, {self.model.config.dim}); got {tuple(x.shape)}.")
        if y is not None and y.shape != (len(x),):
            raise ValueError(f"y must hold one label per point ({len(x)}); got {tuple(y.shape)}.")
        self.x, self.x_val, self.x_perturbed = x, x_val, None
        self._set_checks(x_val, None)  # held-out labels described the old points
        self.y = y if y is not None and bool((y >= 0).any()) else None
        self.best_val, self.best_state = NO_SCORE, None

    def _set_checks(self, x_val: Tensor | None, y_val: Tensor | None) -> None:
        """Keep the labelled validation points (see ``y_val``), if any."""
        self.x_check = self.y_check = None
        if x_val is not None and y_val is not None and bool((y_val >= 0).any()):
            keep = y_val >= 0
            self.x_check, self.y_check = x_val[keep], y_val[keep]

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
        return temperature_at(self.config.temperature_decay, self.step_count)

    # -- initialisation ---------------------------------------------------------------------------
    def initialize(self, partition: np.ndarray | None) -> None:
        """Start component k at the location and scale of the points in ``partition == k``, and fit q to it.

        Learned mixture weights (``learn_prior``) start at the parts' shares of the points, as a Gaussian
        mixture's do: a weight that starts uniform lets a small part's component reach into a big one while
        the weights are still learning. ``None`` keeps the plain start: identity flows over the standardised
        data and a random q.
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
        if model.prior_logits.requires_grad:
            with torch.no_grad():
                share = torch.bincount(part[part >= 0], minlength=k).to(xs.dtype) + 1.0
                model.prior_logits.copy_((share / share.sum()).log())
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
        if self.y_check is not None:  # the start is a candidate for the best state
            with torch.no_grad():
                self._consider(evaluation_row(self.model, self.x_val, self.temperature()) | self._check_row())

    def start_state(self) -> dict[str, np.ndarray]:
        """What :meth:`initialize` set, as plain arrays: the model's weights and buffers (``model/<name>``),
        the mini-batch generator's state and the q hold. :meth:`set_start_state` on a trainer built the same way
        (same model config, data and seed) makes it the one :meth:`initialize` would have made, bit for bit:
        :mod:`vmonf.startmemo` replays a start chosen once. Only for a start without labels, whose best-state
        bookkeeping has nothing to record yet."""
        state = {f"model/{k}": v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        state["generator"] = self.generator.get_state().numpy()
        state["q_hold_until"] = np.asarray(self.q_hold_until)
        return state

    def set_start_state(self, state: dict[str, np.ndarray]) -> None:
        """Load a :meth:`start_state` (a ``KeyError`` or ``RuntimeError`` if it is another model's)."""
        model_state = {k[len("model/"):]: torch.from_numpy(np.array(v)) for k, v in state.items()
                       if k.startswith("model/")}
        self.model.load_state_dict(model_state, strict=True)
        self.generator.set_state(torch.from_numpy(np.array(state["generator"], dtype=np.uint8)))
        self.q_hold_until = int(state["q_hold_until"])
        self._good_state = self._copy_state()

    # -- training ---------------------------------------------------------------------------------
    def step(self) -> float:
        """One Adam step on a random mini-batch. Returns the mini-batch loss (negative objective).

        Denormal floats are flushed to zero during the step (:func:`vmonf.perf.flushing_denormals`).

        Raises:
            DivergenceError: the loss or a gradient was not finite. The model and optimiser are
                rolled back to the last finite state, which is at most ``rollback_every`` steps old.
        """
        with flushing_denormals():
            return self._step()

    def _step(self) -> float:
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
            self.best_val, self.best_state = NO_SCORE, None
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
        row = {**self.progress(), **evaluation_row(self.model, self.x_val, self.temperature()), **self._check_row()}
        self._consider(row)
        self.history = append_bounded(self.history, row, MAX_HISTORY)
        return row

    def _check_row(self) -> dict:
        """Accuracy on the labelled validation points (``val_label_acc``), where there are some."""
        if self.y_check is None:
            return {}
        pred = self.model.responsibilities(self.x_check).argmax(1)
        return {"val_label_acc": float((pred == self.y_check).float().mean())}

    def _consider(self, row: dict) -> None:
        """Keep the model's state if ``row`` scores it above the best so far: by accuracy on the labelled
        validation points where there are some, then by validation log-likelihood."""
        score = (row.get("val_label_acc", 0.0), row.get("val_loglik", -math.inf))
        if self.config.keep_best and score > self.best_val:
            self.best_val, self.best_step = score, self.step_count
            self.best_state = copy.deepcopy(self.model.state_dict())

    def restore_best(self) -> None:
        """Load the best state seen (see :meth:`_consider`), if any."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

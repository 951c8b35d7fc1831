"""``VMoNF``: a scikit-learn-style estimator over :class:`VMoNFModel` and :class:`Trainer`.

>>> from vmonf import VMoNF
>>> from vmonf.data import make_toy
>>> X, y = make_toy("gaussian mixture", 400, seed=0)
>>> est = VMoNF(3, depth=2, hidden=16, max_steps=20, seed=0).fit(X)
>>> est.predict_proba(X).shape
(400, 3)
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import NotFittedError

from vmonf.checkpoint import load_checkpoint, save_checkpoint
from vmonf.devices import resolve_device
from vmonf.flows import FlowType
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.starts import start_training
from vmonf.train import InitMethod, StartChoice, TrainConfig, chunked

__all__ = ["PAPER_RECIPE", "RECIPES", "VMoNF"]

#: The method as published (Pires & Figueiredo, ESANN 2020), what ``recipe="paper"`` changes. Each entry is
#: against the paper: a random start (identity flows and a freshly initialised q; no starting partition, so
#: no per-component location and scale, no q pre-fit and no q hold), a fixed uniform pi, the temperature
#: T = exp(-1e-3 * step) on q's logits, RealNVP with 8 coupling blocks, the plain ELBO (no consistency
#: term) and the last state, not the best one on a validation split. Left as in the library, and why:
#: the conditioners are tanh MLPs with a bounded log-scale, the safe form of the affine coupling (the
#: paper does not specify its networks); there is no batch normalisation between blocks, because a batch
#: holds every component's points, so each flow's batch statistics would be of the whole data, not of the
#: points its component explains, and standardising toward the whole data works against the clustering;
#: images take ``flow="maf"`` (the paper's MADE blocks) when given explicitly.
PAPER_RECIPE = {"init": "random", "temperature_decay": 1e-3, "consistency": 0.0, "depth": 8, "learn_prior": False}
#: The named recipes; each maps an estimator setting to its value (``"default"`` changes nothing).
RECIPES: dict[str, dict] = {"default": {}, "paper": PAPER_RECIPE}


def _check_array(X, *, name: str = "X", dim: int | None = None) -> np.ndarray:
    """Return ``X`` as a finite float32 array of shape ``(n, d)`` or raise a ``ValueError`` saying what is wrong."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; it contains values that are not numbers ({exc}).") from exc
    if arr.ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got a 1-D array. Use X.reshape(-1, 1) "
                         "for a single feature.")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values in {bad} row(s); remove or impute them.")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the model was fitted on {dim}.")
    return arr.astype(np.float32)


def _check_labels(y, n: int, k: int) -> np.ndarray:
    """Labels in ``[-1, k-1]`` (``-1`` = unlabelled), one per sample."""
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y must have one label per sample, shape ({n},); got {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr.astype(float))) or not np.all(arr == np.round(arr)):
            raise ValueError("y must hold integer labels (-1 for unlabelled).")
    arr = arr.astype(np.int64)
    if arr.min() < -1 or arr.max() >= k:
        raise ValueError(f"Labels must be -1 (unlabelled) or between 0 and n_components-1 = {k - 1}.")
    return arr


@torch.no_grad()
def _mean_log_likelihood(model: VMoNFModel, x: np.ndarray) -> float:
    """Mean ``log p(x)`` of ``x`` under ``model``, in chunks (what :class:`VMoNF` ranks its restarts by)."""
    return float(chunked(model.log_prob, torch.as_tensor(x, device=model.shift.device), chunk=8192).mean())


class VMoNF(DensityMixin, BaseEstimator):
    """Variational mixture of normalizing flows with the scikit-learn mixture API (``clone``, ``get_params`` and
    ``set_params`` work as for any scikit-learn estimator).

    Args:
        n_components: number of mixture components (clusters), K.
        depth: coupling layers per component flow.
        hidden: width of the conditioner networks.
        flow: ``"realnvp"`` or ``"maf"``.
        learn_prior: learn the mixture weights pi, starting from the starting partition's shares (``False``:
            uniform, as in the paper, which stretches a small cluster's component into its neighbours).
        batch_size: points per training step.
        max_steps: training steps in all, including the ones that chose the start.
        lr: Adam learning rate.
        init: starting partition: ``"auto"`` (the candidate partition that cuts the data's neighbourhood
            graph most cleanly, :func:`vmonf.starts.choose_start`), ``"kmeans"``, ``"gmm"`` (a
            full-covariance GaussianMixture's; the best start on MNIST features, docs/RESULTS.md),
            ``"spectral"``, ``"local"`` (spectral with local scaling), ``"ncut"`` (repeated two-way normalised
            cuts of the same graph), ``"ward"``, ``"labels"`` or ``"random"``.
        start_choice: how ``init="auto"`` keeps a start: ``"cut"`` (the lowest normalised cut, no training) or
            ``"elbo"`` (each candidate trains 150 steps, the best validation ELBO wins; the older rule).
        temperature_decay: the paper's decaying temperature on q's logits; 0 disables it.
        val_fraction: share of points held out to pick the best state (0 trains on everything).
        seed: seeds everything; results are deterministic on CPU.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
        n_init: independent fits (seeds ``seed``, ``seed + 1``, ...); the one whose mixture gives ``X``
            the highest mean log-likelihood is kept, as ``GaussianMixture(n_init=...)`` keeps its best.
            On image features the fit's log-likelihood tracked its clustering accuracy closely (MNIST
            0-4, 8 seeds: the 4 highest-likelihood fits had accuracy 0.94-0.97, the 4 lowest 0.78-0.92;
            docs/RESULTS.md), so restarts chosen this way lift accuracy without labels.

    Beyond the paper (see docs/BEYOND.md for what each measured):
        depths: a depth per component, overriding ``depth`` (components of uneven complexity).
        share_weights: one RealNVP conditioner per layer shared by all components, plus a component embedding.
        consistency: weight of the consistency term KL(q(c|x) || q(c|x')); ``fit(..., X_perturbed=...)``
            gives the perturbed copies x', else x' = x + ``consistency_noise`` x std x Gaussian noise.
            On (5) by default: it made toy clustering reliable across seeds, at the cost of slower steps
            (docs/RESULTS.md has both); 0 gives the paper's plain ELBO.
        consistency_flows: add KL(q(c|x) || p(c|x')) to it, so the flows (not only q) must give a point
            and its perturbed copy the same component (the variant that helped on MNIST).
        prune_below: remove components whose share of the points falls below this during training.
        weight_entropy: annihilation pressure, ``weight_entropy x H(pi)`` added to the loss (needs
            ``learn_prior=True``): the weights concentrate and redundant components shrink.

    Recipes:
        recipe: ``"default"`` (the settings above) or ``"paper"``, the method as published
            (:data:`PAPER_RECIPE` lists each choice against the paper): every setting left at its default
            takes the paper's value, and the last state is kept rather than the best on the validation
            split. ``VMoNF(5, recipe="paper")`` is the paper's toy setup; ``effective_params()`` shows what
            a fit will use.
    """

    def __init__(self, n_components: int = 3, *, depth: int = 4, hidden: int = 64, flow: FlowType = "realnvp",
                 learn_prior: bool = True, batch_size: int = 512, max_steps: int = 1500, lr: float = 3e-3,
                 init: InitMethod = "auto", temperature_decay: float = 0.0, label_weight: float = 1.0,
                 val_fraction: float = 0.1, seed: int = 0, device: str = "auto", depths: tuple[int, ...] | None = None,
                 share_weights: bool = False, consistency: float = 5.0, consistency_noise: float = 0.1,
                 consistency_flows: bool = True, prune_below: float = 0.0, weight_entropy: float = 0.0,
                 n_init: int = 1, recipe: str = "default", start_choice: StartChoice = "cut"):
        self.n_components, self.depth, self.hidden, self.flow = n_components, depth, hidden, flow
        self.learn_prior, self.batch_size, self.max_steps, self.lr = learn_prior, batch_size, max_steps, lr
        self.init, self.temperature_decay, self.label_weight = init, temperature_decay, label_weight
        self.val_fraction, self.seed, self.device = val_fraction, seed, device
        self.depths, self.share_weights, self.prune_below = depths, share_weights, prune_below
        self.weight_entropy = weight_entropy
        self.consistency, self.consistency_noise = consistency, consistency_noise
        self.consistency_flows = consistency_flows
        self.n_init = n_init
        self.recipe = recipe
        self.start_choice = start_choice

    # -- configuration ----------------------------------------------------------------------------
    def effective_params(self) -> dict:
        """The settings a fit uses: :meth:`get_params` with the recipe's values in place of every setting left
        at its default (a setting given explicitly wins, unless it equals the default)."""
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {self.recipe!r}.")
        params = self.get_params()
        defaults = {k: v.default for k, v in inspect.signature(VMoNF.__init__).parameters.items()}
        for key, value in RECIPES[self.recipe].items():
            if params[key] == defaults[key]:
                params[key] = value
        return params

    def _configs(self, dim: int) -> tuple[ModelConfig, TrainConfig]:
        p = self.effective_params()
        mc = ModelConfig(self.n_components, dim, depth=p["depth"], hidden=self.hidden, flow=self.flow,
                         learn_prior=p["learn_prior"], depths=self.depths, share_weights=self.share_weights)
        tc = TrainConfig(lr=self.lr, batch_size=self.batch_size, seed=self.seed, init=p["init"],
                         temperature_decay=p["temperature_decay"], label_weight=self.label_weight,
                         init_steps=min(TrainConfig.init_steps, max(self.max_steps, 0)), consistency=p["consistency"],
                         consistency_noise=self.consistency_noise, consistency_flows=self.consistency_flows,
                         prune_below=self.prune_below, weight_entropy=self.weight_entropy,
                         keep_best=self.recipe != "paper", start_choice=self.start_choice)
        mc.validate()
        tc.validate()
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be 0 or more, got {self.max_steps}.")
        if not isinstance(self.n_init, int | np.integer) or isinstance(self.n_init, bool) or self.n_init < 1:
            raise ValueError(f"n_init must be a whole number, 1 or more; got {self.n_init!r}.")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}.")
        return mc, tc

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, X, y=None, *, X_perturbed=None, callback=None, callback_every: int | None = None) -> VMoNF:
        """Fit to ``X`` (n, d). ``y`` optionally labels some points (``-1`` = unlabelled). Returns ``self``.

        ``X_perturbed`` (copies, n, d): perturbed copies of ``X`` for the consistency term (e.g.
        :func:`vmonf.data.augmented_features` for images). ``callback(trainer)``, if given, is called at
        step 0 (the start) and every ``callback_every`` steps (default ``eval_every``), e.g. to record
        progress; while ``init="auto"`` tries its candidate starts, with each candidate's trainer, so
        the trainer kept in the end (``trainer_``) was seen from its step 0.
        """
        x = _check_array(X)
        n, d = x.shape
        if X_perturbed is not None:
            X_perturbed = np.asarray(X_perturbed, dtype=np.float32)
            if X_perturbed.ndim != 3 or X_perturbed.shape[1:] != (n, d) or not np.isfinite(X_perturbed).all():
                raise ValueError(f"X_perturbed must be finite, of shape (copies, {n}, {d}); got {X_perturbed.shape}.")
        if self.n_components > n:
            raise ValueError(f"n_components={self.n_components} is more than the {n} samples; use at most {n}.")
        labels = None if y is None else _check_labels(y, n, self.n_components)
        model_cfg, train_cfg = self._configs(d)
        device = resolve_device(self.device)

        if callback_every is not None and (isinstance(callback_every, bool) or int(callback_every) < 1):
            raise ValueError(f"callback_every must be a whole number of steps, at least 1; got {callback_every!r}.")
        every = int(callback_every or train_cfg.eval_every)
        best, scores = None, []
        for restart in range(self.n_init):
            cfg = replace(train_cfg, seed=self.seed + restart)
            result = self._fit_once(x, labels, model_cfg, cfg, device, X_perturbed, callback, every)
            score = _mean_log_likelihood(result.trainer.model, x)
            scores.append(score)
            if best is None or score > best[0]:
                best = (score, result)
        result = best[1]
        trainer = result.trainer
        self.model_ = trainer.model.eval()
        self.trainer_ = trainer
        self.restart_scores_ = scores  # mean log-likelihood of X per restart; the best one was kept
        self.init_ = result.init_method
        self.init_scores_ = result.candidates  # per candidate start: its cut or its ELBO (init_criterion_ says)
        self.init_criterion_ = result.criterion
        self.n_iter_ = trainer.step_count
        self.history_ = trainer.history
        self.n_features_in_ = d
        with torch.no_grad():
            self.lower_bound_ = float(self.model_.elbo(trainer.x).mean())
        return self

    def _fit_once(self, x, labels, model_cfg, train_cfg, device, x_perturbed, callback, every):
        """One fit from one seed: the start, ``max_steps`` steps, then the best validation state."""

        def seen(event) -> None:
            if event.stage == "initialized" or (event.stage == "step" and event.trainer.step_count % every == 0):
                callback(event.trainer)

        result = start_training(x, labels, model_cfg, train_cfg, device=device, val_fraction=self.val_fraction,
                                x_perturbed=x_perturbed, on_event=seen if callback is not None else None)
        trainer = result.trainer
        while trainer.step_count < self.max_steps:  # the chosen start's init_steps count toward max_steps
            trainer.run(min(every - trainer.step_count % every, self.max_steps - trainer.step_count))
            if callback is not None:
                callback(trainer)
        if trainer.x_val is not None:
            trainer.evaluate()
            trainer.restore_best()
        return result

    # -- inference --------------------------------------------------------------------------------
    def _check_fitted(self) -> VMoNFModel:
        if not hasattr(self, "model_"):
            raise NotFittedError("This VMoNF is not fitted yet; call fit(X) first.")
        return self.model_

    def _model_and_tensor(self, X) -> tuple[VMoNFModel, torch.Tensor]:
        model = self._check_fitted()
        return model, torch.as_tensor(_check_array(X, dim=self.n_features_in_), device=model.shift.device)

    @property
    def weights_(self) -> np.ndarray:
        """Mixture weights pi, shape ``(K,)``."""
        return self._check_fitted().log_pi.exp().detach().cpu().numpy()

    @torch.no_grad()
    def predict_proba(self, X) -> np.ndarray:
        """Exact responsibilities ``p(c|x)``, shape ``(n, K)``; rows sum to 1."""
        model, x = self._model_and_tensor(X)
        return model.responsibilities(x).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Most probable component per point (``predict_proba(X).argmax(1)``)."""
        return self.predict_proba(X).argmax(1)

    @torch.no_grad()
    def posterior_proba(self, X) -> np.ndarray:
        """The variational posterior ``q(c|x)`` (the network), shape ``(n, K)``."""
        model, x = self._model_and_tensor(X)
        return model.posterior_log_probs(x).exp().cpu().numpy()

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """``log p(x)`` per point, shape ``(n,)``."""
        model, x = self._model_and_tensor(X)
        return model.log_prob(x).cpu().numpy()

    def score(self, X, y=None) -> float:
        """Mean ``log p(x)``."""
        return float(self.score_samples(X).mean())

    @torch.no_grad()
    def elbo(self, X) -> np.ndarray:
        """Per-point ELBO, shape ``(n,)``."""
        model, x = self._model_and_tensor(X)
        return model.elbo(x).cpu().numpy()

    def sample(self, n_samples: int = 1, component: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, components)`` from the mixture, or from one ``component``."""
        model = self._check_fitted()
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        gen = torch.Generator(device=model.shift.device).manual_seed(self.seed)
        x, c = model.sample(n_samples, component, generator=gen)
        return x.cpu().numpy(), c.cpu().numpy()

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a checkpoint that :meth:`load` reads without unpickling code."""
        save_checkpoint(path, self._check_fitted(), {"estimator": self.get_params(), "n_iter": self.n_iter_})

    @classmethod
    def load(cls, path: str | Path | bytes) -> VMoNF:
        model, extra = load_checkpoint(path)
        est = cls(**extra.get("estimator", {}))
        est.model_ = model.eval()
        est.n_features_in_ = model.config.dim
        est.n_iter_ = extra.get("n_iter", 0)
        est.history_ = []
        return est

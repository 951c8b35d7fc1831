"""How the components start: a hard starting partition of the points (k-means, spectral, Ward, a Gaussian
mixture's, spread labels), chosen among candidates by how cleanly each cuts the data's neighbourhood graph (or,
as an option, by held-out ELBO after a short training), and the one set-up every front end uses."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from vmonf.model import VMoNFModel
from vmonf.train import DivergenceError, TrainConfig, Trainer


def initial_partition(x: np.ndarray, k: int, method: str, seed: int, y: np.ndarray | None = None, *,
                      affinity=None) -> np.ndarray | None:
    """A starting hard assignment of points to components, or ``None`` for the plain random start.

    ``affinity`` is :func:`local_affinity` of ``x`` where the caller has it already (``local`` and ``ncut``
    use it), so the automatic start builds the graph once for its candidates and its scores.

    Why: identity flows with a random q often let one component swallow the data or leave wrong
    splits (pinwheel-5 stuck at ARI 0.4 on 3/3 seeds). Starting each component at a k-means cluster's
    location and scale, with q pre-trained on that partition, works far better, but k-means cuts
    curved clusters (moons) in half, where a nearest-neighbour spectral partition, or Ward linkage
    restricted to a k-NN graph, follows them. ``local`` is spectral clustering on a k-NN graph whose
    edges are scaled by each point's own neighbour distance (self-tuning spectral clustering, Zelnik-Manor
    & Perona 2004), which follows thin clusters beside dense ones. ``ncut`` splits the same graph in two
    where its normalised cut is lowest, again and again (:func:`recursive_ncut`), which keeps a thin ring
    and the blob inside it apart where the spectral embeddings cut the ring in halves. No start wins
    everywhere, so ``auto`` tries several (:func:`choose_start`). With labels, ``labels`` spreads them over a
    k-NN graph.
    """

    if method == "random" or k == 1:
        return None
    with warnings.catch_warnings():  # sklearn warns about disconnected k-NN graphs; the partition is still usable
        warnings.simplefilter("ignore")
        return _partition(x, k, method, seed, y, affinity)


def _partition(x: np.ndarray, k: int, method: str, seed: int, y: np.ndarray | None, affinity) -> np.ndarray:
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
    if method == "local":
        return SpectralClustering(k, affinity="precomputed", random_state=seed,
                                  assign_labels="cluster_qr").fit_predict(_or_local(affinity, x))
    if method == "ncut":
        return recursive_ncut(_or_local(affinity, x), k, shift_invert=x.shape[1] <= 3)
    if method == "ward":
        graph = kneighbors_graph(x, n_neighbors=min(10, len(x) - 1), include_self=False)
        return AgglomerativeClustering(k, connectivity=graph, linkage="ward").fit_predict(x)
    if method == "labels":
        from sklearn.semi_supervised import LabelSpreading

        if y is None or not (y >= 0).any():
            raise ValueError("init='labels' needs some labelled points (y >= 0).")
        return LabelSpreading(kernel="knn", n_neighbors=min(10, len(x) - 1), max_iter=100).fit(x, y).transduction_
    raise ValueError(f"Unknown init method {method!r}.")


#: Neighbours per point in :func:`local_affinity`, and the neighbour whose distance sets a point's scale.
AFFINITY_NEIGHBOURS, SCALE_NEIGHBOUR = 15, 7


def _or_local(affinity, x: np.ndarray):
    return local_affinity(x) if affinity is None else affinity


def local_affinity(x: np.ndarray):
    """A sparse symmetric k-NN affinity, ``exp(-d_ij^2 / (s_i s_j))`` with ``s_i`` the distance from point i to
    its :data:`SCALE_NEIGHBOUR`-th neighbour: dense and sparse regions get edges of the same strength."""
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    nn = int(min(AFFINITY_NEIGHBOURS, n - 1))
    dist, idx = NearestNeighbors(n_neighbors=nn + 1).fit(x).kneighbors(x)
    scale = np.maximum(dist[:, min(SCALE_NEIGHBOUR, nn)], 1e-12)
    w = np.exp(-dist[:, 1:] ** 2 / (scale[:, None] * scale[idx[:, 1:]]))
    a = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), nn), idx[:, 1:].ravel())), shape=(n, n))
    return a.maximum(a.T).tocsr()


def normalized_cut(affinity, partition: np.ndarray, k: int) -> float:
    """Shi & Malik's normalised cut of ``partition`` on ``affinity``: for each part, the share of its edge weight
    that leaves it, summed (0 when no edge crosses a part). A part smaller than ``max(5, n / (20 k))`` points,
    or an empty one, gives ``inf``: a few outliers cut off alone are not a cluster."""
    labels = np.asarray(partition)
    degree = np.asarray(affinity.sum(1)).ravel()
    total = 0.0
    for c in range(k):
        members = labels == c
        if members.sum() < _min_part(len(labels), k):
            return float("inf")
        volume = degree[members].sum()
        total += 1.0 - affinity[members][:, members].sum() / max(volume, 1e-12)
    return float(total)


def _min_part(n: int, k: int) -> float:
    """The fewest points a part of a ``k``-way partition of ``n`` points may hold (:func:`normalized_cut`)."""
    return max(5, n / (20 * k))


def best_bisection(affinity, min_size: float, shift_invert: bool = True) -> np.ndarray | None:
    """The two-way split of a graph along its Fiedler vector with the lowest normalised cut (Shi & Malik 2000).

    The points are ordered by the second eigenvector of ``D^-1/2 A D^-1/2`` and every split of that order,
    both sides at least ``min_size`` points, is scored in one pass. Returns the mask of one side, or ``None``
    when the graph is too small to split.

    ``shift_invert`` finds the eigenvector by shift-invert, for the k-NN graphs of 2-D points: their top
    eigenvalues are nearly equal, which plain Lanczos needs 5x longer for (0.3 s against 0.06 s for
    pinwheel-5), and their sparse LU factor stays sparse. A graph of 16-D points fills its factor in (14 s at
    5,000 MNIST features, minutes at 20,000) while Lanczos takes 0.06 s there: pass ``False`` for those.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    n = affinity.shape[0]
    if n < 2 * min_size or n < 3:
        return None
    degree = np.maximum(np.asarray(affinity.sum(1)).ravel(), 1e-12)
    r = 1.0 / np.sqrt(degree)
    m = sp.diags(r) @ affinity @ sp.diags(r)
    if n < 64:
        fiedler = np.linalg.eigh(m.toarray())[1][:, -2]
    else:  # a fixed start vector: the same points give the same split
        v0 = np.linspace(0.5, 1.5, n)
        if shift_invert:
            vals, vecs = eigsh(m.tocsc(), k=2, sigma=1.001, which="LM", v0=v0, tol=1e-8)
        else:  # a looser tolerance gave wrong splits on 2-D graphs (docs/RESULTS.md)
            vals, vecs = eigsh(m, k=2, which="LA", v0=v0, tol=1e-6)
        fiedler = vecs[:, np.argmin(vals)]
    order = np.argsort(fiedler * r, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    edges = sp.triu(affinity, 1).tocoo()
    lo, hi = np.minimum(rank[edges.row], rank[edges.col]), np.maximum(rank[edges.row], rank[edges.col])
    # An edge crosses the split "first t points | the rest" exactly when lo < t <= hi.
    change = np.zeros(n + 1)
    np.add.at(change, lo + 1, edges.data)
    np.add.at(change, hi + 1, -edges.data)
    cut = np.cumsum(change)[1:n]
    volume = np.cumsum(degree[order])[: n - 1]
    score = cut / volume + cut / np.maximum(degree.sum() - volume, 1e-12)
    t = np.arange(1, n)
    score[(t < min_size) | (n - t < min_size)] = np.inf
    best = int(np.argmin(score))
    if not np.isfinite(score[best]):
        return None
    mask = np.zeros(n, dtype=bool)
    mask[order[: best + 1]] = True
    return mask


def recursive_ncut(affinity, k: int, shift_invert: bool = True) -> np.ndarray:
    """A ``k``-way partition by repeated two-way normalised cuts (:func:`best_bisection`, which says when to use
    ``shift_invert``): each round splits the part whose best split gives the lowest :func:`normalized_cut` of
    the whole partition."""
    n = affinity.shape[0]
    min_size = _min_part(n, k)
    labels = np.zeros(n, dtype=np.int64)
    splits: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # part -> (its points, its best split)
    for new in range(1, k):
        best: tuple[float, int, np.ndarray] | None = None
        for part in range(new):
            if part not in splits:
                members = np.flatnonzero(labels == part)
                splits[part] = members, best_bisection(affinity[members][:, members], min_size, shift_invert)
            members, mask = splits[part]
            if mask is None:
                continue
            trial = labels.copy()
            trial[members[mask]] = new
            score = normalized_cut(affinity, trial, new + 1)
            if best is None or score < best[0]:
                best = score, part, trial
        if best is None:
            raise ValueError(f"The points cannot be split into {k} parts of at least {min_size:.0f} points each.")
        _, part, labels = best
        del splits[part]
    return labels


@dataclass
class FitResult:
    """What :func:`fit_model` returns besides the trained model."""

    trainer: Trainer
    init_method: str
    candidates: dict[str, float] = field(default_factory=dict)  # init method -> its score (see ``criterion``)
    skipped: dict[str, str] = field(default_factory=dict)  # init method -> the earlier one it duplicated
    # What ``candidates`` holds: "cut" (normalised cut, lower is better) or "elbo" (validation ELBO after
    # init_steps of training, higher is better); "" when there was nothing to choose.
    criterion: str = ""


@dataclass(frozen=True)
class StartEvent:
    """Progress of :func:`choose_start`, for a caller that shows it as it happens (the app's live chart).

    ``stage`` is ``"partition"`` (a candidate's starting partition exists; its trainer is not initialised
    yet), ``"initialized"`` (components and q set from it, step 0), ``"step"`` (after each training step of
    a candidate) or ``"scored"`` (the candidate's validation ELBO is known). When the cut chooses
    (``start_choice="cut"``) no candidate trains: each ``"partition"`` event carries its normalised cut as
    ``score`` and no trainer; then the kept start's ``"partition"`` and ``"initialized"`` events follow, with
    its trainer and ``index == total == 1``.
    """

    stage: Literal["partition", "initialized", "step", "scored"]
    candidate: str  # the init method being tried
    index: int  # 1-based, of ``total``
    total: int
    trainer: Trainer | None  # None while the cut compares partitions: no trainer is built for them
    partition: np.ndarray | None = None  # the hard assignment of every training point (stage "partition")
    score: float | None = None  # validation ELBO (stage "scored"), or normalised cut (stage "partition", cut rule)
    replayed: bool = False  # sent again from a kept start (vmonf.startmemo), all at once: nothing is being chosen


#: Candidate partitions that agree this closely (adjusted Rand index) are one candidate: scoring or training
#: the second only re-measures noise. Under the ELBO rule, on 50 runs (10 shapes x 5 seeds), it skipped 29 of
#: 150 candidates and never changed the kept start's quality (docs/RESULTS.md, "The live loop", the ELBO rule).
DUPLICATE_ARI = 0.98


def start_candidates(method: str, labelled: bool, choice: str = "cut") -> list[str]:
    """The init methods :func:`choose_start` tries for ``method`` (``auto``: several)."""
    if method != "auto":
        return [method]
    if labelled:
        return ["labels"]
    if choice == "elbo":
        return ["kmeans", "spectral", "ward"]
    return ["kmeans", "spectral", "local", "ward", "gmm", "ncut"]


def choose_start(make_trainer, x_np: np.ndarray, y_np: np.ndarray | None, k: int, config: TrainConfig,
                 on_event=None) -> FitResult:
    """Build a trainer from the best starting partition (see :func:`initial_partition`).

    ``make_trainer()`` returns a fresh, identically seeded :class:`Trainer`. With ``init="auto"`` and no
    labels, several candidate partitions are made; a candidate whose partition duplicates an earlier one
    (:data:`DUPLICATE_ARI`) is skipped. ``config.start_choice`` says how one is kept:

    - ``"cut"``: the lowest :func:`normalized_cut` on :func:`local_affinity`, with no training. Clusters
      are regions the neighbourhood graph barely links; a partition that cuts through one (k-means halves
      of a moon, two circles as half-planes) cuts many strong edges. On the toy sets and on shapes the
      defaults were not designed on, this kept better starts than the ELBO rule, in ~0.1 s instead of
      3 x ``init_steps`` steps (docs/RESULTS.md, "Choosing the initialisation").
    - ``"elbo"``: each candidate trains ``init_steps`` steps and the highest validation ELBO wins.

    With labels, the label-spreading start is used directly.

    ``on_event(StartEvent)`` is called as the choice goes on; returning ``True`` cuts it short: the
    candidate in progress is scored as it is and the best of those scored so far is kept.
    """
    labelled = y_np is not None and bool((y_np >= 0).any())
    candidates = start_candidates(config.init, labelled, config.start_choice)[: 1 if k == 1 else None]
    total = len(candidates)

    def notify(stage: str, name: str, index: int, trainer: Trainer | None, of: int = total, **kw) -> bool:
        return bool(on_event and on_event(StartEvent(stage, name, index, of, trainer, **kw)))

    if total == 1:
        trainer = make_trainer()
        partition = initial_partition(x_np, k, candidates[0], config.seed, y_np)
        if partition is not None:
            notify("partition", candidates[0], 1, trainer, partition=partition)
        trainer.initialize(partition)
        notify("initialized", candidates[0], 1, trainer)
        return FitResult(trainer, candidates[0])
    if config.start_choice == "cut":
        return _choose_by_cut(make_trainer, x_np, k, config, candidates, notify)
    return _choose_by_elbo(make_trainer, x_np, k, config, candidates, notify)


def _distinct_partitions(x_np: np.ndarray, k: int, config: TrainConfig, candidates: list[str], affinity=None):
    """``(index, name, partition)`` for each candidate whose partition is not a twin of an earlier one; the
    twins go into the ``skipped`` dict given back beside them. ``affinity``: see :func:`initial_partition`."""
    from sklearn.metrics import adjusted_rand_score

    partitions: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}

    def distinct():
        for index, name in enumerate(candidates, 1):
            try:
                partition = initial_partition(x_np, k, name, config.seed, affinity=affinity)
            except (ValueError, np.linalg.LinAlgError):
                # One candidate cannot be made (a Gaussian mixture's covariance is singular on 784 pixels);
                # the others still can. With none at all, the caller's error says so.
                if name == candidates[-1] and not partitions:
                    raise
                continue
            twin = next((o for o, p in partitions.items() if adjusted_rand_score(p, partition) >= DUPLICATE_ARI), None)
            if twin is not None:
                skipped[name] = twin
                continue
            partitions[name] = partition
            yield index, name, partition

    return distinct(), skipped


def scored_partitions(x_np: np.ndarray, k: int, config: TrainConfig, candidates: list[str]):
    """``(index, name, partition, cut)`` for each distinct candidate as it is made, ``cut`` its
    :func:`normalized_cut` on :func:`local_affinity`; and the ``skipped`` dict of twins. The cut rule keeps
    the first with the lowest cut (``bench/starts.py`` scores the same way)."""
    affinity = local_affinity(x_np)
    distinct, skipped = _distinct_partitions(x_np, k, config, candidates, affinity)
    return ((index, name, partition, normalized_cut(affinity, partition, k))
            for index, name, partition in distinct), skipped


def _choose_by_cut(make_trainer, x_np, k, config, candidates, notify) -> FitResult:
    scores: dict[str, float] = {}
    kept: tuple[str, np.ndarray] | None = None
    scored, skipped = scored_partitions(x_np, k, config, candidates)
    for index, name, partition, cut in scored:
        scores[name] = cut
        if kept is None or cut < scores[kept[0]]:
            kept = name, partition
        if notify("partition", name, index, None, partition=partition, score=cut):
            break
    name, partition = kept
    trainer = make_trainer()
    notify("partition", name, 1, trainer, of=1, partition=partition)
    trainer.initialize(partition)
    notify("initialized", name, 1, trainer, of=1)
    return FitResult(trainer, name, scores, skipped, criterion="cut")


def _choose_by_elbo(make_trainer, x_np, k, config, candidates, notify) -> FitResult:
    scores: dict[str, float] = {}
    best: Trainer | None = None
    cut = False
    distinct, skipped = _distinct_partitions(x_np, k, config, candidates)
    for index, name, partition in distinct:
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
    return FitResult(best, chosen, scores, skipped, criterion="elbo")


def split_indices(n: int, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, as every front end splits (so baselines can use the same split)."""
    n_val = int(val_fraction * n) if n >= 20 else 0
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


def start_training(x: np.ndarray, labels: np.ndarray | None, model_config, config: TrainConfig, *,
                   device: torch.device, val_fraction: float = 0.1, x_perturbed: np.ndarray | None = None,
                   on_event=None, memo=None, give_up=lambda: False) -> FitResult:
    """Split off validation points, standardise, build the model and pick its start (:func:`choose_start`).

    The one way every front end (estimator, app worker, CLI) sets up training. ``labels`` holds ``-1``
    for unlabelled points, or is ``None``. ``x_perturbed`` (copies, n, d) feeds the consistency term.
    The split and the model initialisation follow ``config.seed``. ``on_event`` sees the start being chosen
    (:func:`choose_start`); its partitions cover every row of ``x``, ``-1`` for the held-out ones.

    ``memo`` (a :class:`vmonf.startmemo.StartMemo`) replays a start chosen before for the same data, model,
    recipe and seed, with the same events, or keeps the one chosen here for the next run. It is used for
    starts without labels chosen by the cut (or with one candidate); ``give_up()`` ends a wait for another
    process choosing the same start (then this one chooses it too).
    """
    tr, va = split_indices(len(x), config.seed, val_fraction)
    xp = None if x_perturbed is None else torch.as_tensor(np.asarray(x_perturbed)[:, tr], device=device)
    xt = torch.as_tensor(x[tr], device=device)
    xv = torch.as_tensor(x[va], device=device) if len(va) else None
    lab = labels[tr] if labels is not None and (labels >= 0).any() else None
    yt = None if lab is None else torch.as_tensor(lab, device=device)
    # The labels of the held-out points are never trained on: the trainer picks its best state by them.
    yv = None if lab is None or not len(va) else torch.as_tensor(labels[va], device=device)
    shift = xt.mean(0)
    scale = xt.std(0) if len(xt) > 1 else torch.ones_like(shift)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))

    def make_trainer() -> Trainer:
        torch.manual_seed(config.seed)
        model = VMoNFModel(model_config).to(device)
        model.set_standardization(shift, scale)
        return Trainer(model, xt, yt, config, x_val=xv, x_perturbed=xp, y_val=yv)

    def relay(event: StartEvent) -> bool:
        if event.partition is None:
            return on_event(event)
        full = np.full(len(x), -1, dtype=np.int64)
        full[tr] = event.partition
        return on_event(dataclasses.replace(event, partition=full))

    x_std = ((xt - shift) / scale).cpu().numpy()  # partitions are found in standardised units
    k, notify = model_config.n_components, relay if on_event else None
    several = len(start_candidates(config.init, lab is not None, config.start_choice)) > 1
    if memo is None or lab is not None or (several and k > 1 and config.start_choice != "cut"):
        return choose_start(make_trainer, x_std, lab, k, config, notify)
    from vmonf.startmemo import start_key

    key = start_key(x, labels, x_perturbed, model_config, config, val_fraction, device)
    with memo.hold(key, give_up):
        record = memo.load(key)
        if record is not None:
            try:
                return _replay(record, make_trainer, notify)
            except (KeyError, RuntimeError, ValueError, IndexError):
                pass  # another model's or a damaged record: choose again
        result, record = _recorded(make_trainer, x_std, k, config, notify)
        if record is not None:
            memo.save(key, record)
        return result


def _recorded(make_trainer, x_std, k, config, notify):
    """:func:`choose_start`, and its :class:`~vmonf.startmemo.StartRecord` (``None`` if a stop cut it short)."""
    from vmonf.startmemo import StartRecord

    record, cut = StartRecord(), False

    def keep(event: StartEvent) -> bool:
        nonlocal cut
        record.events.append({"stage": event.stage, "candidate": event.candidate, "index": event.index,
                              "total": event.total, "score": event.score, "trainer": event.trainer is not None})
        record.partitions.append(event.partition)
        stop = bool(notify and notify(event))
        cut = cut or stop
        return stop

    result = choose_start(make_trainer, x_std, None, k, config, keep)
    if cut:
        return result, None
    record.init_method, record.candidates, record.skipped = result.init_method, result.candidates, result.skipped
    record.criterion, record.state = result.criterion, result.trainer.start_state()
    return result, record


def _replay(record, make_trainer, notify) -> FitResult:
    """The start in ``record``, with its events sent again (a stop during them ends them early, as it ends a
    choice). The trainer is loaded first: a record of another model fails before anything is shown."""
    trainer = make_trainer()
    trainer.set_start_state(record.state)
    stopped = False
    for event, partition in zip(record.events, record.partitions, strict=True):
        if notify and not stopped:
            stopped = bool(notify(StartEvent(event["stage"], event["candidate"], event["index"], event["total"],
                                             trainer if event["trainer"] else None, partition=partition,
                                             score=event["score"], replayed=True)))
    return FitResult(trainer, record.init_method, dict(record.candidates), dict(record.skipped), record.criterion)

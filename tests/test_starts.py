"""The starting partitions and how the automatic start chooses among them."""

import numpy as np
import pytest
import torch

from vmonf.data import make_toy
from vmonf.metrics import clustering_scores
from vmonf.model import ModelConfig
from vmonf.starts import initial_partition, local_affinity, normalized_cut, start_training
from vmonf.train import TrainConfig


def test_the_normalised_cut_is_zero_between_separate_groups_and_grows_through_one():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (200, 2)), rng.normal(5, 0.3, (200, 2))])
    truth = np.repeat([0, 1], 200)
    a = local_affinity(x)
    assert a.shape == (400, 400) and abs(a - a.T).max() == 0  # symmetric
    assert normalized_cut(a, truth, 2) == pytest.approx(0.0, abs=1e-9)  # no edge joins the two blobs
    through = (x[:, 0] > np.median(x[:200, 0])).astype(int)  # a cut through the first blob
    assert normalized_cut(a, through, 2) > 0.05
    tiny = np.zeros(400, dtype=int)
    tiny[:3] = 1  # three points cut off alone are not a cluster
    assert normalized_cut(a, tiny, 2) == float("inf")
    assert normalized_cut(a, truth, 3) == float("inf")  # an empty part


def test_local_affinity_copes_with_repeated_points_and_tiny_data():
    x = np.zeros((6, 2))
    x[3:] = 1.0
    a = local_affinity(x)
    assert np.isfinite(a.data).all()
    assert initial_partition(np.random.default_rng(0).normal(size=(12, 2)), 2, "local", seed=0).shape == (12,)


@pytest.mark.parametrize("name", ["two circles", "moons"])
def test_the_automatic_start_keeps_a_partition_that_follows_curved_clusters(name):
    """k-means cuts both moons and both rings in half; the cut rule keeps a partition that follows them, with
    no training (two circles without labels is the paper's named failure)."""
    x, y = make_toy(name, 600, seed=1)
    assert clustering_scores(y, initial_partition(x, 2, "kmeans", seed=0))["ari"] < 0.5
    result = start_training(x.astype(np.float32), None, ModelConfig(2, 2, depth=2, hidden=16),
                            TrainConfig(q_pretrain_steps=100), device=torch.device("cpu"))
    assert result.criterion == "cut" and result.trainer.step_count == 0
    assert result.candidates[result.init_method] == min(result.candidates.values())
    assert result.candidates["kmeans"] > result.candidates[result.init_method]
    with torch.no_grad():
        assigned = result.trainer.model.posterior_log_probs(torch.as_tensor(x, dtype=torch.float32)).argmax(1)
    assert clustering_scores(y, assigned.numpy())["ari"] >= 0.95  # q fitted to the kept partition


def test_the_elbo_rule_still_trains_each_candidate():
    x, _ = make_toy("moons", 300, seed=0)
    cfg = TrainConfig(start_choice="elbo", init_steps=5, q_pretrain_steps=5, q_hold_steps=5)
    result = start_training(x.astype(np.float32), None, ModelConfig(2, 2, depth=2, hidden=8), cfg,
                            device=torch.device("cpu"))
    assert result.criterion == "elbo" and result.trainer.step_count == 5
    assert set(result.candidates) | set(result.skipped) == {"kmeans", "spectral", "ward"}
    with pytest.raises(ValueError, match="start_choice"):
        TrainConfig(start_choice="best").validate()


def test_a_candidate_that_cannot_be_made_is_left_out(monkeypatch):
    """A Gaussian mixture of 784 pixels has singular covariances: the automatic start goes on without it."""
    import vmonf.starts as starts

    real = starts.initial_partition

    def failing(x, k, method, seed, y=None, **kw):
        if method == "gmm":
            raise ValueError("ill-defined empirical covariance")
        return real(x, k, method, seed, y, **kw)

    monkeypatch.setattr(starts, "initial_partition", failing)
    x, _ = make_toy("moons", 300, seed=0)
    result = start_training(x.astype(np.float32), None, ModelConfig(2, 2, depth=2, hidden=8),
                            TrainConfig(q_pretrain_steps=5), device=torch.device("cpu"))
    assert "gmm" not in result.candidates and len(result.candidates) >= 2


def _ring_and_blob(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A thin ring and a dense blob inside it, off its centre: spectral embeddings cut the ring in halves."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n // 2)
    ring = 2.0 * np.stack([np.cos(t), np.sin(t)], 1) + 0.08 * rng.standard_normal((n // 2, 2))
    blob = rng.normal((0.7, -0.4), 0.3, (n - n // 2, 2))
    return np.concatenate([ring, blob]).astype(np.float32), np.repeat([0, 1], [n // 2, n - n // 2])


@pytest.mark.parametrize("shift_invert", [True, False])
def test_the_best_bisection_is_the_lowest_cut_along_the_fiedler_order(shift_invert):
    """Oracle: every split of the Fiedler order (numpy's dense eigenvectors) scored by :func:`normalized_cut`
    itself, against the one pass over the order ARPACK's eigenvector gives (shift-invert, or plain Lanczos)."""
    from vmonf.starts import best_bisection

    x, _ = _ring_and_blob(200, seed=3)
    a = local_affinity(x)
    mask = best_bisection(a, min_size=5, shift_invert=shift_invert)
    d = np.asarray(a.sum(1)).ravel()
    m = a.toarray() / np.sqrt(np.outer(d, d))
    order = np.argsort(np.linalg.eigh(m)[1][:, -2] / np.sqrt(d))
    cuts = []
    for t in range(5, len(x) - 4):
        part = np.zeros(len(x), dtype=int)
        part[order[:t]] = 1
        cuts.append(normalized_cut(a, part, 2))
    assert normalized_cut(a, mask.astype(int), 2) == pytest.approx(min(cuts), rel=1e-6)
    assert 5 <= mask.sum() <= len(x) - 5


def test_repeated_cuts_keep_a_ring_and_the_blob_inside_it_apart():
    x, y = _ring_and_blob(1000, seed=0)
    xs = (x - x.mean(0)) / x.std(0)
    assert clustering_scores(y, initial_partition(xs, 2, "ncut", seed=0))["ari"] >= 0.95
    result = start_training(x, None, ModelConfig(2, 2, depth=2, hidden=16), TrainConfig(q_pretrain_steps=100),
                            device=torch.device("cpu"))
    assert result.candidates[result.init_method] == min(result.candidates.values())
    assert result.candidates["kmeans"] > result.candidates[result.init_method]
    with torch.no_grad():
        assigned = result.trainer.model.posterior_log_probs(torch.as_tensor(x)).argmax(1)
    assert clustering_scores(y, assigned.numpy())["ari"] >= 0.95


def test_repeated_cuts_split_into_k_parts_or_say_they_cannot():
    from vmonf.starts import recursive_ncut

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.2, (60, 2)) for c in ((0, 0), (3, 0), (0, 3))])
    part = recursive_ncut(local_affinity(x), 3)
    assert clustering_scores(np.repeat([0, 1, 2], 60), part)["ari"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot be split into 40 parts"):
        recursive_ncut(local_affinity(x[:30]), 40)


@pytest.mark.parametrize("learn_prior", [True, False])
def test_learned_weights_start_at_the_parts_shares_and_fixed_ones_stay_uniform(learn_prior):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (210, 2)), rng.normal(4, 0.3, (90, 2))]).astype(np.float32)
    result = start_training(x, None, ModelConfig(2, 2, depth=2, hidden=8, learn_prior=learn_prior),
                            TrainConfig(init="kmeans", q_pretrain_steps=5), device=torch.device("cpu"))
    pi = np.sort(result.trainer.model.log_pi.exp().detach().numpy())
    assert pi == pytest.approx([0.3, 0.7] if learn_prior else [0.5, 0.5], abs=0.03)

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

    def failing(x, k, method, seed, y=None):
        if method == "gmm":
            raise ValueError("ill-defined empirical covariance")
        return real(x, k, method, seed, y)

    monkeypatch.setattr(starts, "initial_partition", failing)
    x, _ = make_toy("moons", 300, seed=0)
    result = start_training(x.astype(np.float32), None, ModelConfig(2, 2, depth=2, hidden=8),
                            TrainConfig(q_pretrain_steps=5), device=torch.device("cpu"))
    assert "gmm" not in result.candidates and len(result.candidates) >= 2

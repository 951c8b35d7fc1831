"""Clustering scores against scikit-learn's (the oracle), on random, degenerate and shuffled labelings."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vmonf.metrics import clustering_scores


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, int(rng.integers(1, 6)), n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, int(rng.integers(1, 8)), n)) * 3 + 7  # other codes
    got = clustering_scores(y, pred)
    assert got["ari"] == pytest.approx(adjusted_rand_score(y, pred), abs=1e-10)
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y, pred), abs=1e-10)


@pytest.mark.parametrize(("y", "pred"), [([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [0, 0, 0]), ([0, 0, 1, 1], [1, 1, 0, 0]),
                                         ([0, 1], [0, 1]), ([0, 1, 0, 1], [0, 0, 1, 1])])
def test_degenerate_labelings_match_scikit_learn(y, pred):
    got = clustering_scores(np.array(y), np.array(pred))
    assert got["ari"] == pytest.approx(adjusted_rand_score(y, pred), abs=1e-10)
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y, pred), abs=1e-10)


def test_accuracy_matches_clusters_to_labels():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_scores(y, np.array([2, 2, 0, 0, 1, 0]))["accuracy"] == pytest.approx(5 / 6)

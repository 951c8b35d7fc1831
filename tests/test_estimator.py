"""The scikit-learn-style estimator: API contracts, bad input, persistence, clustering quality."""

import numpy as np
import pytest
import torch

from vmonf import VMoNF
from vmonf.data import make_toy
from vmonf.metrics import clustering_scores


@pytest.fixture(scope="module")
def fitted():
    x, y = make_toy("gaussian mixture", 600, components=3, seed=1)
    return VMoNF(3, depth=2, hidden=32, max_steps=200, seed=0).fit(x), x, y


def test_api_contracts(fitted):
    est, x, _ = fitted
    proba = est.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(est.predict(x), proba.argmax(1))
    assert est.score(x) == pytest.approx(est.score_samples(x).mean(), rel=1e-6)
    assert est.weights_.shape == (3,) and est.n_iter_ == 200 and len(est.history_) > 0
    assert (est.elbo(x) <= est.score_samples(x) + 1e-4).all()
    xs, cs = est.sample(50)
    assert xs.shape == (50, 2) and cs.shape == (50,)
    xs1, cs1 = est.sample(5, component=2)
    assert (cs1 == 2).all()


def test_clusters_gaussian_blobs(fitted):
    est, x, y = fitted
    assert clustering_scores(y, est.predict(x))["ari"] > 0.95


def test_save_load_round_trip(fitted, tmp_path):
    est, x, _ = fitted
    est.save(tmp_path / "m.pt")
    again = VMoNF.load(tmp_path / "m.pt")
    np.testing.assert_allclose(again.score_samples(x), est.score_samples(x), rtol=1e-6)
    np.testing.assert_array_equal(again.predict(x), est.predict(x))


def test_deterministic_on_cpu():
    x, _ = make_toy("moons", 300, seed=0)
    a = VMoNF(2, depth=1, hidden=8, max_steps=30, seed=3, device="cpu").fit(x).score_samples(x)
    b = VMoNF(2, depth=1, hidden=8, max_steps=30, seed=3, device="cpu").fit(x).score_samples(x)
    np.testing.assert_array_equal(a, b)


def test_restarts_keep_the_highest_likelihood_fit(tmp_path):
    x, _ = make_toy("pinwheel", 400, wings=3, seed=2)
    kw = dict(depth=2, hidden=16, max_steps=60, consistency=0.0)
    est = VMoNF(3, n_init=3, seed=4, **kw).fit(x)
    assert len(est.restart_scores_) == 3 and len(set(est.restart_scores_)) == 3  # three different fits
    assert est.score(x) == pytest.approx(max(est.restart_scores_), abs=1e-4)  # the kept one is the best
    # Restart r is the single fit with seed + r.
    alone = VMoNF(3, n_init=1, seed=5, **kw).fit(x)
    assert alone.score(x) == pytest.approx(est.restart_scores_[1], abs=1e-4)
    est.save(tmp_path / "m.pt")
    assert VMoNF.load(tmp_path / "m.pt").n_init == 3


@pytest.mark.parametrize("X, kw, match", [
    ([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]], {}, "NaN"),
    ([[0.0, np.inf], [1.0, 2.0], [3.0, 1.0]], {}, "NaN or infinite"),
    ([1.0, 2.0, 3.0], {}, "2-D"),
    ([["a", "b"], ["c", "d"]], {}, "numeric"),
    (np.zeros((0, 2)), {}, "empty"),
    (np.random.rand(5, 2), {"n_components": 6}, "more than the 5 samples"),
    (np.random.rand(20, 2), {"depth": 0}, "depth"),
    (np.random.rand(20, 2), {"lr": -1.0}, "lr"),
    (np.random.rand(20, 2), {"n_init": 0}, "n_init"),
    (np.random.rand(20, 2), {"n_init": 1.5}, "n_init"),
    (np.random.rand(20, 2), {"n_init": True}, "n_init"),
    (np.random.rand(20, 2), {"device": "cuda:0" if not torch.cuda.is_available() else "nonsense"}, "device"),
])
def test_bad_input_is_refused_clearly(X, kw, match):
    params = {"n_components": 2, "max_steps": 1, **kw}
    with pytest.raises(ValueError, match=match):
        VMoNF(**params).fit(X)


def test_bad_labels_and_unfitted():
    x = np.random.rand(20, 2)
    with pytest.raises(ValueError, match="between 0 and"):
        VMoNF(2, max_steps=1).fit(x, np.full(20, 5))
    with pytest.raises(ValueError, match="one label per sample"):
        VMoNF(2, max_steps=1).fit(x, np.zeros(3))
    with pytest.raises(ValueError, match="not fitted"):
        VMoNF(2).predict(x)


def test_wrong_feature_count_after_fit(fitted):
    est, _, _ = fitted
    with pytest.raises(ValueError, match="fitted on 2"):
        est.predict(np.zeros((3, 5)))


def test_divergence_rolls_back_and_explains():
    from vmonf.train import DivergenceError

    x, _ = make_toy("moons", 200, seed=0)
    with pytest.raises(DivergenceError, match="learning rate"):
        VMoNF(2, depth=1, hidden=8, max_steps=50, lr=1e30, init="random").fit(x)


def test_pinwheel_clusters_recovered():
    x, y = make_toy("pinwheel", 1000, wings=3, rate=0.25, seed=0)
    est = VMoNF(3, depth=4, hidden=32, max_steps=400, seed=0).fit(x)
    assert clustering_scores(y, est.predict(x))["ari"] >= 0.9


def test_two_circles_semi_supervised():
    x, y = make_toy("two circles", 1088, seed=0)
    labels = np.full_like(y, -1)
    for c in (0, 1):
        labels[np.flatnonzero(y == c)[:32]] = c
    est = VMoNF(2, depth=4, hidden=32, max_steps=300, seed=0).fit(x, labels)
    unl = labels < 0
    assert clustering_scores(y[unl], est.predict(x[unl]))["accuracy"] >= 0.95


def test_training_fixes_a_wrong_start():
    """The quality tests above pass on their starts alone (k-means already gets the 3-wing pinwheel); here
    the start is clearly wrong (k-means cuts each moon in half) and only training can put it right."""
    from vmonf.starts import initial_partition

    x, y = make_toy("moons", 600, seed=0)
    start = initial_partition(x, 2, "kmeans", seed=0)
    assert clustering_scores(y, start)["ari"] < 0.4
    est = VMoNF(2, init="kmeans", max_steps=800, seed=0).fit(x)
    assert clustering_scores(y, est.predict(x))["ari"] >= 0.95


def test_the_paper_recipe_is_the_method_as_published():
    from vmonf import PAPER_RECIPE

    assert VMoNF(3).effective_params()["init"] == "auto"  # the default recipe changes nothing
    paper = VMoNF(3, recipe="paper", hidden=16, max_steps=120, seed=0)
    used = paper.effective_params()
    assert {k: used[k] for k in PAPER_RECIPE} == PAPER_RECIPE
    explicit = VMoNF(3, recipe="paper", depth=2, init="kmeans").effective_params()
    assert (explicit["depth"], explicit["init"], explicit["consistency"]) == (2, "kmeans", 0.0)  # given ones win
    x, _ = make_toy("gaussian mixture", 300, components=3, seed=0)
    paper.fit(x)
    trainer = paper.trainer_
    assert paper.init_ == "random" and trainer.q_hold_until == 0  # no starting partition, so no q hold
    assert trainer.config.consistency == 0 and not trainer.config.keep_best and trainer.best_state is None
    assert trainer.temperature() == pytest.approx(np.exp(-1e-3 * 120))  # T = exp(-1e-3 step) on q
    assert paper.model_.config.depth == 8 and not paper.model_.config.learn_prior
    with pytest.raises(ValueError, match="recipe must be one of default, paper"):
        VMoNF(3, recipe="papr").fit(x)

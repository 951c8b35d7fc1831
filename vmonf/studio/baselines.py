"""A Gaussian mixture on the same data, split and grid as a run, drawn as a Snapshot for side-by-side views."""

from __future__ import annotations

import numpy as np

from vmonf.metrics import clustering_scores
from vmonf.starts import split_indices
from vmonf.studio.snapshot import Snapshot


def gmm_snapshot(x: np.ndarray, y: np.ndarray | None, k: int, like: Snapshot, *, seed: int = 0,
                 val_fraction: float = 0.1) -> Snapshot:
    """Fit scikit-learn's full-covariance ``GaussianMixture`` with ``k`` components on the run's training
    split of ``x``, and evaluate it like the run's snapshot ``like``: same grid, same shown points,
    held-out log-likelihood on the same validation points.
    """
    from sklearn.mixture import GaussianMixture

    tr, va = split_indices(len(x), seed, val_fraction)
    gmm = GaussianMixture(k, covariance_type="full", n_init=3, random_state=seed).fit(x[tr])
    gx, gy = like.get("grid_x"), like.get("grid_y")
    xx, yy = np.meshgrid(gx, gy)
    log_density = gmm.score_samples(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape)
    pts = like.get("points")
    proba = gmm.predict_proba(pts)
    meta = {"step": like.step, "val_loglik": float(gmm.score(x[va])) if len(va) else float("nan")}
    if y is not None:
        meta.update(clustering_scores(y, gmm.predict(x)))
    arrays = {"grid_x": gx, "grid_y": gy, "log_density": log_density.astype(np.float32), "points": pts,
              "assign": proba.argmax(1).astype(np.int16), "confidence": proba.max(1).astype(np.float32),
              "pi": gmm.weights_.astype(np.float32)}
    return Snapshot.create(meta, arrays)

"""Seeded 2-D toy data sets: each generator returns ``(X, y)`` with the true labels.

Every generator is deterministic given ``seed`` and returns ``X`` as float32 of shape ``(n, 2)`` and ``y`` as
int64 of shape ``(n,)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _shuffled(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def _split(n: int, k: int) -> np.ndarray:
    """Labels ``0..k-1`` for ``n`` points in near-equal groups."""
    return np.arange(n) % k


def pinwheel(
    n: int = 1000, *, wings: int = 5, radial_std: float = 0.3, tangential_std: float = 0.05,
    rate: float = 0.4, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Curved wings (Johnson et al. 2016): Gaussian blobs bent by a radius-dependent rotation."""
    rng = np.random.default_rng(seed)
    y = _split(n, wings)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angles = 2 * np.pi * y / wings + rate * np.exp(feats[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    x = np.stack([feats[:, 0] * cos - feats[:, 1] * sin, feats[:, 0] * sin + feats[:, 1] * cos], 1)
    return _shuffled(x, y, rng)


def two_circles(
    n: int = 1000, *, radii: tuple[float, float] = (0.8, 0.4), noise: float = 0.04, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings; label 0 is the outer ring."""
    rng = np.random.default_rng(seed)
    y = _split(n, 2)
    theta = rng.uniform(0, 2 * np.pi, n)
    r = np.asarray(radii)[y]
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + noise * rng.standard_normal((n, 2))
    return _shuffled(x, y, rng)


def moons(n: int = 1000, *, noise: float = 0.08, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles."""
    rng = np.random.default_rng(seed)
    y = _split(n, 2)
    t = rng.uniform(0, np.pi, n)
    x = np.where(
        (y == 0)[:, None],
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    )
    return _shuffled(x + noise * rng.standard_normal((n, 2)), y, rng)


def gaussian_mixture(
    n: int = 1000, *, components: int = 4, spread: float = 2.0, std: float = 0.35, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs with centres on a circle of radius ``spread``."""
    rng = np.random.default_rng(seed)
    y = _split(n, components)
    angle = 2 * np.pi * np.arange(components) / components
    centres = spread * np.stack([np.cos(angle), np.sin(angle)], 1)
    return _shuffled(centres[y] + std * rng.standard_normal((n, 2)), y, rng)


def spirals(n: int = 1000, *, arms: int = 2, noise: float = 0.05, turns: float = 1.5, seed: int = 0):
    """Interleaved Archimedean spiral arms: long, thin, curled clusters no Gaussian can fit."""
    rng = np.random.default_rng(seed)
    y = _split(n, arms)
    t = np.sqrt(rng.uniform(0.04, 1.0, n)) * turns * 2 * np.pi
    phase = 2 * np.pi * y / arms
    x = np.stack([t * np.cos(t + phase), t * np.sin(t + phase)], 1) / (turns * 2 * np.pi)
    return _shuffled(x + noise * rng.standard_normal((n, 2)), y, rng)


def banana(n: int = 1000, *, bend: float = 1.2, noise: float = 0.1, seed: int = 0):
    """Two crescent-shaped clusters facing each other (curved, skewed, heavy at the tips)."""
    rng = np.random.default_rng(seed)
    y = _split(n, 2)
    u = rng.standard_normal(n)
    sign = np.where(y == 0, 1.0, -1.0)
    x = np.stack([u, sign * (bend * (0.5 * u**2 - 1.0) - 0.3)], 1)
    return _shuffled(x + noise * rng.standard_normal((n, 2)), y, rng)


def checkerboard(n: int = 1000, *, squares: int = 4, seed: int = 0):
    """Uniform points on the black squares of a checkerboard; each square is one cluster."""
    rng = np.random.default_rng(seed)
    cells = [(i, j) for i in range(squares) for j in range(squares) if (i + j) % 2 == 0]
    y = _split(n, len(cells))
    corner = np.asarray(cells, dtype=float)[y]
    return _shuffled((corner + rng.uniform(0, 1, (n, 2))) / squares * 2 - 1, y, rng)


#: Toy data sets by name: generator, and a one-line description for the UI.
TOY_DATASETS: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray]], str]] = {
    "pinwheel": (pinwheel, "Curved wings: each wing bends, so a single Gaussian per cluster cannot fit it."),
    "two circles": (two_circles, "Two rings, one inside the other: the paper's hard case."),
    "moons": (moons, "Two interleaved half-moons."),
    "gaussian mixture": (gaussian_mixture, "Round Gaussian blobs: the warm-up where a GMM is already right."),
    "spirals": (spirals, "Interleaved spiral arms: long, thin and curled."),
    "banana": (banana, "Two crescents facing each other: curved and skewed."),
    "checkerboard": (checkerboard, "Flat squares with sharp edges: hard for smooth densities."),
}


def make_toy(name: str, n: int = 1000, *, seed: int = 0, **params) -> tuple[np.ndarray, np.ndarray]:
    """Generate the toy data set ``name`` (a key of :data:`TOY_DATASETS`)."""
    if name not in TOY_DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(TOY_DATASETS)}.")
    if n < 2:
        raise ValueError(f"n must be at least 2 points, got {n}.")
    return TOY_DATASETS[name][0](n, seed=seed, **params)

"""Features for the model: whitened PCA of images (with an inverse, to show samples as images), data sets by
name as :class:`Dataset`, shifted and rotated copies for the consistency term, revealed labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vmonf.data.images import load_digits, load_fashion_mnist, load_mnist
from vmonf.data.toys import TOY_DATASETS, make_toy


class ImagePreprocessor:
    """Pixels -> features and back: optional dequantisation + logit, then optional PCA whitening.

    Pixel-space flows collapse onto 1-2 components (docs/RESULTS.md, "Early measurements"); PCA-whitened features with
    10-20 dimensions cluster well. :meth:`inverse_transform` maps features (e.g. model samples)
    back to pixel images in [0, 1].

    Args:
        n_components: PCA dimensions kept; ``None`` keeps pixels (no PCA).
        logit: apply ``logit(alpha + (1 - 2 alpha) x)`` after dequantisation.
        alpha: logit margin, keeps the logit finite at 0 and 1.
        levels: pixel levels for uniform dequantisation noise (256 for 8-bit images, 0 for none).
        seed: seed of the dequantisation noise.
    """

    def __init__(self, n_components: int | None = 16, *, logit: bool = False, alpha: float = 0.05,
                 levels: int = 256, seed: int = 0):
        self.n_components, self.logit, self.alpha, self.levels, self.seed = n_components, logit, alpha, levels, seed

    def _to_space(self, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        x = x.astype(np.float64)
        if rng is not None and self.levels:
            x = np.clip(x + rng.uniform(0, 1, x.shape) / self.levels, 0, 1)
        if self.logit:
            p = self.alpha + (1 - 2 * self.alpha) * x
            x = np.log(p) - np.log1p(-p)
        return x

    def fit(self, x: np.ndarray) -> ImagePreprocessor:
        z = self._to_space(x, np.random.default_rng(self.seed))
        self.mean_ = z.mean(0)
        if self.n_components is None:
            return self
        if not 1 <= self.n_components <= min(z.shape):
            raise ValueError(f"PCA dimensions must be between 1 and {min(z.shape)}, got {self.n_components}.")
        _, s, vt = np.linalg.svd(z - self.mean_, full_matrices=False)
        self.components_ = vt[: self.n_components]
        self.scales_ = s[: self.n_components] / np.sqrt(len(z) - 1) + 1e-8
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = self._to_space(x, np.random.default_rng(self.seed + 1))
        if self.n_components is None:
            return z.astype(np.float32)
        return ((z - self.mean_) @ self.components_.T / self.scales_).astype(np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def inverse_transform(self, f: np.ndarray) -> np.ndarray:
        z = np.asarray(f, dtype=np.float64)
        if self.n_components is not None:
            z = (z * self.scales_) @ self.components_ + self.mean_
        if self.logit:
            z = (1 / (1 + np.exp(-z)) - self.alpha) / (1 - 2 * self.alpha)
        return np.clip(z, 0, 1).astype(np.float32)


#: Image data sets by name, for the UI and the CLI.
IMAGE_DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, tuple[int, int]]]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
}


@dataclass
class Dataset:
    """Features ready for the model, their true labels, and how to show them again as images."""

    name: str
    x: np.ndarray  # (n, d) float32 features
    y: np.ndarray | None  # (n,) int64 true labels, None when unknown (an uploaded CSV without labels)
    image_shape: tuple[int, int] | None = None  # set for image data sets
    preprocessor: ImagePreprocessor | None = None  # maps features back to pixels
    pixels: np.ndarray | None = None  # (n, h * w) images in [0, 1], for image data sets

    def to_images(self, features: np.ndarray) -> np.ndarray:
        """Features -> images of shape ``(n, h, w)`` in [0, 1]."""
        if self.image_shape is None or self.preprocessor is None:
            raise ValueError(f"{self.name} is not an image data set.")
        return self.preprocessor.inverse_transform(features).reshape(-1, *self.image_shape)


def load_dataset(name: str, *, n: int = 1000, seed: int = 0, pca: int = 16, classes: list[int] | None = None,
                 toy_params: dict | None = None, **image_kw) -> Dataset:
    """Load a toy set (``n`` points) or an image set (PCA-whitened to ``pca`` dims, optionally some ``classes``)."""
    if name in TOY_DATASETS:
        x, y = make_toy(name, n, seed=seed, **(toy_params or {}))
        return Dataset(name, x, y)
    if name not in IMAGE_DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(TOY_DATASETS) + sorted(IMAGE_DATASETS)}.")
    pixels, y, shape = IMAGE_DATASETS[name](**image_kw)
    if classes is not None:
        keep = np.isin(y, classes)
        if not keep.any():
            raise ValueError(f"No images with labels {classes}.")
        pixels, y = pixels[keep], np.searchsorted(np.sort(classes), y[keep])
    prep = ImagePreprocessor(pca, seed=seed)
    return Dataset(name, prep.fit_transform(pixels), y.astype(np.int64), shape, prep, pixels)


def augment_images(pixels: np.ndarray, shape: tuple[int, int], *, seed: int = 0, max_shift: float = 2.0,
                   max_angle: float = 12.0) -> np.ndarray:
    """Each image shifted by up to ``max_shift`` pixels and rotated by up to ``max_angle`` degrees (random)."""
    from scipy.ndimage import affine_transform

    rng = np.random.default_rng(seed)
    h, w = shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    out = np.empty_like(pixels, dtype=np.float32)
    for i, img in enumerate(pixels.reshape(-1, h, w)):
        a = np.deg2rad(rng.uniform(-max_angle, max_angle))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        offset = centre - rot @ centre - rng.uniform(-max_shift, max_shift, 2)
        out[i] = affine_transform(img, rot, offset=offset, order=1, mode="constant").ravel()
    return np.clip(out, 0, 1)


def augmented_features(data: Dataset, copies: int = 4, seed: int = 0, **kw) -> np.ndarray:
    """``copies`` randomly shifted and rotated versions of an image data set, in its feature space:
    shape ``(copies, n, d)``, for the consistency term (``VMoNF.fit(..., X_perturbed=...)``)."""
    if data.pixels is None or data.preprocessor is None or data.image_shape is None:
        raise ValueError(f"{data.name} is not an image data set; 2-D data are perturbed with noise instead.")
    return np.stack([data.preprocessor.transform(augment_images(data.pixels, data.image_shape, seed=seed + c, **kw))
                     for c in range(copies)])


def pick_labels(y: np.ndarray, per_class: int, seed: int, n_classes: int | None = None) -> np.ndarray | None:
    """Reveal ``per_class`` random true labels per class (the first ``n_classes`` classes); -1 elsewhere
    (and where ``y`` is -1, unknown).

    Returns ``None`` when ``per_class`` is 0 (unsupervised).
    """
    if per_class <= 0:
        return None
    out = np.full_like(y, -1)
    rng = np.random.default_rng(seed)
    for c in np.unique(y[y >= 0])[:n_classes]:  # -1: a point whose cluster is not known
        out[rng.permutation(np.flatnonzero(y == c))[:per_class]] = c
    return out

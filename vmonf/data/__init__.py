"""Data: seeded 2-D toy sets (:mod:`.toys`), image sources (:mod:`.images`) and model features (:mod:`.features`)."""

from vmonf.data.features import (
    IMAGE_DATASETS,
    Dataset,
    ImagePreprocessor,
    augment_images,
    augmented_features,
    load_dataset,
    pick_labels,
)
from vmonf.data.images import (
    FASHION_MNIST,
    MNIST,
    SYSTEM_IDX_DIRS,
    IdxSource,
    ProgressFn,
    default_cache_dir,
    download_file,
    load_digits,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    md5_of,
    read_idx,
    write_idx,
)
from vmonf.data.toys import (
    TOY_DATASETS,
    banana,
    checkerboard,
    gaussian_mixture,
    make_toy,
    moons,
    pinwheel,
    spirals,
    two_circles,
)

__all__ = [
    "pinwheel", "two_circles", "moons", "gaussian_mixture", "spirals", "banana", "checkerboard", "TOY_DATASETS",
    "make_toy", "IdxSource", "MNIST", "FASHION_MNIST", "SYSTEM_IDX_DIRS", "ProgressFn", "default_cache_dir",
    "read_idx", "write_idx", "md5_of", "download_file", "load_idx_dataset", "load_mnist", "load_fashion_mnist",
    "load_digits", "ImagePreprocessor", "IMAGE_DATASETS", "Dataset", "load_dataset", "augment_images",
    "augmented_features", "pick_labels",
]

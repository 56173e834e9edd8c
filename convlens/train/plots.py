"""PNG plots of a training run, drawn with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def plot_history(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, training beside validation."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    for ax, key, label in zip(
        fig.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy"), strict=True
    ):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike) -> None:
    """The confusion matrix: rows are true classes, columns predictions, counts in cells."""
    k = len(classes)
    fig = Figure(figsize=(1.0 + 0.5 * k, 0.8 + 0.5 * k), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    fig.savefig(path, dpi=110)

"""PNG plots of a training run, drawn with matplotlib's object API (no global pyplot state).

matplotlib is imported when a plot is drawn, not with the package: importing it costs more
than a second, which ``convlens --help`` and the explainer's server should not pay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def plot_history(
    history: Sequence[dict], path: str | os.PathLike, title: str | None = None
) -> None:
    """Loss and accuracy per epoch, training beside validation; whole epochs on the x axis."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    fig.suptitle(title or f"training: {len(epochs)} epoch{'s' if len(epochs) != 1 else ''}")
    for ax, key, label in zip(
        fig.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy"), strict=True
    ):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=split)
        if len(epochs) <= 12:  # one tick per epoch (with one epoch, matplotlib picks 0.96…)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
) -> None:
    """The confusion matrix: rows are true classes, columns predictions, counts in cells.

    ``title`` defaults to the accuracy the matrix holds and its number of images; callers
    that know the split name it, e.g. ``"mnist-bundled test: accuracy 0.9780 (500 images)"``.
    """
    from matplotlib.figure import Figure

    k = len(classes)
    total = int(matrix.sum())
    if title is None:
        accuracy = np.trace(matrix) / total if total else 0.0
        title = f"accuracy {accuracy:.4f} ({total} images)"
    fig = Figure(figsize=(max(4.0, 1.0 + 0.5 * k), 1.2 + 0.5 * k), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    fig.savefig(path, dpi=110)

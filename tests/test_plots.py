"""The training run's pictures: whole epochs on the x axis, and titles that say what they show."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from convlens.train import plot_confusion, plot_history


@pytest.fixture
def figures(monkeypatch):
    drawn: list[Figure] = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        drawn.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return drawn


def test_curves_have_whole_epoch_ticks_and_a_title(tmp_path, figures):
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "train_accuracy": 0.8}]
    plot_history(history, tmp_path / "curves.png", "mnist-net on mnist-bundled")
    (fig,) = figures
    assert fig.get_suptitle() == "mnist-net on mnist-bundled"
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert np.all(ticks == np.round(ticks)), ticks


def test_confusion_title_says_split_and_accuracy(tmp_path, figures):
    plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "c.png")
    assert figures[0].axes[0].get_title() == "accuracy 0.8750 (8 images)"
    plot_confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "d.png", "digits test")
    assert figures[1].axes[0].get_title() == "digits test"

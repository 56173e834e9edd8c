"""Training: the loop, evaluation, checkpoints and plots.

>>> from convlens.train import TrainConfig, train
>>> result = train(TrainConfig(model="mnist-net", dataset="mnist-bundled", epochs=3))
"""

from .checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from .model_files import load_any_model
from .plots import plot_confusion, plot_history
from .trainer import (
    LOSSES,
    Evaluation,
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    evaluate,
    train,
    trained_loss,
)

__all__ = [
    "LOSSES",
    "Checkpoint",
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "evaluate",
    "load_any_model",
    "load_checkpoint",
    "load_model",
    "plot_confusion",
    "plot_history",
    "save_checkpoint",
    "train",
    "trained_loss",
]

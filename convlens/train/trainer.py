"""The training loop: mini-batch SGD/Adam on a dataset, with validation, early stopping,
checkpoints every epoch, bit-exact resume, and a stop with a diagnosis when the loss diverges.

A run writes into its output folder::

    checkpoint.safetensors   everything needed to continue (written atomically each epoch)
    model.safetensors        the trained model (best validation epoch), with classes and input
    history.json             settings, per-epoch loss / accuracy, the test result
    curves.png               loss and accuracy per epoch
    confusion.png            the confusion matrix on the test split

A folder that holds a run is never trained into afresh by accident: ``resume`` continues
it, ``overwrite`` replaces it, and without either the run is refused.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from convlens import nn
from convlens.data import dataset_info, load_dataset
from convlens.models import PRESETS
from convlens.nn.checks import integer
from convlens.nn.layer import default_rng
from convlens.nn.sequential import remove_stale_temporaries

from .augment import random_shift
from .checkpoint import load_checkpoint, save_checkpoint
from .plots import plot_confusion, plot_history

OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "float64")
#: The losses a run can train with, by their ``--loss`` names. Both take the model's logits:
#: ``"mse"`` is the backpropagation series' first loss, MSE between the softmax of the
#: logits and one-hot targets (for two classes, a sigmoid of the logits' difference; see
#: :class:`convlens.nn.SoftmaxMSELoss`).
LOSSES = {"cross-entropy": nn.CrossEntropyLoss, "mse": nn.SoftmaxMSELoss}
#: Files whose presence means a folder already holds a run.
RUN_FILES = ("checkpoint.safetensors", "model.safetensors", "history.json")
#: Everything a run writes (see the module's docstring).
OUTPUT_FILES = (*RUN_FILES, "curves.png", "confusion.png")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names where it first happened."""


@dataclass
class TrainConfig:
    """Settings of a training run (the ``convlens train`` options).

    Attributes
    ----------
    model : str
        A preset (``"mnist-net"``, ``"tiny-vgg"``) sized to the dataset, or a model file.
    dataset : str
        A name from :data:`convlens.data.DATASETS`.
    epochs, batch_size : int
    optimizer : {"adam", "sgd"}
    loss : {"cross-entropy", "mse"}
        What the run minimises (:data:`LOSSES`); kept in the model's metadata as ``"loss"``,
        and validation and test losses are this loss too.
    lr, momentum, weight_decay : float
        ``momentum`` applies to SGD only.
    seed : int
        Seeds the initial weights, the validation split, the shuffling and dropout.
    val_split : float or None
        Fraction of the training split held out for validation. ``None``: the dataset's own
        validation split if it has one, else 0.1. ``0``: no validation.
    patience : int or None
        Stop after this many epochs without a better validation loss (early stopping).
    limit : int or None
        Train on only the first ``limit`` training examples (quick experiments).
    augment_shift : int
        Shift each training image by up to this many pixels per axis (0: no augmentation).
    dtype : {"float32", "float64"}
    out : str
        Output folder.
    """

    model: str = "mnist-net"
    dataset: str = "mnist-bundled"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    loss: str = "cross-entropy"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    val_split: float | None = None
    patience: int | None = None
    limit: int | None = None
    augment_shift: int = 0
    dtype: str = "float32"
    out: str = "runs/latest"

    def validate(self) -> TrainConfig:
        """Raise a ValueError naming the first bad setting."""
        checks = [
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.batch_size >= 1, "batch_size", "must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "must be a positive number"),
            (0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}"),
            (self.loss in LOSSES, "loss", f"must be one of {tuple(LOSSES)}"),
            (self.dtype in DTYPES, "dtype", f"must be one of {DTYPES}"),
            (self.val_split is None or 0 <= self.val_split < 1, "val_split", "must be in [0, 1)"),
            (self.patience is None or self.patience >= 1, "patience", "must be at least 1"),
            (self.limit is None or self.limit >= 1, "limit", "must be at least 1"),
            (self.augment_shift >= 0, "augment_shift", "must be >= 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)!r}")
        return self


@dataclass
class Evaluation:
    """Loss, accuracy and confusion matrix of a model on labelled data; ``loss_name`` says
    which loss ``loss`` is (a name from :data:`LOSSES`)."""

    loss: float
    accuracy: float
    confusion: np.ndarray  # (K, K): rows true class, columns predicted
    loss_name: str = "cross-entropy"

    @property
    def per_class_accuracy(self) -> np.ndarray:
        totals = self.confusion.sum(axis=1)
        return np.divide(
            np.diag(self.confusion), totals, where=totals > 0, out=np.zeros(len(totals))
        )


@dataclass
class TrainResult:
    """The trained model (best validation epoch), its settings, history, test result, folder."""

    model: nn.Sequential
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    test: Evaluation | None = None
    out: Path = Path()
    stopped_early: bool = False


def evaluate(
    model: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 256,
    loss: str = "cross-entropy",
) -> Evaluation:
    """Mean loss (``loss``: a name from :data:`LOSSES`), accuracy and confusion matrix, in
    evaluation mode (no dropout).

    ``x`` is cast to the model's dtype batch by batch. A trained model's own loss is
    :func:`trained_loss`.
    """
    integer(batch_size, "batch_size", minimum=1)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
    dtype = model.parameters()[0].data.dtype if model.parameters() else x.dtype
    was_training = model.training
    model.eval()
    loss_fn = LOSSES[loss]()
    total_loss, predictions = 0.0, []
    for start in range(0, len(x), batch_size):
        logits = model.forward(x[start : start + batch_size].astype(dtype, copy=False))
        total_loss += loss_fn.forward(logits, y[start : start + batch_size]) * len(logits)
        predictions.append(logits.argmax(axis=1))
    model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    k = model.output_shape(x.shape[1:])[0]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, predicted), 1)
    n = max(len(x), 1)
    return Evaluation(total_loss / n, float((predicted == y).sum() / n), confusion, loss)


def trained_loss(model: nn.Sequential) -> str:
    """The loss ``model`` was trained with (its metadata's ``"loss"``, written by
    :func:`train`), else ``"cross-entropy"``."""
    loss = model.metadata.get("loss")
    return loss if loss in LOSSES else "cross-entropy"


def train(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> TrainResult:
    """Train as ``config`` says, writing checkpoints, the model, history and plots to ``out``.

    With ``resume=True`` the run continues from ``out/checkpoint.safetensors`` exactly where it
    stopped (same weights, optimizer state, shuffling and dropout draws); the saved settings are
    used, except ``epochs``, which must be raised above the epochs already trained. Without it,
    a folder that already holds a run (:data:`RUN_FILES`) is refused unless ``overwrite=True``:
    then that run's files are deleted when the first new epoch is saved, so a run that fails
    before it leaves the old one whole. Temporary files left by a killed run are removed
    either way.

    The process keeps freed memory for the next step from here on
    (:func:`convlens.nn.keep_freed_memory`).

    Raises
    ------
    ValueError
        Bad settings, an unknown dataset, a model that does not fit the data, a bad checkpoint,
        a folder that holds a run (neither ``resume`` nor ``overwrite``), ``epochs`` not above
        those a resumed run has done.
    TrainingDiverged
        The loss became NaN or infinite. The last good checkpoint is kept.
    """
    out = Path(config.out)
    checkpoint_path = out / "checkpoint.safetensors"
    if resume and overwrite:
        raise ValueError(
            "resume continues the run in the folder and overwrite replaces it: pick one"
        )
    if resume:
        saved = load_checkpoint(checkpoint_path)
        config = _resumed_config(saved.state, config.epochs, out)
    else:
        config.validate()
        _check_fresh_folder(out, overwrite)
    for name in ("checkpoint.safetensors", "model.safetensors"):
        remove_stale_temporaries(out / name)
    nn.keep_freed_memory()
    info = dataset_info(config.dataset)
    dtype = np.dtype(config.dtype)
    (x_train, y_train), (x_val, y_val) = _split(config, info)
    x_train, x_val = x_train.astype(dtype, copy=False), x_val.astype(dtype, copy=False)

    shuffle_rng = np.random.default_rng(config.seed)
    if resume:
        model, state = saved.model.astype(dtype), saved.state
        optimizer = _make_optimizer(config, model)
        optimizer.load_state_dict(saved.optimizer_arrays, state["optimizer_scalars"])
        _restore_generators(state, shuffle_rng, checkpoint_path)
        history, best = state["history"], saved.best
    else:
        nn.manual_seed(config.seed)
        model = _build_model(config, info).astype(dtype)
        optimizer = _make_optimizer(config, model)
        history, best = [], {}
    model.input_shape, model.classes = info.input_shape, list(info.classes)
    model.metadata = {**model.metadata, "loss": config.loss}  # in checkpoints and the model

    loss_fn = LOSSES[config.loss]()
    first_epoch = len(history) + 1
    stopped_early = _patience_exhausted(config, history)
    for epoch in range(first_epoch, config.epochs + 1):
        if stopped_early:
            break
        started = time.perf_counter()
        model.train()
        order = shuffle_rng.permutation(len(x_train))
        bar = tqdm(
            range(0, len(order), config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not progress,
            leave=True,
        )
        seen = correct = 0
        loss_sum = 0.0
        for step, start in enumerate(bar, start=1):
            batch = order[start : start + config.batch_size]
            xb, yb = random_shift(x_train[batch], config.augment_shift, shuffle_rng), y_train[batch]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # every step's loss is checked: divergence is reported once, by _diagnose
                optimizer.zero_grad()
                loss, logits = model.forward_backward(xb, yb, loss_fn)
                if not math.isfinite(loss):
                    raise TrainingDiverged(_diagnose(model, xb, loss, epoch, step, config))
                optimizer.step()
            seen += len(batch)
            correct += int((logits.argmax(axis=1) == yb).sum())
            loss_sum += loss * len(batch)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}
        if len(x_val):
            val = evaluate(model, x_val, y_val, loss=config.loss)
            record.update(val_loss=val.loss, val_accuracy=val.accuracy)
            if not best or val.loss < min(h["val_loss"] for h in history):
                best = {k: v.copy() for k, v in model.tensors().items()}
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if progress:
            tqdm.write(_describe(record, config.loss))
        stopped_early = _patience_exhausted(config, history)
        state = {
            "config": asdict(config),
            "history": history,
            "shuffle_rng": shuffle_rng.bit_generator.state,
            "dropout_rng": default_rng().bit_generator.state,
        }
        if overwrite:  # the old run goes once the new one has an epoch to keep, all of it
            for name in OUTPUT_FILES:
                (out / name).unlink(missing_ok=True)
            overwrite = False
        save_checkpoint(checkpoint_path, model, optimizer, state, best)

    final = model.load_tensors(best) if best else model
    test = None
    if "test" in info.splits:
        test = evaluate(final, *load_dataset(config.dataset, "test"), loss=config.loss)
    _write_outputs(final, history, test, config, info, out)
    return TrainResult(final, config, history, test, out, stopped_early)


def _check_fresh_folder(out: Path, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one, unless told to replace it."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not overwrite:
        raise ValueError(
            f"{out} already holds a training run ({', '.join(found)}): continue it with "
            "--resume (resume=True), or replace it with --overwrite (overwrite=True)"
        )


def _resumed_config(state: dict[str, Any], epochs: int, out: Path) -> TrainConfig:
    """The settings a checkpoint was trained with, ``epochs`` raised; a ValueError when the
    saved settings are malformed or ``epochs`` adds no epoch to those already done."""
    done = len(state["history"])
    if epochs <= done:
        raise ValueError(
            f"{out} has already trained {done} epoch{'s' if done != 1 else ''}; resuming to "
            f"--epochs {epochs} would train none: ask for more than {done}"
        )
    try:
        config = TrainConfig(**{**state["config"], "epochs": epochs, "out": str(out)})
        return config.validate()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{out}: the checkpoint's settings are malformed ({err})") from None


def _restore_generators(
    state: dict[str, Any], shuffle_rng: np.random.Generator, origin: Path
) -> None:
    """Put the shuffling and dropout generators back where the checkpoint left them."""
    try:
        shuffle_rng.bit_generator.state = state["shuffle_rng"]
        default_rng().bit_generator.state = state["dropout_rng"]
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(
            f"{origin}: malformed generator state in the checkpoint ({err!r})"
        ) from None


def _patience_exhausted(config: TrainConfig, history: list[dict[str, Any]]) -> bool:
    if config.patience is None or not history or "val_loss" not in history[-1]:
        return False
    losses = [h["val_loss"] for h in history]
    return len(losses) - 1 - int(np.argmin(losses)) >= config.patience


def _split(config: TrainConfig, info) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Training and validation arrays: the dataset's own validation split, or a seeded hold-out."""
    x, y = load_dataset(config.dataset, "train")
    if config.limit is not None:
        x, y = x[: config.limit], y[: config.limit]
    if config.val_split is None and "val" in info.splits:
        return (x, y), load_dataset(config.dataset, "val")
    fraction = 0.1 if config.val_split is None else config.val_split
    order = np.random.default_rng([config.seed, 1]).permutation(len(x))
    n_val = round(fraction * len(x))
    if len(x) - n_val < 1:
        raise ValueError(f"val_split {fraction} leaves no training examples out of {len(x)}")
    val, keep = order[:n_val], order[n_val:]
    return (x[keep], y[keep]), (x[val], y[val])


def _build_model(config: TrainConfig, info) -> nn.Sequential:
    C, H, W = info.input_shape
    if config.model in PRESETS:
        if H != W:
            raise ValueError(
                f"preset {config.model!r} needs square inputs, {config.dataset} has {H}x{W}"
            )
        return PRESETS[config.model](in_channels=C, num_classes=len(info.classes), input_size=H)
    if not os.path.exists(config.model):
        raise ValueError(
            f"model {config.model!r} is neither a preset ({', '.join(PRESETS)}) nor a model file"
        )
    model = nn.load(config.model)
    out = model.output_shape(info.input_shape)
    if out != (len(info.classes),):
        raise ValueError(
            f"{config.model} maps {config.dataset}'s input {info.input_shape} to {out}, "
            f"but the dataset has {len(info.classes)} classes"
        )
    return model


def _make_optimizer(config: TrainConfig, model: nn.Sequential) -> nn.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return nn.SGD(params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return nn.Adam(params, config.lr, weight_decay=config.weight_decay)


def _diagnose(
    model: nn.Sequential, xb: np.ndarray, loss: float, epoch: int, step: int, config
) -> str:
    """Name the first layer whose parameters or output are not finite."""
    where, x = "the loss itself (the logits are finite but extreme)", xb
    for i, layer in enumerate(model.layers):
        bad = [name for name, p in layer.named_parameters() if not np.all(np.isfinite(p.data))]
        if bad:
            where = f"the {' and '.join(bad)} of layer ({i}) {layer!r}"
            break
        x = layer.forward(x)
        if not np.all(np.isfinite(x)):
            where = f"the output of layer ({i}) {layer!r}"
            break
    kept = f"epoch {epoch - 1}" if epoch > 1 else "none yet"
    return (
        f"training stopped: the loss became {loss} at epoch {epoch}, step {step}; "
        f"the first non-finite values are in {where}. Try a smaller learning rate "
        f"(now {config.lr}). Last checkpoint kept: {kept}."
    )


def _describe(record: dict[str, Any], loss: str) -> str:
    r = record
    text = (
        f"epoch {r['epoch']}: {loss} loss {r['train_loss']:.4f}, accuracy {r['train_accuracy']:.4f}"
    )
    if "val_loss" in r:
        text += f"; validation loss {r['val_loss']:.4f}, accuracy {r['val_accuracy']:.4f}"
    return text


def _write_outputs(
    model: nn.Sequential, history, test, config: TrainConfig, info, out: Path
) -> None:
    C, H, W = info.input_shape
    metadata = {
        "dataset": config.dataset,
        "preprocessing": {
            "color": "grayscale" if C == 1 else "rgb",
            "size": [H, W],
            "scale": "pixel / 255, in [0, 1]",
            "layout": "CHW",
        },
        "trained_with": {
            f.name: getattr(config, f.name) for f in fields(config) if f.name != "out"
        },
        "epochs_trained": len(history),
    }
    if test is not None:
        metadata["test_accuracy"] = test.accuracy
    model.save(out / "model.safetensors", info.input_shape, info.classes, metadata)
    report = {"config": asdict(config), "loss": config.loss, "history": history}
    if test is not None:
        report["test"] = {"loss": test.loss, "accuracy": test.accuracy}
        title = (
            f"{config.dataset} test: accuracy {test.accuracy:.4f} ({test.confusion.sum()} images)"
        )
        plot_confusion(test.confusion, info.classes, out / "confusion.png", title)
    (out / "history.json").write_text(json.dumps(report, indent=2))
    plot_history(history, out / "curves.png", f"{config.model} on {config.dataset}")

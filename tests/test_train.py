"""The trainer and its command line: outputs, exact resume, early stopping, divergence, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convlens.models
import convlens.nn as nn
from convlens.train import TrainConfig, TrainingDiverged, load_checkpoint, train
from convlens.train import trainer as trainer_module

QUICK = dict(dataset="mnist-bundled", limit=256, batch_size=32)
PRETRAINED = Path(convlens.models.__file__).parent / "files" / "mnist_net.safetensors"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_training_writes_model_history_plots_and_checkpoint(tmp_path):
    result = train(TrainConfig(epochs=2, out=str(tmp_path), **QUICK), progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    outputs = [
        "model.safetensors",
        "history.json",
        "curves.png",
        "confusion.png",
        "checkpoint.safetensors",
    ]
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name
    model = nn.load(tmp_path / "model.safetensors")
    assert model.classes == [str(d) for d in range(10)]
    assert model.input_shape == (1, 28, 28)
    assert model.metadata["trained_with"]["epochs"] == 2
    assert model.metadata["test_accuracy"] == result.test.accuracy
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["history"][1]["val_accuracy"] == result.history[1]["val_accuracy"]


def test_resume_continues_bit_exactly(tmp_path):
    """2 epochs + resume to 4 equals 4 epochs straight: weights, optimizer, shuffling, dropout."""
    net = nn.Sequential(
        nn.Conv2D(1, 4, 3), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dropout(0.3),
        nn.Dense(4 * 13 * 13, 10),
    )  # fmt: skip
    net.save(tmp_path / "net.safetensors", input_shape=(1, 28, 28))
    common = dict(model=str(tmp_path / "net.safetensors"), augment_shift=1, **QUICK)
    straight = train(TrainConfig(epochs=4, out=str(tmp_path / "a"), **common), progress=False)
    train(TrainConfig(epochs=2, out=str(tmp_path / "b"), **common), progress=False)
    resumed = train(TrainConfig(epochs=4, out=str(tmp_path / "b")), resume=True, progress=False)
    without_time = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert without_time(resumed.history) == without_time(straight.history)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    for (name, p), (_, q) in zip(
        a.model.named_parameters(), b.model.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    for key in a.optimizer_arrays:
        np.testing.assert_array_equal(a.optimizer_arrays[key], b.optimizer_arrays[key])


def test_early_stopping_keeps_the_best_epoch(tmp_path, monkeypatch):
    real_evaluate = trainer_module.evaluate
    val_losses = iter([1.0, 0.5, 0.7, 0.9, 1.1])

    def fake_evaluate(model, x, y, batch_size=256, loss="cross-entropy"):
        result = real_evaluate(model, x, y, batch_size, loss)
        result.loss = next(val_losses)
        return result

    monkeypatch.setattr(trainer_module, "evaluate", fake_evaluate)
    result = train(TrainConfig(epochs=10, patience=2, out=str(tmp_path), **QUICK), progress=False)
    assert result.stopped_early and len(result.history) == 4
    best = load_checkpoint(tmp_path / "checkpoint.safetensors").best
    for name, p in result.model.named_parameters():
        np.testing.assert_array_equal(p.data, best[name])


def test_divergence_names_the_layer_and_keeps_the_last_checkpoint(tmp_path):
    train(TrainConfig(epochs=1, out=str(tmp_path), **QUICK), progress=False)
    checkpoint = (tmp_path / "checkpoint.safetensors").read_bytes()
    exploding = TrainConfig(epochs=1, optimizer="sgd", lr=1e12, out=str(tmp_path), **QUICK)
    with pytest.raises(
        TrainingDiverged, match=r"epoch 1, step \d+.*layer \(\d\) .*smaller learning"
    ):
        train(exploding, overwrite=True, progress=False)  # the old run goes at its 1st epoch
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == checkpoint


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(batch_size=0), "batch_size must be at least 1, got 0"),
        (dict(epochs=0), "epochs must be at least 1"),
        (dict(lr=-1.0), "lr must be a positive number"),
        (dict(val_split=1.5), "val_split must be in"),
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(dataset="imagenet-1k"), "imagenet-1k"),
        (dict(model="nope.safetensors"), "neither a preset"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(out=str(tmp_path), **{**QUICK, **setting}), progress=False)
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_cli_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    trained = run_cli("train", "--epochs", "1", "--limit", "300", "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout
    evaluated = run_cli("evaluate", str(out / "model.safetensors"), "--out", str(tmp_path / "ev"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert 0 <= report["accuracy"] <= 1 and len(report["confusion"]) == 10
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0
    assert run_cli("train", "--help").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--batch-size", "0"],
        ["train", "--dataset", "imagenet-1k"],
        ["train", "--model", "missing.safetensors"],
        ["evaluate", "missing.safetensors"],
        ["evaluate", str(PRETRAINED), "--batch-size", "0"],
        ["train", "--resume"],
    ],
    ids=[
        "batch-size-0",
        "unknown-dataset",
        "missing-model",
        "evaluate-missing",
        "evaluate-batch-size-0",
        "resume-nothing",
    ],
)
def test_cli_errors_are_one_line(tmp_path, args):
    result = run_cli(*args, *(["--out", str(tmp_path)] if args[0] == "train" else []))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: error:"), result.stderr


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x00" * 40)
    result = run_cli("train", "--resume", "--out", str(tmp_path))
    assert result.returncode == 1 and "not a valid safetensors" in result.stderr
    assert path.read_bytes() == b"\x00" * 40

"""The series' MSE loss: softmax, then MSE against one-hot targets; trained from the library
and the command line, matched against PyTorch, kept with the model, used by evaluate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convlens.nn as nn
from convlens.data import load_dataset
from convlens.models import mnist_net
from convlens.train import TrainConfig, evaluate, train, trained_loss
from convlens.train.parity import run_parity

QUICK = dict(dataset="mnist-bundled", limit=256, batch_size=32)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("seed", range(10))
def test_softmax_mse_against_torch_autograd(seed):
    rng = np.random.default_rng(seed)
    N, K = (int(v) for v in rng.integers(1, 7, 2)) if seed else (3, 1)
    logits, target = 3 * rng.standard_normal((N, K)), rng.integers(0, K, N)
    loss = nn.SoftmaxMSELoss()
    value, grad = loss.forward(logits, target), loss.backward()
    z = torch.tensor(logits, requires_grad=True)
    theirs = F.mse_loss(torch.softmax(z, dim=1), F.one_hot(torch.tensor(target), K).double())
    theirs.backward()
    assert value == pytest.approx(theirs.item(), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_for_two_classes_it_is_the_series_sigmoid_output():
    """softmax([z₀, z₁])[1] = σ(z₁ − z₀): one sigmoid output trained towards 0 or 1."""
    rng = np.random.default_rng(0)
    logits, target = rng.standard_normal((8, 2)), rng.integers(0, 2, 8)
    sigmoid = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0])))
    assert nn.SoftmaxMSELoss().forward(logits, target) == pytest.approx(
        np.mean((sigmoid - target) ** 2), rel=1e-12
    )


def test_targets_are_checked_by_name():
    loss = nn.SoftmaxMSELoss()
    with pytest.raises(RuntimeError, match="SoftmaxMSELoss: backward"):
        loss.backward()
    with pytest.raises(ValueError, match=r"SoftmaxMSELoss: targets must lie in 0..2"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))


@pytest.fixture(scope="module")
def mnist():
    held_out = [load_dataset("mnist-bundled", split) for split in ("val", "test")]
    x, y = (np.concatenate(parts) for parts in zip(*held_out, strict=True))
    return load_dataset("mnist-bundled", "train"), (x, y)


def test_one_epoch_matches_a_pytorch_twin_and_lowers_the_loss(mnist):
    """From identical weights, over the 125 steps of one epoch of the bundled digits."""
    result = run_parity(mnist_net, *mnist, dtype=np.float64, lr=0.5, loss="mse")
    assert result.steps == 125
    assert result.max_relative_difference <= 1e-8
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10]) / 2
    assert result.accuracy == result.torch_accuracy > 0.5


def test_mse_run_keeps_its_loss_and_evaluate_uses_it(tmp_path):
    config = TrainConfig(epochs=2, loss="mse", optimizer="sgd", lr=0.5, out=str(tmp_path), **QUICK)
    result = train(config, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test.loss_name == "mse" and 0 < result.test.loss < 0.1  # at most 2/K
    model = nn.load(tmp_path / "model.safetensors")
    assert model.metadata["loss"] == "mse" and model.metadata["trained_with"]["loss"] == "mse"
    assert trained_loss(model) == "mse"
    assert json.loads((tmp_path / "history.json").read_text())["loss"] == "mse"
    x, y = load_dataset("mnist-bundled", "test")
    evaluation = evaluate(model, x, y, loss=trained_loss(model))
    assert evaluation.loss == pytest.approx(result.test.loss, rel=1e-6)
    assert evaluate(model, x, y).loss_name == "cross-entropy"  # the library's default


def test_bad_loss_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"loss must be one of \('cross-entropy', 'mse'\)"):
        train(TrainConfig(loss="hinge", out=str(tmp_path), **QUICK), progress=False)
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_cli_mse_then_cross_entropy(tmp_path):
    """The series' way: train with MSE first, then go on from that model with cross-entropy."""
    quick = ["--epochs", "1", "--limit", "300", "--quiet", "--optimizer", "sgd", "--lr", "0.5"]
    first = run_cli("train", "--loss", "mse", "--out", str(tmp_path / "mse"), *quick)
    assert first.returncode == 0, first.stderr
    assert "(mse loss " in first.stdout
    mse_model = tmp_path / "mse" / "model.safetensors"
    evaluated = run_cli("evaluate", str(mse_model), "--out", str(tmp_path / "ev"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert ", mse loss " in evaluated.stdout
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["loss_function"] == "mse"
    as_cross_entropy = run_cli("evaluate", str(mse_model), "--loss", "cross-entropy")
    assert ", cross-entropy loss " in as_cross_entropy.stdout
    second = run_cli(
        "train", "--model", str(mse_model), "--loss", "cross-entropy",
        "--out", str(tmp_path / "ce"), *quick,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "(cross-entropy loss " in second.stdout
    assert nn.load(tmp_path / "ce" / "model.safetensors").metadata["loss"] == "cross-entropy"

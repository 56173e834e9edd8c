"""Losses against PyTorch and finite differences, including extreme logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

import convlens.nn as nn


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("seed", range(8))
def test_cross_entropy_matches_torch(seed, scale):
    rng = np.random.default_rng(seed)
    N, K = int(rng.integers(1, 20)), int(rng.integers(2, 12))
    logits = scale * rng.standard_normal((N, K))
    target = rng.integers(0, K, N)
    loss = nn.CrossEntropyLoss()
    value = loss.forward(logits, target)
    grad = loss.backward()
    logits_t = torch.tensor(logits, requires_grad=True)
    value_t = F.cross_entropy(logits_t, torch.tensor(target))
    value_t.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert abs(value - value_t.item()) <= 1e-10 * max(1.0, abs(value_t.item()))
    assert_close(grad, logits_t.grad, 1e-10, "dL/dlogits")
    if scale == 1.0:
        result = nn.gradcheck(nn.Sequential(), logits, loss=loss, target=target)
        assert result.ok, result


def test_cross_entropy_float32_keeps_dtype():
    logits = np.array([[1e4, -1e4, 0.0]], np.float32)
    loss = nn.CrossEntropyLoss()
    assert loss.forward(logits, np.array([1])) == pytest.approx(2e4)
    assert loss.backward().dtype == np.float32


@pytest.mark.parametrize("seed", range(8))
def test_mse_matches_torch(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 6, int(rng.integers(1, 4))))
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss = nn.MSELoss()
    value = loss.forward(pred, target)
    pred_t = torch.tensor(pred, requires_grad=True)
    value_t = F.mse_loss(pred_t, torch.tensor(target))
    value_t.backward()
    assert abs(value - value_t.item()) <= 1e-12 * max(1.0, value_t.item())
    assert_close(loss.backward(), pred_t.grad, 1e-12, "dL/dpred")
    result = nn.gradcheck(nn.Sequential(), pred, loss=loss, target=target)
    assert result.ok, result


def test_loss_input_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5,\)"):
        nn.CrossEntropyLoss().forward(np.zeros((4, 3)), np.zeros(5, int))
    with pytest.raises(ValueError, match=r"0\.\.2 for 3 classes"):
        nn.CrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="class indices"):
        nn.CrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        nn.MSELoss().forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.MSELoss().backward()

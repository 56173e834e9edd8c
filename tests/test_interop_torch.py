"""to_torch builds a PyTorch twin that computes the same function with the same weights."""

from __future__ import annotations

import numpy as np
import torch
from helpers import assert_close
from test_files import every_layer_model

from convlens.interop import to_torch


def test_twin_of_every_layer_kind_matches_forward_and_gradients():
    model = every_layer_model().astype(np.float64).eval()
    twin = to_torch(model).eval()
    x = np.random.default_rng(0).standard_normal((3, 3, 15, 8))
    y = model.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    x_t = torch.tensor(x, requires_grad=True)
    twin(x_t).backward(torch.tensor(dy))
    assert_close(y, twin(x_t), 1e-10, "forward")
    assert_close(dx, x_t.grad, 1e-10, "dL/dx")
    params = list(model.named_parameters())
    assert len(params) == len(list(twin.parameters()))
    for (name, p), p_t in zip(params, twin.parameters(), strict=True):
        assert_close(p.grad, p_t.grad, 1e-10, name)

"""SGD and Adam take the same 20 steps as torch.optim from the same start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convlens.nn as nn

STEPS = 20


def run_both(make_ours, make_theirs, seed: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (5,), (2, 3, 3, 3)]
    ours = [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt, opt_t = make_ours(ours), make_theirs(theirs)
    for _ in range(STEPS):
        opt.zero_grad()
        for p, p_t in zip(ours, theirs, strict=True):
            noise = rng.standard_normal(p.shape).astype(dtype)
            g = np.sin(p.data) + noise  # a gradient that depends on where the parameter is
            p.grad += g
            p_t.grad = torch.tensor(g)
        opt.step()
        opt_t.step()
    return ours, theirs


SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
]
ADAM_SETTINGS = [
    dict(lr=1e-3),
    dict(lr=1e-2, betas=(0.8, 0.99)),
    dict(lr=3e-3, eps=1e-6, weight_decay=1e-2),
]


CASES = [(nn.SGD, torch.optim.SGD, settings) for settings in SGD_SETTINGS] + [
    (nn.Adam, torch.optim.Adam, settings) for settings in ADAM_SETTINGS
]


@pytest.mark.parametrize(("ours", "theirs", "settings"), CASES, ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_optimizer_matches_torch(ours, theirs, settings, seed):
    params, params_t = run_both(
        lambda ps: ours(ps, **settings), lambda ps: theirs(ps, **settings), seed
    )
    for p, p_t in zip(params, params_t, strict=True):
        np.testing.assert_allclose(p.data, p_t.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [lambda ps: nn.SGD(ps, 0.1, momentum=0.9), nn.Adam])
def test_optimizers_keep_float32(make):
    p = nn.Parameter(np.ones(3, np.float32))
    p.grad += 0.5
    make([p]).step()
    assert p.data.dtype == np.float32 and p.grad.dtype == np.float32


def test_optimizer_argument_errors():
    p = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="learning rate"):
        nn.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="empty"):
        nn.Adam([])
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD(p, 0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        nn.Adam(p, betas=(0.9, 1.0))

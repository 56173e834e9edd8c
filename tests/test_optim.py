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
    model = nn.Sequential(nn.Dense(3, 2))
    with pytest.raises(ValueError, match=r"parameter 2 \(weight, shape \(2, 3\)\) is parameter 0"):
        nn.SGD(model.parameters() * 2, 0.1)


@pytest.mark.parametrize(
    ("ours", "theirs", "settings"),
    [
        (nn.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
        (nn.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
        (nn.Adam, torch.optim.Adam, dict(lr=1e-3)),
    ],
    ids=str,
)
def test_state_stuck_at_subnormal_values_is_zeroed_and_moves_no_weight(ours, theirs, settings):
    """Entries whose gradient turns 0 decay into subnormal floats and stick there (μ times the
    smallest subnormal rounds back to it). Every FLUSH_EVERY steps they are set to 0; the
    weights stay bit for bit torch's, whose state keeps them."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal(4096).astype(np.float32)
    ours_p, theirs_p = nn.Parameter(data.copy()), torch.tensor(data.copy(), requires_grad=True)
    opt, opt_t = ours([ours_p], **settings), theirs([theirs_p], **settings)
    dead = rng.random(data.size) < 0.5  # these entries' gradient is 0 after the first steps
    tiny = np.finfo(np.float32).tiny
    for step in range(1, 3 * nn.optim.FLUSH_EVERY + 1):
        g = rng.standard_normal(data.size).astype(np.float32) * 1e-30
        g[dead & (step > 2)] = 0
        ours_p.zero_grad()
        ours_p.accumulate(g)
        theirs_p.grad = torch.from_numpy(g.copy())
        opt.step()
        opt_t.step()
        np.testing.assert_array_equal(ours_p.data, theirs_p.detach().numpy())
    state = opt.velocity if isinstance(opt, nn.SGD) else [*opt.m, *opt.v]
    theirs_state = [t for s in opt_t.state.values() for t in s.values() if t.ndim]
    assert any(((t != 0) & (t.abs() < tiny)).any() for t in theirs_state)  # torch's stuck
    for a in state:
        assert not ((a != 0) & (np.abs(a) < tiny)).any()


def test_sgd_state_carries_its_step_count_so_a_resume_flushes_on_the_same_steps():
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((100, 8)) * 1e-300
    grads[2:, :4] = 0  # these decay into subnormal float64 values

    def run(steps: range, opt: nn.SGD, p: nn.Parameter) -> None:
        for k in steps:
            p.zero_grad()
            p.accumulate(grads[k])
            opt.step()

    p = nn.Parameter(np.ones(8))
    straight = nn.SGD([p], lr=0.1, momentum=0.9)
    run(range(100), straight, p)
    q = nn.Parameter(np.ones(8))
    first = nn.SGD([q], lr=0.1, momentum=0.9)
    run(range(50), first, q)
    arrays, scalars = first.state_dict()
    assert scalars == {"steps": 50}
    resumed = nn.SGD([q], lr=0.1, momentum=0.9)
    resumed.load_state_dict(arrays, scalars)
    run(range(50, 100), resumed, q)
    np.testing.assert_array_equal(resumed.velocity[0], straight.velocity[0])
    np.testing.assert_array_equal(q.data, p.data)

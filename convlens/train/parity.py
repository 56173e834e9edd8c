"""Train the same network in convlens and in PyTorch, side by side, and compare.

Both start from identical weights (:func:`convlens.interop.to_torch` copies them), see
identical batches in identical order, and take SGD-with-momentum steps by the same rule,
on the same loss: cross-entropy, or the series' MSE between the softmax and one-hot
targets (PyTorch: ``F.mse_loss(softmax(z), one_hot(t))``).
In float64 the two loss curves must agree to rounding; in float32 they drift apart only as
rounding accumulates. Needs PyTorch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convlens import nn
from convlens.interop import to_torch


@dataclass
class ParityResult:
    """Per-step losses, final test accuracies and total step times of both frameworks."""

    losses: np.ndarray  # convlens, one per step
    torch_losses: np.ndarray
    accuracy: float
    torch_accuracy: float
    seconds: float = 0.0
    torch_seconds: float = 0.0
    steps: int = field(init=False)

    def __post_init__(self) -> None:
        self.steps = len(self.losses)

    @property
    def max_relative_difference(self) -> float:
        return float(np.max(np.abs(self.losses - self.torch_losses) / np.abs(self.torch_losses)))


def run_parity(
    make_model: Callable[[], nn.Sequential],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    dtype: type = np.float64,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 0.01,
    momentum: float = 0.9,
    seed: int = 0,
    loss: str = "cross-entropy",
) -> ParityResult:
    """Train ``make_model()`` and its PyTorch twin on ``train``; evaluate both on ``test``.

    Parameters
    ----------
    make_model : callable
        Builds the convlens network (called once, after seeding).
    train, test : (x, y)
        Images ``(N, C, H, W)`` and integer labels.
    dtype : np.float32 or np.float64
    epochs, batch_size, lr, momentum, seed
        SGD with momentum; ``seed`` fixes the initial weights and the batch order.
    loss : {"cross-entropy", "mse"}
        As for ``convlens train --loss``.
    """
    import torch
    import torch.nn.functional as F

    from .trainer import LOSSES

    def torch_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss == "mse":  # the mean over every sample and class, as nn.SoftmaxMSELoss
            onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
            return F.mse_loss(torch.softmax(logits, dim=1), onehot)
        return F.cross_entropy(logits, target)

    nn.manual_seed(seed)
    model = make_model().astype(dtype)
    twin = to_torch(model)
    optimizer = nn.SGD(model.parameters(), lr, momentum=momentum)
    optimizer_t = torch.optim.SGD(twin.parameters(), lr, momentum=momentum)
    loss_fn = LOSSES[loss]()
    x, y = train[0].astype(dtype), train[1]
    rng = np.random.default_rng(seed)
    losses, torch_losses, seconds, torch_seconds = [], [], 0.0, 0.0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            xb, yb = x[batch], y[batch]

            began = time.perf_counter()
            optimizer.zero_grad()
            losses.append(model.forward_backward(xb, yb, loss_fn)[0])
            optimizer.step()
            seconds += time.perf_counter() - began

            began = time.perf_counter()
            loss_t = torch_loss(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
            optimizer_t.zero_grad()
            loss_t.backward()
            optimizer_t.step()
            torch_seconds += time.perf_counter() - began
            torch_losses.append(loss_t.item())

    x_test, y_test = test[0].astype(dtype), test[1]
    model.eval(), twin.eval()
    accuracy = float((model.forward(x_test).argmax(1) == y_test).mean())
    with torch.no_grad():
        predicted_t = twin(torch.from_numpy(x_test)).argmax(1).numpy()
    return ParityResult(
        np.array(losses),
        np.array(torch_losses),
        accuracy,
        float((predicted_t == y_test).mean()),
        seconds,
        torch_seconds,
    )

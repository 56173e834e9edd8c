"""The base class every layer shares: caching for backward, modes, parameters, config."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from math import prod
from typing import Any, ClassVar

import numpy as np

from .parameter import Parameter

#: Every layer class by its name, filled by ``Layer.__init_subclass__``; used by ``load``.
LAYER_TYPES: dict[str, type[Layer]] = {}

_default_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises new layers' weights and draws dropout masks."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The generator used when a layer is created without ``rng``."""
    return _default_rng


#: Parameter values that layers created now may still allocate (a one-item list, so that
#: each allocation can count down); None: no limit. Set by :func:`parameter_budget`.
_budget: ContextVar[list[int] | None] = ContextVar("parameter_budget", default=None)


@contextmanager
def parameter_budget(values: int) -> Iterator[None]:
    """Within this block, new layers allocate at most ``values`` parameter values in all.

    A layer that would need more raises a ValueError *before* allocating anything.
    :func:`convlens.nn.load` builds a file's architecture under a budget, so that a header
    such as ``Dense(10**6, 10**6)`` is refused instead of allocated.
    """
    token = _budget.set([values])
    try:
        yield
    finally:
        _budget.reset(token)


def init_uniform(
    shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, name: str, owner: str
) -> Parameter:
    """A float32 Parameter drawn from ``U(−1/√fan_in, +1/√fan_in)``, PyTorch's default
    for convolutions and dense layers; counted against the :func:`parameter_budget`."""
    count, left = prod(shape), _budget.get()
    if left is not None:
        if count > left[0]:
            raise ValueError(
                f"{owner}: its {name} {tuple(shape)} would hold {count:,} values, over the "
                f"{left[0]:,} this model may still allocate"
            )
        left[0] -= count
    bound = 1.0 / np.sqrt(fan_in)
    return Parameter(rng.uniform(-bound, bound, shape).astype(np.float32), name)


class Layer:
    """A differentiable function of a batch, with optional parameters.

    Subclasses implement ``forward(x)``, which keeps what ``backward`` needs, and
    ``backward(dy)``, which returns dL/dx and *adds* dL/dθ into each parameter's
    ``.grad``. ``config()`` returns the constructor arguments as JSON-able data,
    so that ``type(layer)(**layer.config())`` rebuilds the layer (without weights).
    """

    #: Parameter attribute names, in the order ``parameters()`` returns them.
    param_names: ClassVar[tuple[str, ...]] = ()
    #: What the layer computes, for the explainer's views ("convolution", "max-pool", ...).
    operation: ClassVar[str] = "layer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        LAYER_TYPES[cls.__name__] = cls

    training: bool = True
    _cache: Any = None

    # -- the interface -----------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_parameters(self, dy: np.ndarray) -> None:
        """Only the parameter gradients of ``backward`` (for a first layer, whose dL/dx
        nobody needs). Layers with costly input gradients override it; this default runs
        the full backward."""
        self.backward(dy)

    def input_gradient(self, dy: np.ndarray) -> np.ndarray:
        """Only dL/dx of ``backward``, leaving every ``.grad`` as it is (what an explainer
        needs: the gradient flowing back through the network, not an update). Layers with
        parameters override it; for the others it is their backward."""
        return self.backward(dy)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain JSON-able data."""
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output for one sample's input shape (no batch axis)."""
        return tuple(input_shape)

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """How output value ``y[index]`` is computed from one sample ``x`` (no batch axis).

        Returns plain JSON-able data: ``operation``, ``index``, ``value`` and whatever the
        operation's inputs are (a window and kernel, weights, ...). This default gives only
        the value; layers override it with their actual computation.
        """
        y = self.forward(x[None])[0]
        return {"operation": self.operation, "index": list(index), "value": float(y[index])}

    def explain_gradient(
        self, x: np.ndarray, dy: np.ndarray, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """How ``dL/dx[index]`` is computed from one sample ``x`` and ``dy = dL/dy``.

        Plain data like :meth:`explain`; this default gives only the value.
        """
        self.forward(x[None])
        dx = self.backward(dy[None])[0]
        return {"operation": self.operation, "index": list(index), "value": float(dx[index])}

    def explain_parameter_gradient(
        self, x: np.ndarray, dy: np.ndarray, parameter: str, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """How ``dL/dθ[index]`` of parameter ``parameter`` comes from one sample ``x`` and
        ``dy = dL/dy``; ``index`` is into the stored tensor (``.data``).

        Plain data like :meth:`explain`; this default gives only the value, from backward.
        """
        p = dict(self.named_parameters())[parameter]
        saved = p.grad.copy()
        p.zero_grad()
        self.forward(x[None])
        self.backward_parameters(dy[None])
        value, p.grad = float(p.grad[index]), saved
        return {
            "operation": self.operation,
            "parameter": parameter,
            "index": list(index),
            "value": value,
        }

    def explain_state(self) -> dict[str, np.ndarray]:
        """Arrays from the last forward that a view needs beyond the output (e.g. a pool's mask)."""
        return {}

    # -- shared helpers ----------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs, weight before bias."""
        for name in self.param_names:
            p = getattr(self, name)
            if p is not None:
                yield name, p

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in ``named_parameters`` order."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def astype(self, dtype: np.dtype | type) -> Layer:
        """Convert every parameter to ``dtype`` (e.g. ``np.float64`` for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        return self

    # -- running on several threads ------------------------------------------------------
    def splits_batch(self) -> bool:
        """Whether a batch may be cut into pieces that run apart: True when every sample's
        output depends only on that sample, always the same way (not, e.g., a Dropout
        drawing random masks in training)."""
        return True

    def replica(self, previous: Layer | None = None) -> Layer:
        """A twin for running another piece of the batch on another thread: this layer's
        settings and parameter *values*, with gradients and caches of its own.

        ``previous``, a replica made earlier, is brought up to date and returned instead
        of a new one, so that its gradient arrays are reused.
        """
        if type(previous) is not type(self):
            previous = None
        twin = copy.copy(self) if previous is None else previous
        mine = [None if previous is None else getattr(twin, name) for name in self.param_names]
        twin.__dict__.update(self.__dict__)  # the settings as they are now
        twin._cache = None
        for name, own in zip(self.param_names, mine, strict=True):
            p = getattr(self, name)
            if p is None:
                continue
            if own is None:
                own = Parameter(p.data, p.name)
            elif own.data is not p.data:
                own.data = p.data  # shared values; a new shape or dtype gets a new gradient
            setattr(twin, name, own)
        return twin

    def _saved(self) -> Any:
        """What ``forward`` kept for ``backward``; a clear error if forward has not run."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return self._cache

    def _check_grad_shape(self, dy: np.ndarray, expected: tuple[int, ...]) -> None:
        if dy.shape != tuple(expected):
            raise ValueError(
                f"{self!r}: backward() got a gradient of shape {dy.shape}, "
                f"but the last forward() produced shape {tuple(expected)}"
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

"""Sequential models and their files: safetensors weights + the architecture as JSON metadata.

A model file never executes code: loading reads a JSON header and raw little-endian
arrays, and rebuilds layers only from the known public layer types by name. A file is
data from anywhere, so every field is checked before it is used, and anything wrong is
one ValueError naming the field: the architecture's layer types and settings (by the
constructors' own checks), its size (counted before any weight is allocated) and
nesting, the input shape, the class names, the metadata, every tensor's name, shape and
dtype (float32 or float64 only).
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from math import prod
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .activation import ReLU
from .checks import brief, is_integer
from .dense import BLOCK_VALUES
from .fused import ConvMaxPool
from .layer import LAYER_TYPES, Layer, parameter_budget
from .loss import Kept, Loss
from .parameter import Parameter
from .pool import MaxPool2D
from .threads import batch_pieces, even_slices, pieces, run_side_by_side

FORMAT_NAME = "convlens.sequential"
FORMAT_VERSION = "1"
#: Tensor dtypes a model file may hold, by their safetensors names.
FILE_DTYPES = {"F32": np.dtype(np.float32), "F64": np.dtype(np.float64)}
#: The most parameter values a file's architecture may ask for (400 MB in float32);
#: counted layer by layer before each one allocates its weights.
MAX_PARAMETER_VALUES = 10**8
#: The most values one input sample may have (a 4,096 × 4,096 RGB picture has 50 M).
MAX_INPUT_VALUES = 2**26
#: How deep a Sequential may sit inside others in a file.
MAX_NESTING = 8
#: The longest JSON text a header field may hold (Tiny VGG's architecture takes 1.2 kB);
#: it bounds the work of parsing and the number of layers a file can describe.
MAX_FIELD_CHARS = 2**22

R = TypeVar("R")


def _forward(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    for layer in running_order(layers):
        x = layer.forward(x)
    return x


def _backward(layers: Sequence[Layer], dy: np.ndarray, input_grad: bool) -> np.ndarray | None:
    """Backward through ``layers``; the first one skips dL/dx unless ``input_grad``."""
    first, *rest = running_order(layers) or [None]
    for layer in reversed(rest):
        dy = layer.backward(dy)
    if first is None:
        return dy
    if input_grad:
        return first.backward(dy)
    first.backward_parameters(dy)
    return None


def _back_team(
    team: Sequence[int],
    back_piece: Callable[[int], R],
    all_kept: Callable[[], bool],
    blocks: deque[Callable[[dict], None]],
) -> list[R]:
    """One thread's part of a split backward: ``back_piece(k)`` for the pieces ``team``,
    then blocks of columns of the dense layers' whole-batch gradients, taken one at a time
    from ``blocks`` until none is left, if every piece has kept its (x, δ) by then, as it
    has in practice: a piece keeps them near the start of its backward, the dense layers
    being near the top. A thread done with its pieces early takes more of the blocks, and
    as each block is the same product whichever thread computes it, the numbers do not
    depend on which does. The caller computes any block left. Nothing waits, so the teams
    may even run one after the other (a thread count lowered meanwhile)."""
    results = [back_piece(k) for k in team]
    if all_kept():
        _take_blocks(blocks)
    return results


def _take_blocks(blocks: deque[Callable[[dict], None]]) -> None:
    """Compute blocks taken from ``blocks`` (``popleft`` is atomic) until it is empty; each
    gets this thread's dict of the batch's joined δ per layer, joined on first use."""
    deltas: dict = {}
    while True:
        try:
            block = blocks.popleft()
        except IndexError:
            return
        block(deltas)


def _input_gradient(layers: Sequence[Layer], dy: np.ndarray) -> np.ndarray:
    for layer in reversed(running_order(layers)):
        dy = layer.input_gradient(dy)
    return dy


def running_order(layers: Sequence[Layer]) -> list[Layer | ConvMaxPool]:
    """``layers`` as a :class:`Sequential` runs them: a ReLU directly followed by a
    MaxPool2D runs after it instead, and a first-layer-like Conv2D directly followed by a
    tiling MaxPool2D runs with it as one step (:class:`~convlens.nn.fused.ConvMaxPool`).

    Max-pooling commutes with ReLU, ``max(relu(a), relu(b)) = relu(max(a, b))``, since ReLU
    never decreases; pooling first gives the same output while ReLU touches kh·kw times
    fewer values, forward and backward. The gradient is the same too: where a window's
    maximum is positive, its first maximum is the same element before and after ReLU and
    takes δ; where it is not, ReLU passes that window nothing either way (the only change
    is the sign of some zeros). Measured on the MNIST net, whose 2×2 pool follows a ReLU
    on 26×26 maps: a training step at batch 32 took 0.96-0.98 of the time (alternating
    processes). Each layer still computes exactly its own formula; what differs is that
    after a Sequential's forward, the pool's ``argmax`` was found before the ReLU, so in a
    window of values all ≤ 0 it may name another element, one that passes no gradient.
    """
    order: list[Layer | ConvMaxPool] = list(layers)
    for i in range(len(order) - 1):
        if type(order[i]) is ReLU and type(order[i + 1]) is MaxPool2D:
            order[i], order[i + 1] = order[i + 1], order[i]
    steps: list[Layer | ConvMaxPool] = []
    for layer in order:
        if steps and ConvMaxPool.fits(steps[-1], layer):
            steps[-1] = ConvMaxPool(steps[-1], layer)
        else:
            steps.append(layer)
    return steps


def _replicate(layers: Sequence[Layer], earlier: Sequence[Layer] | None) -> list[Layer]:
    """Replicas of ``layers``, reusing ``earlier`` ones where they line up."""
    if earlier is None or len(earlier) != len(layers):
        earlier = [None] * len(layers)
    return [layer.replica(old) for layer, old in zip(layers, earlier, strict=True)]


def _separate_repeats(
    layers: list[Layer], seen: dict[int, str] | None = None, prefix: str = ""
) -> None:
    """Give each position of ``layers``, nested Sequentials included, a layer object of its
    own, in place: a repeated layer without parameters becomes a :meth:`~Layer.replica`
    (the same settings, its own cache); one with parameters, or a Parameter held by two
    layers (shared weights), is refused with a ValueError naming both positions.

    A layer keeps what its backward needs from its last forward, so one object at two
    positions handed the first position the second one's values: ``relu = ReLU()`` used
    after two convolutions, a common PyTorch habit, gave the first convolution's weights a
    gradient off by up to 38 on a 4×3×8×8 batch, silently. ``seen`` maps the ids of the
    layers and parameters met so far to their positions (``"2.1"`` inside a nested one).
    """
    seen = {} if seen is None else seen
    for i, layer in enumerate(layers):
        where = f"{prefix}{i}"
        if id(layer) in seen:
            if layer.parameters():
                raise ValueError(
                    f"Sequential: layer {where} is the same {type(layer).__name__} object as "
                    f"layer {seen[id(layer)]}; a layer keeps one forward's values for its "
                    "backward, so shared weights are not supported: give each position a "
                    "layer of its own"
                )
            layers[i] = layer = layer.replica()
        seen[id(layer)] = where
        if isinstance(layer, Sequential):
            _separate_repeats(layer.layers, seen, f"{where}.")
            continue
        for name, p in layer.named_parameters():
            if id(p) in seen:
                raise ValueError(
                    f"Sequential: layers {seen[id(p)]} and {where} hold the same Parameter "
                    f"({name}); shared weights are not supported: give each layer its own"
                )
            seen[id(p)] = where


def _parameters(layers: Sequence[Layer]) -> list[Parameter]:
    return [p for layer in layers for p in layer.parameters()]


class Sequential(Layer):
    """Layers applied one after another; backward runs them in reverse.

    Parameters
    ----------
    *layers : Layer

    Attributes
    ----------
    layers : list of Layer
    input_shape : (C, H, W) or None
        One sample's input shape, when known (set by ``load`` from the file).
    classes : list of str or None
        Class names, when known.
    metadata : dict
        Any further JSON-able facts stored with the model (e.g. preprocessing).
    """

    operation = "sequence"

    def __init__(self, *layers: Layer) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Layer")
        self.layers: list[Layer] = list(layers)
        _separate_repeats(self.layers)
        self.input_shape: tuple[int, ...] | None = None
        self.classes: list[str] | None = None
        self.metadata: dict[str, Any] = {}
        self._twins: list[list[Layer]] = []  # layer replicas for the other pieces of a batch
        self._known_shapes: dict[tuple, tuple] = {}  # see _shapes

    # -- running ---------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer. A batch is cut into one piece per thread, or into cache-sized
        pieces shared out over the threads (see :mod:`convlens.nn.threads`), when every
        layer allows it: piece 0 runs through these layers, each other piece through a
        :meth:`replica` of them, the threads side by side."""
        split = self._split(x)
        if len(split) == 1:
            self._cache = None
            return _forward(self.layers, x)
        runs = self._runs(split)
        outputs = run_side_by_side([partial(_forward, layers, x[p]) for layers, p in runs])
        return np.concatenate(outputs)

    def _split(self, x: np.ndarray) -> list[slice]:
        """The pieces ``x`` runs in (one where any layer keeps the batch whole)."""
        if len(set(map(id, self.layers))) < len(self.layers):  # appended since __init__
            _separate_repeats(self.layers)
        if not self.splits_batch():
            return [slice(0, len(x))]
        return batch_pieces(len(x), lambda: self._shapes(x)[0])

    def _runs(self, split: list[slice]) -> list[tuple[list[Layer], slice]]:
        """Each piece of ``split`` with the layers it runs through: piece 0 these layers,
        the others replicas (last call's, where they line up); kept for backward."""
        earlier = self._twins + [None] * len(split)
        self._twins = [_replicate(self.layers, earlier[k]) for k in range(len(split) - 1)]
        self._cache = runs = list(zip([self.layers, *self._twins], split, strict=True))
        return runs

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dy`` through every layer; returns dL/dx.

        With ``input_grad=False`` (training), the first layer only accumulates its
        parameter gradients and None is returned: dL/d(image) is never needed there.
        After a split forward, each piece runs back through its own copy of the layers and
        the copies' parameter gradients are then added in, piece by piece; a dense layer's
        weight gradient is one product over the whole batch instead, in blocks of columns
        that the threads take as they finish their pieces (:func:`_back_team`).
        """
        if self._cache is None:
            return _backward(self.layers, dy, input_grad)
        runs = self._cache
        if len(dy) != runs[-1][1].stop:
            raise ValueError(
                f"Sequential: backward() got a gradient for {len(dy)} samples, "
                f"but the last forward() ran {runs[-1][1].stop}"
            )

        def back_piece(k: int) -> np.ndarray | None:
            layers, piece = runs[k]
            return _backward(layers, dy[piece], input_grad)

        results = self._split_backward(runs, back_piece)
        return np.concatenate(results) if input_grad else None

    def forward_backward(
        self, x: np.ndarray, target: np.ndarray, loss: Loss
    ) -> tuple[float, np.ndarray]:
        """A training pass in one go: ``forward(x)``, ``loss.forward(output, target)``, then
        ``backward(loss.backward(), input_grad=False)``, with the same numbers.

        Returns
        -------
        loss_value : float
        output : np.ndarray
            The model's output for ``x`` (the logits), e.g. for the batch's accuracy.

        Where the batch is split (see :meth:`forward`), each piece runs forward, finds its
        rows of the loss's gradient (a loss here is a mean of per-sample terms: each row's
        gradient divided by the whole batch's size, :meth:`Loss.gradient`) and runs
        backward, on its thread, without waiting for the other pieces in between: one
        hand-over instead of two, and no serial loss step between them (the MNIST net's
        training step: 0.88-0.94 of the time at batch 32, 0.93-0.97 at 128, alternating
        processes). The loss's value is then found from the pieces' terms in batch order,
        as a forward of the whole batch finds it, and the gradients are those of
        ``backward``: the results are equal to the last bit.

        The gradients are accumulated even when the loss is not finite: check it before
        the optimizer's step. If the forward raises, ``.grad`` may hold part of the batch.
        """
        x = np.asarray(x)
        split = self._split(x)
        output_shape = self._shapes(x)[1] if len(split) > 1 and loss.splits_batch() else None
        if output_shape is None:  # one piece, a whole-batch loss, or forward refuses x
            output = self.forward(x)
            value = loss.forward(output, target)
            self.backward(loss.backward(), input_grad=False)
            return value, output
        target = loss.checked_target((len(x), *output_shape), target)
        runs = self._runs(split)
        outputs: list[np.ndarray] = [np.empty(0)] * len(runs)
        kept: list[Kept] = [()] * len(runs)

        def train_piece(k: int) -> None:
            layers, piece = runs[k]
            outputs[k] = _forward(layers, x[piece])
            kept[k] = loss.keep(outputs[k], target[piece])
            _backward(layers, loss.gradient(kept[k], len(x)), input_grad=False)

        self._split_backward(runs, train_piece)
        return loss.joined(kept), np.concatenate(outputs)

    def _split_backward(
        self, runs: list[tuple[list[Layer], slice]], back_piece: Callable[[int], R]
    ) -> list[R]:
        """``back_piece(k)`` for every piece k of ``runs``, side by side, each running back
        through its own layers; then the replicas' parameter gradients added in, piece by
        piece. A dense layer's weight gradient is one product over the whole batch
        instead, in blocks of columns that the threads take as they finish their pieces
        (:func:`_back_team`). Returns the pieces' results in order."""
        # Layers that compute their parameter gradients once for the whole batch (a dense
        # layer: see Dense.whole_batch_grads) only keep each piece's (x, δ) on the way;
        # the threads then take blocks of their columns as they finish their pieces.
        whole = [i for i, layer in enumerate(self.layers) if hasattr(layer, "whole_batch_grads")]
        teams = [list(range(len(runs)))[share] for share in pieces(len(runs), 1)]
        targets = {i: self.layers[i].weight.gradient_target() for i in whole}
        for layers, _ in runs:
            for i in whole:
                layers[i].defer_parameter_grads = True

        def block(i: int, columns: slice, bias: bool, deltas: dict) -> None:
            replicas = [layers[i] for layers, _ in runs]
            if i not in deltas:
                deltas[i] = self.layers[i].deferred_deltas(replicas)
            self.layers[i].whole_batch_grads(replicas, columns, deltas[i], *targets[i], bias=bias)

        blocks = deque(
            partial(block, i, columns, k == 0)
            for i in whole
            for layer in [self.layers[i]]
            for k, columns in enumerate(
                even_slices(layer.in_features, max(1, layer.weight.size // BLOCK_VALUES))
            )
        )

        def all_kept() -> bool:  # the last dense layer a piece's backward passes has kept
            return all("_deferred" in layers[i].__dict__ for layers, _ in runs for i in whole[:1])

        tasks = [partial(_back_team, team, back_piece, all_kept, blocks) for team in teams]
        try:
            outcomes = run_side_by_side(tasks)
            _take_blocks(blocks)  # any a thread could not take
        except BaseException:
            for i in whole:
                if targets[i][1]:  # it was zero: written in part at most, so zero again
                    self.layers[i].weight.zero_grad()
            raise
        finally:
            for layers, _ in runs:
                for i in whole:
                    for name in ("defer_parameter_grads", "_deferred"):
                        layers[i].__dict__.pop(name, None)
        for twins, _ in runs[1:]:
            for i, (layer, twin) in enumerate(zip(self.layers, twins, strict=True)):
                if i in whole:
                    continue
                for p, twin_p in zip(layer.parameters(), twin.parameters(), strict=True):
                    p.accumulate(twin_p.grad)
                    twin_p.zero_grad()  # so that a second backward adds only its own share
        return [result for team in outcomes for result in team]

    def input_gradient(self, dy: np.ndarray) -> np.ndarray:
        """dL/dx through every layer, leaving every ``.grad`` as it is (see
        :meth:`Layer.input_gradient`)."""
        runs = self._cache or [(self.layers, slice(0, len(dy)))]
        tasks = [partial(_input_gradient, layers, dy[piece]) for layers, piece in runs]
        return np.concatenate(run_side_by_side(tasks))

    def splits_batch(self) -> bool:
        return all(layer.splits_batch() for layer in self.layers)

    def _shapes(self, x: np.ndarray) -> tuple[int, tuple[int, ...] | None]:
        """Bytes of one sample's largest layer output for input ``x``, and one sample's
        output shape; (0, None) where the layers refuse its shape (forward then says why).
        Remembered for the last few input shapes and layer lists: the walk took 20-30 µs
        of a training step's serial part. Only how a batch is cut, and which way
        :meth:`forward_backward` runs, depend on it."""
        key = (x.shape[1:], x.itemsize, *map(id, self.layers))
        known = self._known_shapes
        if key not in known:
            if len(known) >= 8:
                known.clear()
            known[key] = self._walk_shapes(x.shape[1:], x.itemsize)
        return known[key]

    def _walk_shapes(
        self, shape: tuple[int, ...], itemsize: int
    ) -> tuple[int, tuple[int, ...] | None]:
        largest = prod(shape)
        try:
            for layer in self.layers:
                shape = layer.output_shape(shape)
                largest = max(largest, prod(shape))
        except ValueError:
            return 0, None
        return largest * itemsize, shape

    def replica(self, previous: Layer | None = None) -> Sequential:
        earlier = getattr(previous, "layers", None)
        twin = super().replica(previous)
        twin.layers, twin._twins = _replicate(self.layers, earlier), []
        twin._known_shapes = {}
        return twin

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    # -- parameters and modes ----------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """``("3.weight", Parameter)`` pairs: layer index, then parameter name (PyTorch's keys)."""
        for i, layer in enumerate(self.layers):
            for name, p in layer.named_parameters():
                yield f"{i}.{name}", p

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def astype(self, dtype: np.dtype | type) -> Sequential:
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def config(self) -> dict[str, Any]:
        return {"layers": [{"type": type(x).__name__, "config": x.config()} for x in self.layers]}

    def summary(self, input_shape: Sequence[int] | None = None) -> str:
        """A table of layers with each one's output shape and parameter count.

        Parameters
        ----------
        input_shape : (C, H, W), optional
            One sample's input; default ``self.input_shape``. Without one, shapes are omitted.
        """
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        rows = [("layer", "output shape", "parameters")]
        if shape is not None:
            rows.append(("input", str(tuple(shape)), ""))
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.output_shape(shape)
            count = sum(p.size for p in layer.parameters())
            rows.append((f"({i}) {layer!r}", "" if shape is None else str(shape), f"{count:,}"))
        total = sum(p.size for p in self.parameters())
        rows.append(("total", "", f"{total:,}"))
        widths = [max(len(row[k]) for row in rows) for k in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
        rule = "-" * len(lines[0])
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    # -- files -----------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike,
        input_shape: Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the model to a safetensors file, atomically.

        Parameters
        ----------
        path : path-like
        input_shape : (C, H, W), optional
            One sample's input shape; checked by running the shapes through every layer.
            Default: the model's own ``input_shape`` if it has one.
        classes : sequence of str, optional
            One name per output; default: the model's own ``classes``.
        metadata : mapping, optional
            Further JSON-able facts to keep with the model (merged over ``self.metadata``).
        """
        write_safetensors(path, self.tensors(), self.file_header(input_shape, classes, metadata))

    def tensors(self) -> dict[str, np.ndarray]:
        """Every parameter array by its name in ``named_parameters`` (contiguous)."""
        return {name: np.ascontiguousarray(p.data) for name, p in self.named_parameters()}

    def load_tensors(
        self, tensors: Mapping[str, np.ndarray], origin: str = "load_tensors"
    ) -> Sequential:
        """Set every parameter from ``tensors`` (names as in ``named_parameters``); returns self.

        Raises a ValueError naming missing, unexpected or wrongly shaped arrays, and arrays
        that are not float32 or float64.
        """
        self.check_tensors(tensors, origin)
        for name, p in self.named_parameters():
            p.data = tensors[name]
        return self

    def check_tensors(self, tensors: Mapping[str, np.ndarray], origin: str = "weights") -> None:
        """Raise a ValueError unless ``tensors`` has exactly this model's parameter names,
        each with its parameter's shape and a float32 or float64 dtype."""
        expected = dict(self.named_parameters())
        missing, unexpected = expected.keys() - tensors.keys(), tensors.keys() - expected.keys()
        if missing or unexpected:
            raise ValueError(
                f"{origin}: weights do not fit the architecture "
                f"(missing: {brief(sorted(missing))}, unexpected: {brief(sorted(unexpected))})"
            )
        for name, p in expected.items():
            tensor = tensors[name]
            if tensor.dtype not in FILE_DTYPES.values():
                raise ValueError(
                    f"{origin}: tensor {name!r} is {tensor.dtype}; weights must be float32 or "
                    "float64"
                )
            if tensor.shape != p.shape:
                raise ValueError(
                    f"{origin}: tensor {name!r} has shape {tensor.shape}, "
                    f"but the architecture needs {p.shape}"
                )

    def file_header(
        self,
        input_shape: Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """The JSON metadata a model file carries; checks ``input_shape`` against ``classes``."""
        input_shape = self.input_shape if input_shape is None else tuple(input_shape)
        classes = self.classes if classes is None else list(classes)
        if input_shape is not None:
            out = self.output_shape(input_shape)
            if classes is not None and out != (len(classes),):
                raise ValueError(
                    f"save: {len(classes)} class names given, but the model's output for "
                    f"input {tuple(input_shape)} has shape {out}"
                )
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "architecture": json.dumps(self.config()["layers"]),
            "input_shape": json.dumps(None if input_shape is None else list(input_shape)),
            "classes": json.dumps(classes),
            "metadata": json.dumps({**self.metadata, **(metadata or {})}),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sequential:
        """Rebuild a model written by :meth:`save`. Never unpickles anything."""
        return load(path)


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], header: Mapping[str, str]
) -> None:
    """Write a safetensors file atomically: a temporary file, then ``os.replace``.

    Readers see the old file or the new one, never half of one; a failed write leaves the
    old file untouched and no temporary file behind.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(dict(tensors), tmp, metadata=dict(header))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete what interrupted :func:`write_safetensors` calls for ``path`` left behind.

    A process killed between creating its temporary file and ``os.replace`` leaves
    ``.NAME.*.tmp`` beside ``path`` (``mkstemp``'s pattern above). Call this only where no
    other process is writing ``path`` at the same moment (a training run owns its folder).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and metadata of a safetensors file; clear errors for anything else.

    Every tensor's dtype is read from the header first: anything but float32 and float64
    (an int8 or bool tensor would compute something else) is refused before any data is.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
            foreign = {name: kind for name, kind in dtypes.items() if kind not in FILE_DTYPES}
            tensors = {} if foreign else {name: f.get_tensor(name) for name in dtypes}
    except Exception as err:  # safetensors raises its own error types for broken files
        reason = " ".join(str(err).split())  # one line, whatever the library said
        raise ValueError(f"{path} is not a valid safetensors model file: {reason}") from None
    if foreign:
        name, kind = sorted(foreign.items())[0]
        raise ValueError(
            f"{path}: tensor {brief(name)} has dtype {kind}; a model file holds float32 (F32) "
            "or float64 (F64) tensors only"
        )
    return tensors, header


def load(path: str | os.PathLike) -> Sequential:
    """Load a :class:`Sequential` saved with :meth:`Sequential.save`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a safetensors file (e.g. a pickle), a malformed header, an unknown or private
        layer type, bad layer settings, an architecture over :data:`MAX_PARAMETER_VALUES`
        or nested deeper than :data:`MAX_NESTING`, a bad input shape, class names or
        metadata, or weights whose names, shapes or dtypes do not fit the architecture.
        The message is one line and names the field.
    """
    tensors, header = read_safetensors(path)
    return from_file_contents(tensors, header, str(path))


def from_file_contents(
    tensors: Mapping[str, np.ndarray], header: Mapping[str, str], origin: str = "model"
) -> Sequential:
    """Rebuild a model from a file's arrays and metadata (see :meth:`Sequential.file_header`).

    Each field is checked before it is used; see :func:`load` for what is refused.
    """
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"{origin}: not a convlens model (no '{FORMAT_NAME}' format tag)")
    if header.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(
            f"{origin}: format version {brief(header['version'])}; this convlens reads "
            f"version {FORMAT_VERSION}"
        )
    specs = _json_field(header, "architecture", origin)
    input_shape = _input_shape(_json_field(header, "input_shape", origin, None), origin)
    classes = _json_field(header, "classes", origin, None)
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(name, str) for name in classes)
    ):
        raise ValueError(f"{origin}: classes must be a list of names or null, got {brief(classes)}")
    metadata = _json_field(header, "metadata", origin, {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{origin}: metadata must be a JSON object, got {brief(metadata)}")
    with parameter_budget(MAX_PARAMETER_VALUES):
        model = _sequential_from_specs(specs, f"{origin}: architecture", depth=1)
    model.load_tensors(tensors, origin)
    if input_shape is not None:
        try:
            out = model.output_shape(input_shape)
        except ValueError as err:
            raise ValueError(
                f"{origin}: input_shape {list(input_shape)} does not fit: {err}"
            ) from None
        if classes is not None and out != (len(classes),):
            raise ValueError(
                f"{origin}: {len(classes)} classes, but the model's output for input_shape "
                f"{list(input_shape)} has shape {out}"
            )
    model.input_shape, model.classes, model.metadata = input_shape, classes, metadata
    return model


_REQUIRED = object()  # _json_field's default: the field must be there


def _json_field(
    header: Mapping[str, str], field: str, origin: str, default: Any = _REQUIRED
) -> Any:
    """The JSON value of a header field; a one-line ValueError naming it if it is missing,
    longer than :data:`MAX_FIELD_CHARS` or not JSON (nesting too deep to parse included)."""
    if field not in header:
        if default is _REQUIRED:
            raise ValueError(f"{origin}: malformed {field} metadata (missing)")
        return default
    if len(header[field]) > MAX_FIELD_CHARS:
        raise ValueError(
            f"{origin}: malformed {field} metadata ({len(header[field]):,} characters, "
            f"more than {MAX_FIELD_CHARS:,})"
        )
    try:
        return json.loads(header[field])
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        reason = " ".join(str(err).split())
        raise ValueError(f"{origin}: malformed {field} metadata ({reason})") from None


def _input_shape(value: Any, origin: str) -> tuple[int, int, int] | None:
    """``[C, H, W]`` of positive ints (at most :data:`MAX_INPUT_VALUES` values) as a tuple."""
    if value is None:
        return None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(is_integer(v) and v >= 1 for v in value)
        and prod(value) <= MAX_INPUT_VALUES
    ):
        raise ValueError(
            f"{origin}: input_shape must be [C, H, W], three positive ints of at most "
            f"{MAX_INPUT_VALUES:,} values in all, or null; got {brief(value)}"
        )
    return tuple(value)


def _sequential_from_specs(specs: Any, where: str, depth: int) -> Sequential:
    """A Sequential from a list of layer specs; ``where`` names it in error messages."""
    if depth > MAX_NESTING:
        raise ValueError(f"{where}: Sequentials nest deeper than {MAX_NESTING} levels")
    if not isinstance(specs, list):
        raise ValueError(f"{where}: must be a list of layers, got {brief(specs)}")
    return Sequential(
        *(_layer_from_spec(s, f"{where}, layer {i}", depth) for i, s in enumerate(specs))
    )


def _layer_from_spec(spec: Any, where: str, depth: int) -> Layer:
    """One layer from ``{"type": name, "config": {argument: value}}``."""
    if not (isinstance(spec, dict) and "type" in spec and set(spec) <= {"type", "config"}):
        raise ValueError(f"{where}: must be {{'type': ..., 'config': {{...}}}}, got {brief(spec)}")
    kind, config = spec["type"], spec.get("config", {})
    cls = loadable_layer_types().get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(loadable_layer_types()))
        raise ValueError(f"{where}: unknown layer type {brief(kind)}; known: {known}")
    where = f"{where} ({kind})"
    if not isinstance(config, dict):
        raise ValueError(f"{where}: config must be a JSON object, got {brief(config)}")
    if cls is Sequential:
        if set(config) != {"layers"}:
            raise ValueError(
                f"{where}: config must be {{'layers': [...]}}, got keys {brief(sorted(config))}"
            )
        return _sequential_from_specs(config["layers"], where, depth + 1)
    accepted = config_keys(cls)
    unexpected = sorted(set(config) - accepted) if accepted is not None else []
    if unexpected:
        takes = ", ".join(sorted(accepted)) or "no settings"
        raise ValueError(
            f"{where}: unexpected config key {brief(unexpected[0])} ({kind} takes {takes})"
        )
    try:
        return cls(**config)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{where}: {err}") from None


def loadable_layer_types() -> dict[str, type[Layer]]:
    """The layer classes a model file may name: public (no leading underscore) and concrete
    (with their own forward and backward), so that no abstract base such as ``_Pool2D`` is
    built, only to fail at every use."""
    return {
        name: cls
        for name, cls in LAYER_TYPES.items()
        if not name.startswith("_")
        and cls.forward is not Layer.forward
        and cls.backward is not Layer.backward
    }


def config_keys(cls: type[Layer]) -> set[str] | None:
    """The settings a layer's config may hold: its constructor's positional-or-keyword
    arguments (keyword-only ones such as ``rng`` are objects, never file data). None when
    the constructor takes ``**kwargs`` and so any key."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD}

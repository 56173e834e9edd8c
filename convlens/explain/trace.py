"""Tracing a model on one image: activations forward, gradients backward, single values."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.activation import softmax

#: Parameters up to this many values are sent with the model description (conv kernels,
#: biases); larger ones (big dense matrices) only inside single-value explanations.
INLINE_PARAMETER_LIMIT = 50_000


def encode(array: np.ndarray) -> dict[str, Any]:
    """An array as ``{"shape", "data"}``, data being base64 of little-endian float32."""
    a = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode(payload: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode`; a ValueError if shape and data disagree."""
    try:
        shape = tuple(int(n) for n in payload["shape"])
        raw = base64.b64decode(payload["data"], validate=True)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"an array needs 'shape' and base64 'data' ({err})") from None
    count = int(np.prod(shape))
    if len(raw) != 4 * count:
        raise ValueError(
            f"array data holds {len(raw) // 4} float32 values, shape {shape} needs {count}"
        )
    return np.frombuffer(raw, "<f4").reshape(shape).copy()


def describe(model: nn.Sequential) -> dict[str, Any]:
    """The model's structure: every layer's operation, settings, shapes and small parameters."""
    if model.input_shape is None:
        raise ValueError("the model has no input shape: save it with input_shape=(C, H, W)")
    shape, layers = tuple(model.input_shape), []
    for i, layer in enumerate(model.layers):
        out = layer.output_shape(shape)
        params = {
            name: encode(p.data)
            for name, p in layer.named_parameters()
            if p.size <= INLINE_PARAMETER_LIMIT
        }
        layers.append(
            {
                "index": i,
                "type": type(layer).__name__,
                "operation": layer.operation,
                "label": repr(layer),
                "config": layer.config(),
                "input_shape": list(shape),
                "output_shape": list(out),
                "parameters": sum(p.size for p in layer.parameters()),
                "weights": params,
                # the padding the engine applies, ((top, bottom), (left, right)), if any
                "padding2d": getattr(layer, "padding2d", None),
            }
        )
        shape = out
    classes = model.classes or [str(k) for k in range(shape[0])]
    return {
        "input_shape": list(model.input_shape),
        "classes": classes,
        "metadata": model.metadata,
        "layers": layers,
        "ends_with_softmax": _ends_with_softmax(model),
    }


def trace(model: nn.Sequential, image: np.ndarray, target: int | None = None) -> dict[str, Any]:
    """Run ``model`` on one image and keep everything the views draw.

    Parameters
    ----------
    model : nn.Sequential
        With ``input_shape``; it is put in evaluation mode.
    image : np.ndarray
        ``(C, H, W)`` in the model's input range.
    target : int, optional
        A class: adds the backward pass of the cross-entropy loss for it — the gradient
        of the loss with respect to every layer's output, ending with ``p − y`` at the scores.

    Returns
    -------
    dict
        ``input``, ``layers`` (each with ``output`` and any ``state`` such as a pool's argmax
        mask), ``probabilities``, ``prediction``, and with a target ``loss``, ``target``,
        ``gradients`` (one per layer: dL/d(its output), or None for a final softmax) and
        ``input_gradient``.
    """
    activations = forward_all(model, image)
    probabilities = _probabilities(model, activations)
    layers = [
        {
            "index": i,
            "output": encode(activations[i + 1]),
            "range": [float(activations[i + 1].min()), float(activations[i + 1].max())],
            "state": {k: encode(v) for k, v in layer.explain_state().items()},
        }
        for i, layer in enumerate(model.layers)
    ]
    result = {
        "input": encode(activations[0]),
        "layers": layers,
        "probabilities": probabilities.tolist(),
        "prediction": int(np.argmax(probabilities)),
    }
    if target is not None:
        gradients = backward_all(model, activations, target)
        result.update(
            target=int(target),
            loss=float(-np.log(max(probabilities[target], 1e-45))),
            gradients=[None if g is None else encode(g) for g in gradients[1:]],
            input_gradient=encode(gradients[0]),
        )
    return result


def explain_value(
    model: nn.Sequential,
    image: np.ndarray,
    layer: int,
    index: list[int],
    target: int | None = None,
) -> dict[str, Any]:
    """The computation behind one value of layer ``layer``.

    Without ``target``: how its output ``y[index]`` was computed from its input. With
    ``target``: how the gradient ``dL/d(input)[index]`` was computed from ``dL/d(output)``
    for the cross-entropy loss of class ``target``.
    """
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"layer {layer} does not exist: the model has {len(model.layers)} layers")
    activations = forward_all(model, image)
    x, chosen = activations[layer], model.layers[layer]
    shape = activations[layer + 1].shape if target is None else x.shape
    index = _checked_index(index, shape, f"layer {layer}")
    if target is None:
        return chosen.explain(x, index)
    gradient = backward_all(model, activations, target)[layer + 1]
    if gradient is None:
        raise ValueError(f"layer {layer} is the final softmax: its gradient is shown as p − y")
    return chosen.explain_gradient(x, gradient, index)


def explain_parameter(
    model: nn.Sequential,
    image: np.ndarray,
    layer: int,
    parameter: str,
    index: list[int],
    target: int,
) -> dict[str, Any]:
    """How the per-image gradient ``dL/dθ[index]`` of one parameter value was computed.

    ``parameter`` is ``"weight"`` or ``"bias"`` of layer ``layer``, ``index`` an index into
    the stored tensor (a conv weight ``[o, c, a, b]`` even in convolution mode), and L the
    cross-entropy loss of class ``target`` for this one image. For a conv weight: the input
    correlated with δ over every output position; for a dense weight ``x[j]·δ[i]``; for a
    bias ``Σ δ`` (see each layer's ``explain_parameter_gradient``).
    """
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"layer {layer} does not exist: the model has {len(model.layers)} layers")
    chosen = model.layers[layer]
    parameters = dict(chosen.named_parameters())
    if parameter not in parameters:
        has = " and ".join(parameters) or "no parameters"
        raise ValueError(f"layer {layer}, {chosen!r}, has no {parameter!r}: it has {has}")
    index = _checked_index(index, parameters[parameter].shape, f"layer {layer}'s {parameter}")
    activations = forward_all(model, image)
    gradient = backward_all(model, activations, target)[layer + 1]
    return chosen.explain_parameter_gradient(activations[layer], gradient, parameter, index)


# -- the passes ----------------------------------------------------------------------------
def forward_all(model: nn.Sequential, image: np.ndarray) -> list[np.ndarray]:
    """``[input, output of layer 0, output of layer 1, ...]`` for one image, in eval mode."""
    expected = tuple(model.input_shape)
    if image.shape != expected:
        raise ValueError(f"the image has shape {image.shape}, the model takes {expected}")
    if not np.all(np.isfinite(image)):
        raise ValueError("the image contains NaN or infinite values")
    model.eval()
    dtype = model.parameters()[0].data.dtype if model.parameters() else np.float32
    x = image.astype(dtype)[None]
    activations = [x[0]]
    for layer in model.layers:
        x = layer.forward(x)
        activations.append(x[0])
    return activations


def backward_all(
    model: nn.Sequential, activations: list[np.ndarray], target: int
) -> list[np.ndarray | None]:
    """dL/d(input) then dL/d(output of each layer) for cross-entropy with class ``target``.

    ``activations`` must come from :func:`forward_all` just before: the layers' backward
    passes use the caches that forward left. The loss is taken at the class scores: the last
    output, or the input of a final softmax (whose own output gradient is then None: the
    view shows ``p − y`` instead).
    """
    probabilities = _probabilities(model, activations)
    if not 0 <= target < len(probabilities):
        raise ValueError(f"target class {target} does not exist: {len(probabilities)} classes")
    last = len(model.layers) - (2 if _ends_with_softmax(model) else 1)
    delta = probabilities.copy()
    delta[target] -= 1.0  # p − y
    gradients: list[np.ndarray | None] = [None] * (len(model.layers) + 1)
    gradients[last + 1] = delta
    for i in range(last, -1, -1):
        delta = gradients[i + 1][None].astype(activations[i + 1].dtype)
        gradients[i] = model.layers[i].input_gradient(delta)[0]  # no parameter gradients
    return gradients


def _probabilities(model: nn.Sequential, activations: list[np.ndarray]) -> np.ndarray:
    scores = activations[-1].astype(np.float64)
    if _ends_with_softmax(model):
        return scores
    return softmax(scores)


def _ends_with_softmax(model: nn.Sequential) -> bool:
    return bool(model.layers) and isinstance(model.layers[-1], nn.Softmax)


def _checked_index(index: list[int], shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    if len(index) != len(shape) or not all(
        0 <= int(i) < n for i, n in zip(index, shape, strict=False)
    ):
        raise ValueError(f"index {list(index)} is outside {where}'s values of shape {list(shape)}")
    return tuple(int(i) for i in index)

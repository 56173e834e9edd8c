"""Training checkpoints: one safetensors file holding everything needed to continue exactly.

A checkpoint is a model file (same metadata as :meth:`Sequential.save`, so the architecture
travels with it) whose arrays are prefixed ``model/``, plus ``optimizer/`` (momentum, Adam's
moments), ``best/`` (the weights of the best validation epoch) and a JSON ``checkpoint``
entry: epoch, history, settings, and the states of the random generators. It is written
atomically, so an interrupted or failed write never destroys the previous checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.checks import brief
from convlens.nn.sequential import from_file_contents, read_safetensors, write_safetensors

#: What a checkpoint's JSON state holds, and the JSON type of each entry.
STATE_FIELDS = {
    "config": dict,
    "history": list,
    "shuffle_rng": dict,
    "dropout_rng": dict,
    "optimizer_scalars": dict,
}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    model: nn.Sequential
    state: dict[str, Any]
    optimizer_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    best: dict[str, np.ndarray] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Sequential,
    optimizer: nn.Optimizer,
    state: dict[str, Any],
    best: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``model``, ``optimizer``'s state, ``best`` weights and the JSON ``state``."""
    arrays, scalars = optimizer.state_dict()
    tensors = {f"model/{k}": v for k, v in model.tensors().items()}
    tensors.update({f"optimizer/{k}": np.ascontiguousarray(v) for k, v in arrays.items()})
    tensors.update({f"best/{k}": np.ascontiguousarray(v) for k, v in (best or {}).items()})
    header = model.file_header()
    header["checkpoint"] = json.dumps({**state, "optimizer_scalars": scalars})
    write_safetensors(path, tensors, header)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear ValueError otherwise."""
    tensors, header = read_safetensors(path)
    if "checkpoint" not in header:
        raise ValueError(f"{path} is a model file, not a training checkpoint")
    return _checkpoint(tensors, header, str(path))


def load_model(path: str | os.PathLike) -> nn.Sequential:
    """A model from a model file or from a training checkpoint (the file is read once)."""
    tensors, header = read_safetensors(path)
    if "checkpoint" in header:
        return _checkpoint(tensors, header, str(path)).model
    return from_file_contents(tensors, header, str(path))


def _checkpoint(tensors: dict[str, np.ndarray], header: dict[str, str], origin: str) -> Checkpoint:
    """A checkpoint from a file's arrays (prefixed model/, optimizer/, best/) and metadata,
    each part checked: the state's fields and their types, the best weights' names and
    shapes (those of the model)."""
    try:
        state = json.loads(header["checkpoint"])
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        reason = " ".join(str(err).split())
        raise ValueError(f"{origin}: malformed checkpoint metadata ({reason})") from None
    for name, kind in STATE_FIELDS.items():
        value = state.get(name) if isinstance(state, dict) else None
        if not isinstance(value, kind):
            raise ValueError(
                f"{origin}: malformed checkpoint metadata ({name!r} must be a JSON "
                f"{'object' if kind is dict else 'list'}, got {brief(value)})"
            )
    if not all(isinstance(record, dict) for record in state["history"]):
        raise ValueError(
            f"{origin}: malformed checkpoint metadata (history entries must be objects)"
        )
    parts: dict[str, dict[str, np.ndarray]] = {"model": {}, "optimizer": {}, "best": {}}
    for name, array in tensors.items():
        prefix, _, rest = name.partition("/")
        if prefix not in parts:
            raise ValueError(f"{origin}: unexpected array {brief(name)} in a checkpoint")
        parts[prefix][rest] = array
    model = from_file_contents(parts["model"], header, origin)
    if parts["best"]:
        model.check_tensors(parts["best"], f"{origin} (best weights)")
    return Checkpoint(model, state, parts["optimizer"], parts["best"])

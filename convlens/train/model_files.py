"""A model from whatever file a user has: a convlens model or checkpoint, CNN Explainer's
TF.js ``model.json``, an ``.onnx`` file, or the shipped model by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from convlens import nn
from convlens.data import DATASETS, dataset_info
from convlens.interop import load_onnx, load_tfjs
from convlens.models import PRETRAINED, pretrained

from .checkpoint import load_model


def load_any_model(path: str | os.PathLike, classes: str | None = None) -> nn.Sequential:
    """A model from a .safetensors model or checkpoint, a TF.js model.json or an .onnx file.

    ``"pretrained"`` (when no file has that name) is the shipped model. ``classes`` is a
    text file with one name per line, or a dataset name. A model without class names whose
    input and output fit exactly one known dataset gets that dataset's.
    """
    if str(path) == PRETRAINED and not Path(path).exists():
        model = pretrained()
    elif str(path).endswith(".onnx"):
        model = load_onnx(path)
    else:
        model = load_tfjs(path) if str(path).endswith(".json") else load_model(path)
    if classes is not None:
        names = (
            list(dataset_info(classes).classes)
            if classes in DATASETS
            else [line.strip() for line in Path(classes).read_text().splitlines() if line.strip()]
        )
        outputs = model.output_shape(model.input_shape) if model.input_shape else None
        if outputs is not None and outputs != (len(names),):
            raise ValueError(
                f"{len(names)} class names in {classes}, the model has {outputs[0]} outputs"
            )
        model.classes = names
    elif model.classes is None and model.input_shape is not None:
        outputs = model.output_shape(model.input_shape)
        infos = [dataset_info(n) for n in DATASETS]
        fits = [
            info for info in infos
            if info.input_shape == tuple(model.input_shape) and (len(info.classes),) == outputs
        ]  # fmt: skip
        if len(fits) == 1:
            model.classes = list(fits[0].classes)
            note = (
                f"class names from {fits[0].name}, the only dataset that fits (--classes to change)"
            )
            print(note, file=sys.stderr)
    return model

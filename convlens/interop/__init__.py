"""Moving models between convlens and other frameworks: TF.js import, ONNX export, PyTorch twins."""

from .onnx import export_onnx
from .tfjs import load_tfjs
from .torch import to_torch

__all__ = ["export_onnx", "load_tfjs", "to_torch"]

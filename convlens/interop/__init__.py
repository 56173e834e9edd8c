"""Moving models between convlens and other frameworks: TF.js and ONNX import, ONNX export,
PyTorch in both directions."""

from .onnx import export_onnx, load_onnx
from .tfjs import load_tfjs
from .torch import from_torch, to_torch

__all__ = ["export_onnx", "from_torch", "load_onnx", "load_tfjs", "to_torch"]

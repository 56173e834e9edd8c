"""Moving models between convlens and other frameworks: TF.js import, PyTorch twins."""

from .tfjs import load_tfjs
from .torch import to_torch

__all__ = ["load_tfjs", "to_torch"]

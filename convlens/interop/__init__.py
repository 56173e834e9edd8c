"""Moving models between convlens and other frameworks."""

from .torch import to_torch

__all__ = ["to_torch"]

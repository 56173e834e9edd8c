"""convlens — convolutional neural networks from the math up.

``convlens.nn`` is the engine: every layer's forward and backward pass in NumPy, written
to be read next to its formula, and checked against finite differences and PyTorch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("convlens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

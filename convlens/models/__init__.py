"""Ready-made networks: CNN Explainer's Tiny VGG, the seeds' MNIST net, and a trained model.

>>> from convlens.models import tiny_vgg, mnist_net, pretrained
>>> sum(p.size for p in tiny_vgg().parameters())
19920
"""

from __future__ import annotations

from importlib.resources import files
from math import prod

from convlens import nn

PRETRAINED_FILE = "mnist_net.safetensors"


def _with_classifier(
    features: list[nn.Layer], input_shape: tuple[int, int, int], *head
) -> nn.Sequential:
    """``features`` + Flatten + the dense ``head``, whose first layer's input size is computed."""
    in_features = prod(nn.Sequential(*features).output_shape(input_shape))
    first, *rest = head
    model = nn.Sequential(*features, nn.Flatten(), nn.Dense(in_features, first), *rest)
    model.input_shape = input_shape
    return model


def tiny_vgg(in_channels: int = 3, num_classes: int = 10, input_size: int = 64) -> nn.Sequential:
    """CNN Explainer's Tiny VGG: two blocks of (3×3 conv, ReLU, 3×3 conv, ReLU, 2×2 max-pool)
    with 10 channels each, then a dense layer to the class scores.

    Parameters
    ----------
    in_channels : int, default 3
    num_classes : int, default 10
    input_size : int, default 64
        Height and width of the (square) input; 19,920 parameters at 64×64×3.

    Returns
    -------
    nn.Sequential
        Unnormalised class scores (logits); train it with ``CrossEntropyLoss``.
    """
    block = lambda c: [nn.Conv2D(c, 10, 3), nn.ReLU(), nn.Conv2D(10, 10, 3), nn.ReLU()]  # noqa: E731
    features = [*block(in_channels), nn.MaxPool2D(2), *block(10), nn.MaxPool2D(2)]
    return _with_classifier(features, (in_channels, input_size, input_size), num_classes)


def mnist_net(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Sequential:
    """The seeds' model: conv → max-pool → conv → flatten → dense → dense.

    ``Conv2D(1→16, 3×3)``, ReLU, ``MaxPool2D(2)``, ``Conv2D(16→32, 3×3)``, ReLU, Flatten,
    ``Dense(3872→128)``, ReLU, ``Dense(128→10)``: about 502k parameters at 28×28. (With 8 and
    16 channels it overfits the 4,000 bundled digits: 95–96 % on the test split, against 98 %.)

    Returns
    -------
    nn.Sequential
        Logits for ``num_classes`` classes.
    """
    features = [
        nn.Conv2D(in_channels, 16, 3), nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(16, 32, 3), nn.ReLU(),
    ]  # fmt: skip
    return _with_classifier(
        features, (in_channels, input_size, input_size), 128, nn.ReLU(), nn.Dense(128, num_classes)
    )


PRESETS = {"tiny-vgg": tiny_vgg, "mnist-net": mnist_net}
#: The name that stands for the shipped model wherever a model file is asked for.
PRETRAINED = "pretrained"


def pretrained() -> nn.Sequential:
    """The model shipped with convlens: ``mnist_net`` trained on the bundled MNIST digits.

    Its ``classes`` are ``"0"``–``"9"`` and its ``metadata`` records the preprocessing
    (28×28 grayscale, white digit on black, scaled to [0, 1]), the training command and
    the measured test accuracy. ``make pretrained`` reproduces it.
    """
    return nn.load(files(__package__) / "files" / PRETRAINED_FILE)

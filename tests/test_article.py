"""The article's gradient-descent example (section 12) computed by convlens.nn.

The numbers are read from the MathML of convlens/web/static/article.html by the ids the
article puts on them, so that a changed number in the text fails here.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import convlens.nn as nn

ARTICLE = Path(__file__).resolve().parents[1] / "convlens" / "web" / "static" / "article.html"

X = np.array([[1, 2, 0], [3, 1, 1], [0, 2, 4]], np.float64)  # section 11's example
W = np.array([[2, -1], [1, 3]], np.float64)
DELTA = np.array([[1, -1], [2, 0.5]], np.float64)


class Numbers(HTMLParser):
    """The <mn> numbers inside each element that has an id, in reading order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str | None] = []  # the id of every open element (None: none)
        self.numbers: dict[str, list[float]] = {}
        self.in_mn = False

    def handle_starttag(self, tag, attrs):
        ident = dict(attrs).get("id")
        self.open.append(ident)
        if ident:
            self.numbers[ident] = []
        self.in_mn = tag == "mn"

    def handle_endtag(self, tag):
        self.open.pop()
        self.in_mn = False

    def handle_data(self, data):
        if self.in_mn:
            value = float(data.replace("−", "-"))
            for ident in filter(None, self.open):
                self.numbers[ident].append(value)


@pytest.fixture(scope="module")
def shown() -> dict[str, np.ndarray]:
    parser = Numbers()
    parser.feed(ARTICLE.read_text())
    return {k: np.array(v) for k, v in parser.numbers.items() if k.startswith("gd-")}


def layer() -> nn.Conv2D:
    """Section 11's convolution in float64, with the δ sent back: gradients in .grad."""
    conv = nn.Conv2D.from_weights(W[None, None].copy(), np.array([0.5]))  # steps change it
    conv.forward(X[None, None])
    conv.backward(DELTA[None, None])
    return conv


def loss(conv: nn.Conv2D) -> float:
    """L = Σ δ·y: the loss whose gradient at the output is the example's δ."""
    return float((conv.forward(X[None, None])[0, 0] * DELTA).sum())


def test_gradients_and_one_sgd_step(shown):
    conv = layer()
    np.testing.assert_allclose(shown["gd-grad-w"], conv.weight.grad.ravel())
    np.testing.assert_allclose(shown["gd-grad-b"], conv.bias.grad)
    before = loss(conv)
    assert shown["gd-loss-before"] == pytest.approx([before])

    nn.SGD(conv.parameters(), lr=0.1).step()
    np.testing.assert_allclose(shown["gd-sgd-w"], conv.weight.data.ravel())
    np.testing.assert_allclose(shown["gd-sgd-b"], conv.bias.data)
    np.testing.assert_allclose(shown["gd-sgd-y"], conv.forward(X[None, None]).ravel())
    after = loss(conv)
    assert shown["gd-loss-after"] == pytest.approx([after])
    assert shown["gd-loss-drop"] == pytest.approx([before - after])


def test_momentum_second_step(shown):
    conv = layer()
    optimizer = nn.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    optimizer.step()  # the gradient stays the same: the loss is linear in the weights
    optimizer.step()
    assert shown["gd-momentum-w"] == pytest.approx([conv.weight.data[0, 0, 0, 0]])
    velocity = (2.0 - conv.weight.data[0, 0, 0, 0]) / 0.1 - conv.weight.grad[0, 0, 0, 0]
    assert shown["gd-momentum-v"] == pytest.approx([velocity])


def test_adam_first_step_moves_every_parameter_by_the_learning_rate(shown):
    conv = layer()
    nn.Adam(conv.parameters(), lr=0.1).step()
    np.testing.assert_allclose(shown["gd-adam-w"], conv.weight.data.ravel(), atol=1e-8)
    assert conv.bias.data[0] == pytest.approx(0.4)

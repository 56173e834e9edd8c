"""Every constructor refuses every malformed setting with a ValueError naming the argument.

A model file's layer configs are constructor arguments, so the constructors are where a
bad value must stop: ``True`` is no size, ``2.7`` or ``2.0`` is no kernel size (it must not
be truncated to 2), ``None`` and stray strings never reach the arithmetic, and a mix of
padding forms is an error rather than a TypeError from deep inside.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_layers import torch_conv

import convlens.nn as nn

#: Values that are never a size, a stride, a dilation or an anchor, alone or as a pair.
NOT_INTEGERS = [2.7, 2.0, np.float64(3.0), True, False, np.bool_(True), None, "3", b"3", 1j]
NOT_PAIRS = [
    *NOT_INTEGERS,
    *[(v, 3) for v in NOT_INTEGERS],
    *[[3, v] for v in NOT_INTEGERS],
    (),
    (3,),
    (1, 2, 3),
    [[1, 1], [1, 1]],
    {"rows": 1, "cols": 1},
    np.array([2, 3]),
]
OPTIONAL_NOT_PAIRS = [v for v in NOT_PAIRS if v is not None]  # None is the default there
#: Padding values no layer takes: mixed forms, wrong lengths, floats, None, other words.
BAD_PADDING = [
    None,
    "half",
    "SAME",
    "",
    1.5,
    2.0,
    True,
    (1,),
    (1, 2, 3),
    ((1, 1), 2),
    (2, (1, 1)),
    ((1, 1), (1,)),
    ((1, 1, 1), (1, 1)),
    ((1, 1.0), (1, 1)),
    ((1, None), (1, 1)),
    ((True, 1), (1, 1)),
    (("same", 1), (1, 1)),
    [1, "1"],
]

CONV = dict(in_channels=2, out_channels=3, kernel_size=3)
POOL = dict(kernel_size=3)
DENSE = dict(in_features=4, out_features=2)
#: (constructor, valid arguments, the argument to spoil, bad values for it)
CASES = [
    (nn.Conv2D, CONV, "in_channels", [*NOT_INTEGERS, 0, -1, (1, 1)]),
    (nn.Conv2D, CONV, "out_channels", [*NOT_INTEGERS, 0, -3]),
    (nn.Conv2D, CONV, "kernel_size", [*NOT_PAIRS, 0, (0, 3), (3, -1)]),
    (nn.Conv2D, CONV, "stride", [*NOT_PAIRS, 0, (1, 0), -2]),
    (nn.Conv2D, CONV, "dilation", [*NOT_PAIRS, 0, (0, 1)]),
    (nn.Conv2D, CONV, "padding", BAD_PADDING),
    (nn.Conv2D, CONV, "anchor", [*OPTIONAL_NOT_PAIRS, (3, 0), (0, -1), (-1, -1)]),
    (nn.Conv2D, CONV, "mode", [None, "conv", "Correlation", 0, True, ["correlation"]]),
    (nn.Conv2D, CONV, "bias", [None, 0, 1, "no", "False", 1.0]),
    (nn.MaxPool2D, POOL, "kernel_size", [*NOT_PAIRS, 0, (2, 0)]),
    (nn.MaxPool2D, POOL, "stride", [*OPTIONAL_NOT_PAIRS, 0, (0, 2)]),
    (nn.MaxPool2D, POOL, "padding", [*BAD_PADDING, 3, (0, 4), ((3, -1), (0, 0))]),
    (nn.AvgPool2D, POOL, "kernel_size", [*NOT_PAIRS, -1]),
    (nn.AvgPool2D, POOL, "stride", [*OPTIONAL_NOT_PAIRS, (1, -1)]),
    (nn.AvgPool2D, POOL, "padding", BAD_PADDING),
    (nn.Dense, DENSE, "in_features", [*NOT_INTEGERS, 0, -5, (3,)]),
    (nn.Dense, DENSE, "out_features", [*NOT_INTEGERS, 0]),
    (nn.Dense, DENSE, "bias", [None, 0, 1, "yes", 1.0]),
    (nn.Dropout, {}, "p", [None, True, "0.5", -0.1, 1.5, float("nan"), float("inf"), (0.5,), 1j]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("layer", "valid", "argument", "values"),
    CASES,
    ids=[f"{layer.__name__}-{argument}" for layer, _, argument, _ in CASES],
)
def test_every_bad_setting_is_a_value_error_naming_the_argument(layer, valid, argument, values):
    layer(**valid)  # the spoiled calls differ from a good one in that argument only
    for value in values:
        with pytest.raises(ValueError, match=rf"{layer.__name__}:? {argument}\b") as caught:
            layer(**{**valid, argument: value})
        assert "\n" not in str(caught.value), value


def test_numpy_integers_are_sizes():
    i = np.int64
    conv = nn.Conv2D(
        i(2), np.int32(3), (i(3), np.uint8(2)), i(2), (i(1), np.int16(0)), [i(1), 2], (i(1), i(0))
    )
    assert (conv.kernel_size, conv.stride, conv.dilation) == ((3, 2), (2, 2), (1, 2))
    assert conv.padding2d == ((1, 1), (0, 0)) and conv.anchor == (1, 0)
    assert all(type(v) is int for v in (*conv.kernel_size, *conv.stride, *conv.anchor))
    assert conv.config()["padding"] == [1, 0]  # plain ints: the config is JSON
    pool = nn.MaxPool2D(np.int8(2), padding=np.int64(1))
    assert pool.kernel_size == (2, 2) and pool.padding == (1, 1)
    assert nn.Dense(np.int64(3), np.uint16(2)).weight.shape == (2, 3)
    assert nn.Dropout(np.float32(0.25)).p == 0.25 and nn.Dropout(1).p == 1.0


# -- random values: an independent statement of what a size is -----------------------------
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["same", "valid", "full"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner), max_leaves=6
)


def is_pair(value, minimum: float) -> bool:
    """An int (not a bool) ``>= minimum``, or a list or tuple of exactly two."""
    items = value if isinstance(value, (list, tuple)) else [value, value]
    return len(items) == 2 and all(type(v) is int and v >= minimum for v in items)


def is_conv_padding(value) -> bool:
    """A padding name, an int, (ph, pw) or ((t, b), (l, r)) of ints (negative ones crop)."""
    if isinstance(value, str):
        return value in ("same", "valid", "full")
    nested = isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) for v in value)
    if nested and value:
        return len(value) == 2 and all(is_pair(side, -np.inf) for side in value)
    return is_pair(value, -np.inf)


SIZES = st.integers(1, 4) | st.tuples(st.integers(1, 4), st.integers(1, 4))
SIDES = st.tuples(st.integers(-2, 3), st.integers(-2, 3))
NAMES = st.sampled_from(["same", "valid", "full"])
PADDINGS = NAMES | st.integers(-2, 3) | SIDES | st.tuples(SIDES, SIDES)


@settings(max_examples=300, deadline=None, database=None)
@given(
    kernel=SIZES | VALUES, stride=SIZES | VALUES, dilation=SIZES | VALUES, padding=PADDINGS | VALUES
)
def test_random_conv_settings_are_accepted_exactly_when_well_formed(
    kernel, stride, dilation, padding
):
    """Built, or refused with a ValueError naming the first bad argument — never a
    TypeError, never a value silently rounded."""
    well_formed = {
        "kernel_size": is_pair(kernel, 1),
        "stride": is_pair(stride, 1),
        "dilation": is_pair(dilation, 1),
        "padding": is_conv_padding(padding),
    }
    try:
        conv = nn.Conv2D(1, 1, kernel, stride, padding, dilation)
    except ValueError as err:
        first_bad = next((name for name, ok in well_formed.items() if not ok), None)
        assert first_bad is not None, f"refused well-formed settings: {err}"
        assert first_bad in str(err) and "\n" not in str(err)
        return
    assert all(well_formed.values()), f"accepted {well_formed}"
    expected_kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    assert conv.kernel_size == expected_kernel


@settings(max_examples=200, deadline=None, database=None)
@given(p=SCALARS | VALUES)
def test_random_dropout_probabilities(p):
    number = isinstance(p, (int, float)) and not isinstance(p, bool)
    if number and 0 <= p <= 1:
        assert nn.Dropout(p).p == float(p)
    else:
        with pytest.raises(ValueError, match=r"Dropout p must be a number between 0 and 1"):
            nn.Dropout(p)


# -- explicit padding may be negative: it crops (DESIGN.md) ---------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(12))
def test_negative_padding_crops_exactly_as_torch_pad_does(seed, dtype):
    rng = np.random.default_rng(seed)
    kernel, stride, dilation = (tuple(int(v) for v in rng.integers(1, hi, 2)) for hi in (4, 3, 3))
    sides = tuple(tuple(int(v) for v in rng.integers(-2, 3, 2)) for _ in range(2))
    padding = [sides, sides[0], int(rng.integers(-2, 0))][seed % 3]
    mode = ("correlation", "convolution")[seed % 2]
    layer = nn.Conv2D(2, 3, kernel, stride, padding, dilation, mode=mode)
    (t, b), (l, r) = layer.padding2d
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    H = max(span[0] - t - b, -t, -b, 1) + int(rng.integers(0, 4))
    W = max(span[1] - l - r, -l, -r, 1) + int(rng.integers(0, 4))
    x = rng.standard_normal((2, 2, H, W))
    y = check_layer(layer, torch_conv(layer), x, dtype, seed=seed)
    o, i, j = (int(rng.integers(n)) for n in y.shape[1:])
    explained = layer.explain(x[0].astype(dtype), (o, i, j))
    assert explained["value"] == pytest.approx(float(y[0, o, i, j]), rel=1e-4, abs=1e-5)


def test_cropping_more_than_the_input_holds_is_refused_at_forward():
    layer = nn.Conv2D(1, 1, 1, padding=((-5, 3), (0, 0)))
    with pytest.raises(ValueError, match=r"crops 5 rows from one side, but the input is only 4x4"):
        layer.forward(np.zeros((1, 1, 4, 4), np.float32))
    assert layer.forward(np.zeros((1, 1, 5, 4), np.float32)).shape == (1, 1, 3, 4)

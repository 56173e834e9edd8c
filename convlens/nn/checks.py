"""Argument checks every layer shares: one ValueError naming the argument, one line.

Layers are built from Python calls and from model files alike (a file's configs are
constructor arguments), so every hyperparameter is checked for its type as well as its
range: ``True`` is no size, ``2.7`` is not silently truncated to 2, and ``None`` or a
string never reaches the arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that an error message stays one
    short line whatever a caller (or a model file) passed."""
    try:
        text = repr(value)
    except RecursionError:  # nested deeper than repr goes
        text = f"<a {type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (a bool is not: True is no size)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python int, or a ValueError naming ``name``.

    Python and NumPy integers pass; bools, floats (even ``2.0``), strings and None do not,
    nor anything below ``minimum`` when one is given.
    """
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer, got {brief(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {brief(value)}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """``value`` as a bool: only True and False (NumPy's too) pass, not 0, 1 or "no"."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {brief(value)}")
    return bool(value)


def fraction(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1]``: a real number, not a bool, None or a string."""
    real = isinstance(value, (int, float, np.integer, np.floating))
    if not real or isinstance(value, (bool, np.bool_)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {brief(value)}")
    return float(value)


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``options``, else a ValueError naming them."""
    if not (isinstance(value, str) and value in options):
        raise ValueError(f"{name} must be one of {options}, got {brief(value)}")
    return value

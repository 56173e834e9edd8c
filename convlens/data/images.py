"""``load_image``: a user's own picture, preprocessed to what a model takes.

The steps, in order: read the bytes (path, bytes or binary file object); open them with
Pillow behind a decompression-bomb guard; decode every pixel (so a truncated file fails
here, not later); turn the picture upright as its EXIF orientation says; convert to
grayscale (``C == 1``) or RGB (``C == 3``), compositing transparency onto white (images with
more than 8 bits per pixel — 16-bit, 32-bit integer, float — are read as 8-bit values when
none exceeds 255, else as 16-bit ones, 65535 being white); scale so the image covers
``(H, W)`` and crop the centre (:func:`PIL.ImageOps.fit`, Lanczos); return float32
``(C, H, W)`` in [0, 1].

Anything that is not a usable picture raises :class:`ImageError` with a one-line message
meant for the person who uploaded it.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Largest picture accepted, in pixels (width × height): 40 MP, stricter than Pillow's own
limit, since the picture only ends up a few dozen pixels wide."""

MAX_BYTES = 64 * 1024 * 1024
"""Largest file accepted, in bytes."""

_MODES = {1: "L", 3: "RGB"}
_WIDE = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # more than 8 bits per pixel


class ImageError(ValueError):
    """The input is not an image convlens can use; the message says why, in one line."""


def _read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO) -> bytes:
    """All of ``source``'s bytes, at most :data:`MAX_BYTES`."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    elif isinstance(source, io.TextIOBase):
        raise TypeError("load_image needs a file opened in binary mode ('rb'), not text mode")
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"reading the file gave {type(data).__name__}, not bytes")
    else:
        raise TypeError(
            f"load_image takes a path, bytes or a binary file object, not {type(source).__name__}"
        )
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is larger than {MAX_BYTES // 2**20} MB")
    return data


def _decode(data: bytes) -> Image.Image:
    """Open and fully decode ``data``, refusing oversized and damaged images."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            if pixels <= MAX_PIXELS:
                image.load()  # decode everything now: a truncated file fails here
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"the image is too large to open safely ({error})") from None
        except UnidentifiedImageError:
            raise ImageError("this is not an image, or not in a format Pillow can read") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageError(f"the image is truncated or corrupt ({error})") from None
    if pixels > MAX_PIXELS:
        raise ImageError(
            f"the image has {pixels:,} pixels, more than the {MAX_PIXELS:,} accepted "
            "(possibly a decompression bomb)"
        )
    return image


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to ``"L"`` or ``"RGB"``: alpha onto white, 16-bit and float down to 8 bits."""
    if image.mode in _WIDE:
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 255:  # 16-bit data: 65535 is white
            values = values / 257
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    try:
        if image.mode not in ("1", "L", "P", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, ...
            image = image.convert("RGB")
        return image.convert(mode)
    except ValueError as error:
        raise ImageError(f"cannot convert a {image.mode} image to {mode} ({error})") from None


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    input_shape: tuple[int, int, int],
) -> np.ndarray:
    """Read a picture and preprocess it to a model's input shape.

    Parameters
    ----------
    source : str, PathLike, bytes or binary file object
        The picture, in any format Pillow reads (PNG, JPEG, GIF, BMP, WebP, TIFF, ...).
    input_shape : tuple of int
        ``(C, H, W)``: ``C`` is 1 (grayscale) or 3 (RGB).

    Returns
    -------
    ndarray of float32, shape (C, H, W)
        Pixel values in [0, 1]: upright (EXIF orientation applied), transparency composited
        on white, scaled so the image covers ``H × W`` and cropped to it around the centre.

    Raises
    ------
    ImageError
        Empty input, not an image, a truncated or corrupt file, or an image larger than
        :data:`MAX_PIXELS` (a decompression bomb).
    ValueError
        If ``input_shape`` is not ``(1 or 3, H, W)`` with positive ``H`` and ``W``.
    FileNotFoundError
        If ``source`` is a path that does not exist.

    Examples
    --------
    >>> from PIL import Image
    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (100, 50), "red").save(buffer, "PNG")
    >>> load_image(buffer.getvalue(), (3, 32, 32))[:, 0, 0]
    array([1., 0., 0.], dtype=float32)
    """
    channels, height, width = _check_shape(input_shape)
    image = _decode(_read_bytes(source))
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as error:
        raise ImageError(f"the image's EXIF data is corrupt ({error})") from None
    image = _to_mode(image, _MODES[channels])
    image = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32) / 255  # (H, W) or (H, W, 3)
    return np.ascontiguousarray(pixels.reshape(height, width, channels).transpose(2, 0, 1))


def _check_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        channels, height, width = (int(n) for n in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if channels not in _MODES:
        raise ValueError(f"input_shape {input_shape}: C must be 1 (grayscale) or 3 (RGB)")
    if height < 1 or width < 1:
        raise ValueError(f"input_shape {input_shape}: H and W must be positive")
    return channels, height, width

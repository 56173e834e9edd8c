"""load_image: every colour mode, EXIF orientation, resize-and-crop geometry, bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convlens.data import ImageError, load_image
from convlens.data import images as images_module

ONE_LEVEL = 1 / 255 + 1e-6  # one 8-bit step: colour conversions round


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def luma(r, g, b):
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def palette_image(transparent: bool) -> Image.Image:
    """A 'P' image: left half palette entry 1 (red), right half entry 0 (blue or transparent)."""
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 255] + [255, 0, 0] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 4, 8))
    if transparent:
        image.info["transparency"] = 0
    return image


# (image, format, expected RGB of the top-left pixel, of the bottom-right one: None = same)
WHITE = (255, 255, 255)
MODES = {
    "1": (Image.new("1", (8, 8), 1), "PNG", (255, 255, 255), (255, 255, 255)),
    "L": (Image.new("L", (8, 8), 77), "PNG", (77, 77, 77), (77, 77, 77)),
    "RGB": (Image.new("RGB", (8, 8), (200, 100, 50)), "PNG", (200, 100, 50), (200, 100, 50)),
    "RGB-jpeg": (Image.new("RGB", (8, 8), (200, 100, 50)), "JPEG", (200, 100, 50), None),
    "RGBA-opaque": (Image.new("RGBA", (8, 8), (10, 20, 30, 255)), "PNG", (10, 20, 30), None),
    "RGBA-clear": (Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "PNG", WHITE, None),
    "RGBA-half": (Image.new("RGBA", (8, 8), (0, 0, 0, 102)), "PNG", (153, 153, 153), None),
    "LA": (Image.new("LA", (8, 8), (0, 0)), "PNG", (255, 255, 255), (255, 255, 255)),
    "P": (palette_image(False), "PNG", (255, 0, 0), (0, 0, 255)),
    "P-transparent": (palette_image(True), "PNG", (255, 0, 0), (255, 255, 255)),
    "P-gif": (palette_image(True), "GIF", (255, 0, 0), (255, 255, 255)),
    "CMYK": (Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "TIFF", (0, 255, 255), (0, 255, 255)),
    "CMYK-jpeg": (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", WHITE, None),
    "I;16": (Image.new("I;16", (8, 8), 65535), "PNG", (255, 255, 255), (255, 255, 255)),
    "I;16-half": (Image.new("I;16", (8, 8), 32896), "PNG", (128, 128, 128), (128, 128, 128)),
    "I": (Image.new("I", (8, 8), 100), "TIFF", (100, 100, 100), (100, 100, 100)),
    "F": (Image.new("F", (8, 8), 60.0), "TIFF", (60, 60, 60), (60, 60, 60)),
    "BMP": (Image.new("RGB", (8, 8), (1, 2, 3)), "BMP", (1, 2, 3), (1, 2, 3)),
    "WEBP-lossless": (Image.new("RGB", (8, 8), (9, 8, 7)), "WEBP", (9, 8, 7), (9, 8, 7)),
}  # fmt: skip


@pytest.mark.parametrize("case", MODES)
def test_every_mode_becomes_rgb_or_gray(case):
    image, fmt, first, last = MODES[case]
    last = first if last is None else last
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 100} if fmt == "JPEG" else {}
    data = encode(image, fmt, **options)
    rgb = load_image(data, (3, 8, 8))
    gray = load_image(data, (1, 8, 8))
    assert rgb.shape == (3, 8, 8) and gray.shape == (1, 8, 8)
    assert rgb.dtype == gray.dtype == np.float32
    assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= gray.min() and gray.max() <= 1
    atol = 3 / 255 if fmt == "JPEG" else ONE_LEVEL
    np.testing.assert_allclose(rgb[:, 0, 0], np.array(first) / 255, atol=atol)
    np.testing.assert_allclose(rgb[:, 7, 7], np.array(last) / 255, atol=atol)
    np.testing.assert_allclose(gray[0, 0, 0], luma(*first), atol=atol)
    np.testing.assert_allclose(gray[0, 7, 7], luma(*last), atol=atol)


def test_exif_orientation_is_applied():
    # Stored 40 wide and 20 high, white block top-left. Orientation 6: "rotate 90° clockwise
    # to display" — displayed 20 wide and 40 high, the block top-right.
    stored = Image.new("L", (40, 20), 0)
    stored.paste(255, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    upright = load_image(data, (1, 40, 20))[0]  # (H, W): no resizing needed
    assert upright[1:9, 11:19].min() > 0.9  # the block, now top-right
    assert upright[1:9, 1:9].max() < 0.1 and upright[12:, :].max() < 0.1


@pytest.mark.parametrize(
    ("size", "axis", "shape", "kept"),
    [
        ((60, 20), "columns", (1, 10, 10), (20, 40)),  # wide: the middle third of the columns
        ((20, 60), "rows", (1, 10, 10), (20, 40)),  # tall: the middle third of the rows
        ((40, 40), "rows", (1, 10, 20), (10, 30)),  # wide target: the middle half of the rows
        ((40, 40), "columns", (1, 20, 10), (10, 30)),  # tall target: the middle half of columns
    ],
)
def test_resize_covers_the_target_and_crops_the_centre(size, axis, shape, kept):
    # Grey where the crop must land, widened by the Lanczos filter's reach at scale 1/2
    # (6 pixels); black before it and white after it, which any misplaced crop would show.
    length = size[0] if axis == "columns" else size[1]
    profile = np.full(length, 128, dtype=np.uint8)
    profile[: kept[0] - 7], profile[kept[1] + 7 :] = 0, 255
    array = (
        np.tile(profile, (size[1], 1)) if axis == "columns" else np.tile(profile, (size[0], 1)).T
    )
    out = load_image(encode(Image.fromarray(np.ascontiguousarray(array))), shape)
    assert out.shape == shape
    np.testing.assert_allclose(out, 128 / 255, atol=ONE_LEVEL)


def test_centre_crop_is_exact_without_scaling():
    row = (np.arange(30) * 8).astype(np.uint8)
    out = load_image(encode(Image.fromarray(np.tile(row, (10, 1)))), (1, 10, 10))
    np.testing.assert_allclose(out[0, 0] * 255, row[10:20], atol=1e-3)


def test_small_images_are_scaled_up():
    out = load_image(encode(Image.new("RGB", (4, 3), (0, 255, 0))), (3, 28, 28))
    assert out.shape == (3, 28, 28)
    np.testing.assert_allclose(out[1], 1.0, atol=ONE_LEVEL)


def test_every_kind_of_source_gives_the_same_pixels(tmp_path):
    data = encode(Image.new("RGB", (12, 9), (30, 60, 90)))
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    expected = load_image(data, (3, 9, 9))
    with open(path, "rb") as file:
        from_file = load_image(file, (3, 9, 9))
    for source in (str(path), path, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(load_image(source, (3, 9, 9)), expected)
    np.testing.assert_array_equal(from_file, expected)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` × ``height`` pixels and holds none."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def noise_png(size=(64, 64)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"", "the file is empty"),
        (np.random.default_rng(1).bytes(4096), "not an image"),
        (b"Dear user,\nthis is a letter, not a picture.\n", "not an image"),
        (noise_png()[: len(noise_png()) // 2], "truncated or corrupt"),
        (png_declaring(100_000, 100_000), "too large to open safely"),
        (png_declaring(8_000, 6_000), "48,000,000 pixels, more than the 40,000,000 accepted"),
    ],
    ids=["empty", "random-bytes", "text", "half-png", "bomb-header", "over-40-MP"],
)
def test_bad_input_raises_a_one_line_image_error(source, message):
    with pytest.raises(ImageError, match=message) as error:
        load_image(source, (3, 28, 28))
    assert "\n" not in str(error.value) and isinstance(error.value, ValueError)


def test_files_are_rejected_like_bytes(tmp_path):
    (tmp_path / "notes.txt").write_text("shopping list: eggs, milk\n")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.txt", (1, 28, 28))
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png", (1, 28, 28))
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png", (1, 28, 28))


def test_pixel_cap_and_pillow_warning_are_enforced(monkeypatch):
    data = encode(Image.new("L", (20, 20), 0))
    monkeypatch.setattr(images_module, "MAX_PIXELS", 399)
    with pytest.raises(ImageError, match="400 pixels, more than the 399 accepted"):
        load_image(data, (1, 8, 8))
    monkeypatch.setattr(images_module, "MAX_PIXELS", 40_000_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 px: Pillow only warns...
    with pytest.raises(ImageError, match="too large to open safely"):  # ...we refuse
        load_image(data, (1, 8, 8))


def test_file_size_cap(monkeypatch):
    monkeypatch.setattr(images_module, "MAX_BYTES", 100)
    with pytest.raises(ImageError, match="larger than"):
        load_image(noise_png(), (3, 8, 8))


def test_wrong_arguments(tmp_path):
    data = encode(Image.new("L", (4, 4)))
    for shape in [(2, 28, 28), (4, 28, 28), (1, 0, 28), (28, 28), "1x28x28"]:
        with pytest.raises(ValueError, match="input_shape") as error:
            load_image(data, shape)
        assert not isinstance(error.value, ImageError)
    (tmp_path / "a.png").write_bytes(data)
    with open(tmp_path / "a.png") as text_file, pytest.raises(TypeError, match="binary mode"):
        load_image(text_file, (1, 4, 4))
    with pytest.raises(TypeError, match="not int"):
        load_image(42, (1, 4, 4))

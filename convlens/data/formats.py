"""Readers for the datasets' original file formats, all straight from the downloaded files.

- **IDX** (MNIST, Fashion-MNIST): a big-endian header — two zero bytes, a type byte
  (``0x08``: unsigned byte), the number of dimensions, then each dimension as a 32-bit
  integer — followed by the values. Images are ``0x00000803`` (N, rows, columns), labels
  ``0x00000801`` (N).
- **CIFAR-10, python version**: a tarball of pickled dicts. Pickle can run any code named
  in the file, so :class:`CifarUnpickler` lets through only the NumPy functions that rebuild
  an array and refuses every other name.
- **Tiny ImageNet**: the ``tiny-imagenet-200.zip`` archive; only the JPEGs of the wanted
  classes are read from it, nothing is extracted.

Every reader returns images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

try:  # NumPy 2 moved the array rebuilder; files written by NumPy 1 name the old module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

IDX_IMAGES = 0x00000803
IDX_LABELS = 0x00000801


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes.

    Parameters
    ----------
    path : Path
        The ``.gz`` file.
    magic : int
        The expected magic number: :data:`IDX_IMAGES` or :data:`IDX_LABELS`.

    Returns
    -------
    ndarray of uint8
        Shaped by the header's dimensions.

    Raises
    ------
    ValueError
        If the file is not gzip, has another magic number, or its size disagrees with its
        header.
    """
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise ValueError(f"{path.name}: not a gzip file ({error})") from error
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != magic:
        found = data[:4].hex() or "nothing"
        raise ValueError(f"{path.name}: IDX magic number {found}, expected {magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path.name}: IDX header cut short ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(
            f"{path.name}: IDX header promises {shape} = {int(np.prod(shape))} values, "
            f"the file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files: uint8 ``(N, 1, H, W)``, int64 ``(N,)``."""
    x = read_idx(images, IDX_IMAGES)
    y = read_idx(labels, IDX_LABELS)
    if len(x) != len(y):
        raise ValueError(f"{images.name} has {len(x)} images but {labels.name} {len(y)} labels")
    return x[:, None], y.astype(np.int64)


# --------------------------------------------------------------------------------------- CIFAR

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_MEMBERS = {
    "train": [f"data_batch_{k}" for k in range(1, 6)],
    "test": ["test_batch"],
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays and nothing else.

    A pickle names the functions and classes it needs by module and name, and an ordinary
    unpickler imports and calls whatever it is told. This one answers only the names the
    CIFAR-10 batches use — ``numpy.core.multiarray._reconstruct`` (or its NumPy 2 home),
    ``numpy.ndarray`` and ``numpy.dtype`` — and refuses every other name before anything
    runs.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR-10 batch holds only NumPy arrays, "
                "lists and strings"
            ) from None


def _unpickle(tar: tarfile.TarFile, member: str, archive: Path) -> dict:
    """Read one pickled dict from the tarball without extracting anything."""
    try:
        stream = tar.extractfile(f"{_CIFAR_DIR}/{member}")
    except KeyError:
        raise ValueError(f"{archive.name}: {_CIFAR_DIR}/{member} is missing") from None
    if stream is None:
        raise ValueError(f"{archive.name}: {_CIFAR_DIR}/{member} is not a regular file")
    try:
        with stream:
            batch = CifarUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{archive.name}: {member} cannot be loaded safely: {error}") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{archive.name}: {member} holds a {type(batch).__name__}, not a dict")
    return batch


def _cifar_batch(batch: dict, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one batch and return uint8 ``(N, 3, 32, 32)`` images and int64 labels."""
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{member}: b'data' is not a 2-D uint8 array")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{member}: rows of {data.shape[1]} values, expected 3072")
    y = np.asarray(labels, dtype=np.int64) if isinstance(labels, list) else None
    if y is None or y.shape != (len(data),) or ((y < 0) | (y > 9)).any():
        raise ValueError(f"{member}: b'labels' is not a list of {len(data)} labels in 0..9")
    return data.reshape(-1, 3, 32, 32), y  # rows are channel-first: R, G, B planes of 32x32


def read_cifar10(
    archive: Path, split: str, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of ``cifar-10-python.tar.gz`` without extracting it.

    Parameters
    ----------
    archive : Path
        The tarball.
    split : str
        ``"train"`` (``data_batch_1`` .. ``data_batch_5``) or ``"test"`` (``test_batch``).
    classes : sequence of str
        The expected class names; ``batches.meta`` must list the same.

    Returns
    -------
    x : ndarray of uint8, shape (N, 3, 32, 32)
    y : ndarray of int64, shape (N,)

    Raises
    ------
    ValueError
        If a member is missing or malformed, or a pickle names anything but NumPy's array
        rebuilders.
    """
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{archive.name}: not a gzip tarball ({error})") from error
    with tar:
        meta = _unpickle(tar, "batches.meta", archive)
        names = [n.decode() if isinstance(n, bytes) else n for n in meta.get(b"label_names", [])]
        if names != list(classes):
            raise ValueError(f"{archive.name}: batches.meta lists classes {names}")
        parts = [_cifar_batch(_unpickle(tar, m, archive), m) for m in _CIFAR_MEMBERS[split]]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


# ------------------------------------------------------------------------------- Tiny ImageNet

_TINY_ROOT = "tiny-imagenet-200"


def _decode_jpeg(data: bytes, member: str, size: tuple[int, int]) -> np.ndarray:
    """Decode one Tiny ImageNet JPEG to uint8 ``(3, H, W)`` (grayscale ones become RGB)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{member}: not a readable image ({error})") from error
    if rgb.size != size:
        raise ValueError(f"{member}: {rgb.size[0]}x{rgb.size[1]} pixels, expected 64x64")
    return np.asarray(rgb).transpose(2, 0, 1)


def _train_members(names: list[str], wnids: Sequence[str]) -> list[tuple[str, int]]:
    """``(member, label)`` for every training JPEG of the wanted classes, in class order."""
    members = []
    for label, wnid in enumerate(wnids):
        folder = f"{_TINY_ROOT}/train/{wnid}/images/"
        found = [n for n in names if n.startswith(folder) and n.endswith(".JPEG")]
        if not found:
            raise ValueError(f"tiny-imagenet-200.zip has no training images for {wnid}")
        found.sort(key=lambda n: int(n[: -len(".JPEG")].rpartition("_")[2]))
        members += [(n, label) for n in found]
    return members


def _val_members(annotations: str, wnids: Sequence[str]) -> list[tuple[str, int]]:
    """``(member, label)`` for every validation JPEG of the wanted classes, in file order."""
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    members = []
    for line in annotations.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in label_of:
            members.append((f"{_TINY_ROOT}/val/images/{fields[0]}", label_of[fields[1]]))
    missing = sorted(set(wnids) - {wnids[label] for _, label in members})
    if missing:
        raise ValueError(f"tiny-imagenet-200.zip has no validation images for {missing}")
    return members


def read_tiny_imagenet(
    archive: Path, split: str, wnids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read the classes ``wnids`` from ``tiny-imagenet-200.zip``, without extracting it.

    Parameters
    ----------
    archive : Path
        The zip.
    split : str
        ``"train"``: ``train/<wnid>/images/<wnid>_<k>.JPEG`` (500 per class), ordered by class
        then k. ``"test"``: the official validation images (50 per class), as listed in
        ``val/val_annotations.txt``.
    wnids : sequence of str
        WordNet ids of the classes; label ``i`` is ``wnids[i]``.

    Returns
    -------
    x : ndarray of uint8, shape (N, 3, 64, 64)
    y : ndarray of int64, shape (N,)
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{archive.name}: not a zip archive ({error})") from error
    with zf:
        if split == "train":
            members = _train_members(zf.namelist(), wnids)
        else:
            index = f"{_TINY_ROOT}/val/val_annotations.txt"
            try:
                annotations = zf.read(index).decode()
            except KeyError:
                raise ValueError(f"{archive.name}: {index} is missing") from None
            members = _val_members(annotations, wnids)
        try:
            x = np.stack([_decode_jpeg(zf.read(m), m, (64, 64)) for m, _ in members])
        except KeyError as error:
            raise ValueError(f"{archive.name}: missing member ({error})") from error
    return x, np.array([label for _, label in members], dtype=np.int64)

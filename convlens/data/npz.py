"""Reading and writing ``.npz`` archives: byte-reproducible, atomic, never pickle.

``np.savez_compressed`` stamps the current time into every zip member, so two runs write
different bytes. :func:`save_npz` writes the zip itself with a fixed timestamp and fixed
member attributes: the same arrays give the same file (for a given NumPy and zlib), which
is what lets the bundled dataset carry a SHA-256. It writes to a temporary file beside the
target and renames it into place, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

# The earliest date a zip can hold: no clock, no time zone, the same on every machine.
_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compress: bool) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` archive, reproducibly and atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination file; its folder must exist.
    arrays : mapping of str to ndarray
        Member name (without ``.npy``) to array; written in the mapping's order. Object
        arrays are refused (they would need pickle).
    compress : bool
        Deflate the members (level 9) or store them as they are (faster to read).
    """
    path = Path(path)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for key, array in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE_TIME)
                info.compress_type = method
                info.external_attr = 0o644 << 16  # a regular file, rw-r--r--
                archive.writestr(info, member.getvalue(), compresslevel=9 if compress else None)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a data file is readable by all
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(
    source: str | os.PathLike | BinaryIO, keys: Iterable[str], *, label: object = None
) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` from an ``.npz`` archive, refusing pickled objects.

    Parameters
    ----------
    source : str, PathLike or binary file object
        The archive.
    keys : iterable of str
        The members that must be present.
    label : object, optional
        How to name the archive in errors; defaults to ``source``.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    ValueError
        If the archive is not a readable ``.npz`` or lacks one of ``keys``.
    """
    keys = list(keys)
    label = source if label is None else label
    try:
        with np.load(source, allow_pickle=False) as archive:
            missing = sorted(set(keys) - set(archive.files))
            if missing:
                raise ValueError(f"{label}: missing arrays {missing}")
            return {key: archive[key] for key in keys}
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{label}: not a readable .npz archive ({error})") from error

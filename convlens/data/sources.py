"""Where the downloadable datasets come from, and fetching them into the cache.

Each remote file is a :class:`RemoteFile` (URL and checksum) in :data:`SOURCES`, grouped per
dataset. The table is plain data so that tests can swap it for files they serve themselves.
Every download goes through :func:`pooch.retrieve`, which streams to a temporary file, checks
the checksum and only then moves the file into the cache; a file with the wrong checksum is
deleted, never kept.

Where each checksum was taken from:

- MNIST: TensorFlow Datasets, ``tensorflow_datasets/url_checksums/mnist.txt`` (the CVDF
  mirror; sizes equal the original files');
- Fashion-MNIST: TensorFlow Datasets, ``tensorflow_datasets/url_checksums/fashion_mnist.txt``;
- CIFAR-10: TensorFlow Datasets, ``tensorflow_datasets/url_checksums/cifar10.csv``, and the
  same value in Keras, ``keras/src/datasets/cifar10.py``;
- Tiny ImageNet: no SHA-256 is published; the MD5 ``90528d7ca1a48142e341f4ef8d21d0de`` (248,100,043
  bytes) is the one every public loader of ``tiny-imagenet-200.zip`` checks (Avalanche among
  them), so this one file is verified by MD5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pooch


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes
    ----------
    url : str
        Where to get it.
    checksum : str
        ``"sha256:<hex>"`` (or ``"md5:<hex>"`` where no SHA-256 is published), as pooch takes it.
    """

    url: str
    checksum: str

    @property
    def fname(self) -> str:
        """The file's name in the cache: the last part of the URL's path."""
        return PurePosixPath(urlsplit(self.url).path).name


_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"

SOURCES: dict[str, dict[str, RemoteFile]] = {
    "mnist": {
        "train_images": RemoteFile(
            f"{_MNIST}/train-images-idx3-ubyte.gz",
            "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train_labels": RemoteFile(
            f"{_MNIST}/train-labels-idx1-ubyte.gz",
            "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "test_images": RemoteFile(
            f"{_MNIST}/t10k-images-idx3-ubyte.gz",
            "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "test_labels": RemoteFile(
            f"{_MNIST}/t10k-labels-idx1-ubyte.gz",
            "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion-mnist": {
        "train_images": RemoteFile(
            f"{_FASHION}/train-images-idx3-ubyte.gz",
            "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train_labels": RemoteFile(
            f"{_FASHION}/train-labels-idx1-ubyte.gz",
            "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "test_images": RemoteFile(
            f"{_FASHION}/t10k-images-idx3-ubyte.gz",
            "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "test_labels": RemoteFile(
            f"{_FASHION}/t10k-labels-idx1-ubyte.gz",
            "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
    "cifar10": {
        "archive": RemoteFile(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        ),
    },
    "tiny-imagenet-10": {
        "archive": RemoteFile(
            "https://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "md5:90528d7ca1a48142e341f4ef8d21d0de",
        ),
    },
}
"""Remote files per dataset: role (e.g. ``"train_images"``) to :class:`RemoteFile`."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder downloads are cached in.

    ``cache_dir`` if given, else the environment variable ``CONVLENS_CACHE``, else the
    operating system's cache folder for convlens (``~/.cache/convlens`` on Linux).
    """
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CONVLENS_CACHE")
    return Path(env) if env else Path(pooch.os_cache("convlens"))


def fetch(dataset: str, role: str, folder: Path, *, progress: bool) -> Path:
    """Download ``SOURCES[dataset][role]`` into ``folder`` unless it is already there.

    Returns
    -------
    Path
        The verified local file.

    Raises
    ------
    ValueError
        If the downloaded file's SHA-256 does not match (nothing is kept).
    ConnectionError
        If the file cannot be downloaded.
    """
    remote = SOURCES[dataset][role]
    import requests  # pooch's own dependency; imported late, as pooch does, to keep imports fast

    try:
        path = pooch.retrieve(
            remote.url,
            known_hash=remote.checksum,
            fname=remote.fname,
            path=folder,
            progressbar=progress,
        )
    except ValueError as error:
        raise ValueError(
            f"{dataset}: {remote.fname} from {remote.url} failed its checksum and was deleted "
            f"({error})"
        ) from error
    except requests.exceptions.RequestException as error:
        raise ConnectionError(
            f"{dataset}: cannot download {remote.fname} from {remote.url} ({error}); check the "
            "network, or use 'mnist-bundled', which needs no download"
        ) from error
    return Path(path)

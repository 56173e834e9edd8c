"""Sample images for the input gallery, labelled with the model's class names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from convlens import nn
from convlens.data import ImageError, dataset_info, load_dataset, load_image

Sample = tuple[np.ndarray, str]

#: Files beside the samples that say which class each picture shows (the first one found).
LABEL_FILES = ("labels.json", "labels.txt")


def bundled_samples(model: nn.Sequential, per_class: int = 2) -> list[Sample]:
    """Digits from the bundled MNIST test split, when the model takes MNIST-shaped input."""
    info = dataset_info("mnist-bundled")
    if tuple(model.input_shape) != info.input_shape:
        return []
    x, y = load_dataset("mnist-bundled", "test")
    names = model.classes or info.classes
    picks = [i for k in range(len(info.classes)) for i in np.flatnonzero(y == k)[:per_class]]
    return [(x[i], names[y[i]] if y[i] < len(names) else str(y[i])) for i in picks]


def folder_samples(folder: str | Path, model: nn.Sequential) -> list[Sample]:
    """Every picture in ``folder``, preprocessed for ``model``, with its label: the class the
    folder's label file names for it, else the class its file name matches (see
    :func:`match_class`), else its file name without a trailing number (``white_2.jpeg`` →
    ``white``), which is then no class of the model: the page shows it as unlabelled.
    Unreadable files are skipped.

    The label file (``labels.json`` or ``labels.txt`` beside the pictures) maps a file name
    (``boat_1.jpeg``) or a name without its number (``boat``) to a class name:
    ``{"boat": "lifeboat"}``, or one ``boat: lifeboat`` per line (``#`` starts a comment).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no sample folder at {folder}")
    classes = list(model.classes or [])
    mapping = read_label_file(folder, classes)
    samples = []
    for path in sorted(folder.iterdir()):
        if path.name in LABEL_FILES:
            continue
        try:
            image = load_image(path, tuple(model.input_shape))
        except (ImageError, OSError):
            continue
        name = re.sub(r"[_\-\s]*\d+$", "", path.stem).replace("_", " ")
        label = mapping.get(path.name, mapping.get(name)) or match_class(name, classes) or name
        samples.append((image, label))
    return samples


def read_label_file(folder: Path, classes: list[str]) -> dict[str, str]:
    """{file name or name: class name} from the folder's label file ({} without one). A class
    the model does not have is an error: the file is a teacher's promise about the pictures."""
    for file_name in LABEL_FILES:
        path = folder / file_name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if file_name.endswith(".json"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
            if not isinstance(mapping, dict) or not all(
                isinstance(v, str) for v in mapping.values()
            ):
                raise ValueError(f'{path} must map names to class names: {{"boat": "lifeboat"}}')
        else:
            mapping = {}
            for number, line in enumerate(text.splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                key, colon, value = line.partition(":")
                if not colon or not key.strip() or not value.strip():
                    raise ValueError(
                        f"{path}, line {number}: write 'name: class', e.g. 'boat: lifeboat'"
                    )
                mapping[key.strip()] = value.strip()
        unknown = sorted({v for v in mapping.values() if classes and v not in classes})
        if unknown:
            raise ValueError(
                f"{path} names {', '.join(map(repr, unknown))}, not among the model's classes "
                f"({', '.join(classes)})"
            )
        return mapping
    return {}


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-]+", text.lower()) if w]


def match_class(name: str, classes: list[str]) -> str | None:
    """The class ``name`` (a file's name) safely stands for, or None.

    The class whose name it is (ignoring case, ``_`` and ``-``); else the one class that has
    ``name`` as a word (``panda`` → ``red panda``) or as the start or end of a word, at least
    three letters long (``boat`` → ``lifeboat``, ``bug`` → ``ladybug``). A name that fits
    several classes, or none, stands for no class: better unlabelled than wrongly labelled.
    """
    words = _words(name)
    if not words:
        return None
    for candidate in classes:
        if _words(candidate) == words:
            return candidate
    if len(words) > 1 or len(words[0]) < 3:
        return None
    word = words[0]
    fits = [
        c
        for c in classes
        if any(w == word or w.startswith(word) or w.endswith(word) for w in _words(c))
    ]
    return fits[0] if len(fits) == 1 else None

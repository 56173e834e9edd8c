"""Sample pictures get the model's class names as labels: a label file, else a safe match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from convlens import nn
from convlens.web.samples import folder_samples, match_class

TINY_IMAGENET = [
    "lifeboat", "ladybug", "pizza", "bell pepper", "school bus",
    "koala", "espresso", "red panda", "orange", "sport car",
]  # fmt: skip
SHARED = Path(__file__).resolve().parents[3] / "shared" / "cnn-explainer"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("espresso", "espresso"),  # the class itself
        ("Red_Panda", "red panda"),
        ("boat", "lifeboat"),  # the end of a word of one class
        ("bug", "ladybug"),
        ("panda", "red panda"),  # a word of one class
        ("pepper", "bell pepper"),
        ("car", "sport car"),
        ("bus", "school bus"),
        ("white", None),  # no class
        ("or", None),  # too short to mean anything
    ],
)
def test_a_file_name_stands_for_one_class_or_none(name, label):
    assert match_class(name, TINY_IMAGENET) == label


def test_a_name_that_fits_two_classes_is_no_label():
    assert match_class("cat", ["wildcat", "cat food"]) is None
    assert match_class("cat", ["cat", "wildcat"]) == "cat"  # the class itself wins


def model(classes: list[str]) -> nn.Sequential:
    built = nn.Sequential(nn.Flatten(), nn.Dense(3 * 8 * 8, len(classes)))
    built.input_shape, built.classes = (3, 8, 8), classes
    return built


def pictures(folder: Path, *names: str) -> None:
    for name in names:
        Image.new("RGB", (8, 8), (200, 40, 40)).save(folder / name)


def test_the_label_file_comes_first(tmp_path):
    pictures(tmp_path, "boat_1.jpeg", "boat_2.jpeg", "thing_1.png", "white.png")
    (tmp_path / "labels.json").write_text(json.dumps({"boat_2.jpeg": "pizza", "thing": "koala"}))
    labels = [label for _, label in folder_samples(tmp_path, model(TINY_IMAGENET))]
    assert labels == ["lifeboat", "pizza", "koala", "white"]  # "white": shown as unlabelled


def test_a_text_label_file(tmp_path):
    pictures(tmp_path, "a_1.png", "b_1.png")
    (tmp_path / "labels.txt").write_text("# name: class\na: koala\nb_1.png: orange\n")
    labels = [label for _, label in folder_samples(tmp_path, model(TINY_IMAGENET))]
    assert labels == ["koala", "orange"]


def test_a_label_file_naming_no_class_is_refused(tmp_path):
    pictures(tmp_path, "boat_1.jpeg")
    (tmp_path / "labels.json").write_text(json.dumps({"boat": "ship"}))
    with pytest.raises(ValueError, match="'ship', not among the model's classes"):
        folder_samples(tmp_path, model(TINY_IMAGENET))


@pytest.mark.skipif(not SHARED.exists(), reason="CNN Explainer's files are not in ../shared")
def test_cnn_explainers_pictures_are_labelled_but_one():
    from convlens.train import load_any_model

    samples = folder_samples(SHARED / "img", load_any_model(str(SHARED / "model.json"), None))
    labels = [label for _, label in samples]
    assert len(labels) == 21
    unlabelled = [label for label in labels if label not in TINY_IMAGENET]
    assert unlabelled == ["white"], unlabelled

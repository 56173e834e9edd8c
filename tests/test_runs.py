"""A run folder belongs to one run: no silent overwrite, no resume that trains nothing, and
no temporary files left behind by a killed run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import pytest

from convlens.nn.sequential import remove_stale_temporaries
from convlens.train import TrainConfig, load_checkpoint, train
from convlens.train.trainer import RUN_FILES

TINY = dict(dataset="mnist-bundled", limit=64, batch_size=32, val_split=0.25)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=300
    )


def killed_write(folder, name: str) -> str:
    """The temporary file a write of ``folder/name`` killed before ``os.replace`` leaves."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.write(fd, b"half a checkpoint")
    os.close(fd)
    return os.path.basename(tmp)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A finished one-epoch run: its folder and the bytes of every file in it."""
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(epochs=1, out=str(out), **TINY), progress=False)
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


def test_only_the_temporaries_of_that_file_are_removed(tmp_path):
    stale = [killed_write(tmp_path, "checkpoint.safetensors") for _ in range(3)]
    other = killed_write(tmp_path, "model.safetensors")
    kept = ["checkpoint.safetensors", "checkpoint.safetensors.tmp", ".checkpoint.safetensors"]
    kept += [".checkpoint.safetensorsX.1.tmp", "x.checkpoint.safetensors.1.tmp", other]
    for name in kept:
        (tmp_path / name).write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path / "checkpoint.safetensors")
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing" / "model.safetensors") == []


def test_what_a_killed_write_leaves_is_what_is_removed(tmp_path):
    """A process that dies inside write_safetensors, for real, and the clean-up after it."""
    target = tmp_path / "checkpoint.safetensors"
    script = (
        "import os, sys, safetensors.numpy\n"
        "safetensors.numpy.save_file = lambda *args, **kwargs: os._exit(9)  # killed mid-write\n"
        "from convlens.nn.sequential import write_safetensors\n"
        "write_safetensors(sys.argv[1], {}, {})\n"
    )
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", script, str(target)], timeout=120)
        assert killed.returncode == 9
    left = sorted(tmp_path.iterdir())
    assert len(left) == 2 and all(p.name.endswith(".tmp") for p in left)
    assert remove_stale_temporaries(target) == left
    assert list(tmp_path.iterdir()) == []


def test_training_into_a_folder_with_a_run_is_refused_and_changes_nothing(one_epoch):
    out, files = one_epoch
    refusal = rf"{re.escape(str(out))} already holds a training run .*--resume.*--overwrite"
    for flags in ({}, {"resume": False, "overwrite": False}):
        with pytest.raises(ValueError, match=refusal):
            train(TrainConfig(epochs=1, out=str(out), **TINY), progress=False, **flags)
    result = run_cli("train", "--epochs", "1", "--limit", "64", "--out", str(out), "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "--overwrite" in lines[0], result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


@pytest.mark.parametrize("leftover", RUN_FILES)
def test_any_file_of_a_run_marks_the_folder_as_taken(tmp_path, leftover):
    (tmp_path / leftover).write_bytes(b"{}")
    with pytest.raises(ValueError, match=leftover):
        train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), progress=False)


def test_overwrite_replaces_the_run_and_cleans_up(tmp_path, one_epoch):
    _, files = one_epoch
    out = tmp_path / "run"
    out.mkdir()
    for name, content in files.items():
        (out / name).write_bytes(content)
    stale = killed_write(out, "checkpoint.safetensors")
    config = TrainConfig(epochs=2, out=str(out), **TINY)
    result = train(config, overwrite=True, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert len(load_checkpoint(out / "checkpoint.safetensors").state["history"]) == 2
    assert not (out / stale).exists()
    assert (out / "model.safetensors").read_bytes() != files["model.safetensors"]


def test_overwrite_that_fails_early_keeps_the_old_run(tmp_path, one_epoch):
    _, files = one_epoch
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    bad = TrainConfig(epochs=1, out=str(tmp_path), **{**TINY, "dataset": "imagenet-1k"})
    with pytest.raises(ValueError, match="imagenet-1k"):
        train(bad, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


@pytest.mark.parametrize("epochs", [1, 0, -3])
def test_resume_must_ask_for_more_epochs_than_done(one_epoch, epochs):
    out, files = one_epoch
    refusal = rf"{re.escape(str(out))} has already trained 1 epoch; .*--epochs {epochs}.* than 1"
    with pytest.raises(ValueError, match=refusal):
        train(TrainConfig(epochs=epochs, out=str(out)), resume=True, progress=False)
    result = run_cli("train", "--resume", "--epochs", str(epochs), "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already trained 1 epoch" in lines[0], result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_resume_removes_a_killed_writes_temporaries_and_continues(tmp_path, one_epoch):
    _, files = one_epoch
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    stale = [
        killed_write(tmp_path, name) for name in ("checkpoint.safetensors", "model.safetensors")
    ]
    result = train(TrainConfig(epochs=2, out=str(tmp_path)), resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert not any((tmp_path / name).exists() for name in stale)
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_and_overwrite_together_are_refused(one_epoch):
    out, _ = one_epoch
    with pytest.raises(ValueError, match="pick one"):
        train(TrainConfig(epochs=3, out=str(out)), resume=True, overwrite=True, progress=False)

"""The README's Python examples run and do what they say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 2
    namespace: dict = {}
    exec(compile(blocks[0], "README example 1", "exec"), namespace)
    assert namespace["accuracy"] > 0.95
    assert (tmp_path / "bars.safetensors").is_file()
    for i, block in enumerate(blocks[1:], start=2):
        exec(compile(block, f"README example {i}", "exec"), {})

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


def test_readme_figures_are_the_measured_ones():
    """Every measured figure in the README is generated from docs/measured.json, which
    scripts/readme_numbers.py fills from `make bench`'s results: none can drift."""
    import importlib.util
    import json

    path = README.parent / "scripts" / "readme_numbers.py"
    spec = importlib.util.spec_from_file_location("readme_numbers", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = README.read_text()
    measured = json.loads(script.SNAPSHOT.read_text())
    names = {m.group(1) for m in script.MARKED.finditer(text)}
    assert names == {"engine", "parity", "explain", "training", "training-page", "serve"}
    assert {"parity", "explain"} <= set(measured)  # engine: only from a quiet run
    assert script.render(text, measured) == text, "run scripts/readme_numbers.py"

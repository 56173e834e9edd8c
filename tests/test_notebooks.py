"""Every example notebook runs top to bottom in a real Jupyter kernel (nbclient), offline, and
is stored without outputs.

The kernel is this environment's Python (jupyter_client starts the ``python3`` kernel with
``sys.executable``); each notebook runs in a fresh temporary folder, so files it writes stay
out of the repository. CNN Explainer's model files are handed to ``04-cnn-explainer`` through
``$CNN_EXPLAINER`` when they sit beside the checkout (``../shared/cnn-explainer``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
CNN_EXPLAINER = ROOT.parent / "shared" / "cnn-explainer"


def test_the_examples_are_there():
    names = [path.name for path in NOTEBOOKS]
    assert names == [
        "01-tour.ipynb",
        "02-convolution-by-hand.ipynb",
        "03-backprop-series.ipynb",
        "04-cnn-explainer.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        f"{path.name} is stored with outputs: clear them before committing"
    )
    if (CNN_EXPLAINER / "model.json").is_file():
        monkeypatch.setenv("CNN_EXPLAINER", str(CNN_EXPLAINER))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / ".runtime"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline plots
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    seconds = time.perf_counter() - started
    errors = [
        output
        for cell in code
        for output in cell.outputs
        if output.output_type == "error"
        or (output.output_type == "stream" and output.name == "stderr" and "Error" in output.text)
    ]
    assert not errors, errors
    print(f"{path.name}: {seconds:.1f} s")

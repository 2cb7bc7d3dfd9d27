"""The example notebooks run top to bottom (tiny sizes: GEOEMBED_NOTEBOOK_SMALL=1).

Each notebook is executed with nbclient and the current interpreter's ipykernel
(``python3``), in a temporary directory, so the committed copies are not touched.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_tile2vec_quickstart.ipynb", "02_landcover_evaluation.ipynb",
         "03_weak_supervision.ipynb"]
CELL_TIMEOUT = 300


def _has_image(output) -> bool:
    return bool({"image/png", "image/jpeg"} & set(output.get("data", {})))


def test_committed_notebooks_are_their_paired_scripts_executed():
    """Each ``.ipynb`` is paired with a percent-format ``.py`` (jupytext): same cells, and the
    notebook is committed executed (pictures kept, no errors, < 1 MB)."""
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for name in NAMES:
        path = NOTEBOOKS / name
        assert path.stat().st_size < 1_000_000, name
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent", name
        script = jupytext.read(path.with_suffix(".py"))
        assert [(c.cell_type, c.source) for c in nb.cells] == [
            (c.cell_type, c.source) for c in script.cells], (
            f"{name} and {path.with_suffix('.py').name} differ: run `.venv/bin/jupytext "
            f"--sync notebooks/{name}` (see notebooks/README.md)")
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), f"{name} is not executed"
        images = [o for c in code for o in c.get("outputs", []) if _has_image(o)]
        assert images, f"{name} has no pictures"
        errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name} was committed with an error output"


def _pin_kernel_to_this_python(root, monkeypatch) -> None:
    """A ``python3`` kernelspec running this interpreter, first on JUPYTER_PATH (so that a
    user-level ``python3`` kernelspec for another Python cannot take over)."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (geoembed tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(root))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    _pin_kernel_to_this_python(tmp_path / "jupyter", monkeypatch)
    monkeypatch.setenv("GEOEMBED_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:  # every figure shows (no library call switched the backend away)
        if "plt.subplots" in cell.source or "Image(" in cell.source:
            assert any(_has_image(o) for o in cell.outputs), cell.source[:200]
    outputs = [o for c in code for o in c.outputs]
    assert (tmp_path / "_out").is_dir()
    assert not any(o.get("output_type") == "error" for o in outputs), json.dumps(outputs)[:2000]

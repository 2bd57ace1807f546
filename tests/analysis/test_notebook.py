"""The notebook in analysis/ runs top to bottom on a tiny recorded study and draws its phase diagram."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "analysis" / "phase_diagram.ipynb"


def _recorder():
    """test_runs.record_tiny_study (tests are not a package: load the sibling file)."""
    spec = importlib.util.spec_from_file_location("_test_runs", Path(__file__).with_name("test_runs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.record_tiny_study


def _set_parameters(notebook, **values) -> None:
    """Replace the first code cell (plain assignments) with ``values``."""
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    assert "parameters" in cell.metadata.get("tags", []), "the first code cell holds the parameters"
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in values.items())


def test_notebook_draws_the_phase_diagram(tmp_path, monkeypatch):
    monkeypatch.setenv("URN_RESULTS_DIR", str(tmp_path / "urn_results"))
    uri, study_file = _recorder()(tmp_path)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    _set_parameters(notebook, STUDY=str(study_file), TRACKING_URI=uri, X=None, Y=None, FACET=None)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "tiny: 6 trials" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, "the last cell shows the phase diagram"
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("agreement" in html and "locally_connected" in html for html in tables), "the grid is shown"


@pytest.mark.parametrize("name", ["STUDY", "TRACKING_URI"])
def test_notebook_parameters_are_plain_assignments(name):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert any(line.startswith(f"{name} = ") for line in first.source.splitlines())
    assert all(not c.outputs for c in notebook.cells if c.cell_type == "code"), "committed without outputs"

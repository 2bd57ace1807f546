"""The notebook in analysis/ runs top to bottom, as shipped, on a recorded study and draws its phase diagram."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "analysis" / "phase_diagram.ipynb"


def _record():
    """test_runs.record (tests are not a package: load the sibling file): planted trials recorded as a sweep does."""
    spec = importlib.util.spec_from_file_location("_test_runs", Path(__file__).with_name("test_runs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.record, module.RECORDED


@pytest.mark.parametrize("folder", ["analysis", "."])
def test_notebook_as_shipped_draws_the_phase_diagram_from_its_folder_and_the_root(tmp_path, monkeypatch, folder):
    """Run as a user runs it, in a checkout where a sweep ran from the root: Jupyter in analysis/ (or a runner in
    the root), the parameters as shipped, no URN_RESULTS_DIR. The checkout is a copy: the notebook, the studies."""
    repo = tmp_path / "checkout"
    (repo / "analysis").mkdir(parents=True)
    shutil.copy(NOTEBOOK, repo / "analysis")
    shutil.copytree(ROOT / "search_spaces", repo / "search_spaces")
    monkeypatch.delenv("URN_RESULTS_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(repo)  # the sweep's own default store: urn_results/ in the root (its artifacts too)
    record, recorded = _record()
    record(f"sqlite:///{repo / 'urn_results' / 'mlflow.db'}", "quickstart", recorded)  # six trials, locality x l1
    notebook = nbformat.read(repo / "analysis" / NOTEBOOK.name, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(repo / folder)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "quickstart: 6 trials" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, "the last cell shows the phase diagram"
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("agreement" in html and "locally_connected" in html for html in tables), "the grid is shown"
    assert not (repo / "analysis" / "urn_results").exists(), "no store beside the notebook"


@pytest.mark.parametrize("name", ["STUDY", "TRACKING_URI"])
def test_notebook_parameters_are_plain_assignments(name):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert any(line.startswith(f"{name} = ") for line in first.source.splitlines())
    assert all(not c.outputs for c in notebook.cells if c.cell_type == "code"), "committed without outputs"

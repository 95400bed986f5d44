"""Every notebook runs top to bottom with its default parameters (the tiny model on CPU), and is stored stripped."""

from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    assert len(NOTEBOOKS) == 7
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is the parameters"
        for cell in code:
            assert not cell.outputs and cell.execution_count is None, f"{path.name} holds outputs: strip them"


@pytest.fixture(scope="module")
def notebook_runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebook-runs")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_default_parameters(path, notebook_runs):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    # As papermill does: a cell after the parameters, here keeping runs out of the project folder.
    keep_runs_out = f'OVERRIDES = OVERRIDES + ["train.output_dir={notebook_runs}"]'
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(keep_runs_out))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors

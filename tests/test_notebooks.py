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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_default_parameters(path, smoke_run: Path):
    """Each notebook top to bottom on the suite's smoke run: notebook 04 finds it complete (the suite trained it
    with the same config), 05-07 chat with, export and evaluate it; none trains again."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    # As papermill does: a cell after the parameters, here pointing at the suite's runs, out of the project folder.
    runs = f'OVERRIDES = OVERRIDES + ["train.output_dir={smoke_run.parent}"]'
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(runs))
    try:  # one failure, with the cell that failed, whatever the cause (an error or a slow machine's timeout)
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name}: {str(e)[-2000:]}")

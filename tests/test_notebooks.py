"""Every notebook runs top to bottom with its default parameters (the tiny model on CPU), and is stored stripped."""

import nbformat
import pytest

from tests.conftest import ROOT, run_notebook

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    assert len(NOTEBOOKS) == 8
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is the parameters"
        for cell in code:
            assert not cell.outputs and cell.execution_count is None, f"{path.name} holds outputs: strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_default_parameters(path, request):
    """Each notebook top to bottom on the suite's smoke run: notebook 04 finds it complete (the suite trained it
    with the same config), 05-07 chat with, export and evaluate it, and 08 finds the suite's sweep complete; none
    trains again."""
    out = request.getfixturevalue("smoke_sweep")["out"] if path.name.startswith("08") else \
        request.getfixturevalue("smoke_run").parent
    run_notebook(path.name, [f"train.output_dir={out}"])

"""Every notebook runs top to bottom with its default parameters (the tiny model on CPU), and is stored stripped."""

import nbformat
import pytest

from tests.conftest import ROOT, run_notebook

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    assert len(NOTEBOOKS) == 9
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is the parameters"
        for cell in code:
            assert not cell.outputs and cell.execution_count is None, f"{path.name} holds outputs: strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_default_parameters(path, request):
    """Each notebook top to bottom on the suite's runs: notebook 04 finds the smoke run complete (the suite trained it
    with the same config), 05-07 chat with, export and evaluate it, 08 finds the suite's sweep complete and 09 the
    suite's GRPO run of the smoke run; none trains again."""
    if path.name.startswith("08"):
        out = request.getfixturevalue("smoke_sweep")["out"]
    else:
        out = request.getfixturevalue("smoke_run").parent
        if path.name.startswith("09"):
            request.getfixturevalue("grpo_run")
    run_notebook(path.name, [f"train.output_dir={out}"])

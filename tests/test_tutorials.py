"""Execute every tutorial notebook (jupytext percent sources) in smoke mode."""

import os
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9]*.py"))


def test_every_tutorial_is_collected():
    assert TUTORIALS, "no tutorials found"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_every_tutorial_asserts_its_numbers(path):
    """A tutorial that only runs proves little: each asserts at least one computed
    number against a reference (a comparison or a closeness check), so that executing
    it below fails when what it shows stops being true."""
    import ast

    checks = [
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Compare | ast.Call | ast.BoolOp)
    ]
    assert checks, f"{path.name} asserts none of its numbers"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # small models on few cores run much faster on one thread (02: 94 s -> ~15 s on 2 cores)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = jupytext.read(path)
    # the kernel inherits this environment; run it from the tutorials folder, as a user would
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    errors = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert os.environ["SMOKE_TEST"] == "1"

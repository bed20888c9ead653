"""The notebooks as files: committed clean, documented parameters, the course's layout."""

from __future__ import annotations

import re

import nbformat
import papermill
import pytest

from helpers.batch.runner import course_notebooks

NOTEBOOKS = course_notebooks()
PARAM_LINE = re.compile(r"^[A-Z][A-Z0-9_]* = .+  # \S.*$")


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run `nbstripout {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_layout_and_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    headings = [
        line
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("## ")
    ]
    assert "## Setup" in headings and "## Summary" in headings
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    lines = [line for line in tagged[0].source.splitlines() if line.strip()]
    bad = [line for line in lines if not PARAM_LINE.match(line)]
    assert not bad, f"parameter lines need `NAME = value  # meaning`: {bad}"
    declared = papermill.inspect_notebook(str(path))
    assert "RUN_DIR" in declared and "PROFILE" in declared
    assert all(info["help"] for info in declared.values())
    # Every code cell follows a sentence of prose (a markdown cell), or another code cell
    # of the same step at most once.
    run = 0
    for cell in nb.cells:
        run = run + 1 if cell.cell_type == "code" else 0
        assert run <= 3, f"{path.name}: more than 3 code cells in a row without prose"

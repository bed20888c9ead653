"""The shape issue 11 asks of the course: the lesson's code in the notebooks, a small helpers.

Each notebook must show the calls of its lesson in its own code cells; helpers stay within
the line budget, with short functions; notebook cells stay short enough to read at a glance.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LINE_BUDGET = 6_000
MODULE_BUDGET = 800
FUNCTION_BUDGET = 60
CELL_BUDGET = 25

HEAD = [
    r"\.trainable = False",
    r"keras\.Input\(",
    r"training=False",
    r"GlobalAveragePooling2D\(",
    r"Dropout\(",
    r"Dense\(",
    r"\.compile\(",
    r"keras\.optimizers\.Adam\(",
    r"\.fit\(",
    r"keras\.callbacks\.EarlyStopping\(",
    r"\.predict\(",
]
# What each notebook's code cells must contain: the calls the course sheet teaches.
LESSON_CALLS = {
    "00": [r"keras\.applications\.\w+\(", r"include_top=False", *HEAD],
    "01": [r"compute_class_weight\(", r"\"balanced\"", r"class_weight"],
    "02": [
        r"keras\.Sequential\(",
        r"RandomFlip\(",
        r"RandomBrightness\(",
        r"RandomContrast\(",
        r"\.map\(",
    ],
    "03": HEAD,
    "04": [
        r"\.trainable = True",
        r"BatchNormalization",
        r"\.trainable = False",
        r"\.compile\(",
        r"1e-5",
        r"\.fit\(",
    ],
    "05": [
        r"tf\.lite\.TFLiteConverter",
        r"\.optimizations = ",
        r"tf\.lite\.Optimize\.DEFAULT",
        r"\.representative_dataset = ",
        r"yield",
        r"target_spec\.supported_ops",
        r"target_spec\.supported_types",
        r"\.convert\(\)",
    ],
    "06": [
        r"Interpreter\(",
        r"allocate_tensors\(\)",
        r"get_input_details\(\)",
        r"set_tensor\(",
        r"invoke\(\)",
        r"get_tensor\(",
        r"quantization",
    ],
    "07": [r"tf\.GradientTape\(", r"\.gradient\("],
}


def _code(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _python_files() -> list[Path]:
    skip = {"tests", ".venv", "runs", "build", ".cache", "data"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shows_its_lesson(path):
    code = "\n".join(_code(path))
    missing = [p for p in LESSON_CALLS[path.name[:2]] if not re.search(p, code)]
    assert not missing, f"{path.name} does not show {missing} in its code cells"
    assert "runs.start(" in code, f"{path.name}: record the run with runs.start(...)"
    assert "record_notebook(" not in code, f"{path.name} retypes its parameters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_are_short(path):
    long = [
        (i, len(s.splitlines()))
        for i, s in enumerate(_code(path))
        if len(s.splitlines()) > CELL_BUDGET
    ]
    assert not long, f"{path.name}: code cells (index, lines) over {CELL_BUDGET} lines: {long}"


def test_helpers_within_line_budget():
    counts = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in _python_files()}
    total = sum(counts.values())
    assert total <= LINE_BUDGET, f"{total} lines of Python outside tests/ (budget {LINE_BUDGET})"
    big = {str(p): n for p, n in counts.items() if n > MODULE_BUDGET}
    assert not big, f"modules over {MODULE_BUDGET} lines: {big}"


def test_functions_are_short():
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > FUNCTION_BUDGET:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert not long, f"functions over {FUNCTION_BUDGET} lines: {long}"


def test_line_length_rule_is_on():
    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run(
        [str(ruff), "check", "--select", "E501", "helpers", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:]

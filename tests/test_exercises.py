"""The exercises' checker on a fake run folder, and every notebook's exercises and solution."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from helpers import exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with the records the checked exercises read, and known answers."""
    records = {
        "data.json": {"classes": ["fake", "real"], "counts": {"train": {"fake": 33, "real": 37}}},
        "phase1_metrics.json": {"accuracy": 0.8, "ci_low": 0.6123},
        "phase2_metrics.json": {"accuracy": 0.8},
        "phase1_history.json": {"val_loss": [0.9, 0.7, 0.75, 0.6, 0.65]},
        "antispoofing.json": {"models": {"keras": {"apcer_max": 0.2, "bpcer": 0.1}}},
    }
    for name, data in records.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "test_predictions.csv").write_text(
        "relpath,label,score_keras\na,real,0.4\nb,real,0.7\nc,real,0.9\nd,real,0.8\ne,fake,0.1\n"
    )
    return tmp_path


EXPECTED = {  # id: (right answer, wrong answer, the expected value as a learner could print it)
    "01.1": (1.5, 1.0, "1.5"),  # (70 + 20) / (3 x 20)
    "02.2": (3930, 1967, "3930"),  # 2 000 - 33 + 2 000 - 37
    "03.1": (0.612, 0.7, "0.612"),  # the interval's lower end, within 0.005
    "03.2": (3, 4, "3"),  # val_loss rises at epoch 3
    "04.2": ("phase1", "phase2", "phase1"),  # a tie: phase 1 wins it now
    "05.2": (19, 20, "19"),  # round(40 / 70 x 33)
    "07.2": (0.0748, 0.5, "0.07"),  # 0.008 / (0.008 + 0.099)
    "07.3": (0.25, 0.5, "0.25"),  # 1 of 4 bona fide scores below 0.5
}


@pytest.mark.parametrize("exercise", EXPECTED)
def test_right_and_wrong_answers_never_show_the_value(exercise, run_dir, capsys):
    right, wrong, value = EXPECTED[exercise]
    assert exercises.check(exercise, right, run_dir=run_dir) is True
    said_right = capsys.readouterr().out
    assert "right" in said_right and value not in said_right.replace(f"{exercise}:", "")
    assert exercises.check(exercise, wrong, run_dir=run_dir) is False
    said_wrong = capsys.readouterr().out
    assert "not yet" in said_wrong and "Hint:" in said_wrong
    assert value not in said_wrong.replace(f"{exercise}:", "")


def test_words_ignore_case_and_spaces(run_dir):
    assert exercises.check("04.2", "Phase 1", run_dir=run_dir) is True


def test_without_an_answer_it_says_what_to_answer(capsys):
    assert exercises.check("03.1", answer=None, run_dir="/nonexistent") is None
    out = capsys.readouterr().out
    assert "set answer=" in out and "TARGET_ACCURACY" in out and "Hint:" in out


def test_unknown_exercise_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown exercise '9.9'.*'03.1'"):
        exercises.check("9.9", 1)


def test_a_number_expected_and_a_word_given(run_dir):
    with pytest.raises(ValueError, match="03.1 expects"):
        exercises.check("03.1", "high", run_dir=run_dir)


def test_missing_record_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="phase1_metrics.json is missing"):
        exercises.check("03.1", 0.5, run_dir=tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_ends_with_exercises_and_has_a_solution(path):
    cells = nbformat.read(path, as_version=4).cells
    headings = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and c.source.startswith("## Exercises")
    ]
    assert headings, f"{path.name} has no '## Exercises' section"
    after = "".join(c.source for c in cells[headings[0] :] if c.cell_type == "markdown")
    assert "## Summary" not in after, f"{path.name}: the exercises must come after the Summary"
    topic = path.stem.split("_", 1)[0]
    solutions = sorted((ROOT / "solutions").glob(f"{topic}_*.ipynb"))
    assert solutions, f"no solutions/{topic}_<topic>.ipynb for {path.name}"
    checked = [k for k in exercises.EXERCISES if k.startswith(f"{topic}.")]
    code = "".join(c.source for c in nbformat.read(solutions[0], as_version=4).cells)
    assert all(f'check("{k}"' in code for k in checked), f"{solutions[0].name} checks {checked}"

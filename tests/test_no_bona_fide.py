"""The course on a dataset without a bona fide class: every notebook completes.

Three classes (``other``, ``print``, ``screen``), none of them ``real``: notebooks 01 to
06 train, convert and export as for any classifier, and notebook 07 says once that its
anti-spoofing evaluation does not apply, records why, and still shows the claims scoreboard
of notebooks 01-06 (nothing else). The run is
sized to finish in about two minutes on two CPU cores (96 px images, one epoch, the
offline backbone, no optional experiments); notebooks 00 and 02 read no run artefact that
this case changes, so they are left out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import antispoofing, claims, demo_data, runs, verification
from helpers.batch import preflight, runner

NOTEBOOKS = "01,03,04,05,06,07"
CLASSES = {"none": "other", "print": "print", "screen": "screen"}  # demo attack type -> class
SKIP_SENTENCE = "Anti-spoofing evaluation skipped"


def make_dataset(root: Path) -> Path:
    """``root/data/<class>/*.jpg``: 20 images per class, no ``real`` class, no metadata.csv."""
    demo = demo_data.generate(
        per_class=30,
        image_size=96,
        fake_ratio=2 / 3,  # 20 reals and 40 fakes, half print, half screen
        print_share=0.5,
        out_root=root / "demo",
        workers=1,
    )
    data = root / "data"
    for row in pd.read_csv(demo / "metadata.csv").itertuples():
        target = data / CLASSES[row.attack_type] / Path(row.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo / row.path, target)
    return data


PARAMETERS = {
    "IMAGE_SIZE": 96,
    "BACKBONE": "EfficientNetLite0",  # pretrained offline: no download attempt
    "EPOCHS": 1,
    "COMPARE_RANDOM": False,
    "FAILURE_DEMOS": False,
    "CALIBRATION_SIZE": 20,
    "CALIBRATION_SWEEP": [20],
    "LATENCY_RUNS": 5,
    "BIAS_DEMO": True,  # the default: it must be skipped too, without a bona fide class
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the notebooks once on the dataset; the result and the run folder."""
    root = tmp_path_factory.mktemp("no_bona_fide")
    parameters = {"DATA_DIR": str(make_dataset(root)), **PARAMETERS}
    notebooks = runner.select_notebooks(NOTEBOOKS)
    assert preflight.check_parameters(parameters, notebooks) == []
    run_dir = root / "run"
    run_dir.mkdir()
    result = runner.execute_run(run_dir, notebooks, "small", parameters, reporter=None)
    return result, run_dir


def _outputs(path: Path) -> tuple[str, list[str]]:
    """The text a notebook printed (stdout) and the names of its errors."""
    nb = nbformat.read(path, as_version=4)
    text, errors = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                text.append(out.text)
            elif out.output_type == "error":
                errors.append(out.ename)
    return "".join(text), errors


def test_the_run_finishes(run):
    result, run_dir = run
    assert result.failure is None, result.failure
    assert result.status == "finished"
    assert runs.load_record(run_dir)["run"]["status"] == "finished"
    data = runs.load_data_info(run_dir)
    assert sorted(data["classes"]) == sorted(CLASSES.values())


def test_notebook_07_skips_once_and_records_why(run):
    _, run_dir = run
    entry = runs.load_record(run_dir)["notebooks"]["07_antispoofing_evaluation"]
    reason = entry["metrics"]["skipped"]
    assert "no bona fide class" in reason and "'real'" in reason
    assert all(name in reason for name in CLASSES.values())
    scoreboard = {key for key in entry["metrics"] if key.startswith("scoreboard_")}
    assert set(entry["metrics"]) - scoreboard == {"skipped"}  # no anti-spoofing figure recorded
    assert entry["parameters"]["BONA_FIDE_CLASS"] == "real"
    metrics = json.loads((run_dir / runs.METRICS_NAME).read_text())
    assert metrics["07_antispoofing_evaluation.skipped"] == reason
    printed, errors = _outputs(run_dir / "07_antispoofing_evaluation.ipynb")
    assert errors == []
    assert printed.count(SKIP_SENTENCE) == 1, printed
    assert "BONA_FIDE_CLASS" in printed and "'other', 'print', 'screen'" in printed
    lines = [line for line in printed.splitlines() if not line.startswith("Scoreboard")]
    assert len(lines) == 1 and lines[0].startswith(SKIP_SENTENCE), printed  # then the board
    assert not (run_dir / "antispoofing.json").exists()


def test_notebook_07_still_shows_the_scoreboard(run):
    _, run_dir = run
    board = claims.scoreboard(run_dir)
    assert "07_antispoofing_evaluation" not in set(board["notebook"])  # no PAD claim recorded
    metrics = runs.load_record(run_dir)["notebooks"]["07_antispoofing_evaluation"]["metrics"]
    assert metrics["scoreboard_claims"] == len(board)
    assert metrics["scoreboard_held"] == int((board["verdict"] == "held").sum())
    printed, _ = _outputs(run_dir / "07_antispoofing_evaluation.ipynb")
    if board.empty:
        assert "Scoreboard: no claim recorded" in printed, printed
    else:
        assert f"Scoreboard: {len(board)} claims" in printed, printed
        shown = _shown(run_dir / "07_antispoofing_evaluation.ipynb")
        assert all(claim in shown for claim in board["claim"])  # shown whole


def _shown(path: Path) -> str:
    """The plain text of every table or figure a notebook displayed."""
    nb = nbformat.read(path, as_version=4)
    return "".join(
        out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("display_data", "execute_result")
    )


def test_notebooks_05_and_06_export_models(run):
    _, run_dir = run
    quant = runs.read_json(run_dir / "quantization.json")
    assert {"float32", "int8"} <= set(quant["paths"])
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in quant["paths"].values())
    export = run_dir / "export"
    metadata = json.loads((export / "metadata.json").read_text())
    assert (export / metadata["model_file"]).is_file()
    assert (export / verification.LABELS_FILE).read_text().split() == ["other", "print", "screen"]
    entry = runs.load_record(run_dir)["notebooks"]["06_verification"]
    assert entry["parameters"]["BONA_FIDE_CLASS"] == "real"  # Recorded as given, and unused:
    assert metadata["bona_fide_class"] is None and metadata["bona_fide_threshold"] is None
    assert not (run_dir / antispoofing.THRESHOLD_FILE).exists()
    printed, errors = _outputs(run_dir / "06_verification.ipynb")
    assert errors == [] and "No bona fide threshold" in printed

"""Tests of helpers.batch.preflight: the parameter rules, the data check, and how fast they fail.

Every dataset is a few tiny PNGs made with PIL in a temporary folder. The bad cases must
fail naming the parameter in well under the time a notebook takes to find them.
"""

from __future__ import annotations

import ast
import datetime
import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pydantic
import pytest
from PIL import Image

from helpers import checks
from helpers.batch import preflight
from helpers.config import NOTEBOOKS_DIR, PROJ_ROOT

LIMIT_S = 10.0  # What a failing check may take, Python start-up included.


@functools.cache
def notebook_defaults() -> dict[str, dict]:
    """Notebook stem -> {name: default} of its cell tagged ``parameters`` (read once)."""
    out = {}
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        cells = [
            c
            for c in nbformat.read(path, as_version=4).cells
            if "parameters" in c.metadata.get("tags", [])
        ]
        assert len(cells) == 1, f"{path.name} has {len(cells)} cells tagged parameters"
        body = ast.parse(cells[0].source).body
        out[path.stem] = {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in body
            if isinstance(node, ast.Assign)
        }
    assert len(out) >= 8
    return out


def make_data(root: Path, counts: dict[str, int]) -> Path:
    """``root/<class>/<i>.png`` for each class: distinct 32x32 images (an empty folder for 0)."""
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((32, 32)).save(root / label / f"{i}.png")
    return root


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def run_python(code: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``code`` in a fresh interpreter from the project root; its result and wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJ_ROOT, capture_output=True, text=True, timeout=60
    )
    return done, time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# The schema covers the notebooks
# ---------------------------------------------------------------------------------------


def test_every_declared_parameter_has_a_rule():
    rules = set(preflight.CourseParameters.model_fields)
    for notebook, defaults in notebook_defaults().items():
        missing = sorted(set(defaults) - rules)
        assert not missing, f"{notebook} declares {missing}: add a rule to CourseParameters"


def test_every_rule_belongs_to_a_declared_parameter():
    declared = {name for defaults in notebook_defaults().values() for name in defaults}
    assert not set(preflight.CourseParameters.model_fields) - declared


@pytest.mark.parametrize("notebook", sorted(notebook_defaults()))
def test_every_notebook_default_passes(notebook):
    assert preflight.check(notebook_defaults()[notebook]) == []


def test_every_field_says_what_is_allowed():
    for name, field in preflight.CourseParameters.model_fields.items():
        assert field.description, name
        assert field.is_required(), name  # A missing parameter means the notebook's default.


def test_default_backbone_is_the_notebooks():
    defaults = {d["BACKBONE"] for d in notebook_defaults().values() if "BACKBONE" in d}
    assert defaults == {preflight.DEFAULT_BACKBONE}


def test_backbones_are_the_registry():
    from helpers.backbones import REGISTRY

    assert preflight.BACKBONES == {n: s.pretrained_offline for n, s in REGISTRY.items()}


def test_import_loads_neither_keras_nor_pandas():
    done, seconds = run_python(
        "import sys; from helpers.batch import preflight; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'pandas') if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert seconds < 3


@pytest.mark.parametrize(
    "default, value, ok",
    [
        ("5", 6, True),
        ("5", 6.0, False),
        ("5", True, False),
        ("5", "6", False),
        ("0.2", 1, True),
        ("1e-3", 0.5, True),
        ("0.2", False, False),
        ("True", False, True),
        ("True", 1, False),
        ('"auto"', "x", True),
        ('"auto"', 3, False),
        ("(0.7, 0.15, 0.15)", [0.8, 0.1, 0.1], True),
        ("(0.7, 0.15, 0.15)", [1, 0, 0], True),
        ("(0.7, 0.15, 0.15)", ["a"], False),
        ("(0.7, 0.15, 0.15)", 0.7, False),
        ("None", "anything", True),
        ("None", [1, "a"], True),
        ("None", {"k": 1}, True),
        ("5", None, False),
    ],
)
def test_value_types_follow_the_declared_default(default, value, ok):
    """A parameter without a course rule takes values of its default's type."""
    kind, field = preflight.default_rule("01_x", "P", default)
    model = pydantic.create_model("M", __base__=preflight.CourseParameters, P=(kind, field))
    assert (preflight.check({"P": value}, model) == []) is ok


def test_course_rules_decide_for_the_parameters_they_know():
    """The rule, not the default's type, decides (WEIGHTS="auto" takes None); a refused value
    is named once; a value papermill cannot inject is refused whatever the default."""
    notebooks = [NOTEBOOKS_DIR / "03_phase1.ipynb"]
    good = {"WEIGHTS": None, "CLASS_WEIGHTS": True, "EPOCHS": 3, "LEARNING_RATE": 1}
    assert preflight.check_parameters(good, notebooks) == []
    problems = preflight.check_parameters({"BACKBONE": None, "EPOCHS": 0}, notebooks)
    assert len(problems) == 2 and problems[0].startswith("BACKBONE=None")
    assert problems[1].startswith("EPOCHS=0: must be an integer ≥ 1")
    date = datetime.date(2024, 1, 1)
    assert "cannot inject" in preflight.check_parameters({"SEED": date}, notebooks)[0]
    assert preflight.check_parameters({"RUN_DIR": "x"}, notebooks)[0].startswith("RUN_DIR is set")


# ---------------------------------------------------------------------------------------
# Bad parameters fail fast, naming the parameter
# ---------------------------------------------------------------------------------------

BAD = [
    ({"EPOCHS": "banana"}, "EPOCHS='banana': must be an integer ≥ 1, or None"),
    ({"IMAGE_SIZE": 0}, "IMAGE_SIZE=0: must be an integer from 32 to 1024, or None"),
    ({"IMAGE_SIZE": -32}, "IMAGE_SIZE=-32: must be an integer from 32 to 1024, or None"),
    ({"BACKBONE": "ResNet"}, "BACKBONE='ResNet': unknown; choose one of MobileNetV3Large,"),
    ({"DATA_DIR": "data/no_such_dataset"}, "DATA_DIR='data/no_such_dataset': "),
]


@pytest.mark.parametrize("parameters, expected", BAD, ids=[str(p) for p, _ in BAD])
def test_bad_parameter_fails_fast_in_a_fresh_process(parameters, expected):
    done, seconds = run_python(
        f"from helpers.batch import preflight; preflight.preflight({parameters!r})"
    )
    assert done.returncode != 0
    assert "PreflightError" in done.stderr
    assert expected in done.stderr
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    print(f"{parameters}: {seconds:.2f} s")


def test_sentences_name_the_value_and_what_is_allowed():
    problems = preflight.check(
        {
            "SPLIT_RATIOS": [0.7, 0.2, 0.2],
            "CALIBRATION_SWEEP": [100, 0],
            "THRESHOLD_METHOD": "EER",
            "WEIGHTS": "imagenett",
            "LEARNING_RATE": True,
            "CLASS_WEIGHTS": "yes",
            "UNKNOWN_NAME": "left to the runner",
        }
    )
    assert problems == [
        'WEIGHTS=\'imagenett\': must be "imagenet", "auto", None (random) or the path of a .h5 '
        "or .keras weights file (did you mean 'imagenet'?)",
        "SPLIT_RATIOS=[0.7, 0.2, 0.2]: must be three shares (train, val, test) in (0, 1) "
        "summing to 1 (they sum to 1.1)",
        "LEARNING_RATE=True: must be a number > 0 and ≤ 1",
        "CLASS_WEIGHTS='yes': unknown; choose \"auto\", True or False",
        "CALIBRATION_SWEEP=[100, 0]: must be a non-empty list of integers ≥ 1 "
        "(item 2 is 0: input should be greater than or equal to 1)",
        "THRESHOLD_METHOD='EER': unknown; choose \"eer\" or \"apcer\"; did you mean 'eer'?",
    ]


def test_number_rules():
    assert preflight.check({"LEARNING_RATE": 1, "TARGET_SIZE_MB": 5}) == []  # int for float
    assert preflight.check({"SPLIT_RATIOS": [0.8, 0.1, 0.1], "CALIBRATION_SWEEP": [50]}) == []
    for bad in ({"EPOCHS": True}, {"DROPOUT_RATE": False}, {"EPOCHS": 3.0}, {"SEED": -1}):
        assert len(preflight.check(bad)) == 1, bad
    assert "item 3 is missing" in preflight.check({"SPLIT_RATIOS": (0.7, 0.3)})[0]
    assert preflight.check({"TARGET_SIZE_MB": float("inf")})


# ---------------------------------------------------------------------------------------
# Data: notebook 01's validation, whole
# ---------------------------------------------------------------------------------------

BAD_DATA = {
    "one class": ({"cat": 12}, ["usable images", "'cat'"]),
    "empty class": ({"cat": 12, "dog": 12, "bird": 0}, ["class 'bird' has 0 usable image(s)"]),
    "too few per class": ({"cat": 3, "dog": 12}, ["class 'cat' has 3 usable image(s)", "cat/"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_unusable_data_fails_fast_with_the_whole_reason(tmp_path, case):
    counts, expected = BAD_DATA[case]
    root = make_data(tmp_path / "data", counts)
    (problems, seconds) = timed(preflight.check_data, {"DATA_DIR": str(root)}, tmp_path / "run")
    assert len(problems) == 1
    assert problems[0].startswith(f"DATA_DIR={str(root)!r}: The data in {root} cannot support")
    for text in expected:
        assert text in problems[0]
    assert "add " in problems[0]  # The remedy.
    assert not (tmp_path / "run" / preflight.SCAN_FILE).exists()
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    print(f"{case}: {seconds:.2f} s")


def test_unusable_files_are_listed(tmp_path):
    root = make_data(tmp_path / "data", {"cat": 12, "dog": 9})
    (root / "dog" / "broken.jpg").write_bytes(b"not an image at all")
    problems = preflight.check_data({"DATA_DIR": str(root)})
    assert "class 'dog' has 9 usable image(s)" in problems[0]
    assert "Unusable files" in problems[0]
    assert "dog/broken.jpg: " in problems[0]


def test_bad_data_fails_fast_in_a_fresh_process(tmp_path):
    root = make_data(tmp_path / "data", {"cat": 12})
    done, seconds = run_python(
        "import sys; from helpers.batch import preflight\n"
        "try:\n"
        f"    preflight.preflight({{'DATA_DIR': {str(root)!r}}}, {str(tmp_path / 'run')!r})\n"
        "except preflight.PreflightError as error:\n"
        "    print(error)\n"
        "print('tensorflow' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert f"- DATA_DIR={str(root)!r}: The data in" in done.stdout
    assert "\n    - " in done.stdout and "'cat'" in done.stdout  # Indented under it.
    assert done.stdout.strip().endswith("False")  # Bad data need no TensorFlow.
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    print(f"one class, fresh process: {seconds:.2f} s")


def test_parameters_are_checked_before_data(tmp_path):
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.preflight({"EPOCHS": "banana", "DATA_DIR": str(tmp_path / "missing")})
    assert str(caught.value).startswith("- EPOCHS='banana'")
    assert "DATA_DIR" not in str(caught.value)


def test_good_parameters_and_data_pass(tmp_path):
    root = make_data(tmp_path / "data", {"cat": 10, "dog": 11})
    good = {
        "DATA_DIR": str(root),
        "BACKBONE": "EfficientNetLite0",
        "WEIGHTS": "imagenet",
        "IMAGE_SIZE": 96,
        "EPOCHS": 2,
        "LEARNING_RATE": 1e-4,
        "SPLIT_RATIOS": [0.8, 0.1, 0.1],
        "CLASS_WEIGHTS": True,
        "UNFREEZE_FROM": -20,
    }
    assert preflight.check(good) == []
    preflight.preflight(good)  # Raises on any problem.


def test_a_passing_scan_is_saved_for_notebook_01(tmp_path, monkeypatch):
    root = make_data(tmp_path / "data", {"cat": 10, "dog": 10})
    asked = []

    def scan(data_dir, verify_native=True):
        asked.append(verify_native)
        return real_scan(data_dir, verify_native=False)  # Spare the test TensorFlow's import.

    real_scan = checks.scan
    monkeypatch.setattr(checks, "scan", scan)
    assert preflight.check_data({"DATA_DIR": str(root)}, tmp_path / "run") == []
    assert asked == [True]  # With a run folder: notebook 01's own scan, TensorFlow's check too.
    saved = checks.load_scan(tmp_path / "run" / preflight.SCAN_FILE, root)
    assert saved is not None and saved.classes == ["cat", "dog"]
    asked.clear()
    assert preflight.check_data({"DATA_DIR": str(root)}) == []
    assert asked == [False]  # Without one: nothing to reuse, no TensorFlow.


def test_notebook_01_reuses_the_saved_scan():
    nb = nbformat.read(NOTEBOOKS_DIR / "01_data_preparation.ipynb", as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    name = re.escape(preflight.SCAN_FILE)
    line = re.compile(rf'load_scan\(run(_dir|\.dir) / "{name}", data_dir\) or \w+\.scan\(')
    assert sum(bool(line.search(s)) for s in sources) == 1


def test_scan_save_and_load_round_trip(tmp_path):
    root = make_data(tmp_path / "data", {"cat": 3, "dog": 2})
    scan = checks.scan(root, verify_native=False, cache_dir=tmp_path / "cache")
    path = checks.save_scan(scan, tmp_path / "run" / "scan.pkl")
    loaded = checks.load_scan(path, root)
    assert loaded is not None
    assert (loaded.data_dir, loaded.classes, loaded.problems) == (
        scan.data_dir,
        scan.classes,
        scan.problems,
    )
    assert loaded.files.equals(scan.files)
    assert loaded.report() == scan.report()
    assert checks.load_scan(path, tmp_path) is None  # Made for another folder.
    past = time.time() - 200
    for entry in [root, *root.rglob("*"), path]:
        os.utime(entry, (past, past) if entry != path else (past + 100, past + 100))
    assert checks.load_scan(path, root) is not None
    os.utime(root / "cat" / "0.png", (past + 150, past + 150))
    assert checks.load_scan(path, root) is None  # A file changed since.
    os.utime(root / "cat" / "0.png", (past, past))
    (root / "dog" / "new.png").write_bytes(b"")
    assert checks.load_scan(path, root) is None  # A file added (its folder changed).
    assert checks.load_scan(tmp_path / "none.pkl", root) is None  # No file.
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    assert checks.load_scan(tmp_path / "junk.pkl", root) is None


def test_metadata_csv_must_exist(tmp_path):
    problems = preflight.check_data({"METADATA_CSV": str(tmp_path / "meta.csv")})
    assert problems and problems[0].startswith("METADATA_CSV=")
    (tmp_path / "meta.csv").write_text("path,source\n")
    assert preflight.check_data({"METADATA_CSV": str(tmp_path / "meta.csv")}) == []


# ---------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------


def test_imagenet_weights_offline_without_cache_fail_with_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(preflight, "_online", lambda timeout=3.0: False)
    problems = preflight.check_data({"WEIGHTS": "imagenet"})  # The default MobileNetV3Large
    assert len(problems) == 1
    assert problems[0].startswith("WEIGHTS='imagenet' with BACKBONE='MobileNetV3Large':")
    for remedy in ("make weights", 'WEIGHTS="auto"', 'BACKBONE="EfficientNetLite0"'):
        assert remedy in problems[0]
    assert preflight.check_data({"WEIGHTS": "imagenet", "BACKBONE": "EfficientNetLite0"}) == []
    assert preflight.check_data({"WEIGHTS": "auto"}) == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5").touch()
    assert preflight.check_data({"WEIGHTS": "imagenet"}) == []
    assert preflight.check_data({"WEIGHTS": "imagenet", "BACKBONE": "EfficientNetB0"})
    monkeypatch.setattr(preflight, "_online", lambda timeout=3.0: True)
    assert preflight.check_data({"WEIGHTS": "imagenet", "BACKBONE": "EfficientNetB0"}) == []


def test_weights_file_must_exist(tmp_path):
    missing = str(tmp_path / "head.weights.h5")
    problems = preflight.check_data({"WEIGHTS": missing})
    assert problems and problems[0].startswith(f"WEIGHTS={missing!r}: no such file")
    Path(missing).touch()
    assert preflight.check_data({"WEIGHTS": missing}) == []


@pytest.mark.parametrize(
    "name, value",
    [
        ("EPOCHS", "banana"),
        ("IMAGE_SIZE", "0"),
        ("IMAGE_SIZE", "-32"),
        ("DATA_DIR", "data/there-is-no-such-folder"),
        ("BACKBONE", "ResNet50"),
    ],
)
def test_the_runner_refuses_bad_parameters_before_any_notebook(tmp_path, name, value):
    """End to end, as a batch user types it: refused in seconds, the parameter named, no
    traceback, no run folder left behind."""
    target = tmp_path / "run"
    command = [sys.executable, "-m", "helpers.batch.runner", "--profile", "small"]
    command += ["--run-dir", str(target), "-p", name, value]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=PROJ_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 2 and seconds < 10, (seconds, done.stderr)
    assert f"{name}=" in done.stderr and "Traceback" not in done.stderr
    assert "nothing ran" in done.stderr and not target.exists()

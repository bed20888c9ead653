"""Parameter sweeps, on tiny generated notebooks (a kernel start each, no TensorFlow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import config, runner, sweep
from helpers.runs import flatten

PREP_PARAMETERS = """\
RUN_DIR = None  # run folder; None: $COURSE_RUN_DIR
PROFILE = None  # "full" or "small"
SIZE = 96  # an int
RATE = 0.5  # a float
FLAG = True  # a bool
LABEL = "a"  # a string
RATIOS = (0.7, 0.3)  # a tuple of floats
OPTION = None  # anything; None: decided here
"""
PREP_BODY = """\
from helpers import config, runs
run_dir = runs.resolve_run_dir(RUN_DIR)
settings = config.profile_settings(PROFILE)
runs.write_json(run_dir / "weights.json", {"backbone": "Tiny", "weights": "imagenet",
                                           "pretrained": True, "fallback": False})
runs.record_notebook(run_dir, "01_prep", {"SIZE": SIZE, "RATE": RATE, "FLAG": FLAG,
                     "RATIOS": list(RATIOS), "OPTION": OPTION or "chosen", "PROFILE": settings["profile"]},
                     {"score": SIZE * RATE, "nested": {"a": 1.0, "b": float("nan")}})
"""
TRAIN_PARAMETERS = """\
RUN_DIR = None  # run folder of 01_prep
PROFILE = None  # "full" or "small"
MODE = "ok"  # "ok", or "boom" to raise
LEARNING_RATE = 1e-3  # a float
SLEEP = 0.0  # seconds to wait before recording
"""
TRAIN_LOAD = """\
import time
from helpers import runs
run_dir = runs.resolve_run_dir(RUN_DIR)
score = runs.load_record(run_dir)["notebooks"]["01_prep"]["metrics"]["score"]
"""
TRAIN_BOOM = """\
if MODE == "boom":
    raise ValueError(f"boom for MODE={MODE}")
"""
TRAIN_RECORD = """\
time.sleep(SLEEP)
runs.record_notebook(run_dir, "02_train", {"MODE": MODE, "LEARNING_RATE": LEARNING_RATE},
                     {"val_accuracy": 0.5 + score / 1000 + LEARNING_RATE})
"""


def make_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook with a cell tagged `parameters` and code cells after it."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Tiny"),
        nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
    ]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in cells]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebooks")
    make_notebook(folder / "01_prep.ipynb", PREP_PARAMETERS, PREP_BODY)
    make_notebook(folder / "02_train.ipynb", TRAIN_PARAMETERS, TRAIN_LOAD, TRAIN_BOOM, TRAIN_RECORD)
    return folder


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_expansion_order_and_ids():
    combos = sweep.expand(
        {
            "BACKBONE": ["EfficientNetLite0", "MobileNetV3Small"],
            "IMAGE_SIZE": [96, 128],
            "AUGMENT": [True, False],
        },
        {"SEED": 1},
    )
    assert len(combos) == 8 and [c.index for c in combos] == list(range(1, 9))
    assert combos[0].run_id == "BACKBONE=EfficientNetLite0__IMAGE_SIZE=96__AUGMENT=True"
    assert combos[1].run_id == "BACKBONE=EfficientNetLite0__IMAGE_SIZE=96__AUGMENT=False"
    assert combos[-1].run_id == "BACKBONE=MobileNetV3Small__IMAGE_SIZE=128__AUGMENT=False"
    assert combos[0].parameters == {
        "SEED": 1,
        "BACKBONE": "EfficientNetLite0",
        "IMAGE_SIZE": 96,
        "AUGMENT": True,
    }
    assert (
        sweep.run_id({"DATA_DIR": "data/my set", "LR": 1e-05, "R": [0.8, 0.2], "W": None})
        == "DATA_DIR=data-my-set__LR=1e-05__R=0.8-0.2__W=None"
    )
    assert sweep.expand({}, {"A": 1})[0].run_id == "default"
    clash = sweep.expand({"P": ["a/b", "a-b"]})
    assert clash[0].run_id == "P=a-b" and clash[1].run_id.startswith("P=a-b-")
    long = sweep.run_id({"NAME": "x" * 300})
    assert len(long) <= 120 and "/" not in long


def test_yaml_and_command_line(tmp_path, notebooks):
    grid = write_grid(
        tmp_path / "g.yaml",
        """\
name: tiny
profile: small
notebooks: [02, "01"]
fixed: {LABEL: b, RATE: 1}
grid:
  SIZE: [96, 128]
  LEARNING_RATE: [1e-3, 1.0e-2]
  OPTION: [None, x]
rank_by: 02_train.val_accuracy
""",
    )
    loaded = sweep.load_sweep(grid, notebooks_dir=notebooks)
    assert loaded.name == "tiny" and loaded.profile == "small"
    assert [p.stem for p in loaded.notebooks] == ["01_prep", "02_train"]
    assert loaded.grid == {"SIZE": [96, 128], "LEARNING_RATE": [1e-3, 1e-2], "OPTION": [None, "x"]}
    assert loaded.out == config.RUNS_DIR / "sweeps" / "tiny"
    assert len(loaded.combinations) == 8
    sweep.validate(loaded)  # RATE=1 is an int for a float: accepted.
    overridden = sweep.load_sweep(
        grid,
        ["SIZE=64", "FLAG=true,false", "LABEL=c", "RATIOS=[0.6,0.4]", "OPTION=~"],
        out=tmp_path / "o",
        profile="full",
        notebooks="01",
        notebooks_dir=notebooks,
    )
    assert overridden.grid == {
        "SIZE": [64],
        "LEARNING_RATE": [1e-3, 1e-2],
        "OPTION": [None],
        "FLAG": [True, False],
    }
    assert overridden.fixed == {"LABEL": "c", "RATE": 1, "RATIOS": [0.6, 0.4]}
    assert overridden.profile == "full" and [p.stem for p in overridden.notebooks] == ["01_prep"]
    assert (
        overridden.combinations[0].run_id == "SIZE=64__LEARNING_RATE=0.001__OPTION=None__FLAG=True"
    )
    assert overridden.out == tmp_path / "o"
    with pytest.raises(sweep.SweepError, match="unknown key.*'gird'.*did you mean 'grid'"):
        sweep.load_sweep(write_grid(tmp_path / "bad.yaml", "gird: {SIZE: [1]}\n"))
    with pytest.raises(sweep.SweepError, match="SIZE lists 96 more than once"):
        sweep.load_sweep(None, ["SIZE=96,96"], notebooks_dir=notebooks)


def test_validation_names_and_types(tmp_path, notebooks):
    def problems(*sets: str) -> str:
        with pytest.raises(sweep.SweepError) as error:
            sweep.validate(sweep.load_sweep(None, sets, notebooks_dir=notebooks))
        return str(error.value)

    assert "Unknown parameter 'SIZ'" in problems("SIZ=1,2") and "Did you mean SIZE?" in problems(
        "SIZ=1"
    )
    assert "Did you mean LEARNING_RATE?" in problems("learning_rate=0.1")
    text = problems(
        "SIZE=96,big", "RATE=fast", "FLAG=1", "LEARNING_RATE=true", "RATIOS=0.5", "LABEL=3"
    )
    assert "SIZE='big' is a str, but 01_prep declares SIZE = 96 (expects int)" in text
    assert "RATE='fast'" in text and "FLAG=1 is a int" in text
    assert "LEARNING_RATE=True is a bool" in text and "RATIOS=0.5" in text and "LABEL=3" in text
    assert "SIZE=96 " not in text  # The good value of the axis is not reported.
    assert "6 problem(s), nothing ran" in text
    assert "set by the runner" in problems("RUN_DIR=x")
    # Good values: float accepts int, lists stand for tuples, None-default takes anything.
    sweep.validate(
        sweep.load_sweep(
            None,
            [
                "RATE=1,2.5",
                "RATIOS=[0.6,0.4]",
                "OPTION=1,x,[1,2]",
                "FLAG=false",
                "LEARNING_RATE=1e-4",
            ],
            notebooks_dir=notebooks,
        )
    )
    # A parameter of a notebook the sweep does not run is named with its notebook.
    only_prep = sweep.load_sweep(None, ["MODE=ok"], notebooks="01", notebooks_dir=notebooks)
    with pytest.raises(sweep.SweepError, match="declared by 02_train, which this run does not"):
        sweep.validate(only_prep)


def read(path: Path):
    return json.loads(path.read_text())


def test_failure_isolation_record_and_report(tmp_path, notebooks):
    grid = write_grid(
        tmp_path / "g.yaml",
        """\
profile: small
fixed: {RATE: 1}
grid: {MODE: [ok, boom], SIZE: [10, 20]}
""",
    )
    loaded = sweep.load_sweep(grid, out=tmp_path / "sw", notebooks_dir=notebooks)
    status = sweep.run_sweep(loaded)
    assert status["state"] == "finished" and status["counts"] == {"finished": 2, "failed": 2}
    runs_by_id = {r["id"]: r for r in status["runs"]}
    failed = runs_by_id["MODE=boom__SIZE=20"]
    assert failed["status"] == "failed"
    assert failed["failure"] == {
        "notebook": "02_train",
        "cell": 4,
        "error": "ValueError: boom for MODE=boom",
    }
    assert read(tmp_path / "sw" / "status.json")["runs"][3]["failure"]["cell"] == 4
    # The record of a finished run.
    folder = tmp_path / "sw" / "MODE=ok__SIZE=20"
    assert (folder / "01_prep.ipynb").is_file() and (folder / "02_train.ipynb").is_file()
    metrics = read(folder / "metrics.json")
    assert metrics["01_prep.score"] == 20 and metrics["01_prep.nested.a"] == 1.0
    assert metrics["01_prep.nested.b"] is None  # NaN is stored as null.
    assert metrics["02_train.val_accuracy"] == pytest.approx(0.5 + 0.02 + 1e-3)
    assert metrics["final.val_accuracy"] == metrics["02_train.val_accuracy"]
    assert metrics["01_prep.wall_s"] > 0 and metrics["02_train.wall_s"] > 0
    assert metrics["run.wall_s"] >= metrics["01_prep.wall_s"] + metrics["02_train.wall_s"]
    record = read(folder / "run.json")
    assert record["run"]["status"] == "finished" and record["run"]["profile"] == "small"
    assert record["run"]["parameters"] == {"RATE": 1, "MODE": "ok", "SIZE": 20}
    assert record["notebooks"]["01_prep"]["injected"] == {
        "RATE": 1,
        "SIZE": 20,
        "RUN_DIR": str(folder),
        "PROFILE": "small",
    }
    assert record["notebooks"]["01_prep"]["parameters"]["OPTION"] == "chosen"  # As resolved.
    parameters = read(folder / "parameters.json")
    assert parameters["02_train"]["injected"]["MODE"] == "ok"
    assert parameters["02_train"]["resolved"] == {"MODE": "ok", "LEARNING_RATE": 1e-3}
    env = record["environment"]
    assert env["python"] and env["packages"]["papermill"] and "git_commit" in env
    if (config.PROJ_ROOT / ".git").exists():
        assert env["git_commit"]
    assert env["imagenet_weights"] is True and env["weights"]["backbones"] == ["Tiny"]
    # The failed run keeps its executed notebook with the traceback.
    failed_record = read(tmp_path / "sw" / "MODE=boom__SIZE=20" / "run.json")["run"]
    assert failed_record["status"] == "failed" and failed_record["failed_cell"] == 4
    # The comparison.
    table = pd.read_csv(tmp_path / "sw" / "comparison.csv")
    assert list(table["run_id"]) == [c.run_id for c in loaded.combinations]
    assert {"MODE", "SIZE", "RATE", "02_train.val_accuracy", "resolved.01_prep.OPTION"} <= set(
        table
    )
    ranking = (tmp_path / "sw" / "ranking.md").read_text()
    assert "Ranked by `final.val_accuracy`" in ranking
    lines = [line for line in ranking.splitlines() if line.startswith("| ")][1:]
    assert lines[0].startswith("| 1 | MODE=ok__SIZE=20 |") and lines[1].startswith(
        "| 2 | MODE=ok__SIZE=10"
    )
    assert "failed: 02_train cell 4: ValueError: boom for MODE=boom" in lines[-1]
    assert (tmp_path / "sw" / "comparison.png").stat().st_size > 1000
    # A sweep folder is never run into again without --resume.
    with pytest.raises(FileExistsError, match="--resume"):
        sweep.run_sweep(loaded)
    assert (
        sweep.main(
            [
                str(grid),
                "--out",
                str(tmp_path / "sw"),
                "--notebooks-dir",
                str(notebooks),
                "--report",
                "--rank-by",
                "01_prep.score",
            ]
        )
        == 0
    )
    assert "Ranked by `01_prep.score`" in (tmp_path / "sw" / "ranking.md").read_text()


def test_resume_after_interruption(tmp_path, notebooks, monkeypatch):
    grid = write_grid(tmp_path / "g.yaml", "profile: small\ngrid: {SIZE: [1, 2, 3]}\n")
    loaded = sweep.load_sweep(grid, out=tmp_path / "sw", notebooks_dir=notebooks)
    real = runner.execute_run
    calls = []

    def interrupted_second(run_dir, *args, **kwargs):
        calls.append(Path(run_dir).name)
        if len(calls) == 2:
            (Path(run_dir) / "partial.txt").write_text("half done")
            raise KeyboardInterrupt
        return real(run_dir, *args, **kwargs)

    monkeypatch.setattr(sweep, "execute_run", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(loaded)
    status = read(tmp_path / "sw" / "status.json")
    assert status["state"] == "interrupted"
    assert [r["status"] for r in status["runs"]] == ["finished", "interrupted", "pending"]
    first = tmp_path / "sw" / "SIZE=1"
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    monkeypatch.setattr(sweep, "execute_run", real)
    calls.clear()
    done = sweep.run_sweep(loaded, resume=True)
    assert done["state"] == "finished" and done["counts"] == {"finished": 3}
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == stamps  # Untouched.
    aside = tmp_path / "sw" / "SIZE=2.incomplete-1"
    assert (aside / "partial.txt").read_text() == "half done"
    assert done["runs"][1]["moved_aside"] == ["SIZE=2.incomplete-1"]
    # A run marked unfinished (as a kill mid-run leaves it) is the only one redone.
    record_path = tmp_path / "sw" / "SIZE=3" / "run.json"
    data = read(record_path)
    data["run"]["status"] = "running"
    record_path.write_text(json.dumps(data))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("SIZE=[12]/*")}
    sweep.run_sweep(loaded, resume=True)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("SIZE=[12]/*")} == stamps
    assert (tmp_path / "sw" / "SIZE=3.incomplete-1" / "run.json").is_file()
    assert read(record_path)["run"]["status"] == "finished"
    # Resuming with a changed grid that gives a run other parameters is refused.
    changed = sweep.load_sweep(grid, ["RATE=2"], out=tmp_path / "sw", notebooks_dir=notebooks)
    with pytest.raises(sweep.SweepError, match="holds a different sweep"):
        sweep.run_sweep(changed, resume=True)


def test_killed_sweep_resumes(tmp_path, notebooks):
    """A real process, stopped by SIGTERM during its second run, then resumed."""
    out = tmp_path / "sw"
    command = [
        sys.executable,
        "-m",
        "helpers.sweep",
        "--set",
        "SIZE=1,2",
        "--set",
        "SLEEP=2.0",
        "--profile",
        "small",
        "--notebooks-dir",
        str(notebooks),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, cwd=config.PROJ_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 40
    while time.time() < deadline and not (out / "SIZE=2" / "02_train.ipynb").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 130, output
    assert (
        "[1/2] finished" in output and "[2/2] 02_train (2/2)" in output and "Interrupted" in output
    )
    status = read(out / "status.json")
    assert [r["status"] for r in status["runs"]] == ["finished", "interrupted"]
    first = {p: p.stat().st_mtime_ns for p in (out / "SIZE=1").iterdir()}
    resumed = subprocess.run(
        [*command, "--resume", "--set", "SLEEP=0.0"],
        cwd=config.PROJ_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 2 and "different sweep" in resumed.stderr  # SLEEP changed.
    resumed = subprocess.run(
        [*command, "--resume"], cwd=config.PROJ_ROOT, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[1/2] SIZE=1: finished earlier, kept" in resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "SIZE=1").iterdir()} == first
    assert read(out / "status.json")["counts"] == {"finished": 2}
    assert (out / "SIZE=2.incomplete-1" / "01_prep.ipynb").is_file()


def test_dry_run_runs_nothing(tmp_path, notebooks, capsys):
    out = tmp_path / "dry"
    code = sweep.main(
        [
            "--set",
            "SIZE=1,2",
            "--set",
            "MODE=ok",
            "--notebooks-dir",
            str(notebooks),
            "--out",
            str(out),
            "--dry-run",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "2 run(s)" in text and "[2/2] SIZE=2" in text and "MODE -> 02_train" in text
    assert sweep.main(["--set", "SIZ=1", "--notebooks-dir", str(notebooks), "--dry-run"]) == 2
    assert "Did you mean SIZE?" in capsys.readouterr().err


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": float("inf")}}, "e": [1, 2], "f": {}}) == {
        "a.b": 1,
        "a.c.d": None,
        "e": [1, 2],
        "f": {},
    }


def test_runner_command_line(tmp_path, notebooks, capsys):
    target = tmp_path / "run"
    args = ["--profile", "small", "--notebooks-dir", str(notebooks), "--run-dir", str(target)]
    assert (
        runner.main([*args, "--notebooks", "01", "-p", "SIZE", "5", "-p", "RATIOS", "(0.6, 0.4)"])
        == 0
    )
    metrics = read(target / "metrics.json")
    assert metrics["01_prep.score"] == 2.5 and "run.wall_s" in metrics
    assert read(target / "parameters.json")["01_prep"]["resolved"]["RATIOS"] == [0.6, 0.4]
    assert runner.main([*args, "--notebooks", "01"]) == 2  # Never into a used folder.
    assert "already exists" in capsys.readouterr().err
    assert runner.main([*args[:-1], str(tmp_path / "new"), "-p", "SIZ", "5"]) == 2
    assert "Did you mean SIZE?" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert runner.main([*args[:-1], str(tmp_path / "boom"), "-p", "MODE", "boom"]) == 1
    assert read(tmp_path / "boom" / "run.json")["run"]["failed_cell"] == 4


def test_ranking_and_plot_of_sizes(tmp_path):
    frame = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "status": ["finished"] * 3,
            "BACKBONE": ["X", "Y", "X"],
            "final.val_accuracy": [0.8, 0.9, 0.7],
            "05_export.int8_size_kb": [500, 900, 450],
            "failure": [None] * 3,
        }
    )
    assert sweep._size_or_latency(frame) == "05_export.int8_size_kb"
    assert (
        sweep.comparison_plot(frame, "final.val_accuracy", tmp_path / "p.png").stat().st_size > 1000
    )
    status = {
        "sweep": "s",
        "grid": {"BACKBONE": ["X", "Y"]},
        "rank_by": "05_export.int8_size_kb",
        "rank_order": "min",
    }
    text, metric = sweep.ranking(frame, status)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert metric == "05_export.int8_size_kb" and [r.split(" | ")[1] for r in rows] == [
        "c",
        "a",
        "b",
    ]
    text, metric = sweep.ranking(frame, {**status, "rank_by": "nope", "rank_order": "max"})
    assert metric == "final.val_accuracy" and "`nope` was asked for but no run has it" in text


def test_progress_estimate():
    loaded = sweep.Sweep(
        "s", {"A": [1, 2, 3]}, {}, "small", [Path("01_a.ipynb"), Path("02_b.ipynb")], Path("out")
    )
    progress = sweep.Progress(loaded, [])
    assert progress.remaining(0) is None
    progress.add({"01_a": 10.0, "02_b": 20.0})
    progress.runs_after = 1
    assert progress.remaining(1) == 20.0 + 30.0


def test_one_sweep_process_per_folder(tmp_path, notebooks):
    out = tmp_path / "sw"
    out.mkdir()
    (out / "status.json").write_text("{}")
    (out / ".lock").write_text(str(os.getppid()))  # A live process that is not this one.
    loaded = sweep.load_sweep(None, ["SIZE=1"], out=out, notebooks_dir=notebooks)
    with pytest.raises(FileExistsError, match="Another sweep"):
        sweep.run_sweep(loaded, resume=True)


def test_resume_keeps_failed_runs_unless_retried(tmp_path, notebooks):
    loaded = sweep.load_sweep(
        None, ["MODE=ok,boom"], out=tmp_path / "sw", profile="small", notebooks_dir=notebooks
    )
    assert sweep.run_sweep(loaded)["counts"] == {"finished": 1, "failed": 1}
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("MODE=*/*")}
    again = sweep.run_sweep(loaded, resume=True)
    assert again["counts"] == {"finished": 1, "failed": 1}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("MODE=*/*")} == stamps
    retried = sweep.run_sweep(loaded, resume=True, retry_failed=True)
    assert retried["runs"][1]["status"] == "failed"
    assert retried["runs"][1]["moved_aside"] == ["MODE=boom.failed-1"]
    assert (tmp_path / "sw" / "MODE=boom.failed-1" / "02_train.ipynb").is_file()

"""Sweeps on Optuna and single runs that resume, on tiny notebooks (no TensorFlow)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import optuna
import pandas as pd
import pytest

from helpers import config
from helpers.batch import runner, sweep
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
resolved = {"SIZE": SIZE, "RATE": RATE, "FLAG": FLAG, "RATIOS": list(RATIOS),
            "OPTION": OPTION or "chosen", "PROFILE": settings["profile"]}
runs.record_notebook(run_dir, "01_prep", resolved,
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
    assert len(combos) == 8 and [c["index"] for c in combos] == list(range(1, 9))
    assert combos[0]["run_id"] == "BACKBONE=EfficientNetLite0__IMAGE_SIZE=96__AUGMENT=True"
    assert combos[1]["run_id"] == "BACKBONE=EfficientNetLite0__IMAGE_SIZE=96__AUGMENT=False"
    assert combos[-1]["run_id"] == "BACKBONE=MobileNetV3Small__IMAGE_SIZE=128__AUGMENT=False"
    assert combos[0]["parameters"] == {
        "SEED": 1,
        "BACKBONE": "EfficientNetLite0",
        "IMAGE_SIZE": 96,
        "AUGMENT": True,
    }
    assert (
        sweep.run_id({"DATA_DIR": "data/my set", "LR": 1e-05, "R": [0.8, 0.2], "W": None})
        == "DATA_DIR=data-my-set__LR=1e-05__R=0.8-0.2__W=None"
    )
    assert sweep.expand({}, {"A": 1})[0]["run_id"] == "default"
    clash = sweep.expand({"P": ["a/b", "a-b"]})
    assert clash[0]["run_id"] == "P=a-b" and clash[1]["run_id"].startswith("P=a-b-")
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
    assert len(sweep.expand(loaded.grid, loaded.fixed)) == 8
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
    first = sweep.expand(overridden.grid, overridden.fixed)[0]["run_id"]
    assert first == "SIZE=64__LEARNING_RATE=0.001__OPTION=None__FLAG=True"
    assert overridden.out == tmp_path / "o"
    with pytest.raises(sweep.SweepError, match="unknown key.*'gird'.*did you mean 'grid'"):
        sweep.load_sweep(write_grid(tmp_path / "bad.yaml", "gird: {SIZE: [1]}\n"))
    with pytest.raises(sweep.SweepError, match="SIZE lists 96 more than once"):
        sweep.load_sweep(None, ["SIZE=96,96"], notebooks_dir=notebooks)
    # A YAML syntax error: the file, line and column, in one line, no traceback.
    broken = write_grid(tmp_path / "broken.yaml", "grid:\n  SIZE: [96, 128\nfixed: {}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers.batch.sweep",
            str(broken),
            "--notebooks-dir",
            str(notebooks),
        ],
        cwd=config.PROJ_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{broken}, line 3, column 6" in result.stderr and len(result.stderr.splitlines()) <= 2


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
    assert "SIZE='big': must be of type int, as 01_prep declares SIZE = 96" in text
    assert "RATE='fast'" in text and "FLAG=1: must be of type bool" in text
    assert "LEARNING_RATE=True: must be a number > 0" in text  # The course's rule.
    assert "RATIOS=0.5: must be of type list or tuple" in text and "LABEL=3" in text
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


def test_course_values_are_checked_against_the_schema():
    """Course parameters: ranges, choices and data, before anything runs."""
    loaded = sweep.load_sweep(
        None, ["IMAGE_SIZE=96,-32", "BACKBONE=ResNet", "DATA_DIR=data/none-such"], notebooks="01,03"
    )
    with pytest.raises(sweep.SweepError) as error:
        sweep.validate(loaded)
    text = str(error.value)
    assert "IMAGE_SIZE=-32: must be an integer from 32" in text and "BACKBONE='ResNet'" in text
    assert "IMAGE_SIZE=96" not in text


def read(path: Path):
    return json.loads(path.read_text())


def ranking_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def trials_per_run(out: Path, name: str = "sweep") -> dict[str, list[str]]:
    backend = optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))
    found: dict[str, list[str]] = {}
    for trial in study.get_trials(deepcopy=False):
        found.setdefault(trial.user_attrs["run_id"], []).append(trial.state.name)
    return found


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
    study = sweep.work(loaded)
    table = sweep.comparison_table(study)
    assert table["status"].value_counts().to_dict() == {"finished": 2, "failed": 2}
    failed = study.trials[3].user_attrs
    assert failed["run_id"] == "MODE=boom__SIZE=20"
    assert failed["failure"] == "02_train cell 4: ValueError: boom for MODE=boom"
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
    assert list(table["run_id"]) == [c["run_id"] for c in sweep.expand(loaded.grid, loaded.fixed)]
    assert {"MODE", "SIZE", "RATE", "02_train.val_accuracy", "resolved.01_prep.OPTION"} <= set(
        table
    )
    ranking = (tmp_path / "sw" / "ranking.md").read_text()
    assert "Ranked by `final.val_accuracy`" in ranking and "optuna-dashboard" in ranking
    rows = ranking_rows(tmp_path / "sw" / "ranking.md")
    assert rows[0][:2] == ["1", "MODE=ok__SIZE=20"] and rows[1][:2] == ["2", "MODE=ok__SIZE=10"]
    assert "02_train cell 4: ValueError: boom for MODE=boom" in rows[-1][-1]
    assert (tmp_path / "sw" / "comparison.png").stat().st_size > 1000
    # Running the same sweep again runs nothing more: every combination has its trial.
    sweep.work(loaded)
    assert {k: len(v) for k, v in trials_per_run(tmp_path / "sw", "g").items()} == dict.fromkeys(
        table["run_id"], 1
    )
    args = [str(grid), "--out", str(tmp_path / "sw"), "--notebooks-dir", str(notebooks)]
    assert sweep.main([*args, "--report", "--rank-by", "01_prep.score"]) == 0
    assert "Ranked by `01_prep.score`" in (tmp_path / "sw" / "ranking.md").read_text()
    # Another grid into the same study is refused.
    changed = sweep.load_sweep(grid, ["RATE=2"], out=tmp_path / "sw", notebooks_dir=notebooks)
    with pytest.raises(sweep.SweepError, match="holds a different sweep"):
        sweep.work(changed)


def sweep_command(out: Path, notebooks: Path, *sets: str) -> list[str]:
    command = [sys.executable, "-m", "helpers.batch.sweep", "--profile", "small"]
    command += ["--notebooks-dir", str(notebooks), "--out", str(out)]
    return command + [f"--set={s}" for s in sets]


def test_two_workers_run_each_combination_once(tmp_path, notebooks):
    """Two processes on one storage (as two machines would be) share a grid of six."""
    out = tmp_path / "sw"
    command = sweep_command(out, notebooks, "SIZE=1,2,3,4,5,6", "SLEEP=1.0")
    workers = [
        subprocess.Popen(command, cwd=config.PROJ_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = trials_per_run(out)
    assert trials == {f"SIZE={n}": ["COMPLETE"] for n in range(1, 7)}
    table = pd.read_csv(out / "comparison.csv")
    assert set(table["status"]) == {"finished"} and table["worker"].nunique() == 2


def test_killed_worker_rerun_completes_only_what_is_missing(tmp_path, notebooks):
    """SIGKILL during the second run, then the same command: the first run is kept and the
    second resumes from its unfinished notebook."""
    out = tmp_path / "sw"
    command = sweep_command(out, notebooks, "SIZE=1,2", "SLEEP=3.0")
    process = subprocess.Popen(command, cwd=config.PROJ_ROOT, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "SIZE=2" / "02_train.ipynb").exists():
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert read(out / "SIZE=2" / "run.json")["run"]["status"] in ("running", "died")
    first = {p: p.stat().st_mtime_ns for p in (out / "SIZE=1").iterdir()}
    prep = (out / "SIZE=2" / "01_prep.ipynb").stat().st_mtime_ns
    rerun = subprocess.run(command, cwd=config.PROJ_ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "SIZE=2/01_prep: finished earlier, kept" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "SIZE=1").iterdir()} == first
    assert (out / "SIZE=2" / "01_prep.ipynb").stat().st_mtime_ns == prep
    assert trials_per_run(out) == {"SIZE=1": ["COMPLETE"], "SIZE=2": ["FAIL", "COMPLETE"]}
    record = read(out / "SIZE=2" / "run.json")["run"]
    assert record["status"] == "finished" and len(record["resumed"]) == 1


def test_database_storage(tmp_path, notebooks):
    """A database URL (SQLite here; PostgreSQL or MySQL across machines) holds the study;
    a storage that cannot be opened is one clear line, not a traceback."""
    out, url = tmp_path / "sw", f"sqlite:///{tmp_path / 'study.db'}"
    command = [*sweep_command(out, notebooks, "SIZE=1,2"), "--storage", url]
    done = subprocess.run(command, cwd=config.PROJ_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name="sweep", storage=url)
    assert sorted(t.user_attrs["run_id"] for t in study.trials) == ["SIZE=1", "SIZE=2"]
    assert f"optuna-dashboard {url}" in (out / "ranking.md").read_text()
    with sqlite3.connect(tmp_path / "study.db") as db:  # Heartbeats: dead machines are noticed.
        assert db.execute("select count(*) from trial_heartbeats").fetchone()[0] == 2
    bad = [*sweep_command(tmp_path / "b", notebooks, "SIZE=1"), "--storage", "nosuchdb://x/y"]
    refused = subprocess.run(bad, cwd=config.PROJ_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "storage nosuchdb://x/y:" in refused.stderr


def test_a_dead_machine_is_noticed_by_its_heartbeats(tmp_path, notebooks):
    """On a database, a trial whose worker (on another machine) stopped beating is failed
    after the grace period and its run queued again."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    options = {"out": tmp_path / "sw", "notebooks_dir": notebooks, "storage": url}
    loaded = sweep.load_sweep(None, ["SIZE=1,2"], **options)
    study = sweep.open_study(loaded)
    trial = sweep.claim(study, loaded)
    study._storage.set_trial_user_attr(trial._trial_id, "worker", "elsewhere:1")
    study._storage.record_heartbeat(trial._trial_id)
    sweep.reap(study)  # Beating a moment ago: left alone.
    assert [t.state.name for t in study.get_trials()] == ["RUNNING", "WAITING"]
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("update trial_heartbeats set heartbeat = datetime('now', '-1 hour')")
    sweep.reap(study)
    states = [(t.user_attrs["run_id"], t.state.name) for t in study.get_trials()]
    assert states == [("SIZE=1", "FAIL"), ("SIZE=2", "WAITING"), ("SIZE=1", "WAITING")]


def test_interrupted_worker_keeps_finished_trials(tmp_path, notebooks):
    """SIGTERM (a batch system, Ctrl-C) stops a worker cleanly: exit 130, trial queued again."""
    out = tmp_path / "sw"
    command = sweep_command(out, notebooks, "SIZE=1,2", "SLEEP=3.0")
    process = subprocess.Popen(
        command, cwd=config.PROJ_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "SIZE=2" / "02_train.ipynb").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "SIZE=1: finished" in output and "Interrupted" in output
    assert read(out / "SIZE=2" / "run.json")["run"]["status"] == "interrupted"
    assert trials_per_run(out) == {"SIZE=1": ["COMPLETE"], "SIZE=2": ["FAIL", "WAITING"]}
    rerun = subprocess.run(command, cwd=config.PROJ_ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0 and "SIZE=2/01_prep: finished earlier, kept" in rerun.stdout
    assert pd.read_csv(out / "comparison.csv")["status"].tolist() == ["finished", "finished"]


def test_failed_runs_are_kept_unless_retried(tmp_path, notebooks):
    loaded = sweep.load_sweep(
        None, ["MODE=ok,boom"], out=tmp_path / "sw", profile="small", notebooks_dir=notebooks
    )
    table = sweep.comparison_table(sweep.work(loaded))
    assert table["status"].tolist() == ["finished", "failed"]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("MODE=*/*")}
    again = sweep.comparison_table(sweep.work(loaded))
    assert again["status"].tolist() == ["finished", "failed"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("MODE=*/*")} == stamps
    retried = sweep.work(loaded, retry_failed=True)
    assert sweep.comparison_table(retried)["status"].tolist() == ["finished", "failed"]
    assert (tmp_path / "sw" / "MODE=boom.failed-1" / "02_train.ipynb").is_file()
    assert trials_per_run(tmp_path / "sw") == {
        "MODE=ok": ["COMPLETE"],
        "MODE=boom": ["FAIL", "FAIL"],
    }


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
    assert "2 run(s)" in text and "[2] SIZE=2" in text
    assert sweep.main(["--set", "SIZ=1", "--notebooks-dir", str(notebooks), "--dry-run"]) == 2
    assert "Did you mean SIZE?" in capsys.readouterr().err


def test_search_mode(tmp_path, notebooks):
    """Sampled values within their bounds, one run folder per trial, n_trials in all."""
    grid = write_grid(
        tmp_path / "s.yaml",
        """\
profile: small
fixed: {MODE: ok}
search:
  SIZE: {low: 1, high: 50}
  LEARNING_RATE: {low: 1.0e-4, high: 1.0e-2, log: true}
n_trials: 4
prune_after: "01"
rank_by: final.val_accuracy
""",
    )
    loaded = sweep.load_sweep(grid, out=tmp_path / "s", notebooks_dir=notebooks)
    sweep.validate(loaded)
    sweep.work(loaded)
    table = pd.read_csv(tmp_path / "s" / "comparison.csv")
    assert list(table["run_id"]) == [f"trial-{n:03d}" for n in range(4)]
    assert set(table["status"]) <= {"finished", "pruned"}
    assert table["SIZE"].between(1, 50).all() and table["LEARNING_RATE"].between(1e-4, 1e-2).all()
    assert all((tmp_path / "s" / name / "run.json").is_file() for name in table["run_id"])
    bad = sweep.load_sweep(None, ["MODE=ok"], notebooks_dir=notebooks)
    bad.search = {"LEARNING_RATE": {"low": "x", "high": 1.0}}
    with pytest.raises(sweep.SweepError, match="needs n_trials"):
        sweep.validate(bad)


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
    assert "--resume" in capsys.readouterr().out


def test_killed_run_resumes_from_its_unfinished_notebook(tmp_path, notebooks):
    target = tmp_path / "run"
    command = [sys.executable, "-m", "helpers.batch.runner", "--profile", "small", "--run-dir"]
    command += [str(target), "--notebooks-dir", str(notebooks), "-p", "SLEEP", "30.0"]
    process = subprocess.Popen(command, cwd=config.PROJ_ROOT, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (target / "02_train.ipynb").exists():
        time.sleep(0.2)
    process.kill()
    process.wait()
    deadline = time.time() + 15  # The run's watcher marks it within a few seconds.
    while time.time() < deadline and read(target / "run.json")["run"]["status"] == "running":
        time.sleep(0.5)
    assert read(target / "run.json")["run"]["status"] == "died"
    assert "--resume" in read(target / "run.json")["run"]["error"]
    assert runner.run_state(target) == "died"
    prep = (target / "01_prep.ipynb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="nothing to resume"):
        record = read(target / "run.json")
        record["run"].update(status="finished")
        (tmp_path / "done").mkdir()
        (tmp_path / "done" / "run.json").write_text(json.dumps(record))
        runner.resume_run(tmp_path / "done")
    # Resume with a shorter sleep: the record keeps the parameters, so patch them there.
    record = read(target / "run.json")
    record["run"]["parameters"]["SLEEP"] = 0.0
    (target / "run.json").write_text(json.dumps(record))
    result = runner.resume_run(target)
    assert result.status == "finished" and list(result.timings_s) == ["01_prep", "02_train"]
    assert (target / "01_prep.ipynb").stat().st_mtime_ns == prep
    assert read(target / "run.json")["run"]["status"] == "finished"
    assert read(target / "metrics.json")["02_train.val_accuracy"] > 0.5

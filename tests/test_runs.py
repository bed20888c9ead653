"""Run folders and the run record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import config, runs
from helpers.batch import runner


def test_run_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(runs.RUN_DIR_ENV, raising=False)
    assert runs.resolve_run_dir(None, create=False) == config.RUNS_DIR / "interactive"
    assert runs.resolve_run_dir("runs/x", create=False) == config.PROJ_ROOT / "runs" / "x"
    monkeypatch.setenv(runs.RUN_DIR_ENV, str(tmp_path / "env"))
    assert runs.resolve_run_dir(None) == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert runs.resolve_run_dir(tmp_path / "arg", create=False) == tmp_path / "arg"


def test_record_merges_sections(tmp_path):
    runs.record(tmp_path, "weights", {"backbone": "A", "pretrained": np.bool_(True)})
    runs.record(tmp_path, "weights", {"source": "cache"})
    runs.record_notebook(tmp_path, "01_data", {"SEED": 0}, {"files": np.int64(3)})
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["weights"] == {"backbone": "A", "pretrained": True, "source": "cache"}
    assert data["notebooks"]["01_data"]["metrics"] == {"files": 3}
    assert data["environment"]["packages"]["tensorflow"]


def test_new_run_dir_never_overwrites(tmp_path):
    target = tmp_path / "run"
    assert runner.new_run_dir("small", str(target)) == target
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never overwrites"):
        runner.new_run_dir("small", str(target))
    assert (target / "keep.txt").read_text() == "mine"


def test_new_run_dir_defaults_under_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "RUNS_DIR", tmp_path / "runs")
    path = runner.new_run_dir("small")
    assert path.parent == tmp_path / "runs" and path.name.endswith("-small")


def test_profiles(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.resolve_profile(None) == "full"
    monkeypatch.setenv(config.PROFILE_ENV, "small")
    assert config.profile_settings(None)["image_size"] == config.PROFILES["small"]["image_size"]
    with pytest.raises(ValueError, match="Unknown profile 'tiny'.*PROFILE parameter"):
        config.resolve_profile("tiny")


@pytest.mark.parametrize(
    "text, value",
    [
        ("5", 5),
        ("1e-5", 1e-5),
        ("None", None),
        ("MobileNetV3Small", "MobileNetV3Small"),
        ("(0.8, 0.1, 0.1)", (0.8, 0.1, 0.1)),
    ],
)
def test_command_line_values(text, value):
    assert runner.parse_value(text) == value


def test_record_notebook_writes_the_extracts(tmp_path):
    run_dir = runs.resolve_run_dir(tmp_path / "run")
    runs.write_json(
        run_dir / "phase1_weights.json",
        {
            "backbone": "EfficientNetLite0",
            "weights": "imagenet",
            "pretrained": True,
            "fallback": True,
        },
    )
    runs.record_notebook(
        run_dir,
        "03_phase1",
        {"EPOCHS": 4},
        {"val_accuracy": np.float32(0.75), "curve": {"a": float("nan")}},
    )
    injected = {"EPOCHS": None, "RUN_DIR": str(run_dir)}
    runs.note_notebook(run_dir, "03_phase1", injected=injected, wall_s=12.35)  # As the runner.
    metrics = runs.write_summaries(run_dir)
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert metrics["03_phase1.val_accuracy"] == 0.75 and metrics["03_phase1.curve.a"] is None
    assert metrics["03_phase1.wall_s"] == 12.35 and metrics["final.val_accuracy"] == 0.75
    assert runs.load_record(run_dir)["notebooks"]["03_phase1"]["setup_to_record_s"] >= 0
    parameters = json.loads((run_dir / "parameters.json").read_text())
    assert parameters["03_phase1"] == {
        "injected": {"EPOCHS": None, "RUN_DIR": str(run_dir)},
        "resolved": {"EPOCHS": 4},
    }
    env = runs.load_record(run_dir)["environment"]
    assert env["imagenet_weights"] is True and env["weights"]["fallback"] is True
    runs.write_json(run_dir / "final_model.json", {"model": "phase2.keras", "val_accuracy": 0.8})
    assert runs.collect_metrics(run_dir)["final.val_accuracy"] == 0.8


def test_weights_used_without_imagenet(tmp_path):
    assert runs.weights_used(tmp_path)["imagenet"] is None
    runs.record(
        tmp_path,
        "weights",
        {"backbone": "MobileNetV3Small", "weights": None, "pretrained": False, "fallback": False},
    )
    used = runs.weights_used(tmp_path)
    assert used["imagenet"] is False and used["backbones"] == ["MobileNetV3Small"]


def test_injectable_values():
    assert runner.injectable((0.8, (1, 2), {"a": (3,)})) == [0.8, [1, 2], {"a": [3]}]


def test_start_records_every_parameter_with_the_value_used(tmp_path):
    from helpers.config import NOTEBOOKS_DIR

    names = runs.parameter_names("03_phase1")
    assert {"RUN_DIR", "PROFILE", "EPOCHS", "SEED"} <= set(names)
    namespace = {name: None for name in names} | {"RUN_DIR": str(tmp_path), "PROFILE": "small"}
    run = runs.start("03_phase1", namespace)
    assert run.dir == tmp_path and run.settings["profile"] == "small"
    namespace["EPOCHS"] = 4  # resolved by the notebook after start()
    run.log(val_accuracy=0.75)
    entry = runs.load_record(tmp_path)["notebooks"]["03_phase1"]
    assert list(entry["parameters"]) == names and entry["parameters"]["EPOCHS"] == 4
    assert runs.read_json(tmp_path / "metrics.json")["03_phase1.val_accuracy"] == 0.75
    assert (NOTEBOOKS_DIR / "03_phase1.ipynb").exists()


def test_parameter_names_needs_a_tagged_cell(tmp_path, monkeypatch):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("A = 1")])
    nbformat.write(nb, tmp_path / "99_x.ipynb")
    monkeypatch.setattr(runs, "NOTEBOOKS_DIR", tmp_path)
    with pytest.raises(ValueError, match="tagged `parameters`"):
        runs.parameter_names("99_x")

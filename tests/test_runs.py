"""Run folders and the run record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import config, runner, runs


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


def test_profiles(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.resolve_profile(None) == "full"
    monkeypatch.setenv(config.PROFILE_ENV, "small")
    assert config.profile_settings(None)["image_size"] == config.PROFILES["small"]["image_size"]
    with pytest.raises(ValueError, match="Unknown profile 'tiny'.*PROFILE parameter"):
        config.resolve_profile("tiny")


@pytest.mark.parametrize("text, value", [("5", 5), ("1e-5", 1e-5), ("None", None),
                                         ("MobileNetV3Small", "MobileNetV3Small"),
                                         ("(0.8, 0.1, 0.1)", (0.8, 0.1, 0.1))])
def test_command_line_values(text, value):
    assert runner.parse_value(text) == value

"""Run folders: where each notebook writes what the next one needs, and the run record.

A run folder holds the executed notebooks (under ``make run``), the artefacts each
notebook writes (manifest, weights record, models...) and ``run.json``: the parameters
actually used per notebook, the environment, and the figures each notebook measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.config import PROJ_ROOT, RUNS_DIR, project_path

RUN_DIR_ENV = "COURSE_RUN_DIR"
RECORD_NAME = "run.json"
TRACKED_PACKAGES = (
    "tensorflow",
    "keras",
    "ai-edge-litert",
    "numpy",
    "scikit-learn",
    "scikit-image",
    "pillow",
    "papermill",
)


def resolve_run_dir(run_dir: str | os.PathLike | None = None, create: bool = True) -> Path:
    """The run folder: the argument, else $COURSE_RUN_DIR, else ``runs/interactive``.

    Relative paths are taken from the project root, so a notebook opened in JupyterLab,
    run by nbval (from ``notebooks/``) or by papermill (from anywhere) writes to the
    same place.
    """
    given = run_dir if run_dir not in (None, "") else os.environ.get(RUN_DIR_ENV)
    path = project_path(given, RUNS_DIR / "interactive")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))
    tmp.replace(path)
    return path


def read_json(path: Path, default: Any = None) -> Any:
    if not path.exists():
        return default
    return json.loads(path.read_text())


def load_record(run_dir: Path) -> dict:
    """The run record, or an empty one."""
    return read_json(Path(run_dir) / RECORD_NAME, default={}) or {}


def record(run_dir: Path, section: str, data: dict) -> dict:
    """Merge ``data`` into ``run.json`` under ``section`` and return the whole record."""
    path = Path(run_dir) / RECORD_NAME
    current = load_record(run_dir)
    merged = dict(current.get(section, {}))
    merged.update(data)
    current[section] = merged
    current.setdefault("environment", environment())
    current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(path, current)
    return current


def record_notebook(
    run_dir: Path, notebook: str, parameters: dict, metrics: dict | None = None
) -> None:
    """Record a notebook's parameters and metrics under ``notebooks.<name>``."""
    current = load_record(run_dir)
    notebooks = current.get("notebooks", {})
    entry = notebooks.get(notebook, {})
    entry["parameters"] = parameters
    if metrics:
        entry.setdefault("metrics", {}).update(metrics)
    entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    notebooks[notebook] = entry
    record(run_dir, "notebooks", notebooks)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJ_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJ_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Python, platform, package versions and the project's git commit."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": git_commit(),
    }


def load_data_info(run_dir: Path) -> dict:
    """What notebook 01 saved (classes, manifest path, image size, class weights...)."""
    path = Path(run_dir) / "data.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run notebook 01 (data preparation) with the same RUN_DIR "
            "first, or run the whole course with `make run`."
        )
    return read_json(path)

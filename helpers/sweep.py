"""Parameter sweeps: the notebooks run once per combination of a grid, then compared.

``python -m helpers.sweep GRID.yaml [--out runs/sweeps/<name>] [--profile small|full]
[--set NAME=v1,v2 ...] [--notebooks 00,01,03] [--dry-run] [--resume] [--retry-failed]
[--report]``

The grid file (see ``sweeps/example.yaml``)::

    name: example                # default: the file's name
    profile: small               # default: $COURSE_PROFILE, else full
    notebooks: ["01", "03"]      # default: every numbered notebook
    fixed: {COMPARE_RANDOM: false}
    grid: {IMAGE_SIZE: [96, 128], LEARNING_RATE: [1.0e-3, 1.0e-2]}
    rank_by: final.val_accuracy  # a key of metrics.json; rank_order: max (or min)
    cell_timeout: 900            # optional: seconds a cell may take (default: no limit)

Values are read as YAML, with ``1e-3`` a float and ``None`` as null; a value that is
itself a list is written in a list (``SPLIT_RATIOS: [[0.8, 0.1, 0.1]]``). ``--set
NAME=v1,v2`` replaces a grid axis's values in place; for another name, one value makes it
fixed and several a new axis (last in the order).

The cartesian product is expanded in a fixed order (the first axis varies slowest), one
run id per combination (``IMAGE_SIZE=96__LEARNING_RATE=0.001``). Every name and value is
checked against the notebooks' parameters cells (``helpers.runner.check_value`` gives the
type rules) before anything runs. Each combination runs through the notebooks with
papermill, sequentially, into its own run folder ``<sweep>/<run id>/`` with the run record
of ``helpers.runs``. A failing combination is recorded in ``<sweep>/status.json`` (notebook,
cell, error) and the others go on. A run is finished when its own ``run.json`` says so;
``--resume`` skips finished runs (and failed ones, unless ``--retry-failed``), moves any
unfinished folder aside to ``<run id>.incomplete-<n>`` and runs what is missing. At the end
(or with ``--report``) the sweep writes ``comparison.csv``, ``ranking.md`` and
``comparison.png``. A sweep folder without ``--resume`` is refused, and so is a folder in
which another sweep process runs (``<sweep>/.lock``) or that a different grid made.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.config import NOTEBOOKS_DIR, RUNS_DIR, project_path, resolve_profile
from helpers.runner import (
    RunResult,
    check_parameters,
    declared_parameters,
    execute_run,
    new_run_dir,
    select_notebooks,
)
from helpers.runs import METRICS_NAME, PARAMETERS_NAME, load_record, read_json, write_json

STATUS_NAME = "status.json"
LOCK_NAME = ".lock"
SWEEPS_DIR = RUNS_DIR / "sweeps"
DEFAULT_RANK_BY = "final.val_accuracy"
SPEC_KEYS = (
    "name",
    "profile",
    "notebooks",
    "notebooks_dir",
    "fixed",
    "grid",
    "out",
    "rank_by",
    "rank_order",
    "cell_timeout",
)
REPORT_FILES = ("comparison.csv", "ranking.md", "comparison.png")


class SweepError(ValueError):
    """A grid that cannot run: unknown names, wrong types, a folder from another grid."""


# YAML 1.1 reads 1e-3 as a string (it wants 1.0e-3); this loader reads it as a float.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _pythonic(value: Any) -> Any:
    """Python's spelling of None in YAML or on the command line means None."""
    return None if value == "None" else value


def parse_values(text: str) -> list[Any]:
    """The values of ``--set NAME=v1,v2``, read as YAML: ``96,128`` -> [96, 128].

    ``true``/``True``, ``null``/``None``, ``1e-3`` and nested lists (``[0.8,0.1,0.1]``, one
    value) are understood; anything else is a string.
    """
    try:
        values = yaml.load(f"[{text}]", Loader=_Loader)  # noqa: S506 - a safe loader.
    except yaml.YAMLError:
        values = [v.strip() for v in text.split(",")]
    return [_pythonic(v) for v in values]


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``"NAME=v1,v2"`` -> ``("NAME", [v1, v2])``."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise SweepError(f"--set {text!r}: write NAME=value or NAME=value1,value2")
    return name.strip(), parse_values(rest)


@dataclass(frozen=True)
class Combination:
    """One point of the grid: its position, run id and the parameters injected."""

    index: int  # 1-based, in expansion order.
    run_id: str
    values: dict[str, Any]  # The grid's values only.
    parameters: dict[str, Any]  # The fixed parameters plus the grid's values.


@dataclass
class Sweep:
    """A sweep as loaded from a grid file and the command line."""

    name: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    profile: str
    notebooks: list[Path]
    out: Path
    rank_by: str = DEFAULT_RANK_BY
    rank_order: str = "max"
    cell_timeout: float | None = None
    source: Path | None = None
    combinations: list[Combination] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.combinations:
            self.combinations = expand(self.grid, self.fixed)


def format_value(value: Any) -> str:
    """A value as it reads in a run id."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return "-".join(f"{k}-{format_value(v)}" for k, v in value.items())
    return str(value)


def run_id(values: dict[str, Any], limit: int = 120) -> str:
    """A readable, filesystem-safe id: ``BACKBONE=EfficientNetLite0__IMAGE_SIZE=96``.

    Characters other than letters, digits and ``._=+-`` become ``-``; an id longer than
    ``limit`` is cut and ends with a hash of the full one. An empty grid gives "default".
    """
    if not values:
        return "default"
    raw = "__".join(f"{name}={format_value(value)}" for name, value in values.items())
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "-", raw).strip("-.") or "run"
    if len(safe) > limit:
        digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
        safe = f"{safe[: limit - 9]}-{digest}"
    return safe


def expand(grid: dict[str, list[Any]], fixed: dict[str, Any] | None = None) -> list[Combination]:
    """The cartesian product of the grid in order: the first axis varies slowest.

    Ids that would collide once made filesystem-safe (``a/b`` and ``a-b``) get a hash.
    """
    fixed = dict(fixed or {})
    names = list(grid)
    combos: list[Combination] = []
    seen: dict[str, int] = {}
    for index, point in enumerate(itertools.product(*(grid[n] for n in names)), 1):
        values = dict(zip(names, point))
        identifier = run_id(values)
        if identifier in seen:
            digest = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode())
            identifier = f"{identifier}-{digest.hexdigest()[:8]}"
        seen[identifier] = index
        combos.append(Combination(index, identifier, values, {**fixed, **values}))
    return combos


def _notebook_selection(value: Any) -> list[str] | None:
    """``notebooks:`` of a grid file: YAML reads 01 as the number 1, so pad numbers."""
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [f"{item:02d}" if isinstance(item, int) else str(item).strip() for item in items]


def apply_sets(
    grid: dict[str, list[Any]], fixed: dict[str, Any], sets: Sequence[str]
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Apply ``--set`` overrides: a grid axis gets the new values in place; another name
    with one value becomes fixed, with several values a new axis (last in the order)."""
    grid, fixed = dict(grid), dict(fixed)
    for text in sets:
        name, values = parse_set(text)
        if name in grid:
            grid[name] = values
        elif len(values) == 1:
            fixed[name] = values[0]
        else:
            fixed.pop(name, None)
            grid[name] = values
    return grid, fixed


def load_sweep(
    path: str | os.PathLike | None = None,
    sets: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    profile: str | None = None,
    notebooks: str | Sequence[str] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    rank_by: str | None = None,
) -> Sweep:
    """A sweep from a grid file (optional) and command-line overrides (which win)."""
    spec: dict[str, Any] = {}
    source = None
    if path is not None:
        source = project_path(path, Path.cwd())
        if not source.is_file():
            raise SweepError(f"Grid file {source} does not exist.")
        spec = yaml.load(source.read_text(), Loader=_Loader) or {}  # noqa: S506
        if not isinstance(spec, dict):
            raise SweepError(f"{source}: expected a mapping with grid:, fixed:...")
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            hints = [
                f"{k!r}"
                + (
                    f" (did you mean {close[0]!r}?)"
                    if (close := difflib.get_close_matches(k, SPEC_KEYS, n=1))
                    else ""
                )
                for k in unknown
            ]
            raise SweepError(
                f"{source}: unknown key(s) {', '.join(hints)}; known: {', '.join(SPEC_KEYS)}."
            )
    raw_grid = spec.get("grid") or {}
    raw_fixed = spec.get("fixed") or {}
    if not isinstance(raw_grid, dict) or not isinstance(raw_fixed, dict):
        raise SweepError("grid: and fixed: must be mappings of NAME: values.")
    grid = {
        str(k): [_pythonic(v) for v in (vs if isinstance(vs, list) else [vs])]
        for k, vs in raw_grid.items()
    }
    fixed = {str(k): _pythonic(v) for k, v in raw_fixed.items()}
    grid, fixed = apply_sets(grid, fixed, sets)
    problems = [f"grid: {name} has no values" for name, values in grid.items() if not values]
    problems += [
        f"grid: {name} lists {v!r} more than once"
        for name, values in grid.items()
        for i, v in enumerate(values)
        if v in values[:i]
    ]
    problems += [f"{name} is both in grid: and in fixed:" for name in grid if name in fixed]
    if problems:
        raise SweepError("\n".join(f"- {p}" for p in problems))
    name = str(spec.get("name") or (source.stem if source else "sweep"))
    folder = project_path(notebooks_dir or spec.get("notebooks_dir"), NOTEBOOKS_DIR)
    chosen = select_notebooks(_notebook_selection(notebooks or spec.get("notebooks")), folder)
    order = str(spec.get("rank_order") or "max")
    if order not in ("max", "min"):
        raise SweepError(f"rank_order: {order!r}; use max (higher is better) or min.")
    timeout = spec.get("cell_timeout")
    return Sweep(
        name=name,
        grid=grid,
        fixed=fixed,
        profile=resolve_profile(profile or spec.get("profile")),
        notebooks=chosen,
        out=project_path(out or spec.get("out"), SWEEPS_DIR / name),
        rank_by=str(rank_by or spec.get("rank_by") or DEFAULT_RANK_BY),
        rank_order=order,
        cell_timeout=float(timeout) if timeout else None,
        source=source,
    )


def validate(sweep: Sweep) -> None:
    """Check every name and value of the sweep against the notebooks; raise SweepError
    listing every problem, before anything runs."""
    declared = declared_parameters(sweep.notebooks)
    problems: list[str] = []
    checks = [{name: value} for name, value in sweep.fixed.items()]
    checks += [{name: value} for name, values in sweep.grid.items() for value in values]
    for check in checks:
        for problem in check_parameters(check, sweep.notebooks, declared):
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise SweepError(
            f"Sweep {sweep.name!r}: {len(problems)} problem(s), nothing ran:\n"
            + "\n".join(f"- {p}" for p in problems)
        )


def run_state(folder: Path) -> str:
    """A run folder's state: "missing", "finished", "failed" or "unfinished"."""
    if not folder.exists() or not any(folder.iterdir()):
        return "missing"
    status = load_record(folder).get("run", {}).get("status")
    return status if status in ("finished", "failed") else "unfinished"


def load_status(out: Path) -> dict:
    """The sweep's status file, or an empty dict."""
    return read_json(Path(out) / STATUS_NAME, default={}) or {}


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (tuples and lists alike)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _check_resumable(sweep: Sweep, previous: dict) -> None:
    """Refuse to resume a sweep folder made by a different grid."""
    problems = []
    if previous.get("profile") != sweep.profile:
        problems.append(f"profile was {previous.get('profile')!r}, now {sweep.profile!r}")
    stems = [p.stem for p in sweep.notebooks]
    if previous.get("notebooks") != stems:
        problems.append(f"notebooks were {previous.get('notebooks')}, now {stems}")
    before = {run["id"]: run for run in previous.get("runs", [])}
    for combo in sweep.combinations:
        if combo.run_id in before and not _same(
            before[combo.run_id]["parameters"], combo.parameters
        ):
            problems.append(
                f"run {combo.run_id} had parameters "
                f"{before[combo.run_id]['parameters']}, now {combo.parameters}"
            )
    if problems:
        raise SweepError(
            f"{sweep.out} holds a different sweep ({'; '.join(problems)}). "
            "Use another --out; finished runs are never overwritten."
        )


def _move_aside(folder: Path, label: str) -> Path:
    """Rename an unfinished (or retried) run folder to ``<id>.<label>-<n>``; never delete."""
    n = 1
    while (target := folder.with_name(f"{folder.name}.{label}-{n}")).exists():
        n += 1
    folder.rename(target)
    return target


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress lines: which run of how many, which notebook, elapsed and remaining time.

    The remaining time uses each notebook's mean time over the runs already done (this
    session's and earlier ones'); it is unknown until every notebook has run once.
    """

    def __init__(self, sweep: Sweep, runs: list[dict], stream=None):
        self.total = len(sweep.combinations)
        self.stems = [p.stem for p in sweep.notebooks]
        self.samples: dict[str, list[float]] = {s: [] for s in self.stems}
        for run in runs:
            self.add(run.get("timings_s") or {})
        self.start = time.perf_counter()
        self.stream = stream or sys.stdout
        self.run_label = ""
        self.runs_after = 0

    def add(self, timings: dict[str, float]) -> None:
        """Learn from a run's notebook times."""
        for stem, seconds in timings.items():
            if stem in self.samples:
                self.samples[stem].append(float(seconds))

    def remaining(self, notebook_index: int) -> float | None:
        """Seconds left from the start of notebook ``notebook_index`` (0-based) of this run."""
        means = {s: sum(v) / len(v) for s, v in self.samples.items() if v}
        if len(means) < len(self.stems):
            return None
        this_run = sum(means[s] for s in self.stems[notebook_index:])
        return this_run + self.runs_after * sum(means.values())

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: str, info: dict) -> None:
        """The reporter handed to ``execute_run``."""
        if event == "start":
            left = self.remaining(info["index"] - 1)
            estimate = f"~{_clock(left)} left" if left is not None else "remaining: after one run"
            self.say(
                f"{self.run_label} {info['notebook']} ({info['index']}/{info['total']}) "
                f"| elapsed {_clock(time.perf_counter() - self.start)}, {estimate}"
            )
        elif event == "failed":
            self.say(
                f"{self.run_label} FAILED in {info['notebook']}, cell {info['cell']}: "
                f"{info['ename']}: {info['evalue']}"
            )


def _run_entry(combo: Combination, state: str) -> dict:
    return {
        "index": combo.index,
        "id": combo.run_id,
        "values": combo.values,
        "parameters": combo.parameters,
        "status": state,
    }


def _refresh(entry: dict, folder: Path) -> dict:
    """Update a status entry from the run folder's own record."""
    run = load_record(folder).get("run", {}) if folder.exists() else {}
    entry["status"] = run_state(folder) if folder.exists() else "pending"
    if entry["status"] == "missing":
        entry["status"] = "pending"
    for key in ("timings_s", "wall_s", "started", "finished"):
        if key in run:
            entry[key] = run[key]
    if entry["status"] == "failed":
        entry["failure"] = {
            "notebook": run.get("failed_notebook"),
            "cell": run.get("failed_cell"),
            "error": run.get("error"),
        }
    else:
        entry.pop("failure", None)
    return entry


def _save(out: Path, status: dict) -> None:
    counts: dict[str, int] = {}
    for run in status["runs"]:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    status["counts"] = counts
    status["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(out / STATUS_NAME, status)


def plan(sweep: Sweep) -> str:
    """The sweep as text: what would run, into which folders, with which parameters."""
    declared = declared_parameters(sweep.notebooks)
    lines = [
        f"Sweep {sweep.name!r}: {len(sweep.combinations)} run(s), profile {sweep.profile}, "
        f"into {sweep.out}",
        f"Notebooks: {', '.join(p.stem for p in sweep.notebooks)}",
    ]
    if sweep.fixed:
        lines.append(f"Fixed: {sweep.fixed}")
    for name in [*sweep.fixed, *sweep.grid]:
        where = [d.notebook for d in declared.get(name, [])]
        lines.append(f"  {name} -> {', '.join(where) or 'no notebook'}")
    for combo in sweep.combinations:
        state = run_state(sweep.out / combo.run_id)
        lines.append(
            f"[{combo.index}/{len(sweep.combinations)}] {combo.run_id}"
            + ("" if state == "missing" else f"  ({state})")
        )
    return "\n".join(lines)


def run_sweep(sweep: Sweep, resume: bool = False, retry_failed: bool = False, stream=None) -> dict:
    """Run every combination not yet done, sequentially; return the status.

    Raises SweepError (bad grid, another sweep's folder) or FileExistsError (the folder
    exists and ``resume`` is False) before anything runs. Ctrl-C (or SIGTERM under
    ``main``) stops after recording the interrupted run; ``resume=True`` continues.
    """
    validate(sweep)
    out = sweep.out
    _check_lock(out)
    previous = load_status(out)
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise FileExistsError(
                f"Sweep folder {out} already exists. Add --resume to finish it (finished runs "
                "are kept), or choose another --out; a sweep never overwrites a finished run."
            )
        if not previous:
            raise FileExistsError(
                f"{out} is not empty and holds no {STATUS_NAME}: it is not "
                "a sweep folder. Choose another --out."
            )
        _check_resumable(sweep, previous)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(str(os.getpid()))
    try:
        return _run_all(sweep, previous, retry_failed, stream)
    finally:
        (out / LOCK_NAME).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_lock(out: Path) -> None:
    """Refuse a second sweep process in the same folder; a killed one's lock is stale."""
    try:
        pid = int((out / LOCK_NAME).read_text().strip())
    except (OSError, ValueError):
        return
    if 0 < pid != os.getpid() and _alive(pid):
        raise FileExistsError(
            f"Another sweep (process {pid}) is running in {out}; wait for it "
            f"or stop it (kill {pid}) and resume. If no sweep runs there, "
            f"delete {out / LOCK_NAME}."
        )


def _run_all(sweep: Sweep, previous: dict, retry_failed: bool, stream) -> dict:
    """The loop of run_sweep, once the folder is checked and locked."""
    out = sweep.out
    before = {run["id"]: run for run in previous.get("runs", [])}
    status = {
        "sweep": sweep.name,
        "source": str(sweep.source) if sweep.source else None,
        "profile": sweep.profile,
        "notebooks": [p.stem for p in sweep.notebooks],
        "notebooks_dir": str(sweep.notebooks[0].parent),
        "grid": sweep.grid,
        "fixed": sweep.fixed,
        "rank_by": sweep.rank_by,
        "rank_order": sweep.rank_order,
        "state": "running",
        "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sessions": previous.get("sessions", 0) + 1,
        "runs": [],
    }
    for combo in sweep.combinations:
        entry = _run_entry(combo, "pending")
        entry["moved_aside"] = before.get(combo.run_id, {}).get("moved_aside", [])
        status["runs"].append(_refresh(entry, out / combo.run_id))
    _save(out, status)

    def to_do(entry: dict) -> bool:
        return entry["status"] in ("pending", "unfinished") or (
            entry["status"] == "failed" and retry_failed
        )

    progress = Progress(sweep, [r for r in status["runs"] if r["status"] == "finished"], stream)
    todo = [e for e in status["runs"] if to_do(e)]
    total = len(sweep.combinations)
    progress.say(
        f"Sweep {sweep.name!r}: {total} run(s), {total - len(todo)} already done, "
        f"{len(todo)} to run; profile {sweep.profile}; notebooks "
        f"{', '.join(status['notebooks'])}; folder {out}"
    )
    for entry in status["runs"]:
        if not to_do(entry):
            progress.say(
                f"[{entry['index']}/{total}] {entry['id']}: {entry['status']} earlier, kept"
            )
    combos = {c.run_id: c for c in sweep.combinations}
    entry = None
    try:
        for position, entry in enumerate(todo):
            combo = combos[entry["id"]]
            folder = out / combo.run_id
            if folder.exists() and any(folder.iterdir()):
                label = "failed" if entry["status"] == "failed" else "incomplete"
                moved = _move_aside(folder, label)
                entry["moved_aside"].append(moved.name)
                progress.say(
                    f"[{combo.index}/{total}] {combo.run_id}: the {entry['status']} "
                    f"folder was moved aside to {moved.name}"
                )
            new_run_dir(sweep.profile, folder)
            for stale in ("failure", "timings_s", "wall_s", "finished"):
                entry.pop(stale, None)
            entry.update(status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))
            _save(out, status)
            progress.run_label = f"[{combo.index}/{total}]"
            progress.runs_after = len(todo) - position - 1
            progress.say(f"[{combo.index}/{total}] {combo.run_id}")
            result: RunResult = execute_run(
                folder,
                sweep.notebooks,
                sweep.profile,
                combo.parameters,
                reporter=progress,
                cell_timeout=sweep.cell_timeout,
            )
            progress.add(result.timings_s)
            _refresh(entry, folder)
            _save(out, status)
            if result.status == "finished":
                metrics = read_json(folder / METRICS_NAME, default={}) or {}
                value = metrics.get(sweep.rank_by)
                shown = f", {sweep.rank_by} = {value:.4g}" if isinstance(value, float) else ""
                progress.say(f"[{combo.index}/{total}] finished in {result.wall_s:.0f} s{shown}")
    except KeyboardInterrupt:
        if entry is not None and entry["status"] == "running":
            _refresh(entry, out / entry["id"])
            entry["status"] = "interrupted"
        status["state"] = "interrupted"
        _save(out, status)
        source = f"{_shown(sweep.source)} " if sweep.source else ""
        progress.say(
            f"\nInterrupted. Resume with: python -m helpers.sweep {source}--out "
            f"{_shown(out)} --resume (with the same --set, --notebooks... options)"
        )
        raise
    status["state"] = "finished"
    _save(out, status)
    write_report(out, status)
    return status


# --- The comparison -----------------------------------------------------------------------


def comparison_table(out: Path, status: dict | None = None):
    """One row per run of the sweep: id, status, wall time, parameters, metrics and the
    parameters as each notebook resolved them (``resolved.<notebook>.<NAME>``)."""
    import pandas as pd

    status = status or load_status(out)
    rows = []
    for run in status.get("runs", []):
        folder = Path(out) / run["id"]
        row: dict[str, Any] = {
            "run_id": run["id"],
            "status": run["status"],
            "wall_s": run.get("wall_s"),
        }
        row.update({name: _cell(value) for name, value in run["parameters"].items()})
        failure = run.get("failure") or {}
        row.update(
            {
                "failed_notebook": failure.get("notebook"),
                "failed_cell": failure.get("cell"),
                "error": failure.get("error"),
                "failure": (
                    f"{failure.get('notebook')} cell {failure.get('cell')}: {failure.get('error')}"
                )
                if failure
                else None,
            }
        )
        metrics = read_json(folder / METRICS_NAME, default={}) or {}
        row.update({name: _cell(value) for name, value in metrics.items()})
        resolved = read_json(folder / PARAMETERS_NAME, default={}) or {}
        for notebook, parameters in resolved.items():
            for name, value in (parameters.get("resolved") or {}).items():
                row[f"resolved.{notebook}.{name}"] = _cell(value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "failed_cell" in frame:
        frame["failed_cell"] = frame["failed_cell"].astype("Int64")
    return frame


def _cell(value: Any) -> Any:
    """A value as one CSV cell: lists and dicts as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _numeric(frame, column: str):
    import pandas as pd

    if column not in frame:
        return None
    values = pd.to_numeric(frame[column], errors="coerce")
    return values if values.notna().any() else None


def rank_metric(frame, wanted: str) -> str | None:
    """The metric to rank by: ``wanted`` when the runs have it, else the last notebook's
    validation accuracy, else None."""
    if _numeric(frame, wanted) is not None:
        return wanted
    candidates = sorted(
        c for c in frame.columns if c.endswith(".val_accuracy") and not c.startswith("resolved.")
    )
    usable = [c for c in candidates if _numeric(frame, c) is not None]
    return usable[-1] if usable else None


def _markdown(rows: list[list[Any]], header: list[str]) -> str:
    def text(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ranking(frame, status: dict) -> tuple[str, str | None]:
    """The ranked table as Markdown, and the metric used."""
    wanted = status.get("rank_by") or DEFAULT_RANK_BY
    metric = rank_metric(frame, wanted)
    lowest = status.get("rank_order") == "min"
    axes = list(status.get("grid") or {})
    title = f"# Sweep {status.get('sweep')}: ranking"
    if metric is None:
        note = f"No run has the metric {wanted!r} (nor a validation accuracy): listed in order."
        ordered = frame
    else:
        note = (
            f"Ranked by `{metric}` ({'lower' if lowest else 'higher'} is better)"
            + ("" if metric == wanted else f"; `{wanted}` was asked for but no run has it")
            + "."
        )
        key = _numeric(frame, metric)
        ordered = frame.assign(_key=key).sort_values(
            "_key", ascending=lowest, na_position="last", kind="stable"
        )
    header = ["rank", "run", *(axes or ["parameters"]), metric or "metric", "wall (s)", "status"]
    rows = []
    for rank, (_, row) in enumerate(ordered.iterrows(), 1):
        done = row["status"] == "finished"
        state = f"failed: {row['failure']}" if row["status"] == "failed" else row["status"]
        values = [row.get(a) for a in axes] if axes else ["(fixed)"]
        rows.append(
            [
                rank if done else "-",
                row["run_id"],
                *values,
                row.get(metric) if metric else None,
                row.get("wall_s"),
                state,
            ]
        )
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{title}\n\n{note} Runs: {summary}.\n\n{_markdown(rows, header)}\n", metric


def _size_or_latency(frame) -> str | None:
    """A model size (INT8 preferred) or latency metric to plot accuracy against."""
    columns = [c for c in frame.columns if not c.startswith("resolved.")]
    tests = [
        lambda c: "int8" in c and any(w in c for w in ("size", "bytes", "kb", "mb")),
        lambda c: "int8" in c and "latency" in c,
        lambda c: "latency" in c,
        lambda c: any(w in c for w in ("size_kb", "size_mb", "size_bytes")),
    ]
    for test in tests:
        for column in columns:
            if test(column.lower()) and _numeric(frame, column) is not None:
                return column
    return None


def comparison_plot(frame, metric: str | None, path: Path) -> Path:
    """``metric`` against model size or latency per backbone when the runs measure those;
    else ``metric`` per run as bars."""
    from matplotlib.figure import Figure

    values = _numeric(frame, metric) if metric else None
    x_column = _size_or_latency(frame) if values is not None else None
    if x_column:
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        groups = frame["BACKBONE"] if "BACKBONE" in frame else None
        xs = _numeric(frame, x_column)
        for label in sorted(groups.dropna().astype(str).unique()) if groups is not None else [None]:
            mask = (groups.astype(str) == label) if label is not None else xs.notna()
            ax.scatter(xs[mask], values[mask], label=label, s=40)
        for i in frame.index:
            if values.notna()[i] and xs.notna()[i]:
                ax.annotate(
                    str(i + 1),
                    (xs[i], values[i]),
                    fontsize=8,
                    textcoords="offset points",
                    xytext=(4, 4),
                )
        ax.set_xlabel(x_column)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} versus {x_column} (numbers: rows of comparison.csv)")
        if groups is not None:
            ax.legend(title="backbone")
    else:
        labels = list(frame["run_id"]) if len(frame) else []
        fig = Figure(figsize=(8, 1.2 + 0.45 * max(len(labels), 1)), layout="constrained")
        ax = fig.add_subplot()
        heights = [
            0.0 if values is None or math.isnan(v) else float(v)
            for v in (values if values is not None else [math.nan] * len(labels))
        ]
        ax.barh(range(len(labels)), heights, color="tab:blue")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        for i, (height, state) in enumerate(zip(heights, frame["status"] if len(frame) else [])):
            text = f"{height:.3f}" if state == "finished" and height else state
            ax.text(height, i, f" {text}", va="center", fontsize=8)
        if metric and "accuracy" in metric:
            ax.set_xlim(0, 1.08)
        ax.set_xlabel(metric or "no metric")
        ax.set_title(f"{metric or 'runs'} per run")
    fig.savefig(path, dpi=110)
    return path


def write_report(out: Path, status: dict | None = None) -> dict[str, Path]:
    """Write ``comparison.csv``, ``ranking.md`` and ``comparison.png`` into the sweep folder."""
    out = Path(out)
    status = status or load_status(out)
    if not status:
        raise FileNotFoundError(f"{out / STATUS_NAME} does not exist: run the sweep first.")
    frame = comparison_table(out, status)
    paths = {name: out / name for name in REPORT_FILES}
    frame.to_csv(paths["comparison.csv"], index=False)
    text, metric = ranking(frame, status)
    paths["ranking.md"].write_text(text)
    comparison_plot(frame, metric, paths["comparison.png"])
    return paths


# --- Command line -------------------------------------------------------------------------


def _interrupt_on_sigterm() -> None:
    """Make ``kill`` (SIGTERM) stop a sweep like Ctrl-C: the status records the stop."""

    def handler(signum, frame):  # noqa: ARG001 - the signal API.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all runs finished, 1 some failed, 2 unusable grid, 130 interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.sweep",
        description="Run the course's notebooks once per combination of a parameter grid.",
    )
    parser.add_argument("grid", nargs="?", help="YAML grid file (grid:, fixed:, profile:...)")
    parser.add_argument("--out", help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument(
        "--profile", help="small or full (default: the file's, else $COURSE_PROFILE, else full)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=v1,v2",
        help="a grid axis or fixed parameter (values read as YAML); repeatable",
    )
    parser.add_argument("--notebooks", help="a subset, e.g. 01,03 (default: the file's, else all)")
    parser.add_argument("--notebooks-dir", help="folder of the numbered notebooks")
    parser.add_argument(
        "--rank-by", help=f"metric of metrics.json to rank by (default {DEFAULT_RANK_BY})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan; run nothing"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted sweep in its folder"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume, also rerun failed runs (their folders moved aside)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite comparison.csv, ranking.md and comparison.png",
    )
    args = parser.parse_args(argv)
    if args.grid is None and not args.set:
        parser.error("give a grid file or at least one --set NAME=v1,v2")
    try:
        sweep = load_sweep(
            args.grid,
            args.set,
            args.out,
            args.profile,
            args.notebooks,
            args.notebooks_dir,
            args.rank_by,
        )
        if args.report:
            status = load_status(sweep.out)
            if args.rank_by and status:
                status["rank_by"] = args.rank_by
            paths = write_report(sweep.out, status)
            print(paths["ranking.md"].read_text())
            print("Wrote " + ", ".join(str(p) for p in paths.values()))
            return 0
        validate(sweep)
        if args.dry_run:
            print(plan(sweep))
            return 0
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Quieter kernels' stderr.
        _interrupt_on_sigterm()
        status = run_sweep(sweep, resume=args.resume, retry_failed=args.retry_failed)
    except (SweepError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print()
    print((sweep.out / "ranking.md").read_text())
    print(f"Comparison: {sweep.out / 'comparison.csv'}, {sweep.out / 'comparison.png'}")
    return 1 if status["counts"].get("failed") else 0


if __name__ == "__main__":
    raise SystemExit(main())

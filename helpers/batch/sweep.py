"""Parameter sweeps on Optuna: each trial is one course run, in its own run folder.

``python -m helpers.batch.sweep GRID.yaml`` (``--help``). A grid file has ``grid:`` (each
combination runs once) or ``search:`` (``NAME: {low, high, log}`` or choices; ``n_trials:``,
``prune_after:``), with ``fixed:``, ``profile:``, ``notebooks:``, ``rank_by:``, ``storage:``."""

import argparse
import difflib
import hashlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import yaml
from optuna.storages._heartbeat import get_heartbeat_thread as heartbeat
from optuna.trial import TrialState as State

from helpers import runs
from helpers.batch import preflight, runner
from helpers.config import NOTEBOOKS_DIR, RUNS_DIR, project_path, resolve_profile

KEYS = "name profile notebooks notebooks_dir fixed grid search n_trials prune_after out storage"
SPEC_KEYS = (*KEYS.split(), "rank_by", "rank_order", "cell_timeout")
DATA_KEYS = ("DATA_DIR", "METADATA_CSV", "WEIGHTS", "BACKBONE")  # What check_data reads.
# This machine as workers tell each other apart (two hosts may share a name), and this worker.
_IDS = [Path(f).read_text()[:8] for f in ("/etc/machine-id",) if Path(f).is_file()]
MACHINE = "-".join([socket.gethostname(), *_IDS])
WORKER = f"{MACHINE}:{os.getpid()}"
_STATUS = {State.COMPLETE: "finished", State.FAIL: "failed"}
_QUIET = {"action": "ignore", "category": optuna.exceptions.ExperimentalWarning}


class SweepError(ValueError):
    """A sweep that cannot run: a bad grid file, bad names or values, another sweep."""


_Loader = type("_Loader", (yaml.SafeLoader,), {})  # YAML 1.1 reads 1e-3 as a string; a float.
_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile("^None$"), ["N"])  # Python's


def _yaml(text: str, source: str) -> Any:
    """YAML as Python; a syntax error names the file (or option), line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader.
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SweepError(f"{source}{where}: {getattr(error, 'problem', error)}") from None


def _text(value: Any) -> str:
    if isinstance(value, dict):
        value = [item for pair in value.items() for item in pair]
    return "-".join(map(_text, value)) if isinstance(value, (list, tuple)) else str(value)


def run_id(values: dict[str, Any], limit: int = 120) -> str:
    """A readable, filesystem-safe id: ``BACKBONE=EfficientNetLite0__IMAGE_SIZE=96``."""
    text = "__".join(f"{k}={_text(v)}" for k, v in values.items())
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-.")
    if len(safe) > limit:
        safe = f"{safe[: limit - 9]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return safe or "default"


def expand(grid: dict[str, list], fixed: dict | None = None) -> list[dict]:
    """The grid's combinations in order (first axis slowest): index, run_id, parameters."""
    combos: list[dict] = []
    for index, point in enumerate(itertools.product(*grid.values()), 1):
        name = run_id(dict(zip(grid, point)))
        name = f"{name}-{index}" if name in {c["run_id"] for c in combos} else name
        parameters = {**(fixed or {}), **dict(zip(grid, point))}
        combos.append({"run_id": name, "index": index, "parameters": parameters})
    return combos


@dataclass
class Sweep:
    name: str
    grid: dict[str, list]
    fixed: dict[str, Any]
    profile: str
    notebooks: list[Path]
    out: Path
    rank_by: str = "final.val_accuracy"
    rank_order: str = "max"
    cell_timeout: float | None = None
    search: dict[str, Any] = field(default_factory=dict)
    n_trials: int = 0
    prune_after: str | None = None
    storage: str | None = None

    def spec(self) -> list:
        """What makes two sweeps the same study."""
        same = [self.grid, self.fixed, self.search, self.profile, [p.stem for p in self.notebooks]]
        return json.loads(json.dumps(same, default=str))


def _read_grid(path: str | os.PathLike) -> dict[str, Any]:
    if not (source := project_path(path, Path.cwd())).is_file():
        raise SweepError(f"Grid file {source} does not exist.")
    if not isinstance(spec := _yaml(source.read_text(), str(source)) or {}, dict):
        raise SweepError(f"{source}: expected keys such as grid: and fixed:")
    for key in [k for k in spec if k not in SPEC_KEYS]:
        close = difflib.get_close_matches(key, SPEC_KEYS, n=1)
        hint = "".join(f" (did you mean {c!r}?)" for c in close)
        raise SweepError(f"{source}: unknown key {key!r}{hint}; known: {', '.join(SPEC_KEYS)}")
    return {"name": source.stem, **spec}


def _apply_sets(grid: dict, fixed: dict, sets) -> None:
    """``NAME=v1,v2`` texts: a grid axis, or several values, make an axis; one value is fixed."""
    for text in sets:
        name, _, values = text.partition("=")
        values = _yaml(f"[{values}]", f"--set {text}") if values.strip() else []
        if not values or not name.strip():
            raise SweepError(f"--set {text!r}: write NAME=value or NAME=value1,value2")
        if name in grid or len(values) > 1:
            grid[name] = values
            fixed.pop(name, None)
        else:
            fixed[name] = values[0]
    problems = [f"{k} is both in grid: and in fixed:" for k in grid if k in fixed]
    repeated = [(k, x) for k, v in grid.items() for i, x in enumerate(v) if x in v[:i]]
    if problems := problems + [f"grid: {k} lists {x!r} more than once" for k, x in repeated]:
        raise SweepError("\n".join(f"- {p}" for p in problems))


def load_sweep(path=None, sets=(), out=None, profile=None, notebooks=None, **options) -> Sweep:
    """A sweep from a grid file (optional) and overrides, which win: ``sets`` and ``options``."""
    spec = _read_grid(path) if path is not None else {}
    spec.update({k: v for k, v in options.items() if v is not None})
    grid = {k: v if isinstance(v, list) else [v] for k, v in (spec.get("grid") or {}).items()}
    fixed = dict(spec.get("fixed") or {})
    _apply_sets(grid, fixed, sets)
    chosen = notebooks or spec.pop("notebooks", None)
    if isinstance(chosen, list):  # YAML reads 01 as the number 1.
        chosen = [f"{i:02d}" if isinstance(i, int) else str(i) for i in chosen]
    folder = project_path(spec.pop("notebooks_dir", None), NOTEBOOKS_DIR)
    spec.update(grid=grid, fixed=fixed, notebooks=runner.select_notebooks(chosen, folder))
    spec.update(name=str(spec.get("name") or "sweep"))
    spec["profile"] = resolve_profile(profile or spec.get("profile"))
    spec["out"] = project_path(out or spec.get("out"), RUNS_DIR / "sweeps" / spec["name"])
    return Sweep(**spec)


def validate(sweep: Sweep) -> None:
    """Check every name and value (``preflight``), then each combination's data; all problems."""
    values = {k: [v] for k, v in sweep.fixed.items()} | sweep.grid
    for name, space in sweep.search.items():
        values[name] = [space.get("low"), space.get("high")] if isinstance(space, dict) else space
    problems: list[str] = []
    for name, value in ((n, v) for n, vs in values.items() for v in vs):
        found = preflight.check_parameters({name: value}, sweep.notebooks)
        problems += [p for p in found if p not in problems]
    combinations = [c["parameters"] for c in expand(sweep.grid, sweep.fixed)]
    named = {json.dumps({k: c[k] for k in DATA_KEYS if k in c}) for c in combinations}
    for data in [] if problems else named:  # Each distinct set of data, files and weights.
        problems += [p for p in preflight.check_data(json.loads(data)) if p not in problems]
    if sweep.rank_order not in ("max", "min"):
        problems.append(f"rank_order: {sweep.rank_order!r}; use max or min")
    if sweep.search and sweep.n_trials < 1:
        problems.append("search: needs n_trials: (how many trials in all)")
    if problems:
        head = f"Sweep {sweep.name!r}: {len(problems)} problem(s), nothing ran:"
        raise SweepError("\n- ".join([head, *problems]))


def _storage(sweep: Sweep):
    """A journal file, or a database (with heartbeats; tried again: workers race to create it)."""
    url = sweep.storage or str(sweep.out / "study.journal")
    if "://" not in url:
        backend = optuna.storages.journal.JournalFileBackend(str(project_path(url, Path.cwd())))
        return optuna.storages.JournalStorage(backend)
    for attempt in range(4):
        try:
            with warnings.catch_warnings(**_QUIET):  # Heartbeats are "experimental".
                return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=300)
        except Exception as error:  # noqa: BLE001 - a driver, a server or a race.
            if attempt == 3 or not isinstance(error, sqlalchemy.exc.DBAPIError):
                first = str(error).strip().splitlines()[0]
                raise SweepError(f"storage {url}: {type(error).__name__}: {first}") from None
            time.sleep(1 + attempt)


def open_study(sweep: Sweep) -> optuna.Study:
    """The sweep's study, created (and its grid queued) by the first worker to come."""
    sweep.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(3)
    kwargs = {"study_name": sweep.name, "storage": _storage(sweep), "pruner": pruner}
    try:
        direction = "maximize" if sweep.rank_order == "max" else "minimize"
        study = optuna.create_study(direction=direction, **kwargs)
        for combination in [] if sweep.search else expand(sweep.grid, sweep.fixed):
            study.enqueue_trial({}, combination)
        study.set_user_attr("spec", sweep.spec())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
        for _ in range(600):  # The worker that created it may still be queueing the grid.
            if "spec" in study.user_attrs or time.sleep(0.1):
                break
        if study.user_attrs.get("spec") != sweep.spec():
            raise SweepError(
                f"The study {sweep.name!r} in {sweep.storage or sweep.out} holds a different "
                "sweep (grid, fixed values, profile or notebooks): use another --out or name."
            ) from None
    return study


def latest(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """The newest trial of each run id, in the order of the grid."""
    trials = [t for t in study.get_trials(deepcopy=False) if "run_id" in t.user_attrs]
    found = {t.user_attrs["run_id"]: t for t in trials}
    return dict(sorted(found.items(), key=lambda item: item[1].user_attrs["index"]))


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, why: str = "") -> None:
    """Queue a trial's run again (same id, parameters and folder); a stopped one fails first."""
    if why:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", why)
        study._storage.set_trial_state_values(trial._trial_id, State.FAIL)
    keep = {k: trial.user_attrs[k] for k in ("run_id", "index", "parameters")}
    study.enqueue_trial(trial.params, keep)


def reap(study: optuna.Study, retry_failed: bool = False) -> None:
    """Queue again the trials of dead workers (and failed ones with ``retry_failed``)."""
    with warnings.catch_warnings(**_QUIET):  # Database servers: dead workers on any host.
        optuna.storages.fail_stale_trials(study)
    for trial in latest(study).values():
        host, _, pid = trial.user_attrs.get("worker", "").partition(":")
        if trial.state == State.RUNNING and host == MACHINE:
            if not runner.process_alive(pid):
                requeue(study, trial, "its worker stopped without a word")
        elif trial.state == State.FAIL and (retry_failed or "failure" not in trial.user_attrs):
            requeue(study, trial)


def claim(study: optuna.Study, sweep: Sweep) -> optuna.Trial | None:
    """A waiting trial made ours atomically; a new sampled one in search mode; else None."""
    for waiting in study.get_trials(deepcopy=False, states=(State.WAITING,)):
        try:  # What Study.ask does to pop its queue, without sampling a new trial.
            if study._storage.set_trial_state_values(waiting._trial_id, State.RUNNING):
                study._storage.set_trial_user_attr(waiting._trial_id, "worker", WORKER)
                return optuna.Trial(study, waiting._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    if not sweep.search or len(latest(study)) >= sweep.n_trials:
        return None
    trial, values = study.ask(), dict(sweep.fixed)
    for name, space in sweep.search.items():
        if isinstance(space, list):
            values[name] = trial.suggest_categorical(name, space)
        else:
            suggest = trial.suggest_int if type(space["low"]) is int else trial.suggest_float
            values[name] = suggest(name, **space)
    attrs = {"run_id": f"trial-{trial.number:03d}", "index": trial.number + 1, "worker": WORKER}
    for key, value in {**attrs, "parameters": values}.items():
        trial.set_user_attr(key, value)
    return trial


def run_trial(study: optuna.Study, trial: optuna.Trial, sweep: Sweep) -> str:
    """One course run for the trial, in its run folder; the study told how it ended."""
    ident, parameters = trial.user_attrs["run_id"], trial.user_attrs["parameters"]
    folder, state = sweep.out / ident, runner.run_state(sweep.out / ident)
    if state in ("failed", "finished", "pruned"):  # A retry: the earlier attempt stays.
        n = len(list(sweep.out.glob(f"{ident}.{state}-*"))) + 1
        folder.rename(folder.with_name(f"{ident}.{state}-{n}"))
    total = sweep.n_trials or len(expand(sweep.grid, sweep.fixed))
    print(f"[{trial.user_attrs['index']}/{total}] {ident}", flush=True)

    def report(event: str, info: dict) -> None:
        runner.print_reporter(event, {**info, "notebook": f"{ident}/{info['notebook']}"})

    def prune(notebook: str) -> str | None:
        value = runs.read_json(folder / runs.METRICS_NAME, {}).get(sweep.rank_by)
        if value is None or not notebook.startswith(str(sweep.prune_after)):
            return None
        trial.report(float(value), step=int(notebook[:2]))
        return "pruned" if trial.should_prune() else None

    try:
        folder.mkdir(parents=True, exist_ok=True)
        where = (folder, sweep.notebooks, sweep.profile, parameters, report, sweep.cell_timeout)
        with heartbeat(trial._trial_id, study._storage):  # As Study.optimize does; databases.
            result = runner.execute_run(*where, prune, resume=state in ("interrupted", "died"))
    except KeyboardInterrupt:
        requeue(study, study._storage.get_trial(trial._trial_id), "stopped by Ctrl-C or SIGTERM")
        raise
    metrics, failure = runs.read_json(folder / runs.METRICS_NAME, {}), result.failure
    resolved = runs.read_json(folder / runs.PARAMETERS_NAME, {}).items()
    trial.set_user_attr("resolved", {name: entry.get("resolved") for name, entry in resolved})
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("wall_s", result.wall_s)
    value = metrics.get(sweep.rank_by)
    if failure or (result.status == "finished" and value is None):
        failure = failure or {"notebook": "-", "cell": None, "ename": "Missing", "evalue": ""}
        error = f"{failure['ename']}: {failure['evalue'] or sweep.rank_by}"
        trial.set_user_attr("failure", f"{failure['notebook']} cell {failure['cell']}: {error}")
        study.tell(trial, state=State.FAIL)
        return "failed"
    pruned = result.status == "pruned"
    study.tell(trial, None if pruned else float(value), State.PRUNED if pruned else None)
    return result.status


def work(sweep: Sweep, retry_failed: bool = False) -> optuna.Study:
    """One worker: claim and run trials until none is left, then write the comparison."""
    study = open_study(sweep)
    reap(study, retry_failed)
    while (trial := claim(study, sweep)) is not None:
        print(f"    {trial.user_attrs['run_id']}: {run_trial(study, trial, sweep)}", flush=True)
        reap(study)
    if not study.get_trials(deepcopy=False, states=(State.RUNNING, State.WAITING)):
        write_report(study, sweep)
    return study


def comparison_table(study: optuna.Study):
    """One row per run id (its newest trial): status, parameters, metrics, failure."""
    import pandas as pd

    trials = latest(study).values()
    rows = [{"status": _STATUS.get(t.state, t.state.name.lower()), **t.user_attrs} for t in trials]
    frame = pd.json_normalize(rows, max_level=2).drop(columns=["index"])
    frame.columns = [re.sub(r"^(parameters|metrics)\.", "", c) for c in frame.columns]
    return frame.set_index("run_id").reset_index()


def write_report(study: optuna.Study, sweep: Sweep) -> dict[str, Path]:
    """``comparison.csv``, ``ranking.md`` (ranked by ``rank_by``) and ``comparison.png``."""
    live = f"Live view: `optuna-dashboard {sweep.storage or sweep.out / 'study.journal'}`."
    axes, lowest = [*sweep.grid, *sweep.search], sweep.rank_order == "min"
    frame, heading = comparison_table(study), f"# Sweep {sweep.name}\n\n{live}"
    return runs.compare(frame, sweep.out, sweep.rank_by, lowest, axes, heading)


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 done, 1 a run failed, 2 refused, 130 stopped (the study keeps all)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grid", nargs="?", help="grid file (YAML)")
    for flag in ("out", "profile", "notebooks", "notebooks-dir", "rank-by", "storage"):
        ap.add_argument(f"--{flag}")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=v1,v2")
    ap.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    for flag in ("retry-failed", "dry-run", "report"):
        ap.add_argument(f"--{flag}", action="store_true")
    args = ap.parse_args(argv)

    def body() -> int:
        options = {k: getattr(args, k) for k in ("notebooks_dir", "rank_by", "storage")}
        sweep = load_sweep(args.grid, args.set, args.out, args.profile, args.notebooks, **options)
        if args.report:
            return print(*write_report(open_study(sweep), sweep).values(), sep="\n") or 0
        validate(sweep)
        plan = [] if sweep.search else expand(sweep.grid, sweep.fixed)
        print(f"Sweep {sweep.name}: {sweep.n_trials or len(plan)} run(s) into {sweep.out}")
        if args.dry_run:
            return print(*(f"  [{c['index']}] {c['run_id']}" for c in plan), sep="\n") or 0
        command = [sys.executable, "-m", "helpers.batch.sweep", *(argv or sys.argv[1:])]
        others = [subprocess.Popen([*command, "--workers", "1"]) for _ in range(args.workers - 1)]
        try:
            study = work(sweep, args.retry_failed)
            if sum(process.wait() == 130 for process in others):
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            for process in others:
                process.terminate()
            raise
        write_report(study, sweep)
        failed = [t for t in latest(study).values() if t.state == State.FAIL]
        print(f"Done: {sweep.out / 'ranking.md'}" + (f"; {len(failed)} failed" if failed else ""))
        return 1 if failed else 0

    return runner.command(body, "finished trials are kept; the same command continues.")


if __name__ == "__main__":
    raise SystemExit(main())

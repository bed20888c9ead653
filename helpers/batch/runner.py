"""Run the course headless: the numbered notebooks, in order, into one run folder.

``make run``, or ``python -m helpers.batch.runner [-p NAME VALUE ...]`` (``--help``)."""

import argparse
import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from helpers import runs
from helpers.batch import preflight
from helpers.config import NOTEBOOKS_DIR, PROJ_ROOT, RUNS_DIR, project_path, resolve_profile

RESUME = "python -m helpers.batch.runner --resume"
_clock = tqdm.format_interval  # 75 s -> "01:15"


def course_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb``, ``01_*.ipynb``...) in order."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(selection: str | Sequence[str] | None, folder=NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``selection`` names (``"00,01,03"``, ``["01", "03_phase1"]``), or all."""
    if not (available := course_notebooks(folder)):
        raise FileNotFoundError(f"No numbered notebooks (00_*.ipynb...) in {folder}.")
    items = selection.split(",") if isinstance(selection, str) else list(selection or [])
    chosen: set[Path] = set()
    for item in filter(None, (str(i).strip().removesuffix(".ipynb") for i in items)):
        matches = [p for p in available if p.stem == item or p.stem.startswith(item + "_")]
        if len(matches) != 1:
            found, names = [", ".join(p.stem for p in ps) or "none" for ps in (matches, available)]
            raise ValueError(f"Notebook {item!r} matches {found} in {folder}; use one of: {names}.")
        chosen.update(matches)
    return [p for p in available if p in chosen] or available


def injectable(value: Any) -> Any:
    """``value`` as papermill can inject it: tuples as lists (papermill would quote them)."""
    return json.loads(json.dumps(value))


def parse_value(text: str) -> Any:
    """A command-line value as Python would read it (numbers, None, tuples), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def new_run_dir(profile: str, run_dir: str | os.PathLike | None = None) -> Path:
    """A fresh run folder; an existing non-empty one is refused, never overwritten."""
    path = project_path(run_dir, RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}")
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(
            f"Run folder {path} already exists and is not empty. Choose another --run-dir "
            "or remove that folder yourself; a run never overwrites an earlier one."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunResult:
    """How one execution of the notebooks ended."""

    run_dir: Path
    status: str  # "finished", "failed", or what ``after_notebook`` returned ("pruned")
    timings_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    failure: dict | None = None  # notebook, cell, ename, evalue (whole), executed (path)


def print_reporter(event: str, info: dict) -> None:
    """The runner's progress lines ("start", "kept", "done", "failed"); errors whole."""
    name, step = info.get("notebook"), f"[{info.get('index')}/{info.get('total')}]"
    line = f"{step} {name} ..." if event == "start" else f"{step} {name}: finished earlier, kept"
    if event == "done":
        line = f"    {name} done in {_clock(info['seconds'])} (elapsed {_clock(info['elapsed_s'])})"
    elif event == "failed":
        line = f"    {name} FAILED in cell {info['cell']}: {info['ename']}:\n"
        line += textwrap.indent(str(info["evalue"]), "      ")
        line += f"\nThe executed notebook with the traceback is {info['executed']}"
    print(line, flush=True)


def _execute(notebook: Path, out: Path, injected: dict, timeout: float | None) -> dict | None:
    """Execute one notebook with papermill in a quiet kernel; the failure as a dict, or None."""
    import papermill

    from helpers.batch.quiet import quiet_kernel_options

    log = out.parent / "kernel.log"
    options = {"cwd": str(notebook.parent), "kernel_name": "python3", "progress_bar": False}
    options.update(quiet_kernel_options(log), execution_timeout=timeout)
    try:
        papermill.execute_notebook(str(notebook), str(out), injected, **options)
        return None
    except papermill.PapermillExecutionError as error:
        if error.ename == "KeyboardInterrupt":
            raise KeyboardInterrupt from error
        cell, ename, evalue = error.exec_count, error.ename, error.evalue
    except Exception as error:  # noqa: BLE001 - a dead kernel, a timeout...
        cell, ename, evalue = None, type(error).__name__, f"{error} (the kernel's output: {log})"
    evalue = re.sub(r"\x1b\[[0-9;]*m", "", str(evalue)).strip()  # IPython's colours out.
    return dict(notebook=notebook.stem, cell=cell, ename=ename, evalue=evalue, executed=str(out))


def _run_one(run_dir: Path, notebook: Path, profile: str, given: dict, timeout):
    """Execute one notebook of the run and note it in the record; (failure or None, seconds)."""
    declared = preflight.declared_parameters(notebook)
    injected = {k: injectable(v) for k, v in given.items() if k in declared}
    injected.update(RUN_DIR=str(run_dir), **({"PROFILE": profile} if "PROFILE" in declared else {}))
    runs.note_notebook(run_dir, notebook.stem, injected=injected, finished_ok=False)
    start = time.perf_counter()
    failure = _execute(notebook, run_dir / notebook.name, injected, timeout)
    seconds = round(time.perf_counter() - start, 2)
    runs.note_notebook(run_dir, notebook.stem, wall_s=seconds, finished_ok=failure is None)
    return failure, seconds


_WATCHER = """import sys, time; from helpers import runs; from helpers.batch import runner
while runs.load_record(sys.argv[1]).get("run", {}).get("status") == "running":
    if not runner.process_alive(sys.argv[2]): runner.run_state(sys.argv[1]); break
    time.sleep(2)
"""


def _start_record(run_dir: Path, notebooks: Sequence[Path], profile: str, given: dict, resume):
    """Mark the run as running in ``run.json``; a watcher marks it "died" if this process dies."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    run = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    if resume:
        run["resumed"] = [*runs.load_record(run_dir).get("run", {}).get("resumed", []), now]
    else:
        folder = str(Path(notebooks[0]).parent) if notebooks else None
        run.update(profile=profile, parameters=given, notebooks_dir=folder, started=now)
        run["notebooks"] = [p.stem for p in notebooks]
    runs.record(run_dir, "run", run)
    command = [sys.executable, "-c", _WATCHER, str(run_dir), str(os.getpid())]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.Popen(command, cwd=PROJ_ROOT, start_new_session=True, **quiet)


def _finish_record(run_dir: Path, result: RunResult) -> None:
    runs.record(run_dir, "run", {"timings_s": result.timings_s, "wall_s": result.wall_s})
    runs.record(run_dir, "environment", runs.environment())
    runs.write_summaries(run_dir)  # Before the status: a "finished" run has all its files.
    final: dict[str, Any] = {"status": result.status, "finished": time.strftime("%FT%T")}
    if f := result.failure:
        error = f"{f['ename']}: {f['evalue']}"
        final.update(failed_notebook=f["notebook"], failed_cell=f["cell"], error=error)
    runs.record(run_dir, "run", final)


def execute_run(
    run_dir: Path,
    notebooks: Sequence[Path],
    profile: str,
    parameters: dict | None = None,
    reporter: Callable[[str, dict], None] | None = print_reporter,
    cell_timeout: float | None = None,
    after_notebook: Callable[[str], str | None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Execute ``notebooks`` in order into ``run_dir``, recorded, until a failure, a status from
    ``after_notebook(stem)`` (pruned) or Ctrl-C; ``resume`` keeps those finished before."""
    run_dir, given, report = Path(run_dir), dict(parameters or {}), reporter or (lambda *a: None)
    _start_record(run_dir, notebooks, profile, given, resume)
    entries = runs.load_record(run_dir).get("notebooks", {}) if resume else {}
    done = [p.stem for p in notebooks if entries.get(p.stem, {}).get("finished_ok")]
    result = RunResult(run_dir, "running", {stem: entries[stem].get("wall_s") for stem in done})
    start, current = time.perf_counter(), None
    try:
        for index, notebook in enumerate(notebooks, 1):
            where = {"index": index, "total": len(notebooks), "notebook": notebook.stem}
            if notebook.stem in done:
                report("kept", where)
                continue
            current = notebook.stem
            report("start", where)
            result.failure, seconds = _run_one(run_dir, notebook, profile, given, cell_timeout)
            result.timings_s[notebook.stem] = seconds
            if result.failure:
                report("failed", result.failure)
                break
            report("done", {**where, "seconds": seconds, "elapsed_s": time.perf_counter() - start})
            if after_notebook and (stop := after_notebook(notebook.stem)):
                result.status = stop
                break
    except KeyboardInterrupt:
        stopped = {"status": "interrupted", "interrupted_in": current}
        runs.record(run_dir, "run", {**stopped, "timings_s": result.timings_s})
        runs.write_summaries(run_dir)
        raise
    result.wall_s = round(time.perf_counter() - start, 2)
    if result.status == "running":
        result.status = "failed" if result.failure else "finished"
    _finish_record(run_dir, result)
    return result


def process_alive(pid: Any, host: str | None = None) -> bool:
    """Whether process ``pid`` still runs (on another ``host``: assumed so)."""
    if host not in (None, socket.gethostname()):
        return True
    try:
        os.kill(int(pid), 0)  # Signal 0 only asks.
    except (TypeError, ValueError, OverflowError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # Another user's process.
    return int(pid) > 0


def run_state(run_dir: Path) -> str:
    """A run folder's state ("missing", "finished", "failed"...; "died" recorded if it vanished)."""
    if not Path(run_dir).is_dir() or not any(Path(run_dir).iterdir()):
        return "missing"
    run = runs.load_record(run_dir).get("run", {})
    status = run.get("status", "unfinished")  # A notebook run by hand records no status.
    if status == "running" and not process_alive(run.get("pid"), run.get("host")):
        why = f"process {run.get('pid')} stopped without a word (killed?); resume with: "
        runs.record(run_dir, "run", {"status": "died", "error": f"{why}{RESUME} {run_dir}"})
        return "died"
    return status


def resume_run(run_dir: str | os.PathLike, reporter=print_reporter) -> RunResult:
    """Continue a run from its first unfinished notebook, with its profile and parameters."""
    folder = project_path(run_dir, RUNS_DIR)
    state, run = run_state(folder), runs.load_record(folder).get("run", {})
    if state == "missing" or not run.get("notebooks"):
        raise FileNotFoundError(f"{folder} holds no run record ({runs.RECORD_NAME}) to resume.")
    if state in ("running", "finished"):
        owner = f" by process {run.get('pid')} on {run.get('host')}" if state == "running" else ""
        raise FileExistsError(f"Run {folder} is {state}{owner}: there is nothing to resume.")
    notebooks = [Path(run["notebooks_dir"]) / f"{stem}.ipynb" for stem in run["notebooks"]]
    if missing := [str(p) for p in notebooks if not p.is_file()]:
        raise FileNotFoundError(f"Cannot resume {folder}: notebooks gone: {', '.join(missing)}")
    print(f"Resuming {folder} ({state}); profile {run['profile']}.", flush=True)
    return execute_run(folder, notebooks, run["profile"], run["parameters"], reporter, resume=True)


def run_course(profile="full", run_dir=None, parameters=None, notebooks=None) -> RunResult:
    """Execute the notebooks in order into a new run folder (PreflightError: nothing ran)."""
    profile, given = resolve_profile(profile), dict(parameters or {})
    chosen, start = list(notebooks or course_notebooks()), time.perf_counter()
    if problems := preflight.check_parameters(given, chosen):
        raise preflight.PreflightError(preflight.bullets(problems))
    existed = run_dir is not None and project_path(run_dir, RUNS_DIR).exists()
    out = new_run_dir(profile, run_dir)
    if problems := preflight.check_data(given, out):
        if not existed:
            out.rmdir()  # Made a moment ago and still empty: a refused run leaves nothing.
        raise preflight.PreflightError(preflight.bullets(problems))
    checked = f"parameters checked in {time.perf_counter() - start:.1f} s"
    print(f"Run folder: {out}\nProfile: {profile}; {len(chosen)} notebooks; {checked}.", flush=True)
    return execute_run(out, chosen, profile, given)


def command(body: Callable[[], int], stopped: str) -> int:
    """A command line's body, SIGTERM as Ctrl-C: 2 refused (no traceback), 130 stopped."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # Raises KeyboardInterrupt.
    try:
        return body()
    except preflight.PreflightError as error:
        print(f"error: nothing ran; the parameters cannot work:\n{error}", file=sys.stderr)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\nInterrupted: {stopped}", file=sys.stderr, flush=True)
        return 130
    return 2


def main(argv: list[str] | None = None) -> int:
    """``make run``: 0 done, 1 a notebook failed, 2 refused, 130 stopped."""
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    add = parser.add_argument
    add("--profile", help="full (the course) or small; default $COURSE_PROFILE, else full")
    add("--run-dir", help="run folder (default runs/<time>-<profile>)")
    add("--resume", metavar="RUN_DIR", help="continue a stopped or failed run")
    add("--notebooks", help="a subset, e.g. 00,01,03 (default: all, in order)")
    add("--notebooks-dir", default=str(NOTEBOOKS_DIR), help="folder of the numbered notebooks")
    add("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}

    def body() -> int:
        if args.resume and (parameters or args.run_dir or args.notebooks):
            raise ValueError("--resume continues a run as it was: give no -p/--notebooks.")
        if args.resume:
            result = resume_run(args.resume)
        else:
            chosen = select_notebooks(args.notebooks, project_path(args.notebooks_dir, PROJ_ROOT))
            result = run_course(args.profile, args.run_dir, parameters, chosen)
        if result.failure:
            print(f"Resume after a fix with: {RESUME} {result.run_dir}")
            return 1
        print(f"Finished in {_clock(result.wall_s)}; notebooks and record in {result.run_dir}")
        return 0

    return command(body, f"run.json records where. Continue with: {RESUME} <run folder>")


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the course headless: the numbered notebooks, in order, into one run folder.

``python -m helpers.runner [--profile full|small] [--run-dir DIR] [--notebooks 00,01,03]
[--notebooks-dir DIR] [-p NAME VALUE ...]`` is what ``make run`` calls. Each notebook is
executed by papermill from its folder, with ``RUN_DIR`` (and ``PROFILE``) injected after
its cell tagged ``parameters``; the executed copies land in the run folder beside the
artefacts, with the run record (``run.json``, ``metrics.json``, ``parameters.json``, see
``helpers.runs``). Parameters are checked against what the notebooks declare before
anything runs. ``helpers.sweep`` runs many such runs, one folder per combination.
"""

from __future__ import annotations

import argparse
import ast
import difflib
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

from helpers.config import NOTEBOOKS_DIR, PROJ_ROOT, RUNS_DIR, project_path, resolve_profile
from helpers.runs import (
    RECORD_NAME,
    environment,
    load_record,
    note_notebook,
    record,
    write_summaries,
)

KERNEL = "python3"
# Parameters the runner sets itself: the run folder always, the profile when declared.
RUNNER_PARAMETERS = ("RUN_DIR", "PROFILE")
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"


def course_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb``, ``01_*.ipynb``...) in order."""
    return sorted(p for p in Path(folder).glob(NOTEBOOK_PATTERN))


def select_notebooks(
    selection: str | Sequence[str] | None, folder: Path = NOTEBOOKS_DIR
) -> list[Path]:
    """The notebooks named by ``selection``, in course order; all of them when it is empty.

    ``selection`` is a comma-separated string or a list of prefixes: ``"00,01,03"``,
    ``["01", "03_phase1"]`` or full file names. Each item must match exactly one notebook.
    """
    available = course_notebooks(folder)
    if not available:
        raise FileNotFoundError(f"No numbered notebooks ({NOTEBOOK_PATTERN}) in {folder}.")
    if selection is None or selection == "" or selection == []:
        return available
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    chosen: set[Path] = set()
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        stem = item[: -len(".ipynb")] if item.endswith(".ipynb") else item
        matches = [p for p in available if p.stem == stem or p.stem.startswith(stem + "_")]
        if len(matches) != 1:
            names = ", ".join(p.stem for p in available)
            found = "none" if not matches else ", ".join(p.stem for p in matches)
            raise ValueError(
                f"Notebook {item!r} matches {found} in {folder}; use a number or name of: {names}."
            )
        chosen.update(matches)
    return [p for p in available if p in chosen]


def notebook_parameters(path: Path) -> dict[str, dict]:
    """Parameters a notebook declares: name -> {default, help, type} (as papermill sees them).

    ``default`` is the source text of the default (``'"auto"'``, ``'1e-3'``, ``'None'``);
    ``type`` is papermill's annotation-based type name (``"None"`` when not annotated).
    """
    import papermill

    return {
        name: {
            "default": info["default"],
            "help": info["help"],
            "type": info.get("inferred_type_name"),
        }
        for name, info in papermill.inspect_notebook(str(path)).items()
    }


@dataclass(frozen=True)
class Declared:
    """One notebook's declaration of a parameter, with its default parsed when possible."""

    name: str
    notebook: str
    default_text: str
    help: str
    type_name: str | None = None
    default: Any = None
    parsed: bool = False

    @property
    def expected(self) -> str:
        """The type a value must have, in words."""
        if self.type_name in _ANNOTATED:
            return self.type_name
        if not self.parsed:
            return "any (default is not a literal)"
        return _type_word(self.default)


_ANNOTATED = {"int", "float", "str", "bool", "list", "tuple", "dict"}


def _type_word(value: Any) -> str:
    if value is None:
        return "any (default None)"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (tuple, list)):
        return "list or tuple"
    return type(value).__name__


def declared_parameters(notebooks: Sequence[Path]) -> dict[str, list[Declared]]:
    """Every parameter the notebooks declare: name -> one declaration per notebook."""
    declared: dict[str, list[Declared]] = {}
    for path in notebooks:
        for name, info in notebook_parameters(path).items():
            text = str(info["default"])
            try:
                default, parsed = ast.literal_eval(text), True
            except (ValueError, SyntaxError):
                default, parsed = None, False
            declared.setdefault(name, []).append(
                Declared(
                    name=name,
                    notebook=Path(path).stem,
                    default_text=text,
                    help=info["help"] or "",
                    type_name=info.get("type"),
                    default=default,
                    parsed=parsed,
                )
            )
    return declared


def _names_literal(help_text: str, word: str) -> bool:
    """Whether a parameter's help names a literal (``None``, ``True``...) as a valid value."""
    return re.search(rf"\b{word}\b", help_text) is not None


def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def _scalar_matches(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of ``default`` (an int passes for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        kinds = {_type_word(d) for d in default}
        # A homogeneous default ((0.7, 0.15, 0.15)) also fixes the type of the elements.
        if default and len(kinds) == 1:
            return all(_scalar_matches(v, default[0]) for v in value)
        return True
    if isinstance(default, dict):
        return isinstance(value, dict)
    return isinstance(value, type(default))


def check_value(value: Any, declared: Declared) -> str | None:
    """Why ``value`` does not suit the declaration, or None when it does.

    The rules: a value has the type of the declared default (int, float, bool, str, list or
    tuple, dict; a float parameter accepts an int, a bool is never taken for a number);
    a list stands for a tuple (YAML has no tuples) and a homogeneous default also types
    the elements. A None default accepts any JSON-like value (None, bool, number, string,
    list, dict), since such parameters mean "decide for me" and are resolved in the
    notebook. None, True and False are also accepted where the parameter's help names
    them (``WEIGHTS``: "... None (random)", ``CLASS_WEIGHTS``: "auto", True or False). A
    default that is not a literal accepts anything.
    """
    if not _json_like(value):
        return (
            f"{declared.name}={value!r} is a {type(value).__name__}, which cannot be injected "
            "into a notebook (use a number, string, bool, None, list or dict; quote dates)"
        )
    if value is None and (declared.default is None or _names_literal(declared.help, "None")):
        return None
    if isinstance(value, bool) and (
        _names_literal(declared.help, "True") or _names_literal(declared.help, "False")
    ):
        return None
    if declared.type_name in _ANNOTATED:
        reference = {
            "int": 0,
            "float": 0.0,
            "str": "",
            "bool": False,
            "list": [],
            "tuple": (),
            "dict": {},
        }[declared.type_name]
    elif not declared.parsed or declared.default is None:
        return None
    else:
        reference = declared.default
    if _scalar_matches(value, reference):
        return None
    return (
        f"{declared.name}={value!r} is a {_type_word(value)}, but {declared.notebook} declares "
        f"{declared.name} = {declared.default_text} (expects {declared.expected})"
    )


def _unknown(name: str, notebooks: Sequence[Path], names: list[str]) -> str:
    """The sentence for a name no chosen notebook declares, with the closest names."""
    where = ", ".join(p.stem for p in notebooks)
    others = [p for p in course_notebooks(Path(notebooks[0]).parent) if p not in notebooks]
    elsewhere = [p.stem for p in others if name in notebook_parameters(p)]
    if elsewhere:
        return (
            f"Parameter {name!r} is declared by {', '.join(elsewhere)}, which this run does "
            f"not execute (it runs {where}); add the notebook or drop the parameter."
        )
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.upper(), names, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return (
        f"Unknown parameter {name!r}: none of {where} declares it.{hint} "
        f"Declared: {', '.join(names)}."
    )


def check_parameters(
    parameters: dict[str, Any],
    notebooks: Sequence[Path],
    declared: dict[str, list[Declared]] | None = None,
) -> list[str]:
    """Every problem with ``parameters`` for these notebooks, as sentences (empty: all good).

    Unknown names come with the closest declared names (or the notebook of the course that
    declares them); ``RUN_DIR`` is refused (the runner sets it) and so is ``PROFILE``
    (choose it with ``--profile``). ``declared`` saves inspecting the notebooks again.
    """
    if not notebooks:
        return ["No notebooks to run."]
    declared = declared if declared is not None else declared_parameters(notebooks)
    names = sorted(n for n in declared if n not in RUNNER_PARAMETERS)
    problems = []
    for name, value in parameters.items():
        if name in RUNNER_PARAMETERS:
            problems.append(
                f"{name} is set by the runner (the run folder, --profile); "
                "do not give it as a parameter"
            )
            continue
        if name not in declared:
            problems.append(_unknown(name, notebooks, names))
            continue
        for decl in declared[name]:
            reason = check_value(value, decl)
            if reason:
                problems.append(reason)
                break
    return problems


class ParameterError(ValueError):
    """Parameters that do not match what the notebooks declare."""


def injectable(value: Any) -> Any:
    """``value`` as papermill can inject it: tuples as lists (papermill would quote them)."""
    if isinstance(value, (tuple, list)):
        return [injectable(v) for v in value]
    if isinstance(value, dict):
        return {k: injectable(v) for k, v in value.items()}
    return value


def new_run_dir(profile: str, run_dir: str | os.PathLike | None = None) -> Path:
    """A fresh run folder; an existing non-empty one is refused, never overwritten."""
    if run_dir:
        path = project_path(run_dir, RUNS_DIR)
    else:
        path = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(
            f"Run folder {path} already exists and is not empty. Choose another --run-dir "
            "or remove that folder yourself; a run never overwrites an earlier one."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_value(text: str):
    """A command-line value as Python would read it (numbers, None, lists), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass
class RunResult:
    """How one execution of the notebooks ended."""

    run_dir: Path
    status: str  # "finished", "failed", or a status returned by ``after_notebook`` ("pruned")
    timings_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    # On failure: notebook, cell (execution count), ename, evalue (whole), executed (its path).
    failure: dict | None = None


class RunFailed(RuntimeError):
    """A notebook of the run raised; ``result.failure`` says where and what."""

    def __init__(self, result: RunResult):
        failure = result.failure or {}
        super().__init__(
            f"{failure.get('notebook')} failed in cell {failure.get('cell')}: "
            f"{failure.get('ename')}: {failure.get('evalue')}"
        )
        self.result = result


# Called with an event ("start", "done", "kept", "failed") and what to say about it.
Reporter = Callable[[str, dict], None]
# Called after each finished notebook with its name; a returned status stops the run.
AfterNotebook = Callable[[str], "str | None"]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def print_reporter(event: str, info: dict) -> None:
    """The runner's progress lines: notebook, elapsed, remaining; errors whole."""
    name = info.get("notebook")
    if event == "start":
        print(f"[{info['index']}/{info['total']}] {name} ...", flush=True)
    elif event == "kept":
        print(f"[{info['index']}/{info['total']}] {name}: finished earlier, kept", flush=True)
    elif event == "done":
        left = info.get("remaining_s")
        eta = f", about {_clock(left)} left" if left else ""
        print(
            f"    {name} done in {_clock(info['seconds'])} "
            f"(elapsed {_clock(info.get('elapsed_s'))}{eta})",
            flush=True,
        )
    elif event == "failed":
        print(f"    {name} FAILED in cell {info['cell']}: {info['ename']}:", flush=True)
        print(textwrap.indent(str(info["evalue"]), "      "), flush=True)
        print(f"The executed notebook with the traceback is {info['executed']}", flush=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(text: Any) -> str:
    """An error message whole, without the terminal colour codes IPython adds."""
    return _ANSI.sub("", str(text)).strip()


def previous_timings(profile: str, notebooks: Sequence[Path]) -> dict[str, float]:
    """Per notebook, the seconds it took in the latest finished run of this profile."""
    latest: tuple[str, dict] = ("", {})
    for path in RUNS_DIR.glob(f"*/{RECORD_NAME}"):
        try:
            run = load_record(path.parent).get("run", {})
        except ValueError:
            continue
        stamp = str(run.get("finished", ""))
        if run.get("status") == "finished" and run.get("profile") == profile and stamp > latest[0]:
            latest = (stamp, run.get("timings_s") or {})
    return {p.stem: latest[1][p.stem] for p in notebooks if p.stem in latest[1]}


def _execute_notebook(notebook: Path, out: Path, injected: dict, timeout: float | None):
    """Execute one notebook with papermill; the failure as a dict, or None."""
    import papermill

    from helpers.quiet import quiet_kernel_options

    try:
        papermill.execute_notebook(
            str(notebook),
            str(out),
            parameters=injected,
            cwd=str(notebook.parent),
            kernel_name=KERNEL,
            progress_bar=False,
            execution_timeout=timeout,
            **quiet_kernel_options(out.parent / "kernel.log"),
        )
    except papermill.PapermillExecutionError as error:
        if error.ename == "KeyboardInterrupt":
            raise KeyboardInterrupt from error
        return {"cell": error.exec_count, "ename": error.ename, "evalue": error_text(error.evalue)}
    except Exception as error:  # noqa: BLE001 - a dead kernel, a timeout...
        where = f"(what the kernel printed is in {out.parent / 'kernel.log'})"
        return {
            "cell": None,
            "ename": type(error).__name__,
            "evalue": f"{error_text(error)} {where}",
        }
    return None


def _run_one(run_dir: Path, notebook: Path, profile: str, given: dict, timeout):
    """Execute one notebook of the run and record it; (failure or None, seconds)."""
    declared = notebook_parameters(notebook)
    injected = {k: injectable(v) for k, v in given.items() if k in declared}
    injected["RUN_DIR"] = str(run_dir)
    if "PROFILE" in declared:
        injected["PROFILE"] = profile
    note_notebook(run_dir, notebook.stem, injected=injected, finished_ok=False)
    t0 = time.perf_counter()
    failure = _execute_notebook(notebook, run_dir / notebook.name, injected, timeout)
    seconds = round(time.perf_counter() - t0, 2)
    note_notebook(run_dir, notebook.stem, wall_s=seconds, finished_ok=failure is None)
    if failure:
        failure = {"notebook": notebook.stem, **failure, "executed": str(run_dir / notebook.name)}
    return failure, seconds


_WATCHER = """
import sys, time
from helpers import runner
while runner.load_record(sys.argv[1]).get("run", {}).get("status") == "running":
    if not runner.process_alive(sys.argv[2]):
        runner.run_state(sys.argv[1])
        break
    time.sleep(2)
"""


def _watch(run_dir: Path) -> None:
    """Start a small process that marks the run "died" in ``run.json`` as soon as this one
    vanishes while the record still says "running" (``kill -9``, out of memory); it ends
    with the run."""
    command = [sys.executable, "-c", _WATCHER, str(run_dir), str(os.getpid())]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.Popen(command, cwd=PROJ_ROOT, start_new_session=True, **quiet)


def _start_record(run_dir: Path, notebooks: Sequence[Path], profile: str, given: dict, resume):
    """Mark the run as running in ``run.json`` (by this process, on this host)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    owner = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    if resume:
        resumed = load_record(run_dir).get("run", {}).get("resumed", [])
        record(run_dir, "run", {**owner, "resumed": [*resumed, now]})
        return
    record(
        run_dir,
        "run",
        {
            "profile": profile,
            "parameters": given,
            "notebooks": [p.stem for p in notebooks],
            "notebooks_dir": str(Path(notebooks[0]).parent) if notebooks else None,
            "started": now,
            **owner,
        },
    )


def _finish_record(run_dir: Path, result: RunResult) -> None:
    record(run_dir, "run", {"timings_s": result.timings_s, "wall_s": result.wall_s})
    record(run_dir, "environment", environment())
    write_summaries(run_dir)
    # The status comes last: a run whose record says "finished" has all its files.
    final: dict[str, Any] = {"status": result.status, "finished": time.strftime("%FT%T")}
    if result.failure:
        final.update(
            failed_notebook=result.failure["notebook"],
            failed_cell=result.failure["cell"],
            error=f"{result.failure['ename']}: {result.failure['evalue']}",
        )
    record(run_dir, "run", final)


def execute_run(
    run_dir: Path,
    notebooks: Sequence[Path],
    profile: str,
    parameters: dict | None = None,
    reporter: Reporter | None = print_reporter,
    cell_timeout: float | None = None,
    after_notebook: AfterNotebook | None = None,
    resume: bool = False,
) -> RunResult:
    """Execute ``notebooks`` in order into the existing folder ``run_dir`` and record it.

    Each notebook gets the parameters it declares among ``parameters``, plus ``RUN_DIR``
    and ``PROFILE``. The first failing notebook ends the run (the later ones need its
    artefacts). With ``resume``, notebooks the record marks finished are kept, not run
    again. ``after_notebook`` may stop the run after a notebook by returning a status
    (a sweep prunes so). Ctrl-C (and SIGTERM under the command line) records the run as
    "interrupted" and is raised again. Parameters are not validated here.
    """
    run_dir, given = Path(run_dir), dict(parameters or {})
    report = reporter or (lambda event, info: None)
    _start_record(run_dir, notebooks, profile, given, resume)
    _watch(run_dir)
    entries = load_record(run_dir).get("notebooks", {})
    done = {k: v.get("wall_s") for k, v in entries.items() if resume and v.get("finished_ok")}
    before = previous_timings(profile, notebooks)
    start, result, current = time.perf_counter(), RunResult(run_dir, "running"), None
    result.timings_s.update({p.stem: done[p.stem] for p in notebooks if p.stem in done})
    try:
        for index, notebook in enumerate(notebooks, 1):
            where = {"index": index, "total": len(notebooks), "notebook": notebook.stem}
            if notebook.stem in done:
                report("kept", where)
                continue
            current = notebook
            report("start", where)
            result.failure, seconds = _run_one(run_dir, notebook, profile, given, cell_timeout)
            result.timings_s[notebook.stem] = seconds
            if result.failure:
                report("failed", result.failure)
                break
            elapsed = round(time.perf_counter() - start, 2)
            left = sum(before.get(p.stem, 0) for p in notebooks[index:]) or None
            report("done", {**where, "seconds": seconds, "elapsed_s": elapsed, "remaining_s": left})
            stop = after_notebook(notebook.stem) if after_notebook else None
            if stop:
                result.status = stop
                break
    except KeyboardInterrupt:
        stopped = {"status": "interrupted", "interrupted_in": current.stem if current else None}
        record(run_dir, "run", {**stopped, "timings_s": result.timings_s})
        write_summaries(run_dir)
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
    if not str(pid).isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(run_dir: Path) -> str:
    """A run folder's state: "missing", "running", "finished", "failed", "interrupted",
    "died" (its process is gone without a word: a kill) or another recorded status.

    A record that still says "running" although its process is gone is rewritten "died".
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "missing"
    run = load_record(run_dir).get("run", {})
    status = run.get("status", "unfinished")  # A notebook run by hand records no status.
    if status == "running" and not process_alive(run.get("pid"), run.get("host")):
        record(
            run_dir,
            "run",
            {
                "status": "died",
                "error": f"process {run.get('pid')} stopped without a word (killed?); "
                f"resume with: python -m helpers.runner --resume {run_dir}",
            },
        )
        return "died"
    return status


def resume_run(run_dir: str | os.PathLike, reporter: Reporter | None = print_reporter):
    """Continue a run from its first unfinished notebook, with its profile and parameters."""
    folder = project_path(run_dir, RUNS_DIR)
    state = run_state(folder)
    run = load_record(folder).get("run", {})
    if state == "missing" or not run.get("notebooks"):
        raise FileNotFoundError(f"{folder} holds no run record ({RECORD_NAME}) to resume.")
    if state in ("running", "finished"):
        owner = f" by process {run.get('pid')} on {run.get('host')}" if state == "running" else ""
        raise FileExistsError(f"Run {folder} is {state}{owner}: there is nothing to resume.")
    notebooks = [Path(run["notebooks_dir"]) / f"{stem}.ipynb" for stem in run["notebooks"]]
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Cannot resume {folder}: notebooks gone: {', '.join(missing)}")
    print(f"Resuming {folder} ({state}); profile {run['profile']}.", flush=True)
    return execute_run(
        folder, notebooks, run["profile"], run.get("parameters"), reporter, resume=True
    )


def check_values(values: dict[str, list], notebooks: Sequence[Path]) -> list[str]:
    """Every problem of these candidate values (name -> values) for these notebooks: names
    and types against the parameters cells, then ranges and choices against the course's
    schema (``helpers.preflight``). Empty: all good. The data: :func:`check_data`."""
    from helpers import preflight

    declared = declared_parameters(notebooks)
    problems: list[str] = []
    for name, candidates in values.items():
        for value in candidates:
            found = check_parameters({name: value}, notebooks, declared)
            found = found or preflight.check({name: value})
            problems += [p for p in found if p not in problems]
    return problems


def check_data(parameter_sets: Sequence[dict], run_dir: Path | None = None) -> list[str]:
    """The data, files and weights each distinct parameter set names (``helpers.preflight``);
    with ``run_dir``, a passing scan is kept there for notebook 01."""
    from helpers import preflight

    keys = ("DATA_DIR", "METADATA_CSV", "WEIGHTS", "BACKBONE")
    problems: list[str] = []
    for named in {json.dumps({k: s[k] for k in keys if k in s}) for s in parameter_sets}:
        found = preflight.check_data(json.loads(named), run_dir)
        problems += [p for p in found if p not in problems]
    return problems


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ParameterError("\n".join("- " + p.replace("\n", "\n  ") for p in problems))


def run_course(
    profile: str | None = "full",
    run_dir: str | None = None,
    parameters: dict | None = None,
    notebooks: list[Path] | None = None,
) -> Path:
    """Execute the course's notebooks in order into a new run folder; return the folder.

    Raises ParameterError before anything runs when a parameter is unknown, mistyped, out
    of range, or the data cannot support training; FileExistsError when the run folder is
    not empty; RunFailed when a notebook fails.
    """
    profile = resolve_profile(profile)
    chosen = list(notebooks or course_notebooks())
    given = dict(parameters or {})
    t0 = time.perf_counter()
    _refuse(check_values({k: [v] for k, v in given.items()}, chosen))
    existed = run_dir is not None and project_path(run_dir, RUNS_DIR).exists()
    out = new_run_dir(profile, run_dir)
    try:
        _refuse(check_data([given], out))
    except ParameterError:
        if not existed:
            out.rmdir()  # Made a moment ago and still empty: a refused run leaves nothing.
        raise
    print(
        f"Run folder: {out}\nProfile: {profile}; {len(chosen)} notebooks; "
        f"parameters checked in {time.perf_counter() - t0:.1f} s.",
        flush=True,
    )
    return _report_end(execute_run(out, chosen, profile, given))


def _report_end(result: RunResult) -> Path:
    if result.failure:
        raise RunFailed(result)
    print(
        f"Finished in {_clock(result.wall_s)}. Executed notebooks, artefacts and the record "
        f"(run.json, metrics.json): {result.run_dir}",
        flush=True,
    )
    return result.run_dir


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (a batch system stopping the job) behave as Ctrl-C: recorded, clean."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    parser.add_argument(
        "--profile", help="full (the course) or small; default $COURSE_PROFILE, else full"
    )
    parser.add_argument("--run-dir", help="run folder (default runs/<time>-<profile>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or failed run")
    parser.add_argument("--notebooks", help="a subset, e.g. 00,01,03 (default: all, in order)")
    parser.add_argument(
        "--notebooks-dir", default=str(NOTEBOOKS_DIR), help="folder of the numbered notebooks"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, e.g. -p EPOCHS 5",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line of ``make run``: 0 done, 1 a notebook failed, 2 refused, 130 stopped."""
    args = _parser().parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    interrupt_on_sigterm()
    try:
        if args.resume:
            if parameters or args.run_dir or args.notebooks:
                raise ValueError("--resume continues a run as it was: give no -p/--notebooks.")
            _report_end(resume_run(args.resume))
            return 0
        folder = project_path(args.notebooks_dir, NOTEBOOKS_DIR)
        chosen = select_notebooks(args.notebooks, folder)
        run_course(args.profile, args.run_dir, parameters, chosen)
    except ParameterError as error:
        print(f"error: nothing ran; the parameters cannot work:\n{error}", file=sys.stderr)
        return 2
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailed as failed:
        print(f"Resume after a fix with: python -m helpers.runner --resume {failed.result.run_dir}")
        return 1
    except KeyboardInterrupt:
        print(
            "\nInterrupted; run.json records where. Continue with: "
            "python -m helpers.runner --resume <run folder>",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

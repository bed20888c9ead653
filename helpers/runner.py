"""Run the course headless: every numbered notebook, in order, into one run folder.

``python -m helpers.runner [--profile full|small] [--run-dir DIR] [-p NAME VALUE ...]``
is what ``make run`` calls. Each notebook is executed by papermill from the
``notebooks/`` folder, with ``RUN_DIR`` (and ``PROFILE``) injected after its cell
tagged ``parameters``; the executed copies land in the run folder beside the artefacts.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from helpers.config import NOTEBOOKS_DIR, RUNS_DIR, project_path, resolve_profile
from helpers.runs import environment, record

KERNEL = "python3"


def course_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb``, ``01_*.ipynb``...) in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(path: Path) -> dict[str, dict]:
    """Parameters a notebook declares: name -> {default, help} (as papermill sees them)."""
    import papermill

    return {
        name: {"default": info["default"], "help": info["help"]}
        for name, info in papermill.inspect_notebook(str(path)).items()
    }


def new_run_dir(profile: str, run_dir: str | None = None) -> Path:
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


def run_course(
    profile: str = "full",
    run_dir: str | None = None,
    parameters: dict | None = None,
    notebooks: list[Path] | None = None,
) -> Path:
    """Execute the course's notebooks in order; return the run folder."""
    import papermill

    profile = resolve_profile(profile)
    out = new_run_dir(profile, run_dir)
    chosen = notebooks or course_notebooks()
    given = dict(parameters or {})
    record(out, "run", {"profile": profile, "parameters": given, "status": "running"})
    print(f"Run folder: {out}\nProfile: {profile}; {len(chosen)} notebooks.", flush=True)
    start = time.perf_counter()
    timings = {}
    for index, notebook in enumerate(chosen, 1):
        declared = notebook_parameters(notebook)
        unknown = set(given) - {name for nb in chosen for name in notebook_parameters(nb)}
        if unknown:
            raise ValueError(
                f"Unknown parameter(s) {sorted(unknown)}: no notebook declares them. "
                f"See `papermill --help-notebook notebooks/{notebook.name}`."
            )
        injected = {k: v for k, v in given.items() if k in declared}
        injected["RUN_DIR"] = str(out)
        if "PROFILE" in declared:
            injected["PROFILE"] = profile
        print(f"[{index}/{len(chosen)}] {notebook.name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(out / notebook.name), parameters=injected,
                cwd=str(notebook.parent), kernel_name=KERNEL, progress_bar=False,
            )
        except papermill.PapermillExecutionError as error:
            timings[notebook.name] = round(time.perf_counter() - t0, 1)
            record(out, "run", {"status": "failed", "failed_notebook": notebook.name,
                                "failed_cell": error.exec_count, "error": error.ename,
                                "timings_s": timings})
            print(f"FAILED in cell {error.exec_count}: {error.ename}: {error.evalue}")
            print(f"The executed notebook with the traceback is {out / notebook.name}")
            raise
        timings[notebook.name] = round(time.perf_counter() - t0, 1)
        print(f"done in {timings[notebook.name]:.0f} s", flush=True)
    total = round(time.perf_counter() - start, 1)
    record(out, "run", {"status": "finished", "timings_s": timings, "wall_s": total})
    record(out, "environment", environment())
    print(f"Finished in {total:.0f} s. Executed notebooks and artefacts: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    parser.add_argument("--profile", default="full", help="full (the course) or small")
    parser.add_argument("--run-dir", help="run folder (default runs/<time>-<profile>)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a notebook parameter, e.g. -p EPOCHS 5")
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        run_course(args.profile, args.run_dir, parameters)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - papermill already printed where it failed.
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

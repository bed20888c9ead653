"""The claims scoreboard: ``claims.csv`` in the run folder, one row (:data:`COLUMNS`) per claim
of the course sheet a notebook measured; a notebook run again replaces its rows."""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import stats

FILE = "claims.csv"
COLUMNS = ["claim", "sheet", "measured", "ci_low", "ci_high", "n", "verdict", "notebook"]
VERDICTS = ("held", "not held", "inconclusive")
#: The columns of :func:`compare`'s dicts a notebook shows, e.g. ``pd.DataFrame(rows)[SHOWN]``.
SHOWN = ["accuracy_a", "accuracy_b", "difference", "95 % interval", "n", "McNemar p", "verdict"]


def record(
    run_dir, notebook, claim, sheet, measured, verdict, ci_low=math.nan, ci_high=math.nan, n=None
) -> pd.DataFrame:
    """Add (or replace) the row of ``claim`` in ``claims.csv``; return the notebook's rows."""
    if not verdict.startswith(VERDICTS):
        raise ValueError(f"verdict {verdict!r} must start with one of {VERDICTS}.")
    row = dict(zip(COLUMNS, [claim, sheet, measured, ci_low, ci_high, n, verdict, notebook]))
    board = scoreboard(run_dir)
    board = pd.concat([board[board["claim"] != claim], pd.DataFrame([row])], ignore_index=True)
    board.to_csv(Path(run_dir) / FILE, index=False)
    return board[board["notebook"] == notebook].reset_index(drop=True)


_record = record  # compare's argument ``record`` hides the function.


def record_rules(run_dir, notebook, checklist: str, items) -> None:
    """Each checked ``(item, passed)`` of a sheet's checklist as a rule on the board."""
    for item, passed in items:
        if passed is not None:
            verdict = "held" if passed else "not held"
            claim = f"{checklist}: {item}"
            record(run_dir, notebook, claim, "checklist rule", float(passed), verdict)


def compare(run_dir, notebook, claim, sheet, correct_a, correct_b, claimed, record=True) -> dict:
    """B minus A on the same images (``correct_*``: True where each model is right) by
    :func:`stats.paired`, judged by :func:`stats.verdict` on the ``claimed`` range of the
    difference and recorded (unless ``record=False``); ``stats.paired``'s dict with ``claim``,
    ``verdict``, ``McNemar p`` and ``95 % interval`` (:data:`SHOWN`: the columns to show)."""
    if record and run_dir is None:
        raise ValueError(f"claim {claim!r}: pass the run folder (run.dir), or record=False.")
    a, b = (np.asarray(c).reshape(-1) for c in (correct_a, correct_b))
    if a.dtype != bool or b.dtype != bool:
        raise ValueError(
            f"claim {claim!r}: correct_a and correct_b must be True/False per image "
            f"(e.g. predicted == labels), got {a.dtype} and {b.dtype}."
        )
    p = stats.paired(a, b)
    said = stats.verdict(p["ci_low"], p["ci_high"], claimed, p["difference"], p["n"], p["scaling"])
    if record:
        args = p["difference"], said, p["ci_low"], p["ci_high"], p["n"]
        _record(run_dir, notebook, claim, sheet, *args)
    out = {"claim": claim, **p, "McNemar p": p["p_value"], "verdict": said}
    return {**out, "95 % interval": f"{p['ci_low']:+.3f} to {p['ci_high']:+.3f}"}


def reset(run_dir: Path, notebook: str) -> None:
    """Forget a notebook's rows (``runs.start`` calls it: a notebook run again starts afresh)."""
    board = scoreboard(run_dir)
    if (board["notebook"] == notebook).any():
        board[board["notebook"] != notebook].to_csv(Path(run_dir) / FILE, index=False)


def scoreboard(run_dir: Path) -> pd.DataFrame:
    """Every claim the run has checked so far, in the order the notebooks recorded them."""
    path = Path(run_dir) / FILE
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)


def summary(board: pd.DataFrame) -> dict:
    """Counts per verdict and the share of conclusive verdicts (held or not held)."""
    kinds = board["verdict"].str.extract(r"^(held|not held|inconclusive)")[0]
    counts = kinds.value_counts().reindex(list(VERDICTS), fill_value=0).to_dict()
    conclusive = counts["held"] + counts["not held"]
    return {**counts, "claims": len(board), "conclusive_share": conclusive / max(len(board), 1)}

"""The claims scoreboard: each claim of the course sheet a run checks, with its evidence.

Every notebook that measures a claim adds one row to ``claims.csv`` in the run folder (the
claim, the sheet's value, the measured value, its 95 % interval, the sample size, the verdict
from :func:`helpers.stats.verdict` and the notebook); notebook 07 shows the whole table.
A notebook run again replaces its rows, so the file always holds one row per claim.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

FILE = "claims.csv"
COLUMNS = ["claim", "sheet", "measured", "ci_low", "ci_high", "n", "verdict", "notebook"]
VERDICTS = ("held", "not held", "inconclusive")


def record(
    run_dir: Path,
    notebook: str,
    claim: str,
    sheet: str,
    measured: float,
    verdict: str,
    ci_low: float = math.nan,
    ci_high: float = math.nan,
    n: int | None = None,
) -> pd.DataFrame:
    """Add (or replace) the row of ``claim`` in ``claims.csv``; return the notebook's rows."""
    if not verdict.startswith(VERDICTS):
        raise ValueError(f"verdict {verdict!r} must start with one of {VERDICTS}.")
    row = dict(
        claim=claim,
        sheet=sheet,
        measured=measured,
        ci_low=ci_low,
        ci_high=ci_high,
        n=n,
        verdict=verdict,
        notebook=notebook,
    )
    board = scoreboard(run_dir)
    board = pd.concat([board[board["claim"] != claim], pd.DataFrame([row])], ignore_index=True)
    board.to_csv(Path(run_dir) / FILE, index=False)
    return board[board["notebook"] == notebook].reset_index(drop=True)


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

"""The exercises' checker: right or wrong with a hint, never the expected value, which is
computed from the run folder's own records (a number within the tolerance, a word as is)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from helpers import balance, runs, verification


def _read(run_dir, name: str, **options):
    """A record of the run folder: JSON as a dict, CSV as a DataFrame."""
    if not (path := Path(run_dir) / name).is_file():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes {name} first.")
    return pd.read_csv(path, **options) if name.endswith(".csv") else json.loads(path.read_text())


def _stop_epoch(val_loss: list, patience: int) -> int:
    """The epoch (from 1) after which EarlyStopping(patience) ends the fit."""
    best = [min(range(e + 1), key=val_loss.__getitem__) for e in range(len(val_loss))]
    late = (e for e, b in enumerate(best) if e - b >= patience)
    return next(late, len(val_loss) - 1) + 1


def _alarm_precision(rates: dict, share: float) -> float:
    caught, false_alarms = share * (1 - rates["apcer_max"]), (1 - share) * rates["bpcer"]
    return caught / (caught + false_alarms)


# fmt: off
EXERCISES = {  # id: (what to answer, tolerance or None for a word, its value from the run, hint)
    "00.1": ("the widened head's trainable parameters (an integer)", 0,
             lambda d: 64 * _read(d, "claims.csv").set_index("claim").loc[
                 "the classifier head is about 1,000 parameters", "measured"] + 65,
             "count each Dense layer's kernel and bias; the frozen backbone adds none"),
    "01.1": ("the new class's weight (a number)", 0.01,
             lambda d: (lambda i: (sum(i["counts"]["train"].values()) + 20)
                        / (20 * len(i["classes"]) + 20))(_read(d, "data.json")),
             "n / (k x count), with the new n, k and count"),
    "02.2": ("how many training images to add in all (an integer)", 0,
             lambda d: sum(max(0, balance.AUGMENTATION_LIMITS[0] - count)
                           for count in _read(d, "data.json")["counts"]["train"].values()),
             "augmentation_need looks at the smallest class: raise every class below the line"),
    "03.1": ("the highest TARGET_ACCURACY deciding 'export' (a number)", 0.005,
             lambda d: _read(d, "phase1_metrics.json")["ci_low"],
             "the whole 95 % interval must lie above the target"),
    "03.2": ("the epoch after which PATIENCE = 1 stops (an integer)", 0,
             lambda d: _stop_epoch(_read(d, "phase1_history.json")["val_loss"], 1),
             "the first val_loss that is not below the best so far"),
    "04.2": ("the final model, phase 1 winning ties ('phase1' or 'phase2')", None,
             lambda d: "phase2" if _read(d, "phase2_metrics.json")["accuracy"]
             > _read(d, "phase1_metrics.json")["accuracy"] else "phase1",
             "change >= to > and compare the two validation accuracies"),
    "05.2": ("how many classes[0] images calibration_ds(40) draws (an integer)", 0,
             lambda d: (lambda c: round(min(1, 40 / sum(c)) * c[0]))(
                 list(_read(d, "data.json")["counts"]["train"].values())),
             "each class keeps its share of the training split (pandas rounds)"),
    "06.1": ("the file recommended at INT8_MAX_DELTA = 0.1 ('int8', 'float16', ...)", None,
             lambda d: verification.acceptance(_read(d, "comparison.csv", index_col=0),
                                               int8_max_delta=0.1).attrs["recommendation"],
             "the float32 vs INT8 row against the new limit"),
    "07.2": ("the precision of an attack alarm at 1 % attacks (0-1)", 0.01,
             lambda d: _alarm_precision(_read(d, "antispoofing.json")["models"]["keras"], 0.01),
             "share x (1 - worst APCER) against (1 - share) x BPCER"),
    "07.3": ("the Keras BPCER on the test split at threshold 0.5 (0-1)", 0.001,
             lambda d: (_read(d, "test_predictions.csv").query("label == 'real'")["score_keras"]
                        < 0.5).mean(),
             "the share of bona fide test images scored below 0.5"),
}
# fmt: on


def check(exercise: str, answer=None, run_dir=None) -> bool | None:
    """Print whether ``answer`` is right on the run in ``run_dir`` (None: the default folder)
    and return it; with ``answer=None``, print what to answer and a hint."""
    if exercise not in EXERCISES:
        raise ValueError(f"Unknown exercise {exercise!r}; checked exercises: {list(EXERCISES)}.")
    what, tolerance, expected, hint = EXERCISES[exercise]
    if answer is None:
        print(f"Exercise {exercise}: set answer= to {what} and run the cell again. Hint: {hint}.")
        return None
    truth = expected(runs.resolve_run_dir(run_dir, create=False))
    if tolerance is None:
        right = str(answer).lower().replace(" ", "") == str(truth).lower()
    elif isinstance(answer, int | float) and not isinstance(answer, bool):
        right = bool(abs(float(answer) - float(truth)) <= tolerance)
    else:
        raise ValueError(f"Exercise {exercise} expects {what}; got {answer!r}.")
    within = f" (tolerance {tolerance:g})" if tolerance else ""
    said = f"right{within}." if right else f"not yet. Hint: {hint}."
    print(f"Exercise {exercise}: {said}")
    return right

"""Presentation attack detection (anti-spoofing) evaluation in the style of ISO/IEC 30107-3.

Score convention, the same in every function of this module:

- A **score** is the model's belief that the presentation is **bona fide** (a live,
  genuine capture): higher means "more bona fide". :func:`bona_fide_scores` turns the
  classifier's output into this score. The course's binary classifier has one sigmoid
  unit giving P(second class in alphabetical order); with the classes ``fake`` and
  ``real`` that is P(real), which is already the bona fide score.
- ``attack`` is a boolean array: True for an attack presentation, False for bona fide.
- A presentation is **accepted as bona fide when score >= threshold**. A score exactly
  equal to the threshold is accepted. Everything else is classified as an attack.

Metrics (ISO/IEC 30107-3 vocabulary):

- APCER (attack presentation classification error rate), per attack type (PAI species):
  the share of attack presentations of that type accepted as bona fide. ISO reports each
  type and the worst one (:data:`APCER_MAX`), not an average over types.
- BPCER (bona fide presentation classification error rate): the share of bona fide
  presentations rejected as attacks.
- ACER = (APCER_max + BPCER) / 2, a legacy average still common in papers and
  competitions; ISO/IEC 30107-3:2023 deprecates it because an average hides which error
  dominates and the two errors have very different costs. Report APCER and BPCER.
- EER: the error rate where APCER and BPCER are equal; BPCER@APCER=x: the lowest BPCER
  reachable while APCER <= x. Both summarise the whole score curve of the data they are
  computed on; they are not operating points chosen beforehand.

Every rate comes with its sample size, its error count and a 95 % Clopper-Pearson
interval (:func:`rate_with_ci`); with no samples a rate is NaN with a note, never 0.
The threshold is chosen on the validation split (:func:`choose_threshold`) and then
applied unchanged to the test split and to every exported model variant.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from helpers.runs import read_json, write_json

BONA_FIDE = "real"
BONA_FIDE_NAME = "bona fide"
ATTACK_NAME = "attack"
APCER_MAX = "max"
DEFAULT_TARGETS = (0.10, 0.05, 0.01)
THRESHOLD_FILE = "threshold.json"
CONFIDENCE = 0.95
# Splits a threshold may be fitted on; the test split never is.
_FIT_SPLITS = {"val": "val", "validation": "val", "train": "train"}


# ---------------------------------------------------------------------------------------
# Scores and labels
# ---------------------------------------------------------------------------------------


def bona_fide_scores(
    probabilities: Any, classes: Sequence[str], bona_fide: str = BONA_FIDE
) -> np.ndarray:
    """The score that each presentation is bona fide, in [0, 1], shape (N,).

    Args:
        probabilities: the model's output: (N,) or (N, 1) for a binary sigmoid model
            (P(classes[1])), or (N, K) for a softmax model (one column per class).
        classes: class names in label order (sorted folder names, as in the manifest).
        bona_fide: the name of the bona fide class.

    Returns:
        For a sigmoid model ``p`` when ``classes[1] == bona_fide``, else ``1 - p``; for a
        softmax model the bona fide column.
    """
    classes = list(classes)
    if bona_fide not in classes:
        raise ValueError(
            f"bona_fide={bona_fide!r} is not one of classes={classes}; pass the name of the "
            "genuine class (for the demo data: 'real')."
        )
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim == 1:
        if len(classes) != 2:
            raise ValueError(
                f"probabilities have one value per image, which is a binary sigmoid output, "
                f"but classes has {len(classes)} names: {classes}."
            )
        scores = p if classes[1] == bona_fide else 1.0 - p
    elif p.ndim == 2:
        if p.shape[1] != len(classes):
            raise ValueError(
                f"probabilities have {p.shape[1]} columns but classes has {len(classes)} "
                f"names ({classes}); they must match one to one."
            )
        scores = p[:, classes.index(bona_fide)]
    else:
        raise ValueError(f"probabilities must be (N,), (N, 1) or (N, K); got shape {p.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("probabilities contain NaN or infinite values.")
    if scores.size and (scores.min() < -1e-6 or scores.max() > 1 + 1e-6):
        raise ValueError(
            f"probabilities range over [{scores.min():.3g}, {scores.max():.3g}], outside "
            "[0, 1]: these look like logits; apply the sigmoid (or softmax) first."
        )
    return np.clip(scores, 0.0, 1.0)


def is_attack(labels: Any, classes: Sequence[str], bona_fide: str = BONA_FIDE) -> np.ndarray:
    """True for attack presentations, False for bona fide ones, shape (N,).

    ``labels`` may be class names, integer indices, binary labels of shape (N, 1) (as
    ``make_dataset(label_mode="binary")`` yields) or one-hot rows.
    """
    classes = list(classes)
    if bona_fide not in classes:
        raise ValueError(f"bona_fide={bona_fide!r} is not one of classes={classes}.")
    values = np.asarray(labels)
    if values.dtype.kind in "USO":
        names = values.reshape(-1).astype(str)
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not in classes={classes}.")
        return names != bona_fide
    if values.ndim == 2 and values.shape[1] > 1:
        if values.shape[1] != len(classes):
            raise ValueError(
                f"one-hot labels have {values.shape[1]} columns but classes has "
                f"{len(classes)} names."
            )
        index = values.argmax(axis=1)
    else:
        index = np.rint(values.reshape(-1).astype(float)).astype(int)
    if index.size and (index.min() < 0 or index.max() >= len(classes)):
        raise ValueError(f"labels outside 0..{len(classes) - 1}: are classes {classes} complete?")
    return index != classes.index(bona_fide)


def _scores(scores: Any, name: str = "scores") -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contain NaN or infinite values.")
    return values


def _attack(attack: Any, n: int) -> np.ndarray:
    values = np.asarray(attack)
    if values.dtype.kind in "USO":
        raise ValueError(
            "attack must be booleans (True = attack presentation); convert class names "
            "with is_attack(labels, classes)."
        )
    values = values.reshape(-1)
    if values.dtype != bool:
        if not np.isin(values, (0, 1)).all():
            raise ValueError("attack must contain only True/False (or 1/0).")
        values = values.astype(bool)
    if len(values) != n:
        raise ValueError(f"attack has {len(values)} entries but scores has {n}.")
    return values


def _threshold_value(threshold: float | Mapping) -> float:
    if isinstance(threshold, Mapping):
        if "threshold" not in threshold:
            raise ValueError("threshold info has no 'threshold' key; use choose_threshold().")
        threshold = threshold["threshold"]
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"threshold={value} must be a finite number.")
    return value


# ---------------------------------------------------------------------------------------
# Rates with uncertainty
# ---------------------------------------------------------------------------------------


def rate_with_ci(errors: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """An error rate with its sample size and an exact (Clopper-Pearson) interval.

    Args:
        errors: number of errors.
        n: number of presentations the rate is measured on.
        confidence: two-sided confidence level of the interval.

    Returns:
        ``{"rate", "errors", "n", "ci_low", "ci_high", "confidence", "rule_of_three",
        "note"}``. ``rule_of_three`` is 3/N when there are no errors (an approximate
        one-sided 95 % upper bound), else NaN. With ``n == 0`` every figure is NaN and
        ``note`` says why.
    """
    errors, n = int(errors), int(n)
    if n < 0 or errors < 0 or errors > n:
        raise ValueError(f"errors={errors}, n={n}: need 0 <= errors <= n.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1).")
    nan = float("nan")
    if n == 0:
        return {
            "rate": nan,
            "errors": 0,
            "n": 0,
            "ci_low": nan,
            "ci_high": nan,
            "confidence": confidence,
            "rule_of_three": nan,
            "note": "no samples: the rate is undefined (NaN), not 0",
        }
    alpha = 1 - confidence
    # The Clopper-Pearson bounds are quantiles of beta distributions; the lower bound is
    # 0 with no errors and the upper bound 1 when every presentation is an error.
    low = 0.0 if errors == 0 else float(stats.beta.ppf(alpha / 2, errors, n - errors + 1))
    high = 1.0 if errors == n else float(stats.beta.ppf(1 - alpha / 2, errors + 1, n - errors))
    note = ""
    rule = nan
    if errors == 0:
        rule = 3.0 / n
        note = (
            f"0 errors in {n} does not mean 0 %: the rate may still be up to about "
            f"{rule:.1%} (rule of three, 3/N) or {high:.1%} (Clopper-Pearson upper bound)"
        )
    return {
        "rate": errors / n,
        "errors": errors,
        "n": n,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "rule_of_three": rule,
        "note": note,
    }


def format_rate(rate: Mapping) -> str:
    """One readable cell: ``"20.0 % (2/10, 95 % CI 2.5-55.6 %)"``, or ``"n/a (why)"``."""
    if rate["n"] == 0 or not math.isfinite(rate["rate"]):
        return f"n/a ({rate.get('note') or 'no samples'})"
    level = round(100 * rate.get("confidence", CONFIDENCE))
    return (
        f"{100 * rate['rate']:.1f} % ({rate['errors']}/{rate['n']}, {level} % CI "
        f"{100 * rate['ci_low']:.1f}-{100 * rate['ci_high']:.1f} %)"
    )


def apcer_bpcer(
    scores: Any, attack: Any, threshold: float | Mapping
) -> tuple[dict[str, Any], dict[str, Any]]:
    """APCER (all attacks as one type) and BPCER at ``threshold``, each with its CI."""
    s = _scores(scores)
    a = _attack(attack, len(s))
    t = _threshold_value(threshold)
    accepted = s >= t
    return (
        rate_with_ci(int((accepted & a).sum()), int(a.sum())),
        rate_with_ci(int((~accepted & ~a).sum()), int((~a).sum())),
    )


# ---------------------------------------------------------------------------------------
# Curves, EER and BPCER at a fixed APCER
# ---------------------------------------------------------------------------------------


def error_curves(scores: Any, attack: Any) -> pd.DataFrame:
    """APCER and BPCER at every distinct threshold (accept when score >= threshold).

    Returns:
        Columns ``threshold`` (every distinct score, then one just above the highest, where
        everything is rejected), ``apcer`` (non-increasing) and ``bpcer`` (non-decreasing).
    """
    s = _scores(scores)
    a = _attack(attack, len(s))
    if a.all() or not a.any():
        raise ValueError(
            f"error curves need both attack ({int(a.sum())}) and bona fide "
            f"({int((~a).sum())}) presentations."
        )
    attacks, bona = np.sort(s[a]), np.sort(s[~a])
    thresholds = np.unique(s)
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    # searchsorted(side="left") counts the scores strictly below each threshold.
    apcer = 1.0 - np.searchsorted(attacks, thresholds, side="left") / len(attacks)
    bpcer = np.searchsorted(bona, thresholds, side="left") / len(bona)
    return pd.DataFrame({"threshold": thresholds, "apcer": apcer, "bpcer": bpcer})


def eer(scores: Any, attack: Any) -> tuple[float, float]:
    """Equal error rate and its threshold: where the APCER and BPCER curves cross.

    The two step curves are joined linearly between consecutive distinct scores and the
    crossing is interpolated, so the threshold may fall between two scores; where the
    curves meet exactly at a score, that score is the threshold. NaN (with a warning)
    when there are no attacks or no bona fide presentations.

    Returns:
        ``(eer, threshold)``.
    """
    s = _scores(scores)
    a = _attack(attack, len(s))
    if a.all() or not a.any():
        warnings.warn(
            f"EER is undefined (NaN): it needs attacks ({int(a.sum())}) and bona fide "
            f"presentations ({int((~a).sum())}).",
            UserWarning,
            stacklevel=2,
        )
        return float("nan"), float("nan")
    curves = error_curves(s, a)
    t, ap, bp = (curves[c].to_numpy() for c in ("threshold", "apcer", "bpcer"))
    diff = ap - bp
    # diff starts at 1 (everything accepted) and ends at -1 (everything rejected).
    j = int(np.argmax(diff <= 0))
    if diff[j] == 0 or j == 0:
        return float(ap[j]), float(t[j])
    f = diff[j - 1] / (diff[j - 1] - diff[j])
    rate = ap[j - 1] + f * (ap[j] - ap[j - 1])
    return float(rate), float(t[j - 1] + f * (t[j] - t[j - 1]))


def min_attacks_for(target: float) -> int:
    """The fewest attacks for which one error is still within ``target`` (ceil(1/target))."""
    return math.ceil(1.0 / target - 1e-9)


def bpcer_at_apcer(scores: Any, attack: Any, target: float) -> dict[str, Any]:
    """The lowest BPCER reachable with APCER <= ``target``, and its threshold.

    The threshold is the lowest score at which APCER <= target (accept when score >= it);
    it is fitted on these very scores, so on the test split this is a property of the
    curve, not a deployable operating point.

    Returns:
        ``{"target", "bpcer" (rate dict), "apcer" (rate dict at that threshold),
        "threshold", "n_attack", "n_bona_fide", "note"}``. NaN with a note when there are
        fewer than ceil(1/target) attacks: one error is then already above the target, so
        "APCER <= target" only means "no error at all" and the figure is not resolved.
    """
    if not 0 < target < 1:
        raise ValueError(f"target={target} must be an APCER in (0, 1), e.g. 0.05 for 5 %.")
    s = _scores(scores)
    a = _attack(attack, len(s))
    n_attack, n_bona = int(a.sum()), int((~a).sum())
    out: dict[str, Any] = {
        "target": float(target),
        "bpcer": rate_with_ci(0, 0),
        "apcer": rate_with_ci(0, 0),
        "threshold": float("nan"),
        "n_attack": n_attack,
        "n_bona_fide": n_bona,
        "note": "",
    }
    needed = min_attacks_for(target)
    if n_attack < needed:
        out["note"] = (
            f"BPCER@APCER={target:.0%} not resolved: needs ≥ {needed} attacks (one error in "
            f"N is 1/N), here {n_attack}"
        )
        out["bpcer"]["note"] = f"not resolved: needs ≥ {needed} attacks, here {n_attack}"
        return out
    if n_bona == 0:
        out["note"] = "no bona fide presentations: BPCER is undefined"
        return out
    curves = error_curves(s, a)
    index = int(np.argmax(curves["apcer"].to_numpy() <= target))
    threshold = float(curves["threshold"].iloc[index])
    apcer, bpcer = apcer_bpcer(s, a, threshold)
    out.update({"bpcer": bpcer, "apcer": apcer, "threshold": threshold})
    if n_attack < 3 * needed:
        out["note"] = (
            f"only {n_attack} attacks: an APCER of {target:.0%} is barely resolved; about "
            f"{3 * needed} error-free attacks are needed to show APCER ≤ {target:.0%} with "
            "95 % confidence (rule of three)"
        )
    return out


# ---------------------------------------------------------------------------------------
# Choosing, saving and loading the threshold
# ---------------------------------------------------------------------------------------


def choose_threshold(
    val_scores: Any,
    val_attack: Any,
    method: str = "eer",
    target_apcer: float = 0.05,
    split_name: str = "val",
    splits: Any = None,
) -> dict[str, Any]:
    """Fit the decision threshold on the validation split.

    Args:
        val_scores: bona fide scores of the validation presentations.
        val_attack: True for attacks.
        method: ``"eer"`` (where APCER = BPCER on validation) or ``"apcer"`` (the lowest
            threshold with validation APCER <= ``target_apcer``, i.e. the security target).
        target_apcer: the APCER target of ``method="apcer"``.
        split_name: the split the scores come from; ``"test"`` is refused.
        splits: optionally the per-row split names (e.g. the manifest's ``split`` column);
            any ``"test"`` row is refused.

    Returns:
        ``{"threshold", "method", "fitted_on", "target_apcer", "val_apcer", "val_bpcer",
        "n_attack", "n_bona_fide", "rule", "created"}``; save it with :func:`save_threshold`.

    Raises:
        ValueError: the data are (or contain) the test split, the method is unknown, or
            there are too few attacks for ``target_apcer``.
    """
    name = str(split_name).strip().lower()
    marked_test = splits is not None and bool(
        np.isin(np.asarray(splits).astype(str).reshape(-1), ["test"]).any()
    )
    if name == "test" or marked_test:
        raise ValueError(
            "the threshold is never fitted on the test split: fit it on the validation "
            "split and apply it unchanged to the test split, which is read once at the end."
        )
    if name not in _FIT_SPLITS:
        raise ValueError(f"split_name={split_name!r}: pass 'val' (validation scores).")
    if _FIT_SPLITS[name] == "train":
        warnings.warn(
            "Fitting the threshold on training scores: the model has seen these images, so "
            "their scores are overconfident and the threshold will be off. Use 'val'.",
            UserWarning,
            stacklevel=2,
        )
    s = _scores(val_scores, "val_scores")
    a = _attack(val_attack, len(s))
    if a.all() or not a.any():
        raise ValueError(
            f"choose_threshold needs attacks ({int(a.sum())}) and bona fide presentations "
            f"({int((~a).sum())}) in the validation split."
        )
    if method == "eer":
        _, threshold = eer(s, a)
        rule = "APCER = BPCER on the validation split (EER)"
    elif method == "apcer":
        found = bpcer_at_apcer(s, a, target_apcer)
        if not math.isfinite(found["threshold"]):
            raise ValueError(
                f"method='apcer' with target_apcer={target_apcer}: {found['note']}. Use "
                "method='eer', a larger target, or more validation attacks."
            )
        threshold = found["threshold"]
        rule = f"lowest threshold with validation APCER ≤ {target_apcer:.0%}"
    else:
        raise ValueError(f"method={method!r}: choose 'eer' or 'apcer'.")
    apcer, bpcer = apcer_bpcer(s, a, threshold)
    return {
        "threshold": float(threshold),
        "method": method,
        "fitted_on": _FIT_SPLITS[name],
        "target_apcer": float(target_apcer) if method == "apcer" else None,
        "val_apcer": apcer["rate"],
        "val_bpcer": bpcer["rate"],
        "n_attack": int(a.sum()),
        "n_bona_fide": int((~a).sum()),
        "rule": f"accept as bona fide when score ≥ {threshold:.6g} ({rule})",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save_threshold(run_dir: str | Path, info: Mapping) -> Path:
    """Write the threshold info to ``run_dir/threshold.json``; only a validation fit."""
    if "threshold" not in info:
        raise ValueError("info has no 'threshold': pass what choose_threshold() returned.")
    _threshold_value(info)
    if info.get("fitted_on") == "test":
        raise ValueError("the threshold is never fitted on the test split; refit it on 'val'.")
    return write_json(Path(run_dir) / THRESHOLD_FILE, dict(info))


def load_threshold(run_dir: str | Path) -> dict[str, Any]:
    """The threshold info saved by :func:`save_threshold`."""
    path = Path(run_dir) / THRESHOLD_FILE
    info = read_json(path, default=None)
    if info is None:
        raise FileNotFoundError(
            f"{path} does not exist: choose the threshold on the validation split with "
            "choose_threshold() and save it with save_threshold(run_dir, info) first."
        )
    return info


# ---------------------------------------------------------------------------------------
# Evaluation at a threshold
# ---------------------------------------------------------------------------------------


def _attack_types(attack_types: Any, attack: np.ndarray) -> np.ndarray:
    if attack_types is None:
        return np.where(attack, ATTACK_NAME, "none")
    values = np.asarray(attack_types).reshape(-1).astype(str)
    if len(values) != len(attack):
        raise ValueError(f"attack_types has {len(values)} entries but scores has {len(attack)}.")
    return values


def evaluate_pad(
    scores: Any,
    attack: Any,
    attack_types: Any,
    threshold: float | Mapping,
    *,
    types: Sequence[str] | None = None,
    targets: Sequence[float] = DEFAULT_TARGETS,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Every ISO/IEC 30107-3 style figure at one threshold.

    Args:
        scores: bona fide scores (see :func:`bona_fide_scores`).
        attack: True for attacks.
        attack_types: the attack type (PAI species) per presentation, e.g. the metadata's
            ``attack_type`` (values of bona fide rows are ignored); None: one type "attack".
        threshold: the validation-chosen threshold, or the dict of :func:`choose_threshold`.
        types: the attack types to report; a type listed here with no presentation gets
            APCER NaN with a note. Default: the types present.
        targets: the APCER targets of BPCER@APCER.
        confidence: level of the Clopper-Pearson intervals.

    Returns:
        ``{"threshold", "fitted_on", "n", "n_bona_fide", "n_attack", "apcer" ({type: rate}),
        "apcer_max" (rate with "type"), "bpcer", "acer", "eer", "eer_threshold", "auc",
        "bpcer_at_apcer" ({target: dict}), "confusion", "confusion_by_type", "rates"
        (one row per rate), "notes"}``. A rate dict is :func:`rate_with_ci`'s.
    """
    s = _scores(scores)
    a = _attack(attack, len(s))
    t = _threshold_value(threshold)
    kinds = _attack_types(attack_types, a)
    fitted_on = threshold.get("fitted_on") if isinstance(threshold, Mapping) else None
    accepted = s >= t
    notes: list[str] = []
    if fitted_on == "test":
        raise ValueError("the threshold is never fitted on the test split; refit it on 'val'.")

    present = list(dict.fromkeys(kinds[a]))
    wanted = list(types) if types is not None else present
    extra = [k for k in present if k not in wanted]
    if extra:
        raise ValueError(f"attack types {extra} occur in the data but are not in types={wanted}.")
    apcer: dict[str, dict] = {}
    for kind in wanted:
        rows = a & (kinds == kind)
        apcer[kind] = rate_with_ci(int((accepted & rows).sum()), int(rows.sum()), confidence)
        if apcer[kind]["n"] == 0:
            notes.append(f"APCER {kind}: no {kind} attacks in these data, APCER is NaN")
    measured = {k: r for k, r in apcer.items() if r["n"] > 0}
    if measured:
        worst = max(measured, key=lambda k: (measured[k]["rate"], measured[k]["n"]))
        apcer_max = {**measured[worst], "type": worst}
    else:
        apcer_max = {**rate_with_ci(0, 0, confidence), "type": None}
        notes.append("APCER max: no attack presentations, APCER is NaN")
    bpcer = rate_with_ci(int((~accepted & ~a).sum()), int((~a).sum()), confidence)
    if bpcer["n"] == 0:
        notes.append("BPCER: no bona fide presentations, BPCER is NaN")
    acer = (apcer_max["rate"] + bpcer["rate"]) / 2

    both = bool(a.any() and (~a).any())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eer_value, eer_threshold = eer(s, a)
    auc = float("nan")
    if both:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(~a, s))
    else:
        notes.append("EER and AUC need both attacks and bona fide presentations: NaN")
    at_apcer = {float(x): bpcer_at_apcer(s, a, x) for x in targets}
    for found in at_apcer.values():
        if found["note"]:
            notes.append(found["note"])

    confusion = pd.DataFrame(
        [
            [int((accepted & ~a).sum()), int((~accepted & ~a).sum())],
            [int((accepted & a).sum()), int((~accepted & a).sum())],
        ],
        index=pd.Index([BONA_FIDE_NAME, ATTACK_NAME], name="presentation"),
        columns=pd.Index([BONA_FIDE_NAME, ATTACK_NAME], name="decision"),
    )
    by_type = [[int((accepted & ~a).sum()), int((~accepted & ~a).sum())]]
    for kind in wanted:
        rows = a & (kinds == kind)
        by_type.append([int((accepted & rows).sum()), int((~accepted & rows).sum())])
    confusion_by_type = pd.DataFrame(
        by_type,
        index=pd.Index(
            [BONA_FIDE_NAME] + [f"{ATTACK_NAME}: {k}" for k in wanted], name="presentation"
        ),
        columns=pd.Index([BONA_FIDE_NAME, ATTACK_NAME], name="decision"),
    )

    rows = [(f"APCER {k}", r) for k, r in apcer.items()]
    rows.append((f"APCER max ({apcer_max['type']})", apcer_max))
    rows.append(("BPCER", bpcer))
    rows += [(f"BPCER@APCER={x:.0%}", d["bpcer"]) for x, d in at_apcer.items()]
    rates = pd.DataFrame(
        [
            {
                "metric": name,
                **{k: r[k] for k in ("rate", "errors", "n", "ci_low", "ci_high")},
                "rule_of_three": r["rule_of_three"],
                "note": r["note"],
            }
            for name, r in rows
        ]
    ).set_index("metric")
    return {
        "threshold": t,
        "fitted_on": fitted_on,
        "n": int(len(s)),
        "n_bona_fide": int((~a).sum()),
        "n_attack": int(a.sum()),
        "apcer": apcer,
        "apcer_max": apcer_max,
        "bpcer": bpcer,
        "acer": float(acer),
        "eer": eer_value,
        "eer_threshold": eer_threshold,
        "auc": auc,
        "bpcer_at_apcer": at_apcer,
        "confusion": confusion,
        "confusion_by_type": confusion_by_type,
        "rates": rates,
        "notes": notes,
    }


def pad_table(results: Mapping[str, Mapping], style: str = "numeric") -> pd.DataFrame:
    """One row per model of :func:`evaluate_pad` results, for a side-by-side comparison.

    Args:
        results: ``{model name: evaluate_pad(...)}``, e.g. Keras and each LiteRT variant,
            all evaluated at the same validation-chosen threshold (a warning otherwise).
        style: ``"numeric"`` (rates as fractions) or ``"text"`` (each rate as
            "20.0 % (2/10, 95 % CI 2.5-55.6 %)").
    """
    if not results:
        raise ValueError("results is empty: give {model name: evaluate_pad(...)}.")
    if style not in ("numeric", "text"):
        raise ValueError(f"style={style!r}: choose 'numeric' or 'text'.")
    thresholds = {float(r["threshold"]) for r in results.values()}
    if len(thresholds) > 1:
        warnings.warn(
            f"The models are evaluated at different thresholds {sorted(thresholds)}: compare "
            "them at the same validation-chosen threshold.",
            UserWarning,
            stacklevel=2,
        )

    def cell(rate: Mapping) -> Any:
        return format_rate(rate) if style == "text" else rate["rate"]

    rows = []
    for name, r in results.items():
        row: dict[str, Any] = {
            "model": name,
            "threshold": r["threshold"],
            "N bona fide": r["n_bona_fide"],
            "N attack": r["n_attack"],
        }
        for kind, rate in r["apcer"].items():
            row[f"APCER {kind}"] = cell(rate)
        row["APCER max"] = cell(r["apcer_max"])
        row["APCER max type"] = r["apcer_max"]["type"]
        row["BPCER"] = cell(r["bpcer"])
        row["ACER (legacy)"] = r["acer"]
        row["EER"] = r["eer"]
        row["AUC"] = r["auc"]
        for target, found in r["bpcer_at_apcer"].items():
            row[f"BPCER@APCER={target:.0%}"] = cell(found["bpcer"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def rates_long(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """The ``rates`` tables of several :func:`evaluate_pad` results, with a ``model`` column."""
    frames = [r["rates"].reset_index().assign(model=name) for name, r in results.items()]
    if not frames:
        raise ValueError("results is empty: give {model name: evaluate_pad(...)}.")
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------
# Production ratio
# ---------------------------------------------------------------------------------------


def _rate_value(value: float | Mapping, name: str) -> float:
    rate = float(value["rate"]) if isinstance(value, Mapping) else float(value)
    if not 0 <= rate <= 1:
        raise ValueError(f"{name}={rate} must be a rate in [0, 1].")
    return rate


def _view_row(share: float, apcer: float, bpcer: float, users: int) -> dict[str, float]:
    # An "alarm" is a presentation classified as an attack (score below the threshold).
    caught = share * (1 - apcer)
    false_alarms = (1 - share) * bpcer
    alarms = caught + false_alarms
    precision = caught / alarms if alarms > 0 else float("nan")
    return {
        "attack share": share,
        "precision of an attack alarm": precision,
        "share of alarms that are false": 1 - precision if alarms > 0 else float("nan"),
        f"false alarms per {users} genuine users": users * bpcer,
        f"missed attacks per {users} attacks": users * apcer,
        f"false alarms per {users} presentations": users * false_alarms,
        f"missed attacks per {users} presentations": users * share * apcer,
    }


def production_view(
    apcer: float | Mapping,
    bpcer: float | Mapping,
    attack_share: float = 0.05,
    users: int = 1000,
) -> pd.DataFrame:
    """What APCER and BPCER mean at the attack share of production, next to 50 %.

    APCER and BPCER do not depend on the share of attacks; what a user sees does. With
    few attacks, most "attack" alarms are genuine users wrongly rejected.

    Args:
        apcer: the (max) APCER at the threshold, or its rate dict.
        bpcer: the BPCER at the threshold, or its rate dict.
        attack_share: the share of presentations that are attacks in production.
        users: the "per" of the counts (per 1 000 by default).

    Returns:
        Two rows, balanced (50 % attacks) and production: precision of an attack alarm
        = share (1 - APCER) / (share (1 - APCER) + (1 - share) BPCER), false alarms and
        missed attacks per ``users`` genuine users, attacks and presentations.
    """
    ap, bp = _rate_value(apcer, "apcer"), _rate_value(bpcer, "bpcer")
    if not 0 < attack_share < 1:
        raise ValueError(f"attack_share={attack_share} must be in (0, 1), e.g. 0.05.")
    if users <= 0:
        raise ValueError(f"users={users} must be positive.")
    rows = {
        "balanced (50 % attacks)": _view_row(0.5, ap, bp, users),
        f"production ({100 * attack_share:g} % attacks)": _view_row(attack_share, ap, bp, users),
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def ratio_weights(attack: Any, attack_share: float) -> np.ndarray:
    """Per-presentation weights (mean 1) that make the weighted attack share ``attack_share``."""
    a = np.asarray(attack, dtype=bool).reshape(-1)
    if not 0 < attack_share < 1:
        raise ValueError(f"attack_share={attack_share} must be in (0, 1).")
    if a.all() or not a.any():
        raise ValueError("reweighting needs both attacks and bona fide presentations.")
    weights = np.where(a, attack_share / a.sum(), (1 - attack_share) / (~a).sum())
    return weights * len(a)


def resample_to_ratio(
    scores: Any,
    attack: Any,
    attack_share: float,
    seed: int = 0,
    n: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A test sample at the production attack share, drawn with replacement.

    ``round(attack_share * n)`` attacks and the rest bona fide presentations are drawn
    with replacement from their own pools (a stratified bootstrap; ``n`` defaults to the
    number of presentations). Duplicated presentations add no information: use it to see
    the production arithmetic empirically (:func:`empirical_view`), not for intervals.
    :func:`ratio_weights` gives the same view by reweighting instead, without drawing.

    Returns:
        ``(scores, attack, index)``; ``index`` selects the drawn rows of the inputs, so
        other per-row arrays (attack types, devices) can be drawn alike.
    """
    s = _scores(scores)
    a = _attack(attack, len(s))
    if not 0 < attack_share < 1:
        raise ValueError(f"attack_share={attack_share} must be in (0, 1).")
    if a.all() or not a.any():
        raise ValueError("resampling needs both attacks and bona fide presentations.")
    total = len(s) if n is None else int(n)
    n_attack = int(round(attack_share * total))
    if n_attack < 1 or n_attack >= total:
        raise ValueError(
            f"n={total} at attack_share={attack_share} gives {n_attack} attacks; increase n."
        )
    rng = np.random.default_rng(seed)
    index = np.concatenate(
        [
            rng.choice(np.flatnonzero(a), n_attack, replace=True),
            rng.choice(np.flatnonzero(~a), total - n_attack, replace=True),
        ]
    )
    index = rng.permutation(index)
    return s[index], a[index], index


def empirical_view(
    scores: Any,
    attack: Any,
    threshold: float | Mapping,
    weights: Any = None,
    users: int = 1000,
) -> pd.DataFrame:
    """The :func:`production_view` figures counted on (optionally weighted) presentations."""
    s = _scores(scores)
    a = _attack(attack, len(s))
    t = _threshold_value(threshold)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    if len(w) != len(s):
        raise ValueError(f"weights has {len(w)} entries but scores has {len(s)}.")
    if a.all() or not a.any():
        raise ValueError("the view needs both attacks and bona fide presentations.")
    alarm = s < t
    share = w[a].sum() / w.sum()
    apcer = w[a & ~alarm].sum() / w[a].sum()
    bpcer = w[~a & alarm].sum() / w[~a].sum()
    row = _view_row(float(share), float(apcer), float(bpcer), users)
    caught = w[a & alarm].sum()
    row["precision of an attack alarm"] = (
        float(caught / w[alarm].sum()) if w[alarm].sum() > 0 else float("nan")
    )
    row["share of alarms that are false"] = 1 - row["precision of an attack alarm"]
    return pd.DataFrame([row], index=[f"measured ({100 * share:.3g} % attacks)"])


# ---------------------------------------------------------------------------------------
# Rates per group (capture bias)
# ---------------------------------------------------------------------------------------


def per_group_rates(
    scores: Any, attack: Any, groups: Any, threshold: float | Mapping
) -> pd.DataFrame:
    """APCER and BPCER per group (device, capture date...) at one threshold.

    A model that learned a capture shortcut (e.g. "tablet means fake") concentrates its
    errors in the groups where the shortcut misleads it. A group without attacks (or
    without bona fide presentations) gets NaN with a note. The last row is all groups.
    """
    s = _scores(scores)
    a = _attack(attack, len(s))
    t = _threshold_value(threshold)
    g = np.asarray(groups).reshape(-1).astype(str)
    if len(g) != len(s):
        raise ValueError(f"groups has {len(g)} entries but scores has {len(s)}.")
    rows = []
    for name in [*sorted(set(g)), None]:
        mask = np.ones(len(s), dtype=bool) if name is None else g == name
        apcer, bpcer = apcer_bpcer(s[mask], a[mask], t)
        notes = []
        if apcer["n"] == 0:
            notes.append("no attacks: APCER NaN")
        if bpcer["n"] == 0:
            notes.append("no bona fide: BPCER NaN")
        rows.append(
            {
                "group": "all" if name is None else name,
                "n_attack": apcer["n"],
                "apcer": apcer["rate"],
                "apcer_errors": apcer["errors"],
                "apcer_ci_low": apcer["ci_low"],
                "apcer_ci_high": apcer["ci_high"],
                "n_bona_fide": bpcer["n"],
                "bpcer": bpcer["rate"],
                "bpcer_errors": bpcer["errors"],
                "bpcer_ci_low": bpcer["ci_low"],
                "bpcer_ci_high": bpcer["ci_high"],
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows).set_index("group")


# ---------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------


def _feature_layer_types() -> tuple[type, ...]:
    import keras

    layers = keras.layers
    return (
        layers.Conv2D,
        layers.DepthwiseConv2D,
        layers.SeparableConv2D,
        layers.Activation,
        layers.ReLU,
        layers.LeakyReLU,
        layers.ELU,
        layers.PReLU,
    )


def _rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        return None


def default_gradcam_layer(model) -> str:
    """The name of the last convolution or activation layer with a 4-D output.

    For the course's classifier (a backbone nested in the model) the search runs in the
    backbone: EfficientNet-Lite0 and EfficientNetB* give ``top_activation``; Keras'
    MobileNetV3 gives the hard-swish ``Activation`` after ``conv_1`` (its name, such as
    ``activation_17``, depends on how many activations Keras has numbered before).
    """
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    search = nested[-1] if nested else model
    kinds = _feature_layer_types()
    for layer in reversed(search.layers):
        if isinstance(layer, kinds) and _rank(layer) == 4:
            return layer.name
    raise ValueError(
        f"{search.name} has no convolution or activation layer with a 4-D output "
        "(batch, height, width, channels): Grad-CAM needs a spatial feature map."
    )


def _gradcam_forward(model, layer_name: str | None):
    """A function images -> (feature map, head input), and the head (last Dense) layer."""
    import keras

    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(
            f"the model's last layer {head.name!r} is a {type(head).__name__}; Grad-CAM here "
            "needs the course's classifier, whose last layer is the Dense 'head'."
        )
    name = layer_name or default_gradcam_layer(model)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) > 1:
        raise ValueError(f"the model nests {len(nested)} models; expected one backbone.")
    if not nested:
        try:
            feature = model.get_layer(name)
        except ValueError as error:
            raise ValueError(f"layer_name={name!r} is not a layer of {model.name}.") from error
        if _rank(feature) != 4:
            raise ValueError(f"layer {name!r} has no 4-D output: pick a convolution layer.")
        inner = keras.Model(model.inputs, [feature.output, head.input])
        return (lambda x: inner(x, training=False)), head, name

    backbone = nested[0]
    if name == backbone.name:
        feature_output = backbone.outputs[0]
    else:
        try:
            feature_output = backbone.get_layer(name).output
        except ValueError as error:
            raise ValueError(
                f"layer_name={name!r} is not a layer of the backbone {backbone.name}; "
                f"default_gradcam_layer(model) gives {default_gradcam_layer(model)!r}."
            ) from error
    if len(feature_output.shape) != 4:
        raise ValueError(f"layer {name!r} has no 4-D output: pick a convolution layer.")
    inner = keras.Model(backbone.inputs, [feature_output, backbone.outputs[0]])
    order = list(model.layers)
    at, end = order.index(backbone), order.index(head)
    before = [layer for layer in order[:at] if not isinstance(layer, keras.layers.InputLayer)]
    between = order[at + 1 : end]

    def forward(x):
        # The classifier is a chain: (preprocessing) -> backbone -> pooling -> dropout ->
        # head; it is re-applied here so that the feature map is an output we can watch.
        for layer in before:
            x = layer(x, training=False)
        feature, y = inner(x, training=False)
        for layer in between:
            y = layer(y, training=False)
        return feature, y

    return forward, head, name


def grad_cam(
    model,
    images: Any,
    layer_name: str | None = None,
    target: str = BONA_FIDE,
    classes: Sequence[str] = ("fake", "real"),
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM heatmaps of the course's classifier, one per image, at the input's size.

    The class score is the head's pre-activation (the logit): for the binary sigmoid model
    ``z`` is the logit of ``classes[1]``; ``target`` = that class uses ``z`` and the other
    class ``-z`` (so the "real" and "fake" maps show the positive and the negative parts
    of the same evidence); for a softmax model the target column's logit. The logit is
    used rather than the probability because the sigmoid's gradient vanishes for
    confident predictions. Map = ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of
    d score / d A_k, divided by its maximum (all zeros when nothing speaks for the
    target), resized bilinearly to the input.

    Args:
        model: the classifier of ``build_classifier`` (or a plain model ending in Dense).
        images: (N, H, W, 3) or (H, W, 3), pixels in 0-255 as the model expects.
        layer_name: the feature map (a backbone layer); default
            :func:`default_gradcam_layer`.
        target: the class whose evidence is shown, e.g. ``"real"`` or ``"fake"``.
        classes: class names in label order.
        batch_size: images per forward pass.

    Returns:
        Heatmaps of shape (N, H, W), float32 in [0, 1].
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ValueError("grad_cam uses tf.GradientTape: run Keras with the TensorFlow backend.")
    classes = list(classes)
    if target not in classes:
        raise ValueError(f"target={target!r} is not one of classes={classes}.")
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C) or (H, W, C); got shape {batch.shape}.")
    forward, head, _ = _gradcam_forward(model, layer_name)
    units = int(head.kernel.shape[-1])
    if units == 1 and len(classes) != 2:
        raise ValueError(f"a single sigmoid unit means 2 classes, but classes={classes}.")
    if units > 1 and units != len(classes):
        raise ValueError(f"the head has {units} units but classes has {len(classes)} names.")
    height, width = batch.shape[1:3]
    maps = []
    for start in range(0, len(batch), batch_size):
        x = tf.convert_to_tensor(batch[start : start + batch_size])
        with tf.GradientTape() as tape:
            feature, pooled = forward(x)
            logits = tf.matmul(pooled, head.kernel) + head.bias
            if units == 1:
                sign = 1.0 if target == classes[1] else -1.0
                score = sign * logits[:, 0]
            else:
                score = logits[:, classes.index(target)]
        grads = tape.gradient(score, feature)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature, axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        cam = tf.image.resize(cam[..., None], (height, width), method="bilinear")[..., 0]
        maps.append(np.clip(cam.numpy(), 0.0, 1.0).astype(np.float32))
    return np.concatenate(maps)


def overlay(image: Any, heatmap: Any, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The image with the heatmap blended over it in colour, as uint8 (H, W, 3).

    Args:
        image: (H, W, 3) in 0-255 (uint8 or float).
        heatmap: (h, w) in [0, 1]; resized bilinearly to the image when sizes differ.
        alpha: the heatmap's weight (0: the image only, 1: the heatmap only).
        cmap: a Matplotlib colour map.
    """
    import matplotlib
    from PIL import Image

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha} must be in [0, 1].")
    picture = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
    if picture.ndim != 3 or picture.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3); got shape {picture.shape}.")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (H, W); got shape {heat.shape}.")
    if heat.shape != picture.shape[:2]:
        resized = Image.fromarray(heat).resize(
            (picture.shape[1], picture.shape[0]), Image.Resampling.BILINEAR
        )
        heat = np.asarray(resized, dtype=np.float32)
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0, 1))[..., :3] * 255.0
    blended = (1 - alpha) * picture + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

"""Anti-spoofing (presentation attack detection) rates in the style of ISO/IEC 30107-3.

A score is the belief that a presentation is bona fide (higher: more genuine); ``attack`` is
True for attack presentations; a presentation is accepted as bona fide when score >= threshold."""

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from helpers.runs import read_json, write_json
from helpers.stats import format_rate, rate_with_ci

BONA_FIDE = "real"
THRESHOLD_FILE = "threshold.json"
DEFAULT_TARGETS = (0.10, 0.05, 0.01)
_VIEW_COUNTS = [("false alarms", "genuine users"), ("missed attacks", "attacks")]
_VIEW_COUNTS += [("false alarms", "presentations"), ("missed attacks", "presentations")]
_TEST_REFUSED = "the threshold is never fitted on the test split: fit it on 'val', apply it to test"


def _classes(classes: Sequence[str], bona_fide: str) -> list[str]:
    if bona_fide not in classes:
        raise ValueError(f"bona_fide={bona_fide!r} is not one of classes={list(classes)}.")
    return list(classes)


def bona_fide_scores(probabilities: Any, classes: Sequence[str], bona_fide: str = BONA_FIDE):
    """Scores (N,): a sigmoid output is P(classes[1]); a softmax (N, K) gives its column."""
    classes = _classes(classes, bona_fide)
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p
    if p.ndim == 1 and len(classes) == 2:
        scores = p if classes[1] == bona_fide else 1.0 - p
    elif p.ndim == 2 and p.shape[1] == len(classes):
        scores = p[:, classes.index(bona_fide)]
    else:
        raise ValueError(f"probabilities of shape {p.shape} do not fit classes={classes}.")
    if not np.all((scores >= -1e-6) & (scores <= 1 + 1e-6)):  # NaN fails this too.
        raise ValueError("probabilities outside [0, 1] look like logits: apply the sigmoid.")
    return np.clip(scores, 0.0, 1.0)


def is_attack(labels: Any, classes: Sequence[str], bona_fide: str = BONA_FIDE) -> np.ndarray:
    """True for attack presentations; ``labels``: names, indices, (N, 1) binary or one-hot."""
    classes = _classes(classes, bona_fide)
    values = np.asarray(labels)
    if values.dtype.kind in "USO":
        names = values.reshape(-1).astype(str)
        if set(names) - set(classes):
            raise ValueError(f"labels {set(names) - set(classes)} are not in classes={classes}")
        return names != bona_fide
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1) != classes.index(bona_fide)
    return np.rint(values.reshape(-1).astype(float)) != classes.index(bona_fide)


def _check(scores: Any, attack: Any, both: str = "") -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(attack).reshape(-1)
    if a.dtype.kind in "USO":
        raise ValueError("attack must be True/False; turn labels into it with is_attack().")
    a = a.astype(bool)
    if both and (a.all() or not a.any()):
        raise ValueError(f"{both} needs attacks and bona fide; {a.sum()} of {a.size} attack.")
    return np.asarray(scores, dtype=np.float64).reshape(-1), a


def _threshold(threshold: float | Mapping) -> float:
    return float(threshold["threshold"] if isinstance(threshold, Mapping) else threshold)


def apcer_bpcer(scores: Any, attack: Any, threshold: float | Mapping) -> tuple[dict, dict]:
    """APCER (all attacks as one type) and BPCER at ``threshold``, with their intervals."""
    s, a = _check(scores, attack)
    ok = s >= _threshold(threshold)
    return rate_with_ci((ok & a).sum(), a.sum()), rate_with_ci((~ok & ~a).sum(), (~a).sum())


def error_curves(scores: Any, attack: Any) -> pd.DataFrame:
    """APCER and BPCER (``roc_curve``'s FPR, 1 - TPR) at each score, then above them all."""
    s, a = _check(scores, attack, "the error curve")
    apcer, tpr, thresholds = roc_curve(~a, s, drop_intermediate=False)
    thresholds[0] = np.nextafter(s.max(), np.inf)  # roc_curve's first threshold is inf.
    curves = pd.DataFrame({"threshold": thresholds, "apcer": apcer, "bpcer": 1.0 - tpr})
    return curves.iloc[::-1].reset_index(drop=True)


def eer(scores: Any, attack: Any) -> tuple[float, float]:
    """``(eer, threshold)``: where the two error curves cross, linear between thresholds."""
    t, ap, bp = error_curves(scores, attack).to_numpy().T
    diff = ap - bp  # From 1 (everything accepted) down to -1 (everything rejected).
    j = int(np.argmax(diff <= 0))
    if diff[j] == 0 or j == 0:
        return float(ap[j]), float(t[j])
    f = diff[j - 1] / (diff[j - 1] - diff[j])
    return float(ap[j - 1] + f * (ap[j] - ap[j - 1])), float(t[j - 1] + f * (t[j] - t[j - 1]))


def bpcer_at_apcer(scores: Any, attack: Any, target: float) -> dict[str, Any]:
    """``{"target", "bpcer", "apcer", "threshold", "note"}``: the lowest BPCER with APCER <=
    target; NaN with a note below ceil(1/target) attacks, where one error exceeds the target."""
    if not 0 < target < 1:
        raise ValueError(f"target={target} must be an APCER in (0, 1), e.g. 0.05 for 5 %.")
    s, a = _check(scores, attack)
    out = {"target": target, "bpcer": rate_with_ci(0, 0), "apcer": rate_with_ci(0, 0)}
    out.update(threshold=math.nan, note="")
    needed = math.ceil(1.0 / target - 1e-9)
    if a.sum() < needed or a.all():
        note = f"not resolved: needs ≥ {needed} attacks and bona fide, here {a.sum()} of {a.size}"
        out["bpcer"]["note"] = note
        return {**out, "note": f"BPCER@APCER={target:.0%} {note}"}
    curves = error_curves(s, a)
    threshold = float(curves["threshold"][np.argmax(curves["apcer"].to_numpy() <= target)])
    apcer, bpcer = apcer_bpcer(s, a, threshold)
    return {**out, "bpcer": bpcer, "apcer": apcer, "threshold": threshold}


def choose_threshold(
    val_scores: Any, val_attack: Any, method="eer", target_apcer=0.05, split_name="val", splits=None
) -> dict[str, Any]:
    """Fit the threshold on validation: ``"eer"`` or ``"apcer"`` (APCER <= target_apcer); test
    data are refused (``split_name``, or any "test" in ``splits``, one name per row)."""
    has_test = splits is not None and "test" in set(np.asarray(splits).astype(str).ravel())
    if split_name not in ("val", "validation") or has_test:
        raise ValueError(f"split_name={split_name!r}: {_TEST_REFUSED}.")
    s, a = _check(val_scores, val_attack, "choose_threshold")
    if method == "eer":
        threshold, rule = eer(s, a)[1], "APCER = BPCER on the validation split (EER)"
    elif method == "apcer":
        found = bpcer_at_apcer(s, a, target_apcer)
        if not math.isfinite(found["threshold"]):
            raise ValueError(f"method='apcer': {found['note']}; use 'eer' or a larger target.")
        threshold, rule = found["threshold"], f"validation APCER ≤ {target_apcer:.0%}"
    else:
        raise ValueError(f"method={method!r}: choose 'eer' or 'apcer'.")
    apcer, bpcer = apcer_bpcer(s, a, threshold)
    info = {"threshold": float(threshold), "method": method, "fitted_on": "val"}
    info["target_apcer"] = float(target_apcer) if method == "apcer" else None
    info.update(val_apcer=apcer["rate"], val_bpcer=bpcer["rate"], n_attack=int(a.sum()))
    info.update(n_bona_fide=int((~a).sum()), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return {**info, "rule": f"accept as bona fide when score ≥ {threshold:.6g} ({rule})"}


def save_threshold(run_dir: str | Path, info: Mapping) -> Path:
    """Write :func:`choose_threshold`'s dict to ``run_dir/threshold.json``."""
    if info.get("fitted_on") == "test" or "threshold" not in info:
        raise ValueError(f"{_TEST_REFUSED}; save what choose_threshold() returned.")
    return write_json(Path(run_dir) / THRESHOLD_FILE, dict(info))


def load_threshold(run_dir: str | Path) -> dict[str, Any]:
    """The threshold dict of notebook 06 (:func:`save_threshold`)."""
    info = read_json(Path(run_dir) / THRESHOLD_FILE)
    if info is None:
        raise FileNotFoundError(f"no {THRESHOLD_FILE} in {run_dir}: run notebook 06 first.")
    return info


def _by_type(accepted, a, kinds, wanted) -> tuple:
    """Decisions per presentation type, APCER per attack type, the worst (with ``type``), BPCER."""
    rows = pd.Series(np.where(a, "attack: " + kinds.astype(object), "bona fide"))
    decision = pd.Series(np.where(accepted, "bona fide", "attack"), name="decision")
    index = ["bona fide", *(f"attack: {k}" for k in wanted)]
    table = pd.crosstab(rows.rename("presentation"), decision)
    table = table.reindex(index=index, columns=["bona fide", "attack"], fill_value=0)
    n_accepted, total = table["bona fide"], table.sum(axis=1)
    apcer = {k: rate_with_ci(n_accepted[i], total[i]) for k, i in zip(wanted, index[1:])}
    notes = [f"APCER {k}: no {k} attacks here, APCER is NaN" for k in wanted if not apcer[k]["n"]]
    bpcer = rate_with_ci(table.loc["bona fide", "attack"], total["bona fide"])
    notes += [] if bpcer["n"] else ["BPCER: no bona fide presentations, BPCER is NaN"]
    measured = [k for k in wanted if apcer[k]["n"]]
    if not measured:
        notes.append("APCER max: no attack presentations, APCER is NaN")
        return table, apcer, {**rate_with_ci(0, 0), "type": None}, bpcer, notes
    worst = max(measured, key=lambda k: (apcer[k]["rate"], apcer[k]["n"]))
    return table, apcer, {**apcer[worst], "type": worst}, bpcer, notes


def evaluate_pad(
    scores, attack, attack_types, threshold: float | Mapping, *, types=None, targets=DEFAULT_TARGETS
) -> dict[str, Any]:
    """Every ISO/IEC 30107-3 figure at one threshold: rates (with their table), EER, AUC...;
    ``attack_types``: one per presentation (None: all "attack"), ``types``: those to report."""
    s, a = _check(scores, attack)
    fitted_on = threshold.get("fitted_on") if isinstance(threshold, Mapping) else None
    if fitted_on == "test":
        raise ValueError(_TEST_REFUSED)
    kinds = np.where(a, "attack", "") if attack_types is None else np.asarray(attack_types)
    kinds = kinds.astype(str).reshape(-1)
    wanted = list(dict.fromkeys(kinds[a])) if types is None else list(types)
    if set(kinds[a]) - set(wanted):
        raise ValueError(f"attack types {set(kinds[a]) - set(wanted)} are not in types.")
    by_type, apcer, apcer_max, bpcer, notes = _by_type(s >= _threshold(threshold), a, kinds, wanted)
    at_apcer = {float(x): bpcer_at_apcer(s, a, x) for x in targets}
    notes += [d["note"] for d in at_apcer.values() if d["note"]]
    both = bool(a.any() and not a.all())
    notes += [] if both else ["EER and AUC need attacks and bona fide presentations: NaN"]
    rows = {f"APCER {k}": r for k, r in apcer.items()}
    rows.update({f"APCER max ({apcer_max['type']})": apcer_max, "BPCER": bpcer})
    rows.update({f"BPCER@APCER={x:.0%}": d["bpcer"] for x, d in at_apcer.items()})
    columns = ["rate", "errors", "n", "ci_low", "ci_high", "rule_of_three", "note"]
    out = {"threshold": _threshold(threshold), "fitted_on": fitted_on, "notes": notes}
    out.update(n_attack=int(a.sum()), n_bona_fide=int((~a).sum()), apcer=apcer, bpcer=bpcer)
    out.update(apcer_max=apcer_max, acer=(apcer_max["rate"] + bpcer["rate"]) / 2)
    out["eer"], out["eer_threshold"] = eer(s, a) if both else (math.nan, math.nan)
    out["auc"] = float(roc_auc_score(~a, s)) if both else math.nan
    out["rates"] = pd.DataFrame.from_dict(rows, orient="index")[columns].rename_axis("metric")
    return {**out, "confusion_by_type": by_type, "bpcer_at_apcer": at_apcer}


def pad_table(results: Mapping[str, Mapping], style: str = "numeric") -> pd.DataFrame:
    """One row per model of :func:`evaluate_pad` results; ``style="text"`` formats the rates."""
    thresholds = sorted({float(r["threshold"]) for r in results.values()})
    if len(thresholds) > 1:
        warnings.warn(f"models at different thresholds {thresholds}", UserWarning, stacklevel=2)
    rows = {}
    for model, r in results.items():
        row = {"threshold": r["threshold"], "N bona fide": r["n_bona_fide"]}
        row["N attack"] = r["n_attack"]
        for metric, rate in r["rates"].iterrows():
            row[metric.split(" (")[0]] = format_rate(rate) if style == "text" else rate["rate"]
        row.update({"APCER max type": r["apcer_max"]["type"], "ACER (legacy)": r["acer"]})
        rows[model] = {**row, "EER": r["eer"], "AUC": r["auc"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def production_view(apcer, bpcer, attack_share: float = 0.05, users: int = 1000) -> pd.DataFrame:
    """What APCER and BPCER (numbers or rate dicts) mean to users at 50 % and at attack_share:
    precision of an attack alarm = share (1 - APCER) / (share (1 - APCER) + (1 - share) BPCER)."""
    ap, bp = (float(r["rate"] if isinstance(r, Mapping) else r) for r in (apcer, bpcer))
    columns = ["attack share", "precision of an attack alarm"]
    columns += [f"{what} per {users} {whom}" for what, whom in _VIEW_COUNTS]
    rows = {}
    for name, share in (("balanced", 0.5), ("production", attack_share)):
        caught, false_alarms = share * (1 - ap), (1 - share) * bp  # An alarm says "attack".
        precision = caught / (caught + false_alarms)
        counts = [users * bp, users * ap, users * false_alarms, users * share * ap]
        rows[f"{name} ({100 * share:g} % attacks)"] = [share, precision, *counts]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def empirical_view(
    scores: Any, attack: Any, threshold: float | Mapping, attack_share: float, size: int, seed=0
) -> pd.DataFrame:
    """:func:`production_view`'s production row, measured on ``size`` presentations drawn with
    replacement at ``attack_share`` (duplicates add no information: it shows the arithmetic)."""
    s, a = _check(scores, attack, "the view")
    rng = np.random.default_rng(seed)
    n_attack = round(attack_share * size)
    drawn = rng.choice(np.flatnonzero(a), n_attack)
    drawn = np.r_[drawn, rng.choice(np.flatnonzero(~a), size - n_attack)]
    apcer, bpcer = apcer_bpcer(s[drawn], a[drawn], threshold)
    view = production_view(apcer, bpcer, n_attack / size).iloc[1:]
    return view.rename(index=lambda name: name.replace("production", f"measured on {size}"))


def per_group_rates(scores, attack, groups, threshold: float | Mapping) -> pd.DataFrame:
    """APCER and BPCER per group (device, capture date...) at one threshold; last row: all."""
    s, a = _check(scores, attack)
    g = np.asarray(groups).astype(str).reshape(-1)
    rows = {}
    for name in [*sorted(set(g)), "all"]:
        mask = g == name if name != "all" else np.ones(len(s), bool)
        apcer, bpcer = apcer_bpcer(s[mask], a[mask], threshold)
        row = {"n_attack": apcer["n"], "apcer": apcer["rate"], "APCER": format_rate(apcer)}
        rows[name] = {**row, "n_bona_fide": bpcer["n"], "bpcer": bpcer["rate"]}
        rows[name]["BPCER"] = format_rate(bpcer)  # "n/a (...)" without samples.
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")


def overlay(image: Any, heatmap: Any, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """An image (H, W, 3) in 0-255 with a heatmap (H, W) in [0, 1] blended over it, uint8."""
    import matplotlib

    picture = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if picture.ndim != 3 or heat.shape != picture.shape[:2]:
        raise ValueError(f"image {picture.shape} must be (H, W, 3), heatmap {heat.shape} (H, W).")
    colours = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    return np.clip(np.rint((1 - alpha) * picture + alpha * colours), 0, 255).astype(np.uint8)

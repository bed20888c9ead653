"""Around the training that notebooks 03 and 04 write: the sheet's learning-curve diagnosis and
fine-tuning limits, validation metrics, the phase files that 05-07 read, the test-split guard."""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from scipy.stats import median_abs_deviation

from helpers.runs import jsonable, read_json, write_json

#: Above these, the sheet's fine-tuning anti-patterns apply.
FINETUNE_MAX_LR, FINETUNE_MAX_EPOCHS = 1e-5, 10
#: The sheet's remedies, by the keys that ``diagnose(in_use=...)`` takes for those already on.
OVERFITTING_REMEDIES = {"early_stopping": "fewer epochs (early stopping)", "more_data": "more data"}
OVERFITTING_REMEDIES |= {"dropout": "more dropout", "augmentation": "data augmentation"}
UNDERFITTING_REMEDIES = {"more_epochs": "more epochs", "data_quality": "data quality"}
UNDERFITTING_REMEDIES |= {"bigger_model": "a more powerful model (EfficientNet)"}
UNSTABLE_REMEDIES = {"lower_lr": "a lower learning rate"}
UNSTABLE_REMEDIES |= {"frozen_bn": "BatchNormalization layers kept frozen"}
REMEDY_KEYS = {*OVERFITTING_REMEDIES, *UNDERFITTING_REMEDIES, *UNSTABLE_REMEDIES}
#: Rules of :func:`diagnose`: accuracy below which it is low, epochs needed, train-val accuracy
#: gap, epochs of the recent window, multiple of the epoch-to-epoch noise that a change must pass.
LOW_ACCURACY, MIN_EPOCHS, MAX_GAP, WINDOW, NOISE_FACTOR = 0.70, 3, 0.10, 3, 3.0
ACCURACY_KEYS = ("accuracy", "binary_accuracy", "categorical_accuracy")
TEST_ACCESS_FILE = "test_access.json"


def finetune_warnings(learning_rate: float, epochs: int) -> list[str]:
    """The sheet's fine-tuning anti-patterns these settings fall into (empty when none)."""
    if not learning_rate > 0 or int(epochs) < 1:
        raise ValueError(f"learning_rate={learning_rate!r} must be > 0, epochs={epochs!r} >= 1.")
    lr = "LR too high in fine-tuning: destroys the pretrained weights; use 1e-5 at most"
    many = "Too many epochs in fine-tuning: the model overfits fast; use 5-10 at most and watch"
    messages = []
    if learning_rate > FINETUNE_MAX_LR * (1 + 1e-9):  # 10 ** -5 written any way is not flagged.
        messages.append(f"{lr} (got learning_rate={learning_rate:g}).")
    if int(epochs) > FINETUNE_MAX_EPOCHS:
        messages.append(f"{many} val_loss (got epochs={int(epochs)}).")
    return messages


@dataclass
class Diagnosis:
    """The verdict on a history, the sentence that justifies it and the sheet's remedies."""

    verdict: str
    sentence: str
    evidence: dict = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        tail = "\nRemedies: " + "; ".join(self.remedies) + "." if self.remedies else ""
        return self.sentence + tail


def _curve(history: Mapping, names: Sequence[str], prefix: str = "") -> list[float]:
    for name in names:
        values = history.get(prefix + name)
        if values is not None and len(values) > 0:
            return [float(v) for v in values]
    return []


def _noise(values: Sequence[float], floor: float | None = None) -> float:
    """Epoch-to-epoch noise (scaled MAD of each value minus its neighbours' mean, / sqrt(1.5));
    with ``floor``: the smallest real change, max(NOISE_FACTOR * noise, floor)."""
    v = np.asarray(values, dtype=float)
    noise = float(median_abs_deviation(v[1:-1] - (v[:-2] + v[2:]) / 2, scale="normal") / 1.5**0.5)
    return noise if floor is None else max(NOISE_FACTOR * noise, floor)


def _change(values: Sequence[float], w: int) -> float:
    """The change over the last ``w`` epochs on a straight line fitted to the last ``w + 1``."""
    return float(np.polyfit(np.arange(w + 1), values[-w - 1 :], 1)[0] * w)


def _finish(verdict, sentence, options: Mapping[str, str], e: dict, in_use) -> Diagnosis:
    """Add the numbers every sentence gives, drop the remedies already in use and say so."""
    sentence += (
        f" Validation loss: minimum {e['val_loss_min']:.3f} at epoch {e['val_loss_min_epoch']} of "
        f"{e['epochs']}; epoch-to-epoch noise {e['val_loss_noise']:.4f}, so changes under "
        f"{e['val_loss_limit']:.4f} count as noise."
    )
    on = [text for key, text in options.items() if key in in_use]
    sentence += f" Already in use, so not recommended again: {', '.join(on)}." if on else ""
    return Diagnosis(verdict, sentence, e, [t for k, t in options.items() if k not in in_use])


def diagnose(history: Mapping[str, Any], tolerance: float = 0.02, in_use=()) -> Diagnosis:
    """Read a history as the course sheet does, counting only changes beyond :func:`_noise` (and
    ``tolerance``: relative to the minimum for losses, absolute for accuracies). Rules in order,
    over the last ``w = min(WINDOW, epochs - 1)`` epochs: "too short to tell" (< ``MIN_EPOCHS``),
    "still improving" (validation loss still falling), :func:`_underfitting`,
    :func:`_overfitting`, :func:`_good`. ``in_use``: ``REMEDY_KEYS`` not to recommend again."""
    if unknown := set(in_use) - REMEDY_KEYS:
        raise ValueError(f"in_use has unknown keys {sorted(unknown)}; use {sorted(REMEDY_KEYS)}.")
    loss, vloss = _curve(history, ["loss"]), _curve(history, ["loss"], "val_")
    if not loss or not vloss:
        raise ValueError(f"history needs 'loss' and 'val_loss' lists; got {sorted(history)}.")
    n = min(len(loss), len(vloss))
    acc, vacc = _curve(history, ACCURACY_KEYS)[:n], _curve(history, ACCURACY_KEYS, "val_")[:n]
    acc, vacc = (acc, vacc) if acc and vacc else ([], [])
    evidence: dict[str, Any] = {"epochs": n, "has_accuracy": bool(acc)}
    if n < MIN_EPOCHS:
        why = f"Too short to tell: {n} epoch{'s' * (n != 1)}; at least {MIN_EPOCHS} are needed."
        return Diagnosis("too short to tell", why, evidence, ["more epochs"])
    loss, vloss, w, best = loss[:n], vloss[:n], min(WINDOW, n - 1), int(np.argmin(vloss[:n]))
    limit, after = _noise(vloss, tolerance * abs(vloss[best])), vloss[best + 1 :]
    base, change = float(np.median(vloss[max(best - 1, 0) : best + 2])), _change(vloss, w)
    rise = float(np.mean(after[-w:])) - base if after else 0.0
    evidence.update(val_loss_min=vloss[best], val_loss_min_epoch=best + 1, window=w)
    evidence.update(val_loss_noise=_noise(vloss), val_loss_limit=limit, val_loss_change=change)
    evidence.update(val_loss_rise=rise, still_falling=change < -limit)
    if change < -limit:
        why = f"validation loss was still falling at the end ({change:+.3f} over {w} epochs)"
        said = f"Still improving: {why}: more epochs may help, not fewer."
        return _finish("still improving", said, {"more_epochs": "more epochs"}, evidence, in_use)
    args = (loss, vloss, acc, vacc, evidence, tolerance)
    return _finish(*(_underfitting(*args) or _overfitting(*args) or _good(*args)), evidence, in_use)


def _underfitting(loss, vloss, acc, vacc, evidence, tolerance):
    """Accuracies below ``LOW_ACCURACY``, training loss flat: (verdict, sentence, remedies)."""
    w, change = evidence["window"], _change(loss, evidence["window"])
    floor = tolerance * abs(min(loss))
    if not acc or max(max(acc), max(vacc)) >= LOW_ACCURACY or change < -_noise(loss, floor):
        return None
    a, v = int(np.argmax(acc)), int(np.argmax(vacc))
    sentence = (
        f"Underfitting: the best training accuracy is {acc[a]:.2f} (epoch {a + 1}) and the best "
        f"validation accuracy {vacc[v]:.2f} (epoch {v + 1}), both below {LOW_ACCURACY:.2f}, and "
        f"training loss stopped falling ({change:+.3f} over the last {w} epochs)."
    )
    return "underfitting", sentence, UNDERFITTING_REMEDIES


def _overfitting(loss, vloss, acc, vacc, evidence, tolerance):
    """(a) Validation loss's last ``w`` epochs after its minimum above the minimum's neighbourhood
    while training loss fell, or (b) no new minimum in them while the train-val accuracy gap,
    above ``MAX_GAP``, grew and validation accuracy did not: (verdict, sentence, remedies)."""
    n, w, best = len(loss), evidence["window"], evidence["val_loss_min_epoch"] - 1
    if (rise := evidence["val_loss_rise"]) > evidence["val_loss_limit"] and loss[-1] < loss[best]:
        evidence["rule"] = "val_loss rose above its minimum while train loss fell"
        sentence = (
            f"Overfitting: validation loss rose from {vloss[best]:.2f} at epoch {best + 1} (its "
            f"minimum) to {vloss[-1]:.2f} at epoch {n}, its last {min(w, n - 1 - best)} epochs "
            f"averaging {rise:.3f} above the minimum's neighbourhood, while training loss kept "
            f"falling ({loss[best]:.2f} → {loss[-1]:.2f})."
        )
        return "overfitting", sentence, OVERFITTING_REMEDIES
    gap, s = [a - v for a, v in zip(acc, vacc)], -1 - w
    if not gap or best >= n - w or gap[-1] <= MAX_GAP or gap[-1] - gap[s] <= _noise(gap, tolerance):
        return None
    if max(vacc[s + 1 :]) - max(vacc[: s + 1]) > _noise(vacc, tolerance):
        return None
    evidence["rule"] = "train-val accuracy gap grew while val accuracy stalled"
    sentence = (
        f"Overfitting: from epoch {n + s + 1} to {n} training accuracy went {acc[s]:.2f} → "
        f"{acc[-1]:.2f} while validation accuracy stalled ({vacc[s]:.2f} → {vacc[-1]:.2f}) "
        f"and validation loss set no new minimum; the gap is now {gap[-1]:.2f}."
    )
    return "overfitting", sentence, OVERFITTING_REMEDIES


def _good(loss, vloss, acc, vacc, e, tolerance):
    """Rule 5: good; "unstable" (``evidence["unstable"]``) when both losses rose at the end."""
    n, w, best, c = len(loss), e["window"], e["val_loss_min_epoch"], e["val_loss_change"]
    if e["val_loss_rise"] > e["val_loss_limit"]:
        e["unstable"] = True
        sentence = (
            "No overfitting or underfitting pattern, but training was unstable: both losses "
            f"rose at the end (validation {min(vloss):.2f} at epoch {best} → "
            f"{vloss[-1]:.2f}, training {min(loss):.2f} → {loss[-1]:.2f} at epoch {n})."
        )
        return "good", sentence, UNSTABLE_REMEDIES
    sentence = (
        f"Good: training loss went {loss[0]:.2f} → {loss[-1]:.2f} and validation loss "
        f"{vloss[0]:.2f} → {vloss[-1]:.2f}"
    )
    if acc:
        sentence += f", accuracies {acc[-1]:.2f} (train) and {vacc[-1]:.2f} (validation) at the end"
    within = f"; over the last {w} epochs validation loss moved {c:+.4f}, within its noise."
    return "good", sentence + within, {}


def evaluate(model: keras.Model, ds, classes: Sequence[str], threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC (NaN when a class is absent), the confusion matrix (true classes as
    rows), ``probabilities`` and ``n`` on ``ds``; two classes: a sigmoid unit and ``threshold``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

    k = len(classes)
    pairs = [(keras.ops.convert_to_numpy(model(x, training=False)), np.asarray(y)) for x, y in ds]
    if k < 2 or not pairs:
        raise ValueError(f"evaluate needs 2 or more classes (got {classes}) and a non-empty ds.")
    probabilities, labels = (np.concatenate(part) for part in zip(*pairs))
    if labels.ndim == 2 and labels.shape[-1] > 1:
        labels = labels.argmax(-1)
    labels = np.rint(labels).astype(int).ravel()
    if probabilities.shape[-1] != (1 if k == 2 else k) or not 0 <= labels.min() <= labels.max() < k:
        raise ValueError(
            f"{probabilities.shape[-1]} outputs or labels do not fit classes {classes}."
        )
    if k == 2:
        probabilities = probabilities.ravel()
    predictions = (probabilities >= threshold).astype(int) if k == 2 else probabilities.argmax(-1)
    auc = float("nan")
    if len(np.unique(labels)) == k:
        auc = float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=range(k)))
    matrix = confusion_matrix(labels, predictions, labels=list(range(k)))
    axes = pd.Index(classes, name="true class"), pd.Index(classes, name="predicted class")
    accuracy, confusion = float(accuracy_score(labels, predictions)), pd.DataFrame(matrix, *axes)
    out = {"accuracy": accuracy, "auc": auc, "confusion": confusion}
    return {**out, "probabilities": probabilities, "n": len(labels)}


def _path(run_dir: str | Path, name: str, suffix: str) -> Path:
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise ValueError(f"name={name!r} must be a plain file stem such as 'phase1'.")
    return Path(run_dir) / f"{name}{suffix}"


def save_phase(run_dir, name: str, model: keras.Model, history: Mapping, metrics: Mapping) -> Path:
    """Write ``<name>.keras`` (its path is returned), ``<name>_history.json``, ``_metrics.json``."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    model.save(_path(run_dir, name, ".keras"))
    write_json(_path(run_dir, name, "_history.json"), jsonable(dict(history)))
    write_json(_path(run_dir, name, "_metrics.json"), jsonable(dict(metrics)))
    return _path(run_dir, name, ".keras")


def load_phase_model(run_dir: str | Path, name: str) -> keras.Model:
    """Load ``<name>.keras`` from the run folder with ``safe_mode=True``."""
    path = _path(run_dir, name, ".keras")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the notebook that saves {name!r}.")
    return keras.models.load_model(path, safe_mode=True)


def _rows(manifest_df: pd.DataFrame, split: str) -> pd.DataFrame:
    if "split" not in manifest_df.columns:
        raise ValueError(f"manifest_df has no 'split' column: {list(manifest_df.columns)}.")
    return manifest_df[manifest_df["split"] == split].copy()


def tuning_splits(manifest_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and validation rows: everything that may be used to choose and tune."""
    train, val = _rows(manifest_df, "train"), _rows(manifest_df, "val")
    if train.empty or val.empty:
        raise ValueError(f"manifest_df has {len(train)} train, {len(val)} val rows; need both.")
    return train, val


def test_split(manifest_df, run_dir, purpose: str, allow_repeat: bool = False) -> pd.DataFrame:
    """The test rows, once (recorded in ``run_dir/test_access.json``): a second access raises
    ``RuntimeError`` unless ``allow_repeat=True`` (to re-report the same final model only)."""
    if not isinstance(purpose, str) or not purpose.strip():
        raise ValueError("purpose must say why the test set is read, e.g. 'final evaluation'.")
    rows, path = _rows(manifest_df, "test"), Path(run_dir) / TEST_ACCESS_FILE
    if rows.empty:
        raise ValueError("manifest_df has no rows with split == 'test'.")
    log = read_json(path, default=None) or {"accesses": []}
    previous = log.setdefault("accesses", [])
    if previous and not allow_repeat:
        raise RuntimeError(
            f"The test split was already used in this run ({path}: {previous[0]}). Tuning on it "
            "makes it a second validation set whose score no longer estimates performance on "
            "new images: tune on tuning_splits(manifest); allow_repeat=True only re-reports."
        )
    when = time.strftime("%Y-%m-%dT%H:%M:%S")
    previous.append(dict(time=when, purpose=purpose.strip(), rows=len(rows), repeat=bool(previous)))
    write_json(path, log)
    return rows


# Keep pytest from collecting the guard as a test when a test module imports it by name.
test_split.__test__ = False  # type: ignore[attr-defined]

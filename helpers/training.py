"""Around the training that notebooks 03 and 04 write: the sheet's learning-curve diagnosis and
fine-tuning limits, validation metrics, the phase files that 05-07 read, the test-split guard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from helpers.runs import jsonable, read_json, write_json

#: Above these, the sheet's fine-tuning anti-patterns apply.
FINETUNE_MAX_LR, FINETUNE_MAX_EPOCHS = 1e-5, 10
#: The sheet's remedies, quoted by :func:`diagnose`.
OVERFITTING_REMEDIES = ["fewer epochs", "more data", "more dropout", "data augmentation"]
UNDERFITTING_REMEDIES = ["more epochs", "a more powerful model (EfficientNet)", "data quality"]
UNSTABLE_REMEDIES = ["a lower learning rate", "BatchNormalization layers kept frozen"]
#: Rules of :func:`diagnose`: accuracy below which it is low, epochs needed, train-val
#: accuracy gap, epochs of the recent window, relative val_loss change of a plateau.
LOW_ACCURACY, MIN_EPOCHS, MAX_GAP, WINDOW, PLATEAU = 0.70, 3, 0.10, 3, 0.05
ACCURACY_KEYS = ("accuracy", "binary_accuracy", "categorical_accuracy")
TEST_ACCESS_FILE = "test_access.json"


def finetune_warnings(learning_rate: float, epochs: int) -> list[str]:
    """The sheet's fine-tuning anti-patterns these settings fall into (empty when none)."""
    if not learning_rate > 0 or int(epochs) < 1:
        raise ValueError(f"learning_rate={learning_rate!r} must be > 0, epochs={epochs!r} >= 1.")
    messages = []
    if learning_rate > FINETUNE_MAX_LR * (1 + 1e-9):  # 10 ** -5 written any way is not flagged.
        messages.append(
            "LR too high in fine-tuning: destroys the pretrained weights; use 1e-5 at most "
            f"(got learning_rate={learning_rate:g})."
        )
    if int(epochs) > FINETUNE_MAX_EPOCHS:
        messages.append(
            "Too many epochs in fine-tuning: the model overfits fast; use 5-10 at most and "
            f"watch val_loss (got epochs={int(epochs)})."
        )
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


def _relative(change: float, base: float) -> float:
    return change / abs(base) if base else (math.inf if change else 0.0)


def diagnose(history: Mapping[str, Any], tolerance: float = 0.02) -> Diagnosis:
    """Read a history as the course sheet does: good, overfitting or underfitting.

    Rules, in order (epochs 1-based, ``w = min(WINDOW, epochs - 1)``):
    1. "too short to tell": fewer than ``MIN_EPOCHS`` epochs.
    2. "underfitting": best train AND best validation accuracy below ``LOW_ACCURACY``.
    3. "overfitting": (a) the last val_loss is above its minimum by more than ``tolerance``
       relative to it (so binary and multi-class losses compare) while the train loss kept
       falling; or (b) the train-val accuracy gap exceeds ``MAX_GAP``, grew by more than
       ``tolerance`` over the last ``w`` epochs while val accuracy gained at most that.
    4. "good" (see :func:`_good`). Loss-only histories skip rules 2 and 3b.
    """
    loss, vloss = _curve(history, ["loss"]), _curve(history, ["loss"], "val_")
    if not loss or not vloss:
        raise ValueError(f"history needs 'loss' and 'val_loss' lists; got {sorted(history)}.")
    n = min(len(loss), len(vloss))
    acc, vacc = _curve(history, ACCURACY_KEYS)[:n], _curve(history, ACCURACY_KEYS, "val_")[:n]
    acc, vacc = (acc, vacc) if acc and vacc else ([], [])
    evidence: dict[str, Any] = {"epochs": n, "has_accuracy": bool(acc)}
    if n < MIN_EPOCHS:
        why = f"{n} epoch{'s' * (n != 1)}; at least {MIN_EPOCHS} are needed to see a trend."
        return Diagnosis(
            "too short to tell", f"Too short to tell: {why}", evidence, ["more epochs"]
        )
    loss, vloss, w, best = loss[:n], vloss[:n], min(WINDOW, n - 1), int(np.argmin(vloss[:n]))
    rise = _relative(vloss[-1] - vloss[best], vloss[best])
    rose = rise > tolerance and loss[-1] < loss[best]
    fell = f"{vloss[best]:.2f} at epoch {best + 1}"
    evidence.update(val_loss_min=vloss[best], val_loss_min_epoch=best + 1, window=w)
    if acc and max(acc) < LOW_ACCURACY and max(vacc) < LOW_ACCURACY:
        a, v = int(np.argmax(acc)), int(np.argmax(vacc))
        also = f" (validation loss also rose from {fell} to {vloss[-1]:.2f})" * rose
        sentence = (
            f"Underfitting: the best training accuracy is {acc[a]:.2f} (epoch {a + 1}) and the "
            f"best validation accuracy {vacc[v]:.2f} (epoch {v + 1}), both below "
            f"{LOW_ACCURACY:.2f}{also}."
        )
        return Diagnosis("underfitting", sentence, evidence, list(UNDERFITTING_REMEDIES))
    if rose:
        evidence["rule"] = "val_loss rose above its minimum while train loss fell"
        restored = history.get("best_epoch")
        sentence = (
            f"Overfitting: validation loss rose from {fell} (its minimum) to {vloss[-1]:.2f} at "
            f"epoch {n} while training loss kept falling ({loss[best]:.2f} → {loss[-1]:.2f})."
            + (f" Early stopping restored the weights of epoch {restored}." if restored else "")
        )
        return Diagnosis("overfitting", sentence, evidence, list(OVERFITTING_REMEDIES))
    gap, s = [a - v for a, v in zip(acc, vacc)], -1 - w
    if gap and gap[-1] > MAX_GAP and gap[-1] - gap[s] > tolerance >= vacc[-1] - vacc[s]:
        evidence["rule"] = "train-val accuracy gap grew while val accuracy stalled"
        sentence = (
            f"Overfitting: from epoch {n + s + 1} to {n} training accuracy went {acc[s]:.2f} → "
            f"{acc[-1]:.2f} while validation accuracy stalled ({vacc[s]:.2f} → "
            f"{vacc[-1]:.2f}); the gap is now {gap[-1]:.2f}."
        )
        return Diagnosis("overfitting", sentence, evidence, list(OVERFITTING_REMEDIES))
    return _good(loss, vloss, acc, vacc, best, evidence, rise > tolerance, tolerance)


def _good(loss, vloss, acc, vacc, best, evidence, val_rose, tolerance) -> Diagnosis:
    """Rule 4: good; ``evidence["plateaued"]`` when val_loss moved at most ``PLATEAU``
    (relative) over the last ``w`` epochs, "unstable" when both losses rose at the end."""
    n, w = len(loss), evidence["window"]
    recent = _relative(vloss[-1] - vloss[-1 - w], vloss[-1 - w])
    evidence.update(val_loss_change_window=recent, plateaued=abs(recent) <= PLATEAU)
    if val_rose and _relative(loss[-1] - min(loss), min(loss)) > tolerance:
        evidence["unstable"] = True
        sentence = (
            "No overfitting or underfitting pattern, but training was unstable: both losses "
            f"rose at the end (validation {vloss[best]:.2f} at epoch {best + 1} → "
            f"{vloss[-1]:.2f}, training {min(loss):.2f} → {loss[-1]:.2f} at epoch {n})."
        )
        return Diagnosis("good", sentence, evidence, list(UNSTABLE_REMEDIES))
    sentence = (
        f"Good: training and validation loss fell together ({loss[0]:.2f} → {loss[-1]:.2f} "
        f"and {vloss[0]:.2f} → {vloss[-1]:.2f}, minimum at epoch {best + 1} of {n})"
    )
    if acc:
        sentence += f", accuracies {acc[-1]:.2f} (train) and {vacc[-1]:.2f} (validation) at the end"
    change = f"{recent:+.1%} over the last {w} epochs"
    if evidence["plateaued"]:
        sentence += f"; the curves have plateaued (validation loss changed by {change})."
        return Diagnosis("good", sentence, evidence, [])
    sentence += f"; validation loss was still changing ({change}): more epochs may help."
    return Diagnosis("good", sentence, evidence, ["more epochs: the curves have not plateaued"])


def evaluate(model: keras.Model, ds, classes: Sequence[str], threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC and the confusion matrix (true classes as rows) on ``ds``.

    Two classes: one sigmoid unit, the second class predicted when its probability is >=
    ``threshold``; more: softmax and argmax, one-vs-rest macro AUC. AUC is NaN when a class is
    absent. Also returns the ``probabilities`` and the number of images ``n``.
    """
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
    confusion = pd.DataFrame(
        matrix, pd.Index(classes, name="true class"), pd.Index(classes, name="predicted class")
    )
    accuracy = float(accuracy_score(labels, predictions))
    return dict(
        accuracy=accuracy, auc=auc, confusion=confusion, probabilities=probabilities, n=len(labels)
    )


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
    """The test rows, once: each access is recorded in ``run_dir/test_access.json``.

    ``allow_repeat=True`` reads them again (recorded as a repeat) to re-report the same final
    model, never to compare or tune; otherwise a second access raises ``RuntimeError``.
    """
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

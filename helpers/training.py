"""Training the course's classifier in two phases, diagnosing the curves, evaluating, saving.

The course sheet's rules encoded here:

- Phase 1, feature extraction: backbone frozen (``trainable=False``), Adam with learning
  rate 1e-3, 10-20 epochs, batch 32; loss ``binary_crossentropy`` for 2 classes,
  categorical (or sparse categorical) cross-entropy for more.
- Phase 2, fine-tuning: backbone unfrozen (all of it or from a layer), learning rate 1e-5
  (10-100x lower than phase 1), 5-10 epochs, BatchNormalization kept in inference mode.
  Anti-patterns: "LR too high in fine-tuning" (destroys the pretrained weights: 1e-5 at
  most), "Too many epochs in fine-tuning" (fast overfitting: 5-10 at most, watch
  val_loss), "BatchNorm updated in fine-tuning" (ruins the learned features).
- Learning curves: good when train and validation accuracy rise together, train and
  validation loss fall together and the curves plateau; overfitting when train accuracy
  rises while validation accuracy stalls or falls, or train loss falls while validation
  loss rises (remedies: fewer epochs, more data, more dropout, augmentation);
  underfitting when train and validation accuracy both stay low, below 70 % (remedies:
  more epochs, a more powerful model such as EfficientNet, check the dataset's quality).
- The test split is used once, at the end of the course (:func:`test_split` guards it).

Phase 1 without augmentation can run on cached backbone features
(:func:`cache_features`, :func:`fit_head_on_features`): the frozen backbone then runs once
instead of once per epoch, and the head trained on the features is the classifier's own
head layer (shared, not copied).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from helpers import backbones
from helpers.runs import banner, jsonable, read_json, write_json

#: The course sheet's phase 1 (feature extraction) settings.
PHASE1: dict[str, Any] = {"learning_rate": 1e-3, "epochs": (10, 20), "batch_size": 32}
#: The course sheet's phase 2 (fine-tuning) settings.
PHASE2: dict[str, Any] = {"learning_rate": 1e-5, "epochs": (5, 10), "batch_size": 32}
#: Above these, the sheet's fine-tuning anti-patterns apply.
FINETUNE_MAX_LR = 1e-5
FINETUNE_MAX_EPOCHS = 10

#: The sheet's remedies, quoted by :func:`diagnose`.
OVERFITTING_REMEDIES = [
    "fewer epochs (early stopping on val_loss keeps the best epoch)",
    "more data",
    "more dropout (dropout_rate of build_classifier)",
    "enable data augmentation (training split only)",
]
UNDERFITTING_REMEDIES = [
    "more epochs",
    "a more powerful model (EfficientNet)",
    "check the dataset's quality (labels, duplicates, class balance, image size)",
]
UNSTABLE_REMEDIES = [
    "lower the learning rate (1e-5 at most in fine-tuning)",
    "keep BatchNormalization frozen (unfreeze(..., keep_batchnorm_frozen=True))",
]

_ACCURACY_KEYS = (
    "accuracy",
    "acc",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
)
TEST_ACCESS_FILE = "test_access.json"


# ---------------------------------------------------------------------------------------
# Compiling and fitting
# ---------------------------------------------------------------------------------------


def _output_units(model: keras.Model) -> int:
    shape = model.output_shape
    if isinstance(shape, list):
        raise ValueError(f"model {model.name!r} has several outputs; the course uses one.")
    return int(shape[-1])


def compile_model(
    model: keras.Model,
    learning_rate: float,
    num_classes: int,
    label_mode: str | None = None,
) -> keras.Model:
    """Compile with Adam, the sheet's loss for ``num_classes`` and accuracy (+ AUC if binary).

    Args:
        model: the classifier (or the head model of :func:`head_model`).
        learning_rate: Adam's learning rate (sheet: 1e-3 in phase 1, 1e-5 in phase 2).
        num_classes: 2 gives binary cross-entropy on one sigmoid unit; more gives
            categorical cross-entropy (one-hot labels) or sparse categorical (int labels).
        label_mode: "binary", "categorical" or "int" as in ``dataset.make_dataset``;
            None picks "binary" for 2 classes and "categorical" for more.

    Returns:
        The same model, compiled; metrics are named "accuracy" (and "auc").
    """
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive number.")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    mode = label_mode or ("binary" if num_classes == 2 else "categorical")
    units = _output_units(model)
    if mode == "binary":
        if num_classes != 2 or units != 1:
            raise ValueError(
                f"label_mode='binary' needs num_classes=2 and one sigmoid output; got "
                f"num_classes={num_classes} and {units} output units."
            )
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    elif mode in ("categorical", "int"):
        if units != num_classes:
            raise ValueError(
                f"num_classes={num_classes} but the model has {units} output units; build it "
                f"with build_classifier(backbone, {num_classes})."
            )
        if mode == "categorical":
            loss = keras.losses.CategoricalCrossentropy()
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        raise ValueError(
            f"label_mode={label_mode!r} must be 'binary', 'categorical', 'int' or None."
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics
    )
    return model


def _iter_layers(model: keras.Layer):
    """Every layer of ``model``, nested models included."""
    for layer in getattr(model, "layers", []):
        yield layer
        if getattr(layer, "layers", None):
            yield from _iter_layers(layer)


def finetune_warnings(
    learning_rate: float, epochs: int, model: keras.Model | None = None
) -> list[str]:
    """Messages for the sheet's fine-tuning anti-patterns (empty when none applies).

    Args:
        learning_rate: the phase 2 learning rate; above 1e-5 is "LR too high".
        epochs: the phase 2 epochs; above 10 is "Too many epochs".
        model: optionally the classifier, to flag trainable BatchNormalization layers
            ("BatchNorm updated in fine-tuning").
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be positive.")
    if int(epochs) < 1:
        raise ValueError(f"epochs={epochs!r} must be at least 1.")
    messages = []
    # A tiny relative margin so that 1e-5 written as 10 ** -5 or 0.00001 is not flagged.
    if learning_rate > FINETUNE_MAX_LR * (1 + 1e-9):
        messages.append(
            "LR too high in fine-tuning: destroys the pretrained weights; use 1e-5 at most "
            f"(got learning_rate={learning_rate:g})."
        )
    if int(epochs) > FINETUNE_MAX_EPOCHS:
        messages.append(
            "Too many epochs in fine-tuning: the model overfits fast; use 5-10 at most and "
            f"watch val_loss (got epochs={int(epochs)})."
        )
    if model is not None:
        trainable_bn = [
            layer.name
            for layer in _iter_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        if trainable_bn:
            messages.append(
                "BatchNorm updated in fine-tuning: ruins the learned features; "
                f"{len(trainable_bn)} BatchNormalization layers are trainable (e.g. "
                f"{trainable_bn[0]!r}); use unfreeze(backbone, keep_batchnorm_frozen=True)."
            )
    return messages


def warn_finetune(learning_rate: float, epochs: int, model: keras.Model | None = None) -> list[str]:
    """Print :func:`finetune_warnings` as a banner (stderr) and ``warnings.warn`` each."""
    messages = finetune_warnings(learning_rate, epochs, model)
    if messages:
        lines = ["FINE-TUNING ANTI-PATTERN (course sheet):"]
        for message in messages:
            lines.extend(
                f"- {part}" if i == 0 else f"  {part}" for i, part in enumerate(_wrap(message, 86))
            )
        print(banner(lines), file=sys.stderr, flush=True)
        for message in messages:
            warnings.warn(message, UserWarning, stacklevel=2)
    return messages


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def early_stopping(patience: int = 3) -> keras.callbacks.EarlyStopping:
    """Stop when val_loss has not improved for ``patience`` epochs; keep the best weights."""
    if int(patience) < 1:
        raise ValueError(f"patience={patience!r} must be at least 1 (or use None in fit).")
    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=int(patience), restore_best_weights=True, verbose=1
    )


def _check_class_weight(
    class_weight: Mapping[int, float] | None, num_classes: int
) -> dict[int, float] | None:
    """Validate ``class_weight`` and complete it with 1.0 for classes it does not name."""
    if class_weight is None:
        return None
    full = {index: 1.0 for index in range(num_classes)}
    for key, value in class_weight.items():
        if not (isinstance(key, (int, np.integer)) and 0 <= int(key) < num_classes):
            raise ValueError(
                f"class_weight key {key!r} must be a class index in 0..{num_classes - 1} "
                "(position in the sorted class names), not a name."
            )
        if not float(value) > 0:
            raise ValueError(f"class_weight[{key}]={value!r} must be positive.")
        full[int(key)] = float(value)
    return full


def _num_classes(model: keras.Model) -> int:
    units = _output_units(model)
    return 2 if units == 1 else units


def fit(
    model: keras.Model,
    train_ds,
    val_ds,
    epochs: int,
    class_weight: Mapping[int, float] | None = None,
    patience: int | None = 3,
    verbose: int = 2,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict:
    """Train a compiled model with early stopping on val_loss; return a JSON-able history.

    Args:
        model: a model compiled by :func:`compile_model`.
        train_ds: training batches (augmented, if at all, by ``augmentation.augment_dataset``).
        val_ds: validation batches (never augmented); None trains without validation.
        epochs: the most epochs to run.
        class_weight: ``{class index: weight}`` to weigh the loss of rarer classes.
        patience: early-stopping patience on val_loss (best weights restored); None: off.
        verbose: Keras' verbosity (2: one line per epoch).
        callbacks: extra Keras callbacks.

    Returns:
        ``{metric: [value per epoch], ..., "epochs_run", "best_epoch" (1-based, lowest
        val_loss, or None), "seconds"}``.
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs={epochs!r} must be at least 1.")
    weights = _check_class_weight(class_weight, _num_classes(model))
    all_callbacks = list(callbacks)
    if patience is not None and val_ds is not None:
        all_callbacks.append(early_stopping(patience))
    start = time.perf_counter()
    result = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=int(epochs),
        class_weight=weights,
        callbacks=all_callbacks,
        verbose=verbose,
        # The tf.data pipelines shuffle themselves; Keras would only warn that it ignores it.
        shuffle=False,
    )
    seconds = time.perf_counter() - start
    history = {key: [float(v) for v in values] for key, values in result.history.items()}
    runs = len(next(iter(history.values()))) if history else 0
    best = None
    if history.get("val_loss"):
        best = int(np.nanargmin(history["val_loss"])) + 1
    history.update({"epochs_run": runs, "best_epoch": best, "seconds": round(seconds, 3)})
    return history


# ---------------------------------------------------------------------------------------
# Feature cache (phase 1 without augmentation)
# ---------------------------------------------------------------------------------------


def cache_features(backbone: keras.Model, ds) -> tuple[np.ndarray, np.ndarray]:
    """The frozen backbone's pooled features and the labels, once, for a dataset.

    Only valid without augmentation: cached features are those of the unaugmented images.
    """
    return backbones.pooled_features(backbone, ds)


def head_model(classifier: keras.Model) -> keras.Model:
    """Input(features) → the classifier's own ``head_dropout`` → ``head`` layers.

    The layers are shared, not copied: training this model trains the classifier's head
    in place, so no weights need copying back.
    """
    try:
        dropout = classifier.get_layer("head_dropout")
        head = classifier.get_layer("head")
    except ValueError as error:
        raise ValueError(
            f"classifier {classifier.name!r} has no 'head_dropout'/'head' layers; build it "
            "with backbones.build_classifier."
        ) from error
    features = int(head.kernel.shape[0])
    inputs = keras.Input(shape=(features,), name="features")
    outputs = head(dropout(inputs))
    return keras.Model(inputs, outputs, name=f"{classifier.name}_head")


def _label_mode_for(labels: np.ndarray, num_classes: int) -> str:
    if num_classes == 2:
        return "binary"
    if labels.ndim == 2 and labels.shape[-1] == num_classes:
        return "categorical"
    return "int"


def _features_dataset(features, labels, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _unpack_features(pair, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"{what} must be (features, labels) as returned by cache_features.")
    features = np.asarray(pair[0], dtype="float32")
    labels = np.asarray(pair[1])
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"{what}: features must be (N, C) with N labels; got {features.shape} and "
            f"{labels.shape}."
        )
    return features, labels


def fit_head_on_features(
    classifier: keras.Model,
    train_features: tuple[np.ndarray, np.ndarray],
    val_features: tuple[np.ndarray, np.ndarray] | None,
    epochs: int,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    class_weight: Mapping[int, float] | None = None,
    patience: int | None = 3,
    seed: int = 0,
    shuffle: bool = True,
    verbose: int = 2,
) -> dict:
    """Phase 1 on cached features: train the classifier's head in place.

    Args:
        classifier: built by ``backbones.build_classifier`` (its head is trained).
        train_features: ``(features, labels)`` of the training split (cache_features).
        val_features: the same for validation, or None.
        epochs: the most epochs (sheet: 10-20).
        learning_rate: Adam's learning rate (sheet: 1e-3).
        batch_size: batch size (sheet: 32).
        class_weight: ``{class index: weight}``, passed to Keras' fit.
        patience: early stopping on val_loss (best weights restored); None: off.
        seed: seed of the per-epoch shuffle of the features (dropout draws its own).
        shuffle: shuffle the features each epoch (as the image pipeline does).
        verbose: Keras' verbosity.

    Returns:
        The history dict of :func:`fit`. The classifier must be compiled again before
        it is trained end to end (phase 2 compiles it anyway).
    """
    x_train, y_train = _unpack_features(train_features, "train_features")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} must be at least 1.")
    head = head_model(classifier)
    num_classes = _num_classes(head)
    compile_model(head, learning_rate, num_classes, _label_mode_for(y_train, num_classes))
    train_ds = _features_dataset(x_train, y_train, int(batch_size), shuffle, seed)
    val_ds = None
    if val_features is not None:
        x_val, y_val = _unpack_features(val_features, "val_features")
        val_ds = _features_dataset(x_val, y_val, int(batch_size), False, seed)
    return fit(head, train_ds, val_ds, epochs, class_weight, patience, verbose)


# ---------------------------------------------------------------------------------------
# Diagnosis of the learning curves
# ---------------------------------------------------------------------------------------


@dataclass
class Diagnosis:
    """The verdict on a history, the sentence that justifies it and the sheet's remedies."""

    verdict: str
    sentence: str
    evidence: dict = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.remedies:
            return self.sentence
        return self.sentence + "\nRemedies: " + "; ".join(self.remedies) + "."

    def to_dict(self) -> dict:
        return asdict(self)


def _curve(history: Mapping, names: Sequence[str], prefix: str = "") -> tuple[str, list] | None:
    for name in names:
        values = history.get(prefix + name)
        if isinstance(values, (list, tuple, np.ndarray)) and len(values) > 0:
            return prefix + name, [float(v) for v in values]
    return None


def _relative(change: float, base: float) -> float:
    return change / abs(base) if base else (math.inf if change else 0.0)


def diagnose(
    history: Mapping[str, Any],
    low_accuracy: float = 0.70,
    tolerance: float = 0.02,
    min_epochs: int = 3,
    max_gap: float = 0.10,
    window: int = 3,
    plateau: float = 0.05,
) -> Diagnosis:
    """Read a history as the course sheet does: good, overfitting or underfitting.

    The rules, checked in this order (epochs are 1-based; ``w = min(window, epochs - 1)``):

    1. "too short to tell": fewer than ``min_epochs`` epochs.
    2. "underfitting" (needs accuracy): the best training accuracy AND the best validation
       accuracy are both below ``low_accuracy`` (strictly: 0.70 itself is not low).
    3. "overfitting", either of:
       a. loss: the last validation loss is above its minimum by more than ``tolerance``
          *relative to that minimum* (2 % by default; relative so that it means the same
          for binary and multi-class cross-entropies, whose scales differ), and the
          training loss at the last epoch is below its value at that minimum's epoch;
       b. accuracy: the last train - validation accuracy gap exceeds ``max_gap``, it grew
          by more than ``tolerance`` (absolute, in accuracy) over the last ``w`` epochs,
          and validation accuracy rose by at most ``tolerance`` over them (stalled or fell).
    4. "good" otherwise. ``evidence["plateaued"]`` tells whether the validation loss
       changed by at most ``plateau`` (relative) over the last ``w`` epochs; if not, the
       sentence says more epochs may help. If both losses rose at the end (beyond
       ``tolerance``), training was unstable and the sentence says so.

    Works with loss-only histories (rules 2 and 3b are skipped) and with any number of
    classes. Extra keys (``epochs_run``, ``best_epoch``...) are ignored.
    """
    if not 0 < low_accuracy <= 1:
        raise ValueError(f"low_accuracy={low_accuracy} must be in (0, 1].")
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance} must be >= 0.")
    if int(min_epochs) < 2:
        raise ValueError(f"min_epochs={min_epochs} must be at least 2 to see a trend.")
    train_loss = _curve(history, ["loss"])
    val_loss = _curve(history, ["loss"], "val_")
    if train_loss is None or val_loss is None:
        raise ValueError(
            "history needs 'loss' and 'val_loss' lists (fit with validation data); got keys "
            f"{sorted(history)}."
        )
    loss, vloss = train_loss[1], val_loss[1]
    n = min(len(loss), len(vloss))
    loss, vloss = loss[:n], vloss[:n]
    acc_curve = _curve(history, _ACCURACY_KEYS)
    vacc_curve = _curve(history, _ACCURACY_KEYS, "val_")
    has_acc = acc_curve is not None and vacc_curve is not None
    acc = acc_curve[1][:n] if has_acc else []
    vacc = vacc_curve[1][:n] if has_acc else []

    evidence: dict[str, Any] = {"epochs": n, "has_accuracy": has_acc}
    if n < int(min_epochs):
        return Diagnosis(
            "too short to tell",
            f"Too short to tell: {n} epoch{'s' if n != 1 else ''}; at least {int(min_epochs)} "
            "are needed to see a trend.",
            evidence,
            ["train for more epochs"],
        )

    w = min(int(window), n - 1)
    best_val = int(np.argmin(vloss))
    rise = vloss[-1] - vloss[best_val]
    rise_rel = _relative(rise, vloss[best_val])
    train_fell_after = loss[-1] < loss[best_val]
    evidence.update(
        {
            "train_loss_first": loss[0],
            "train_loss_last": loss[-1],
            "val_loss_first": vloss[0],
            "val_loss_last": vloss[-1],
            "val_loss_min": vloss[best_val],
            "val_loss_min_epoch": best_val + 1,
            "train_loss_at_val_min": loss[best_val],
            "val_loss_rise_relative": rise_rel,
            "window": w,
        }
    )
    if "best_epoch" in history and history["best_epoch"] is not None:
        evidence["restored_epoch"] = history["best_epoch"]

    if has_acc:
        best_acc, best_vacc = int(np.argmax(acc)), int(np.argmax(vacc))
        gap = [a - v for a, v in zip(acc, vacc, strict=True)]
        evidence.update(
            {
                "train_accuracy_best": acc[best_acc],
                "train_accuracy_best_epoch": best_acc + 1,
                "val_accuracy_best": vacc[best_vacc],
                "val_accuracy_best_epoch": best_vacc + 1,
                "train_accuracy_last": acc[-1],
                "val_accuracy_last": vacc[-1],
                "gap_last": gap[-1],
                "gap_window_start": gap[-1 - w],
            }
        )
        # Rule 2: underfitting.
        if acc[best_acc] < low_accuracy and vacc[best_vacc] < low_accuracy:
            also = ""
            if rise_rel > tolerance and train_fell_after:
                also = (
                    f" (validation loss also rose from {vloss[best_val]:.2f} at epoch "
                    f"{best_val + 1} to {vloss[-1]:.2f})"
                )
            return Diagnosis(
                "underfitting",
                f"Underfitting: the best training accuracy is {acc[best_acc]:.2f} (epoch "
                f"{best_acc + 1}) and the best validation accuracy {vacc[best_vacc]:.2f} "
                f"(epoch {best_vacc + 1}), both below {low_accuracy:.2f}{also}.",
                evidence,
                list(UNDERFITTING_REMEDIES),
            )

    # Rule 3a: validation loss rising while the training loss keeps falling.
    if rise_rel > tolerance and train_fell_after:
        evidence["rule"] = "val_loss rose above its minimum while train loss fell"
        restored = ""
        if evidence.get("restored_epoch"):
            restored = (
                f" Early stopping restored the weights of epoch {evidence['restored_epoch']}."
            )
        return Diagnosis(
            "overfitting",
            f"Overfitting: validation loss rose from {vloss[best_val]:.2f} at epoch "
            f"{best_val + 1} (its minimum) to {vloss[-1]:.2f} at epoch {n} while training "
            f"loss kept falling ({loss[best_val]:.2f} → {loss[-1]:.2f}).{restored}",
            evidence,
            list(OVERFITTING_REMEDIES),
        )

    # Rule 3b: train accuracy pulling away while validation accuracy stalls.
    if has_acc:
        start = -1 - w
        gap_growth = gap[-1] - gap[start]
        val_gain = vacc[-1] - vacc[start]
        if gap[-1] > max_gap and gap_growth > tolerance and val_gain <= tolerance:
            evidence["rule"] = "train-val accuracy gap grew while val accuracy stalled"
            return Diagnosis(
                "overfitting",
                f"Overfitting: from epoch {n + start + 1} to {n} training accuracy went "
                f"{acc[start]:.2f} → {acc[-1]:.2f} while validation accuracy stalled "
                f"({vacc[start]:.2f} → {vacc[-1]:.2f}); the gap is now {gap[-1]:.2f}.",
                evidence,
                list(OVERFITTING_REMEDIES),
            )

    # Rule 4: good, with a plateau check and an instability note.
    recent = _relative(vloss[-1] - vloss[-1 - w], vloss[-1 - w])
    plateaued = abs(recent) <= plateau
    evidence.update({"val_loss_change_window": recent, "plateaued": plateaued})
    train_rise = _relative(loss[-1] - min(loss), min(loss))
    if rise_rel > tolerance and train_rise > tolerance:
        evidence["unstable"] = True
        return Diagnosis(
            "good",
            f"No overfitting or underfitting pattern, but training was unstable: both losses "
            f"rose at the end (validation {vloss[best_val]:.2f} at epoch {best_val + 1} → "
            f"{vloss[-1]:.2f}, training {min(loss):.2f} → {loss[-1]:.2f} at epoch {n}).",
            evidence,
            list(UNSTABLE_REMEDIES),
        )
    together = (
        f"training and validation loss fell together ({loss[0]:.2f} → {loss[-1]:.2f} "
        f"and {vloss[0]:.2f} → {vloss[-1]:.2f}, minimum at epoch {best_val + 1} of {n})"
    )
    if has_acc:
        together += f", accuracies {acc[-1]:.2f} (train) and {vacc[-1]:.2f} (validation) at the end"
    if plateaued:
        tail = (
            f"the curves have plateaued (validation loss changed by {recent:+.1%} over the "
            f"last {w} epochs)."
        )
        remedies: list[str] = []
    else:
        tail = (
            f"validation loss was still changing ({recent:+.1%} over the last {w} epochs): "
            "more epochs may help."
        )
        remedies = ["more epochs: the curves have not plateaued yet"]
    return Diagnosis("good", f"Good: {together}; {tail}", evidence, remedies)


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def predict_with_labels(model: keras.Model, ds) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels from one pass over ``ds`` (aligned even if it shuffles)."""
    probabilities, labels = [], []
    for images, batch_labels in ds:
        probabilities.append(keras.ops.convert_to_numpy(model(images, training=False)))
        labels.append(np.asarray(batch_labels))
    if not probabilities:
        raise ValueError("ds is empty: nothing to evaluate.")
    return np.concatenate(probabilities), np.concatenate(labels)


def evaluate(model: keras.Model, ds, classes: Sequence[str], threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC and the confusion matrix of ``model`` on ``ds``.

    Args:
        model: a classifier (one sigmoid unit for 2 classes, softmax otherwise).
        ds: ``(images, labels)`` batches; labels binary (N, 1), one-hot or int.
        classes: class names in label order (sorted, as in the manifest).
        threshold: binary only: predict the second class when its probability is >= it.

    Returns:
        ``{"accuracy", "auc" (binary: of the positive = second class; multi-class:
        one-vs-rest macro; NaN when only one class is present), "confusion" (DataFrame,
        true classes as rows, predicted as columns, by name), "probabilities" (N,) or
        (N, K), "labels" (N,) int, "predictions" (N,) int, "classes", "n"}``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"classes={classes}: evaluation needs at least 2 class names.")
    probabilities, raw_labels = predict_with_labels(model, ds)
    k = len(classes)
    if raw_labels.ndim == 2 and raw_labels.shape[-1] > 1:
        labels = raw_labels.argmax(axis=-1)
    else:
        labels = np.rint(raw_labels.reshape(-1)).astype(int)
    if k == 2:
        if probabilities.shape[-1] != 1:
            raise ValueError(
                f"classes has 2 names but the model outputs {probabilities.shape[-1]} values; "
                "the course's binary classifier has one sigmoid unit."
            )
        probabilities = probabilities.reshape(-1)
        predictions = (probabilities >= threshold).astype(int)
    else:
        if probabilities.shape[-1] != k:
            raise ValueError(
                f"classes has {k} names but the model outputs {probabilities.shape[-1]} values."
            )
        predictions = probabilities.argmax(axis=-1)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels outside 0..{k - 1}: are classes {classes} complete?")
    auc = float("nan")
    if len(np.unique(labels)) == k:
        if k == 2:
            auc = float(roc_auc_score(labels, probabilities))
        else:
            auc = float(
                roc_auc_score(
                    labels, probabilities, multi_class="ovr", average="macro", labels=list(range(k))
                )
            )
    elif len(np.unique(labels)) >= 2 and k > 2:
        warnings.warn(
            "Some classes are missing from ds: ROC AUC is undefined (NaN).",
            UserWarning,
            stacklevel=2,
        )
    matrix = confusion_matrix(labels, predictions, labels=list(range(k)))
    confusion = pd.DataFrame(
        matrix,
        index=pd.Index(classes, name="true class"),
        columns=pd.Index(classes, name="predicted class"),
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "auc": auc,
        "confusion": confusion,
        "probabilities": probabilities,
        "labels": labels,
        "predictions": predictions,
        "classes": classes,
        "n": int(len(labels)),
    }


# ---------------------------------------------------------------------------------------
# Saving phases
# ---------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise ValueError(f"name={name!r} must be a plain file stem such as 'phase1'.")
    return name


def save_phase(
    run_dir: str | Path, name: str, model: keras.Model, history: Mapping, metrics: Mapping
) -> dict[str, Path]:
    """Write ``<name>.keras``, ``<name>_history.json`` and ``<name>_metrics.json``."""
    run_dir = Path(run_dir)
    _check_name(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "model": run_dir / f"{name}.keras",
        "history": run_dir / f"{name}_history.json",
        "metrics": run_dir / f"{name}_metrics.json",
    }
    model.save(paths["model"])
    write_json(paths["history"], jsonable(dict(history)))
    write_json(paths["metrics"], jsonable(dict(metrics)))
    return paths


def load_phase_model(run_dir: str | Path, name: str) -> keras.Model:
    """Load ``<name>.keras`` from the run folder with ``safe_mode=True``."""
    path = Path(run_dir) / f"{_check_name(name)}.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the notebook that trains phase {name!r} first "
            "(it calls save_phase)."
        )
    # Importing the augmentation module registers its ClipPixels layer, should a saved
    # model ever contain it; the course's classifiers do not.
    from helpers import augmentation  # noqa: F401

    return keras.models.load_model(path, safe_mode=True)


# ---------------------------------------------------------------------------------------
# Test split guard
# ---------------------------------------------------------------------------------------


def _split_column(manifest_df: pd.DataFrame) -> pd.Series:
    if "split" not in manifest_df.columns:
        raise ValueError(
            "manifest_df has no 'split' column; use the manifest written by make_split "
            f"(columns: {list(manifest_df.columns)})."
        )
    return manifest_df["split"]


def tuning_splits(manifest_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and validation rows: everything that may be used to choose and tune."""
    split = _split_column(manifest_df)
    train = manifest_df[split == "train"].copy()
    val = manifest_df[split == "val"].copy()
    if train.empty or val.empty:
        raise ValueError(
            f"manifest_df has {len(train)} train and {len(val)} val rows; both are needed."
        )
    return train, val


def test_split(
    manifest_df: pd.DataFrame,
    run_dir: str | Path,
    purpose: str,
    allow_repeat: bool = False,
) -> pd.DataFrame:
    """The test rows, once: each access is recorded in ``run_dir/test_access.json``.

    Args:
        manifest_df: the manifest with a ``split`` column.
        run_dir: the run folder where the accesses are recorded.
        purpose: why the test set is read (e.g. "final evaluation of phase 2").
        allow_repeat: read it again anyway (recorded as a repeat), e.g. to re-report the
            same final model; never to compare or tune.

    Raises:
        RuntimeError: the test split was already read in this run and ``allow_repeat`` is
            False.
    """
    if not isinstance(purpose, str) or not purpose.strip():
        raise ValueError("purpose must say why the test set is read, e.g. 'final evaluation'.")
    split = _split_column(manifest_df)
    rows = manifest_df[split == "test"].copy()
    if rows.empty:
        raise ValueError("manifest_df has no rows with split == 'test'.")
    path = Path(run_dir) / TEST_ACCESS_FILE
    log = read_json(path, default=None) or {"accesses": []}
    previous = log.get("accesses", [])
    if previous and not allow_repeat:
        first = previous[0]
        raise RuntimeError(
            f"The test split was already used in this run ({first['time']}, for "
            f"{first['purpose']!r}; {len(previous)} access(es) in {path}). The test set is "
            "used once, at the end of the course: choosing or tuning anything on it (epochs, "
            "learning rate, threshold, backbone) makes it a second validation set, and its "
            "score then no longer estimates performance on new images. Tune on "
            "tuning_splits(manifest) (train and val); pass allow_repeat=True only to report "
            "the same final model again (the access is recorded)."
        )
    previous.append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "purpose": purpose.strip(),
            "rows": int(len(rows)),
            "repeat": bool(previous),
        }
    )
    log["accesses"] = previous
    write_json(path, log)
    return rows


# Keep pytest from collecting the guard as a test when a test module imports it by name.
test_split.__test__ = False  # type: ignore[attr-defined]

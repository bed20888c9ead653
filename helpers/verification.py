"""Verifying converted LiteRT models and preparing what ships with them.

- :class:`LiteModel` runs a ``.tflite`` file with the LiteRT interpreter
  (``ai_edge_litert``, its default XNNPACK delegate), one image at a time, on the same
  float 0-255 pixels as the Keras model, whatever the file's input and output types.
- :func:`compare_variants` puts the Keras model and each converted file side by side on
  the same images: accuracy, ROC AUC, agreement with Keras, largest probability
  difference, size and latency at batch 1 (measured interleaved, see
  :func:`side_by_side_latency`).
- :func:`acceptance` applies the course sheet's rules: float32 LiteRT identical to Keras
  within a tolerance; INT8 within 1-2 accuracy points of float32 (pass below 1,
  borderline 1-2, fail above 2); ship INT8, or float16 when INT8 misses.
- :func:`write_labels`, :func:`write_metadata` and :func:`predict_folder` are the
  shipping side; :func:`pre_deployment_checklist` evaluates the sheet's checklist from a
  run folder's artefacts.

Sizes are in MB of 10^6 bytes; latencies in milliseconds per image at batch 1.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.runs import jsonable, read_json

#: File names of the shipping artefacts beside the model.
LABELS_FILE = "labels.txt"
METADATA_FILE = "metadata.json"
COMPARISON_FILE = "comparison.csv"
#: Names of the rows of a comparison table, matched case-insensitively.
KERAS_ROW = "Keras"
#: The sheet's rule on INT8: pass below 1 point of accuracy lost, borderline up to 2.
INT8_PASS_DELTA = 0.01
INT8_MAX_DELTA = 0.02
#: Float32 LiteRT against Keras: the largest probability difference allowed.
FLOAT_TOLERANCE = 1e-4
#: Comparisons of accuracy deltas ignore differences below this (float rounding).
_EPS = 1e-9
_QUANTIZED = (np.int8, np.uint8, np.int16)


def _interpreter(path: Path, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=num_threads)


def _quantization(detail: Mapping) -> dict | None:
    """``{"scale", "zero_point"}`` of an integer tensor, None for a float one."""
    if np.dtype(detail["dtype"]) not in [np.dtype(t) for t in _QUANTIZED]:
        return None
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)}


class LiteModel:
    """A ``.tflite`` classifier run by the LiteRT interpreter, one image at a time.

    Args:
        path: the ``.tflite`` file.
        num_threads: CPU threads of the interpreter (XNNPACK uses them).

    Attributes:
        input_details, output_details: the interpreter's details of the single input
            and output (dtype, shape, ``quantization`` = (scale, zero point)).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 2) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"path={str(path)!r} is not a file: convert the model first.")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads={num_threads!r} must be an integer >= 1.")
        self.num_threads = num_threads
        self.interpreter = _interpreter(self.path, num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "LiteModel runs single-input, single-output classifiers."
            )
        shape = [int(s) for s in inputs[0]["shape"]]
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"{self.path.name} takes input {shape}, not (1, H, W, 3) images.")
        if shape[0] != 1:
            # One image per call: resize a model converted with another fixed batch.
            self.interpreter.resize_tensor_input(inputs[0]["index"], [1, *shape[1:]])
        self.interpreter.allocate_tensors()
        self.input_details = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()[0]
        self._in_q = _quantization(self.input_details)
        self._out_q = _quantization(self.output_details)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the model takes."""
        return int(self.input_details["shape"][1]), int(self.input_details["shape"][2])

    @property
    def size_mb(self) -> float:
        """File size in MB (10^6 bytes)."""
        return self.path.stat().st_size / 1e6

    def __repr__(self) -> str:
        dtype_in = np.dtype(self.input_details["dtype"]).name
        dtype_out = np.dtype(self.output_details["dtype"]).name
        return (
            f"LiteModel({self.path.name!r}, {self.size_mb:.2f} MB, input {dtype_in} "
            f"{self.image_size}, output {dtype_out}, threads={self.num_threads})"
        )

    def _to_input(self, image: np.ndarray) -> np.ndarray:
        """One float 0-255 image as the model's input tensor (quantized if it is integer)."""
        dtype = np.dtype(self.input_details["dtype"])
        batch = image[None].astype(np.float32)
        if self._in_q is None:
            return batch.astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(batch / self._in_q["scale"]) + self._in_q["zero_point"]
        return np.clip(q, info.min, info.max).astype(dtype)

    def _from_output(self, raw: np.ndarray) -> np.ndarray:
        if self._out_q is None:
            return raw.astype(np.float32)
        return ((raw.astype(np.float32) - self._out_q["zero_point"]) * self._out_q["scale"]).astype(
            np.float32
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for float32 RGB 0-255 images of shape (N, H, W, 3) (or one image).

        Images go in one at a time (batch 1), quantized with the input's scale and zero
        point when the input is integer; integer outputs are dequantized.

        Returns:
            (N,) probabilities of the second class for a one-unit (sigmoid) model,
            (N, K) class probabilities otherwise.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) RGB; got shape {images.shape}.")
        if tuple(images.shape[1:3]) != self.image_size:
            raise ValueError(
                f"images are {images.shape[1:3]} but {self.path.name} takes {self.image_size}: "
                "resize them as in training (dataset.make_dataset with the same image_size)."
            )
        interpreter = self.interpreter
        outputs = []
        for image in images:
            interpreter.set_tensor(self.input_details["index"], self._to_input(image))
            interpreter.invoke()
            outputs.append(self._from_output(interpreter.get_tensor(self.output_details["index"])))
        out = np.concatenate(outputs, axis=0) if outputs else np.zeros((0, 1), np.float32)
        return out[:, 0] if out.shape[-1] == 1 else out

    def latency(self, runs: int = 200, warmup: int = 20) -> dict:
        """Time ``invoke`` on one image (batch 1): ``{median_ms, p95_ms, min_ms, runs, threads}``."""
        times = self._time(_check_runs(runs), warmup)
        return _summary(times, self.num_threads)

    def _time(self, runs: int, warmup: int) -> list[float]:
        image = np.random.default_rng(0).uniform(0, 255, (*self.image_size, 3))
        self.interpreter.set_tensor(self.input_details["index"], self._to_input(image))
        for _ in range(max(0, int(warmup))):
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - start) * 1e3)
        return times


def _check_runs(runs: int) -> int:
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise ValueError(f"runs={runs!r} must be an integer >= 1.")
    return int(runs)


def _summary(times_ms: Sequence[float], threads: int) -> dict:
    values = np.asarray(times_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(values)),
        "p95_ms": float(np.percentile(values, 95)),
        "min_ms": float(values.min()),
        "runs": int(len(values)),
        "threads": int(threads),
    }


def side_by_side_latency(
    models: Mapping[str, str | os.PathLike | LiteModel],
    runs: int = 200,
    warmup: int = 20,
    rounds: int = 10,
    threads: int = 2,
) -> pd.DataFrame:
    """Latency of several models measured interleaved, so that load from other programs
    hits them alike: ``rounds`` rounds, each running every model ``runs / rounds`` times.

    Returns:
        One row per model: ``median_ms``, ``p95_ms``, ``min_ms``, ``runs``, ``threads``.
    """
    runs = _check_runs(runs)
    if rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be >= 1.")
    loaded = {
        name: m if isinstance(m, LiteModel) else LiteModel(m, num_threads=threads)
        for name, m in models.items()
    }
    per_round = max(1, math.ceil(runs / rounds))
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for model in loaded.values():
        model._time(0, warmup)
    for _ in range(rounds):
        for name, model in loaded.items():
            times[name].extend(model._time(per_round, 0))
    rows = {name: _summary(times[name][:runs], loaded[name].num_threads) for name in loaded}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


# ---------------------------------------------------------------------------------------
# Comparing variants
# ---------------------------------------------------------------------------------------


def _labels_index(labels: np.ndarray, k: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] > 1:
        return labels.argmax(axis=-1)
    out = np.rint(labels.reshape(-1)).astype(int)
    if out.size and (out.min() < 0 or out.max() >= k):
        raise ValueError(f"labels outside 0..{k - 1}: are the classes complete?")
    return out


def _decide(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    if probabilities.ndim == 1:
        return (probabilities >= threshold).astype(int)
    return probabilities.argmax(axis=-1)


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < k:
        return float("nan")
    if probabilities.ndim == 1:
        return float(roc_auc_score(labels, probabilities))
    # Quantized softmax outputs sum to 1 only within rounding (INT8 steps of 1/256), which
    # scikit-learn refuses: renormalise each row; the ranking of the classes is unchanged.
    rows = np.clip(probabilities.astype(np.float64), 0, None)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
    return float(roc_auc_score(labels, rows, multi_class="ovr", labels=list(range(k))))


def keras_probabilities(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The Keras model's probabilities, (N,) for one sigmoid unit, (N, K) otherwise."""
    import keras

    out = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    probabilities = np.concatenate(out).astype(np.float32)
    return probabilities[:, 0] if probabilities.shape[-1] == 1 else probabilities


def _keras_size_mb(model) -> float:
    with tempfile.TemporaryDirectory(prefix="keras-size-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size / 1e6


def _keras_latency(model, image: np.ndarray, runs: int) -> dict:
    import tensorflow as tf

    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    x = tf.constant(image[None].astype(np.float32))
    for _ in range(5):
        predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(x).numpy()
        times.append((time.perf_counter() - start) * 1e3)
    # TensorFlow's default (0) uses every core.
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 0
    return _summary(times, threads)


def compare_variants(
    keras_model,
    paths: Mapping[str, str | os.PathLike],
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    threads: int = 2,
    runs: int = 200,
    threshold: float = 0.5,
    keras_runs: int = 50,
) -> pd.DataFrame:
    """The Keras model and each converted file on the same images, one row per model.

    Args:
        keras_model: the trained classifier.
        paths: ``{name: .tflite path}``, e.g. :func:`quantization.convert_all`'s result
            (names "float32", "dynamic", "int8", "float16").
        images: float32 RGB 0-255 images (N, H, W, 3), resized as in training.
        labels: the true labels: (N,) or (N, 1) class indices, or one-hot (N, K).
        classes: class names in label order.
        threads: interpreter threads for prediction and latency.
        runs: timed invocations per file (interleaved, see :func:`side_by_side_latency`).
        threshold: binary decision threshold on the probability of the second class.
        keras_runs: timed batch-1 calls of the Keras model (a ``tf.function``; 0 skips).

    Returns:
        Index ``model`` ("Keras", then the names of ``paths``); columns ``file``,
        ``accuracy``, ``roc_auc``, ``agreement_with_keras`` (share of images with the same
        predicted class), ``max_prob_diff_vs_keras``, ``size_mb``,
        ``size_ratio_vs_float32``, ``latency_median_ms``, ``latency_p95_ms``, ``threads``,
        ``images``; ``.attrs["probabilities"]`` maps "keras" and each name of ``paths`` to
        its probabilities on ``images``.
    """
    classes = list(classes)
    k = len(classes)
    if k < 2:
        raise ValueError(f"classes={classes}: a classifier has at least 2 classes.")
    if not paths:
        raise ValueError("paths is empty: give {name: path of a .tflite file}.")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, H, W, 3) array; got {images.shape}.")
    y = _labels_index(labels, k)
    if len(y) != len(images):
        raise ValueError(f"{len(images)} images but {len(y)} labels.")
    reference = keras_probabilities(keras_model, images)
    reference_pred = _decide(reference, threshold)

    def row(file: str, probabilities: np.ndarray) -> dict[str, Any]:
        predicted = _decide(probabilities, threshold)
        return {
            "file": file,
            "accuracy": float(np.mean(predicted == y)),
            "roc_auc": _roc_auc(y, probabilities, k),
            "agreement_with_keras": float(np.mean(predicted == reference_pred)),
            "max_prob_diff_vs_keras": float(np.max(np.abs(probabilities - reference))),
        }

    rows: dict[str, dict[str, Any]] = {KERAS_ROW: row("", reference)}
    rows[KERAS_ROW]["size_mb"] = _keras_size_mb(keras_model)
    if keras_runs:
        timing = _keras_latency(keras_model, images[0], int(keras_runs))
        rows[KERAS_ROW].update(
            latency_median_ms=timing["median_ms"],
            latency_p95_ms=timing["p95_ms"],
            threads=timing["threads"],
        )
    models = {name: LiteModel(path, num_threads=threads) for name, path in paths.items()}
    probabilities = {"keras": reference}
    for name, model in models.items():
        probabilities[name] = model.predict(images)
        rows[name] = row(model.path.name, probabilities[name])
        rows[name]["size_mb"] = model.size_mb
    timings = side_by_side_latency(models, runs=runs, threads=threads)
    for name in models:
        rows[name].update(
            latency_median_ms=float(timings.loc[name, "median_ms"]),
            latency_p95_ms=float(timings.loc[name, "p95_ms"]),
            threads=int(threads),
        )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    float_row = _find_row(table, "float32")
    base = table.loc[float_row, "size_mb"] if float_row is not None else float("nan")
    table["size_ratio_vs_float32"] = table["size_mb"] / base
    table["images"] = len(images)
    columns = [
        "file",
        "accuracy",
        "roc_auc",
        "agreement_with_keras",
        "max_prob_diff_vs_keras",
        "size_mb",
        "size_ratio_vs_float32",
        "latency_median_ms",
        "latency_p95_ms",
        "threads",
        "images",
    ]
    table = table.reindex(columns=columns)
    # Each model's probabilities on ``images``, so that callers need not predict again.
    table.attrs["probabilities"] = probabilities
    return table


def save_comparison(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a :func:`compare_variants` table as CSV (read back by the checklist)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path)
    return path


def load_comparison(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`save_comparison`."""
    return pd.read_csv(path, index_col=0, keep_default_na=True)


# ---------------------------------------------------------------------------------------
# The sheet's acceptance rules
# ---------------------------------------------------------------------------------------

_ROW_ALIASES = {
    "keras": ("keras",),
    "float32": ("float32", "fp32", "model.tflite"),
    "int8": ("int8", "qt", "model_qt.tflite"),
    "float16": ("float16", "fp16", "model_fp16.tflite"),
    "dynamic": ("dynamic", "model_dynamic.tflite"),
}


def _find_row(table: pd.DataFrame, kind: str) -> Any | None:
    """The index label of the row of ``kind`` ("float32", "int8", ...), or None."""
    aliases = _ROW_ALIASES[kind]
    for label in table.index:
        if str(label).strip().lower() in aliases:
            return label
    return None


def _need(table: pd.DataFrame, kind: str) -> Any:
    label = _find_row(table, kind)
    if label is None:
        raise ValueError(
            f"the table has no {kind!r} row (rows: {list(table.index)}); name the rows as "
            "compare_variants does: 'Keras', 'float32', 'int8', 'float16'."
        )
    return label


def _status(drop: float, pass_below: float, fail_above: float) -> str:
    if drop < pass_below - _EPS:
        return "pass"
    if drop <= fail_above + _EPS:
        return "borderline"
    return "fail"


def acceptance(
    table: pd.DataFrame,
    float_tolerance: float = FLOAT_TOLERANCE,
    int8_max_delta: float = INT8_MAX_DELTA,
    int8_pass_delta: float = INT8_PASS_DELTA,
) -> pd.DataFrame:
    """The sheet's acceptance rules applied to a :func:`compare_variants` table.

    Rules:
        1. Keras vs float32 LiteRT: identical within ``float_tolerance`` (largest
           probability difference) and the same predicted class on every image.
        2. float32 vs INT8: the accuracy lost is below ``int8_pass_delta`` (1 point):
           pass; up to ``int8_max_delta`` (2 points): borderline; above: fail. A gain
           counts as no loss.
        3. float32 vs float16, when a float16 row exists: same bounds (informative).
        4. Recommendation: INT8 when rule 2 passes (with a caveat when borderline);
           float16 when INT8 fails and float16 holds (the sheet's fallback); float32
           otherwise; none when rule 1 fails (fix the conversion first).

    Returns:
        Columns ``rule``, ``status`` ("pass", "borderline", "fail", or the recommended
        variant for rule 4), ``value``, ``threshold``, ``evidence``; ``.attrs`` holds
        ``recommendation`` ("int8", "float16", "float32" or None).
    """
    if not 0 <= int8_pass_delta <= int8_max_delta:
        raise ValueError(
            f"int8_pass_delta={int8_pass_delta} must be between 0 and int8_max_delta="
            f"{int8_max_delta}."
        )
    if not float_tolerance >= 0:
        raise ValueError(f"float_tolerance={float_tolerance} must be >= 0.")
    # Rule 1 reads the float32 row's comparison with Keras; the Keras row must exist.
    _need(table, "keras")
    float_row, int8_row = _need(table, "float32"), _need(table, "int8")
    rows = []
    diff = float(table.loc[float_row, "max_prob_diff_vs_keras"])
    agreement = float(table.loc[float_row, "agreement_with_keras"])
    identical = diff <= float_tolerance and agreement >= 1.0 - _EPS
    rows.append(
        {
            "rule": "Keras vs float32 LiteRT: identical",
            "status": "pass" if identical else "fail",
            "value": diff,
            "threshold": float_tolerance,
            "evidence": (
                f"largest probability difference {diff:.2e} "
                f"({'≤' if diff <= float_tolerance else '>'} {float_tolerance:.0e}); same class "
                f"on {agreement:.1%} of the images"
                + ("" if identical else ": the conversion changed the model, fix it first")
            ),
        }
    )
    acc32 = float(table.loc[float_row, "accuracy"])

    def delta_rule(label: Any, name: str) -> dict:
        acc = float(table.loc[label, "accuracy"])
        drop = acc32 - acc
        status = _status(drop, int8_pass_delta, int8_max_delta)
        if drop > _EPS:
            bound = {
                "pass": f"below {int8_pass_delta:.0%}",
                "borderline": f"between {int8_pass_delta:.0%} and {int8_max_delta:.0%}",
                "fail": f"above {int8_max_delta:.0%}",
            }[status]
            change = f"{drop * 100:.2f} points lost ({bound})"
        elif drop < -_EPS:
            change = f"{-drop * 100:.2f} points gained (no loss)"
        else:
            change = "unchanged"
        return {
            "rule": f"float32 vs {name}: accuracy delta",
            "status": status,
            "value": drop,
            "threshold": int8_max_delta,
            "evidence": (
                f"accuracy {acc32:.4f} → {acc:.4f}: {change}; {name} agrees with Keras on "
                f"{float(table.loc[label, 'agreement_with_keras']):.1%} of the images"
            ),
        }

    int8_rule = delta_rule(int8_row, "INT8")
    rows.append(int8_rule)
    float16_row = _find_row(table, "float16")
    float16_rule = delta_rule(float16_row, "float16") if float16_row is not None else None
    if float16_rule is not None:
        rows.append(float16_rule)

    if not identical:
        choice = None
        sentence = (
            "ship nothing yet: the float32 LiteRT model differs from Keras, so every "
            "quantized variant is suspect; fix the conversion first"
        )
    elif int8_rule["status"] == "pass":
        choice = "int8"
        sentence = "ship INT8 (model_qt.tflite): it keeps the accuracy and is the smallest"
    elif int8_rule["status"] == "borderline":
        choice = "int8"
        sentence = (
            "ship INT8 (model_qt.tflite), borderline: check the loss on more validation "
            "images or per class, and keep float16 as the fallback"
        )
    elif float16_rule is not None and float16_rule["status"] != "fail":
        choice = "float16"
        sentence = (
            "ship float16 (model_fp16.tflite): INT8 loses too much accuracy, float16 keeps "
            "it at half the float32 size (the sheet's fallback)"
        )
    else:
        choice = "float32"
        tail = " and float16 too" if float16_rule is not None else "; convert float16, compare"
        sentence = "ship float32 (model.tflite): INT8 loses too much accuracy" + tail
    rows.append(
        {
            "rule": "recommendation",
            "status": choice or "none",
            "value": float("nan"),
            "threshold": float("nan"),
            "evidence": sentence,
        }
    )
    result = pd.DataFrame(rows, columns=["rule", "status", "value", "threshold", "evidence"])
    result.attrs["recommendation"] = choice
    return result


def speed_verdict(table: pd.DataFrame) -> str:
    """Say plainly whether INT8 runs faster than float32 here, with the ratio."""
    float_row, int8_row = _need(table, "float32"), _need(table, "int8")
    t32 = float(table.loc[float_row, "latency_median_ms"])
    t8 = float(table.loc[int8_row, "latency_median_ms"])
    threads = table.loc[int8_row, "threads"] if "threads" in table.columns else "?"
    if not (t32 > 0 and t8 > 0):
        raise ValueError("the table has no latency for the float32 and INT8 rows.")
    ratio = t32 / t8
    where = f"(median {t8:.2f} ms vs {t32:.2f} ms per image at batch 1, {threads} threads)"
    if ratio >= 1.05:
        return f"INT8 is {ratio:.2f}x faster than float32 here {where}."
    if ratio > 0.95:
        return f"INT8 runs about as fast as float32 here ({ratio:.2f}x) {where}."
    return (
        f"INT8 is SLOWER than float32 here: {1 / ratio:.2f}x the time {where}. On x86 with "
        "XNNPACK this happens when INT8 ops run outside the delegate (see "
        "quantization.delegation_report), e.g. MobileNetV3's HARD_SWISH; "
        "convert(..., hard_swish='xnnpack') rewrites it."
    )


# ---------------------------------------------------------------------------------------
# Shipping artefacts
# ---------------------------------------------------------------------------------------


def _check_classes(classes: Sequence[str]) -> list[str]:
    classes = [str(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"classes={classes}: a classifier has at least 2 classes.")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes={classes} has duplicates.")
    bad = [c for c in classes if not c or "\n" in c or "\r" in c or c != c.strip()]
    if bad:
        raise ValueError(f"class names {bad!r} are empty, hold line breaks or edge spaces.")
    return classes


def write_labels(path: str | os.PathLike, classes: Sequence[str]) -> Path:
    """Write the class names in the model's output order, one per line (UTF-8)."""
    classes = _check_classes(classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(classes) + "\n", encoding="utf-8")
    return path


def read_labels(path: str | os.PathLike) -> list[str]:
    """The class names written by :func:`write_labels`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line]


def _io_entry(detail: Mapping) -> dict:
    dtype = np.dtype(detail["dtype"]).name
    return {
        "dtype": dtype,
        "shape": [int(s) for s in detail["shape"]],
        "quantization": _quantization(detail),
    }


def build_metadata(
    classes: Sequence[str],
    image_size: int | Sequence[int] | None = None,
    tflite_path: str | os.PathLike | None = None,
    threshold: float = 0.5,
    metrics: Mapping[str, Any] | None = None,
    **info: Any,
) -> dict:
    """The metadata dict of :func:`write_metadata` (see there)."""
    classes = _check_classes(classes)
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold={threshold} must be strictly between 0 and 1.")
    entry_in: dict[str, Any] = {"dtype": "float32", "shape": None, "quantization": None}
    entry_out: dict[str, Any] = {"dtype": "float32", "shape": None, "quantization": None}
    model_file = None
    if tflite_path is not None:
        model = LiteModel(tflite_path, num_threads=1)
        entry_in, entry_out = _io_entry(model.input_details), _io_entry(model.output_details)
        model_file = model.path.name
        size = model.image_size
        if image_size is not None:
            given = (int(image_size),) * 2 if np.isscalar(image_size) else tuple(image_size)
            if tuple(int(s) for s in given) != size:
                raise ValueError(f"image_size={image_size} but {model_file} takes {size}.")
    elif image_size is None:
        raise ValueError("give image_size= (the training side) or tflite_path= to read it.")
    else:
        size = (int(image_size),) * 2 if np.isscalar(image_size) else tuple(image_size)
    height, width = (int(s) for s in size)
    quant = entry_in["quantization"]
    if quant is None:
        pixels = "float32 RGB pixels in 0-255 (no scaling outside the model)"
    else:
        pixels = (
            f"{entry_in['dtype']} = round(pixel / {quant['scale']:.6g}) + {quant['zero_point']}, "
            "clipped to the type's range, from RGB pixels in 0-255"
        )
    binary = len(classes) == 2
    if binary:
        meaning = (
            f"probability of the second class, {classes[1]!r} (sigmoid); "
            f"the first class {classes[0]!r} has 1 - probability"
        )
        rule = f"{classes[1]!r} when probability >= {threshold:g}, else {classes[0]!r}"
    else:
        meaning = "probability of each class, in the order of 'classes' (softmax)"
        rule = "the class with the highest probability"
    if entry_out["quantization"] is not None:
        q = entry_out["quantization"]
        meaning += f"; dequantize first: (value - {q['zero_point']}) * {q['scale']:.6g}"
    return {
        "model_file": model_file,
        "classes": classes,
        "num_classes": len(classes),
        "input": {
            **entry_in,
            "height": height,
            "width": width,
            "channels": 3,
            "layout": "NHWC, one image per call (batch 1)",
            "color": "RGB",
            "pixel_range": [0, 255],
            "pixels": pixels,
            "resize": f"bilinear with antialias to {height}x{width}, as in training",
        },
        "output": {**entry_out, "meaning": meaning},
        "decision_threshold": float(threshold) if binary else None,
        "decision_rule": rule,
        "metrics": dict(metrics or {}),
        **info,
    }


def write_metadata(path: str | os.PathLike, **info: Any) -> Path:
    """Write the model's metadata as JSON.

    Keyword arguments: ``classes`` (required, output order), ``image_size`` (or read from
    ``tflite_path``), ``tflite_path`` (reads the input/output dtypes, shapes and
    quantization parameters from the file), ``threshold`` (0.5), ``metrics`` (e.g.
    validation accuracy per variant); any other keyword is stored as given.

    The JSON holds ``classes``, ``input`` (dtype, shape, height, width, pixel range 0-255,
    ``quantization`` = {scale, zero_point} for an integer input, else null),
    ``output`` (dtype, ``meaning``: for binary "probability of the second class ...",
    quantization), ``decision_threshold``, ``decision_rule`` and ``metrics``.
    """
    data = build_metadata(**info)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(data), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The dict written by :func:`write_metadata`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------
# Predicting a folder
# ---------------------------------------------------------------------------------------


def _scan_folder(folder: Path):
    """Scan ``folder``: class subfolders as they are, or a flat folder through a link."""
    from helpers import dataset

    subfolders = [e for e in folder.iterdir() if e.is_dir() and not dataset.is_system_name(e.name)]
    if subfolders:
        result = dataset.scan(folder)
        if result.ignored_root_files:
            warnings.warn(
                f"{len(result.ignored_root_files)} file(s) at the top of {folder} are ignored "
                f"because it has class subfolders (e.g. {result.ignored_root_files[0]}).",
                UserWarning,
                stacklevel=3,
            )
        return result, True, None
    # A flat folder: scan expects <root>/<class>/..., so scan a temporary root holding
    # one link to the folder (the user's folder is only read).
    tmp = tempfile.TemporaryDirectory(prefix="predict-folder-")
    link = Path(tmp.name) / "images"
    os.symlink(folder, link, target_is_directory=True)
    return dataset.scan(tmp.name), False, tmp


def predict_folder(
    tflite_path: str | os.PathLike,
    folder: str | os.PathLike,
    metadata_path: str | os.PathLike | None = None,
    num_threads: int = 2,
) -> pd.DataFrame:
    """Run a ``.tflite`` classifier on every image of a folder.

    The folder is checked and listed by ``dataset.scan`` (unreadable files are named in
    a warning and left out), then decoded and resized by ``dataset.make_dataset``
    exactly as in training, so the predictions equal the notebook's. A folder with class
    subfolders gives a ``true_label`` column too.

    Classes, threshold and image size come from ``metadata_path`` (or a
    ``metadata.json``, else a ``labels.txt``, beside the model); without them the labels
    are class indices and the threshold 0.5.

    Returns:
        Columns ``file`` (path relative to the folder), ``probability`` (binary: of the
        second class; else of the predicted class), ``predicted_label`` and, with class
        subfolders, ``true_label``; multi-class adds one ``p_<class>`` column per class.
        ``.attrs`` holds ``unusable`` (relpath: reason) and ``classes_from``.
    """
    from helpers import dataset

    model = LiteModel(tflite_path, num_threads=num_threads)
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder of images.")
    meta_path = Path(metadata_path) if metadata_path is not None else None
    if meta_path is None and (model.path.parent / METADATA_FILE).is_file():
        meta_path = model.path.parent / METADATA_FILE
    classes: list[str] | None = None
    threshold = 0.5
    source = "indices"
    if meta_path is not None:
        meta = read_metadata(meta_path)
        classes = list(meta["classes"])
        threshold = float(meta.get("decision_threshold") or 0.5)
        size = (meta["input"]["height"], meta["input"]["width"])
        if tuple(size) != model.image_size:
            raise ValueError(
                f"{meta_path} says the input is {tuple(size)} but {model.path.name} takes "
                f"{model.image_size}: the metadata belongs to another model."
            )
        source = str(meta_path)
    elif (model.path.parent / LABELS_FILE).is_file():
        classes = read_labels(model.path.parent / LABELS_FILE)
        source = str(model.path.parent / LABELS_FILE)

    result, labelled, tmp = _scan_folder(root)
    try:
        good = result.good
        bad = result.bad
        unusable = {
            (rel if labelled else rel.split("/", 1)[1]): reason
            for rel, reason in zip(bad["relpath"], bad["reason"], strict=True)
        }
        if unusable:
            listed = "; ".join(f"{k}: {v}" for k, v in list(unusable.items())[:5])
            warnings.warn(
                f"{len(unusable)} file(s) could not be used and are left out: {listed}",
                UserWarning,
                stacklevel=2,
            )
        if good.empty:
            raise ValueError(f"no usable image in {root} (unusable: {len(unusable)}).")
        folder_labels = sorted(set(good["label"]))
        ds = dataset.make_dataset(
            good,
            folder_labels,
            model.image_size,
            batch_size=32,
            shuffle=False,
            cache=False,
            label_mode="int",
        )
        probabilities = np.concatenate(
            [model.predict(images) for images, _ in ds.as_numpy_iterator()]
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    relpaths = good["relpath"].tolist()
    if not labelled:
        relpaths = [r.split("/", 1)[1] for r in relpaths]
    n_out = 2 if probabilities.ndim == 1 else probabilities.shape[1]
    if classes is not None and len(classes) != n_out:
        raise ValueError(
            f"{source} lists {len(classes)} classes but {model.path.name} has {n_out} outputs."
        )
    names = classes or [str(i) for i in range(n_out)]
    predicted = _decide(probabilities, threshold)
    frame = pd.DataFrame({"file": relpaths})
    if probabilities.ndim == 1:
        frame["probability"] = probabilities
    else:
        frame["probability"] = probabilities.max(axis=1)
        for i, name in enumerate(names):
            frame[f"p_{name}"] = probabilities[:, i]
    frame["predicted_label"] = [names[i] for i in predicted]
    if labelled:
        frame["true_label"] = good["label"].tolist()
    frame.attrs["unusable"] = unusable
    frame.attrs["classes_from"] = source
    frame.attrs["threshold"] = threshold
    return frame


# ---------------------------------------------------------------------------------------
# Pre-deployment checklist
# ---------------------------------------------------------------------------------------


def _export_dir(run_dir: Path, export_dir: str | os.PathLike | None) -> Path:
    if export_dir is not None:
        return Path(export_dir)
    return run_dir / "export" if (run_dir / "export").is_dir() else run_dir


def pre_deployment_checklist(
    run_dir: str | os.PathLike,
    target_size_mb: float = 10.0,
    export_dir: str | os.PathLike | None = None,
    comparison: pd.DataFrame | None = None,
    int8_max_delta: float = INT8_MAX_DELTA,
) -> pd.DataFrame:
    """The sheet's pre-deployment checklist, evaluated from a run folder's artefacts.

    Items:
        1. Learning curves checked: ``phase*_history.json`` present and the diagnosis of
           each ``phase*_metrics.json`` not "overfitting".
        2. Test set evaluated once: ``test_access.json`` records exactly one access.
        3. Conversions tested: ``model.tflite`` and ``model_qt.tflite`` exist, load in
           LiteRT and give finite outputs.
        4. Quantized accuracy checked: the INT8 accuracy is within ``int8_max_delta`` of
           float32 in ``comparison`` (or ``comparison.csv`` beside the models).
        5. Size acceptable: ``model_qt.tflite`` is at most ``target_size_mb`` MB.

    Args:
        run_dir: the run folder (notebooks 03-05 write there).
        target_size_mb: the size budget of the target device, in MB.
        export_dir: folder of the ``.tflite`` files; default ``run_dir/export`` if it
            exists, else ``run_dir``.
        comparison: a :func:`compare_variants` table; default: read ``comparison.csv``.
        int8_max_delta: the largest accuracy loss accepted for INT8.

    Returns:
        Columns ``item``, ``passed`` (bool), ``evidence``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run_dir={str(run_dir)!r} is not a folder.")
    if not target_size_mb > 0:
        raise ValueError(f"target_size_mb={target_size_mb} must be positive (MB).")
    out = _export_dir(run_dir, export_dir)
    items: list[dict[str, Any]] = []

    # 1. Learning curves.
    phases = []
    for name in ("phase1", "phase2"):
        metrics = read_json(run_dir / f"{name}_metrics.json", default=None)
        history = (run_dir / f"{name}_history.json").is_file()
        if metrics is not None or history:
            verdict = (metrics or {}).get("diagnosis")
            if isinstance(verdict, Mapping):
                verdict = verdict.get("verdict")
            phases.append((name, history, verdict))
    if not phases:
        items.append(
            {
                "item": "Learning curves checked",
                "passed": False,
                "evidence": f"no phase1/phase2 history or metrics in {run_dir}",
            }
        )
    else:
        problems = [
            f"{n}: {'no history' if not h else 'no diagnosis' if v is None else v}"
            for n, h, v in phases
            if not h or v is None or v == "overfitting"
        ]
        listed = ", ".join(f"{n} {v or 'undiagnosed'}" for n, _, v in phases)
        items.append(
            {
                "item": "Learning curves checked",
                "passed": not problems,
                "evidence": f"diagnosis: {listed}"
                + (f"; problem: {'; '.join(problems)}" if problems else "; none overfitting"),
            }
        )

    # 2. Test set evaluated once.
    log = read_json(run_dir / "test_access.json", default=None)
    accesses = (log or {}).get("accesses", [])
    if not accesses:
        evidence = "test_access.json records no access: the test set was not evaluated"
    elif len(accesses) == 1:
        first = accesses[0]
        evidence = f"one access ({first.get('time')}, for {first.get('purpose')!r})"
    else:
        evidence = f"{len(accesses)} accesses: " + "; ".join(
            f"{a.get('time')} {a.get('purpose')!r}" for a in accesses[:5]
        )
    items.append(
        {"item": "Test set evaluated once", "passed": len(accesses) == 1, "evidence": evidence}
    )

    # 3. Conversions tested.
    loaded: dict[str, LiteModel] = {}
    notes = []
    for file in ("model.tflite", "model_qt.tflite"):
        path = out / file
        if not path.is_file():
            notes.append(f"{file} missing in {out}")
            continue
        try:
            model = LiteModel(path, num_threads=1)
            probe = np.full((1, *model.image_size, 3), 127.0, np.float32)
            value = model.predict(probe)
            if not np.all(np.isfinite(value)):
                raise ValueError("non-finite output")
            loaded[file] = model
            notes.append(f"{file} loads and predicts ({model.size_mb:.2f} MB)")
        except Exception as error:  # noqa: BLE001 - any failure is the evidence.
            notes.append(f"{file} fails: {error}")
    items.append(
        {
            "item": "Conversions tested (float32 and INT8)",
            "passed": len(loaded) == 2,
            "evidence": "; ".join(notes),
        }
    )

    # 4. Quantized accuracy checked.
    table = comparison
    if table is None and (out / COMPARISON_FILE).is_file():
        table = load_comparison(out / COMPARISON_FILE)
    if table is None:
        items.append(
            {
                "item": f"Quantized accuracy checked (loss < {int8_max_delta:.0%})",
                "passed": False,
                "evidence": f"no comparison table: run compare_variants and save_comparison "
                f"to {out / COMPARISON_FILE}, or pass comparison=",
            }
        )
    else:
        float_row, int8_row = _find_row(table, "float32"), _find_row(table, "int8")
        if float_row is None or int8_row is None:
            items.append(
                {
                    "item": f"Quantized accuracy checked (loss < {int8_max_delta:.0%})",
                    "passed": False,
                    "evidence": f"the comparison has no float32 and int8 rows: {list(table.index)}",
                }
            )
        else:
            a32 = float(table.loc[float_row, "accuracy"])
            a8 = float(table.loc[int8_row, "accuracy"])
            drop = a32 - a8
            items.append(
                {
                    "item": f"Quantized accuracy checked (loss < {int8_max_delta:.0%})",
                    "passed": drop <= int8_max_delta + _EPS,
                    "evidence": f"float32 {a32:.4f}, INT8 {a8:.4f}: "
                    + (
                        f"{drop * 100:.2f} points lost"
                        if drop > _EPS
                        else f"{-drop * 100:.2f} points gained"
                        if drop < -_EPS
                        else "unchanged"
                    )
                    + (f" on {int(table['images'].iloc[0])} images" if "images" in table else ""),
                }
            )

    # 5. Size.
    int8_path = out / "model_qt.tflite"
    if int8_path.is_file():
        size = int8_path.stat().st_size / 1e6
        items.append(
            {
                "item": f"Size acceptable for the target (≤ {target_size_mb:g} MB)",
                "passed": size <= target_size_mb,
                "evidence": f"model_qt.tflite is {size:.2f} MB",
            }
        )
    else:
        items.append(
            {
                "item": f"Size acceptable for the target (≤ {target_size_mb:g} MB)",
                "passed": False,
                "evidence": f"model_qt.tflite missing in {out}",
            }
        )
    return pd.DataFrame(items, columns=["item", "passed", "evidence"])

"""Converted LiteRT models checked on many images (the sheet's acceptance rules, latency),
and what ships with them: labels, metadata, a folder's predictions, the checklist.
Sizes are in MB (10^6 bytes), latencies in milliseconds per image at batch 1."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.runs import jsonable, read_json

LABELS_FILE, METADATA_FILE, COMPARISON_FILE = "labels.txt", "metadata.json", "comparison.csv"
KERAS_ROW = "Keras"
#: The sheet's rule on INT8: pass below 1 point of accuracy lost, borderline up to 2.
INT8_PASS_DELTA, INT8_MAX_DELTA = 0.01, 0.02
#: Float32 LiteRT against Keras: the largest probability difference allowed.
FLOAT_TOLERANCE = 1e-4
_EPS = 1e-9  # Accuracy deltas below this are float rounding.


def decide(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class indices: with one sigmoid output, 1 where p >= ``threshold``;
    with one output per class (softmax), the most probable class (no threshold)."""
    p = np.asarray(probabilities)
    p = p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p
    return (p >= threshold).astype(int) if p.ndim == 1 else p.argmax(axis=-1)


def fit_threshold(probs, labels, classes, bona_fide="real", method="eer", target_apcer=0.05):
    """The course's one decision threshold, fitted on validation (notebooks 05 and 06):
    ``(threshold on P(second class) for decide, choose_threshold's dict)``; without
    ``bona_fide`` among ``classes`` ``(0.5, None)``; 3+ classes decide by argmax anyway."""
    from helpers import antispoofing

    if bona_fide not in classes:
        return 0.5, None
    scores = antispoofing.bona_fide_scores(probs, classes, bona_fide)
    attack = antispoofing.is_attack(labels, classes, bona_fide)
    info = antispoofing.choose_threshold(scores, attack, method, target_apcer, split_name="val")
    t = info["threshold"]
    return (0.5 if len(classes) > 2 else t if classes[1] == bona_fide else 1 - t), info


def _quantization(detail: Mapping) -> dict | None:
    """``{"scale", "zero_point"}`` of an integer tensor, None for a float one."""
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return None
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)}


class LiteModel:
    """Notebook 06's interpreter loop on many images, one at a time (batch 1), the input
    quantized and the output dequantized when they are integer."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.num_threads = Path(path), num_threads
        if not self.path.is_file():
            raise FileNotFoundError(f"path={str(path)!r} is not a file: convert the model first.")
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input_details = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()[0]
        self.image_size = tuple(int(s) for s in self.input_details["shape"][1:3])
        self.size_mb = self.path.stat().st_size / 1e6

    def _to_input(self, image: np.ndarray) -> np.ndarray:
        dtype, q = np.dtype(self.input_details["dtype"]), _quantization(self.input_details)
        if q is None:
            return image[None].astype(dtype)
        values = np.round(image[None] / q["scale"]) + q["zero_point"]
        return np.clip(values, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)

    def predict(self, images: np.ndarray, times: list | None = None) -> np.ndarray:
        """Probabilities for float RGB 0-255 images (N, H, W, 3), or one image (H, W, 3):
        (N,) of the second class for one sigmoid output, else (N, K); each ``invoke``'s
        milliseconds are appended to ``times`` when given (a latency measurement)."""
        images = np.asarray(images, dtype=np.float32)
        images = images[None] if images.ndim == 3 else images
        if images.ndim != 4 or tuple(images.shape[1:]) != (*self.image_size, 3):
            raise ValueError(
                f"images are {images.shape} but {self.path.name} takes {self.image_size} RGB: "
                "resize them as in training (dataset.make_dataset with the same image_size)."
            )
        q, outputs = _quantization(self.output_details), []
        for image in images:
            self.interpreter.set_tensor(self.input_details["index"], self._to_input(image))
            elapsed = _ms(self.interpreter.invoke)
            if times is not None:
                times.append(elapsed)
            raw = self.interpreter.get_tensor(self.output_details["index"]).astype(np.float32)
            outputs.append(raw if q is None else (raw - q["zero_point"]) * np.float32(q["scale"]))
        out = np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)
        return out[:, 0] if out.shape[-1] == 1 else out


def _ms(call) -> float:
    """Milliseconds of one call."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def _predict_side_by_side(models: Mapping[str, LiteModel], images, runs: int, chunk: int = 20):
    """Each model's probabilities on ``images`` and its batch-1 latency from the same pass: the
    models take turns of ``chunk`` images (load from other programs hits them alike), every
    invoke is timed (row i: image i) and the images are cycled until ``runs`` per model."""
    order = np.resize(np.arange(len(images)), max(len(images), runs))
    probabilities, times = {name: [] for name in models}, {name: [] for name in models}
    for model in models.values():
        model.predict(images[:3])  # Warm-up: the first invokes set up the delegate.
    for start in range(0, len(order), chunk):
        for name, model in models.items():
            batch = images[order[start : start + chunk]]
            probabilities[name].append(model.predict(batch, times[name]))
    first = {name: np.concatenate(p)[: len(images)] for name, p in probabilities.items()}
    return first, pd.DataFrame(times)


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < k:
        return float("nan")
    if probabilities.ndim == 1:
        return float(roc_auc_score(labels, probabilities))
    # Quantized softmax rows sum to 1 only within rounding, which scikit-learn refuses.
    rows = np.clip(probabilities.astype(np.float64), 1e-12, None)
    rows /= rows.sum(axis=1, keepdims=True)
    return float(roc_auc_score(labels, rows, multi_class="ovr", labels=list(range(k))))


def _keras_row(model, image: np.ndarray, runs: int) -> dict:
    """Size of the ``.keras`` file and batch-1 latency of a ``tf.function`` call."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="keras-size-") as tmp:
        model.save(Path(tmp) / "model.keras")
        row = {"size_mb": (Path(tmp) / "model.keras").stat().st_size / 1e6}
    if runs:
        predict, x = tf.function(lambda x: model(x, training=False)), tf.constant(image[None])
        times = [_ms(lambda: predict(x).numpy()) for _ in range(runs + 5)][5:]  # 5 warm-ups.
        row |= {"latency_median_ms": np.median(times), "latency_p95_ms": np.percentile(times, 95)}
        row["threads"] = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return row


def compare_variants(
    keras_model, paths, images, labels, classes, threads=2, runs=200, threshold=0.5, keras_runs=50
) -> pd.DataFrame:
    """The Keras model and each ``.tflite`` of ``paths`` on the same images and class-index
    ``labels``, decided by :func:`decide` at ``threshold``: one row per model ("Keras", then
    the names of ``paths``) with accuracy, ROC AUC, agreement and flips vs Keras, size, batch-1
    latency (each file's predictions timed, at least ``runs``; ``keras_runs`` for Keras);
    ``.attrs``: ``probabilities`` (each model's, "keras" for Keras) and ``latency_ms`` (per-run
    times of each file, row i of every file from the same turn)."""
    images = np.asarray(images, dtype=np.float32)
    y, k = np.asarray(labels).reshape(-1).astype(int), len(classes)
    if k < 2 or not paths or images.ndim != 4 or len(images) == 0 or len(y) != len(images):
        raise ValueError(
            f"compare_variants needs 2+ classes (got {k}), 1+ paths (got {len(paths)}) and "
            f"as many labels ({len(y)}) as (N, H, W, 3) images {images.shape}."
        )
    reference = keras_model.predict(images, batch_size=32, verbose=0).astype(np.float32)
    probabilities = {"keras": reference[:, 0] if reference.shape[-1] == 1 else reference}
    models = {name: LiteModel(path, num_threads=threads) for name, path in paths.items()}
    lite, times = _predict_side_by_side(models, images, runs)
    probabilities |= lite
    rows = {}
    for name, probs in probabilities.items():
        predicted = decide(probs, threshold)
        rows[KERAS_ROW if name == "keras" else name] = {
            "file": models[name].path.name if name in models else "",
            "accuracy": np.mean(predicted == y),
            "roc_auc": _roc_auc(y, probs, k),
            "agreement_with_keras": np.mean(predicted == decide(probabilities["keras"], threshold)),
            "flips_vs_keras": int(np.sum(predicted != decide(probabilities["keras"], threshold))),
            "max_prob_diff_vs_keras": np.max(np.abs(probs - probabilities["keras"])),
            "size_mb": models[name].size_mb if name in models else np.nan,
        }
    rows[KERAS_ROW] |= _keras_row(keras_model, images[0], int(keras_runs))
    for name in models:
        rows[name] |= {"latency_median_ms": times[name].median(), "threads": threads}
        rows[name]["latency_p95_ms"] = times[name].quantile(0.95)
    columns = [*rows[KERAS_ROW], "latency_median_ms", "latency_p95_ms", "threads"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(dict.fromkeys(columns)))
    base = table["size_mb"].get("float32", np.nan)
    table.insert(7, "size_ratio_vs_float32", table["size_mb"] / base)
    table = table.assign(images=len(y)).rename_axis("model")
    table.attrs.update(probabilities=probabilities, latency_ms=times)
    return table


def _row(table: pd.DataFrame, name: str) -> pd.Series:
    if name not in table.index:
        raise ValueError(
            f"the table has no {name!r} row (rows: {list(table.index)}); name the rows as "
            "compare_variants does: 'Keras', 'float32', 'int8', 'float16'."
        )
    return table.loc[name]


def _change(drop: float) -> str:
    """A change in accuracy, in points, without a word for its direction (see the verdicts)."""
    return f"change {-drop * 100:+.2f} points" if abs(drop) > _EPS else "no change"


def _delta_rule(table: pd.DataFrame, name: str, deltas: tuple[float, float]) -> list:
    """The row of acceptance's table for "float32 vs ``name``"."""
    acc32, row = float(_row(table, "float32")["accuracy"]), _row(table, name)
    drop = acc32 - float(row["accuracy"])
    status = "pass" if drop < deltas[0] - _EPS else "borderline"
    status = "fail" if drop > deltas[1] + _EPS else status
    evidence = (
        f"accuracy {acc32:.4f} → {row['accuracy']:.4f}: {_change(drop)} (pass below "
        f"{deltas[0]:.0%}, fail above {deltas[1]:.0%}); {row['flips_vs_keras']:.0f} of "
        f"{row['images']:.0f} predictions differ from Keras; ROC AUC change "
        f"{row['roc_auc'] - _row(table, 'float32')['roc_auc']:+.4f}"
    )
    label = "INT8" if name == "int8" else name
    return [f"float32 vs {label}: accuracy delta", status, drop, deltas[1], evidence]


def _recommend(identical: bool, int8: str, float16: str | None) -> tuple[str | None, str]:
    """The variant to ship, and why, from the rules' statuses."""
    if not identical:
        return None, "ship nothing yet: float32 LiteRT differs from Keras; fix the conversion"
    if int8 != "fail":
        caveat = ", borderline: check more images, keep float16 as fallback" * (int8 != "pass")
        return "int8", f"ship INT8 (model_qt.tflite){caveat}: the smallest file"
    if float16 not in (None, "fail"):
        return "float16", "ship float16 (model_fp16.tflite): INT8 loses too much (the fallback)"
    tail = " and float16 too" if float16 else "; convert float16 and compare"
    return "float32", f"ship float32 (model.tflite): INT8 loses too much accuracy{tail}"


def acceptance(
    table: pd.DataFrame,
    float_tolerance: float = FLOAT_TOLERANCE,
    int8_max_delta: float = INT8_MAX_DELTA,
    int8_pass_delta: float = INT8_PASS_DELTA,
) -> pd.DataFrame:
    """The sheet's rules on a :func:`compare_variants` table: Keras and float32 identical
    (probabilities within ``float_tolerance``, same classes); INT8 (and float16) losing
    less than ``int8_pass_delta`` of accuracy passes, up to ``int8_max_delta`` is
    borderline, more fails; the recommendation (``.attrs["recommendation"]``) is INT8
    unless it fails, then float16, then float32, and None when the first rule fails. Every
    other file of the table (dynamic range, LiteRT Quantizer's) gets the same accuracy rule,
    for information: it does not change the recommendation."""
    if not 0 <= int8_pass_delta <= int8_max_delta:
        raise ValueError(f"int8_pass_delta={int8_pass_delta} must be in [0, int8_max_delta].")
    _row(table, KERAS_ROW)
    diff, agreement = _row(table, "float32")[["max_prob_diff_vs_keras", "agreement_with_keras"]]
    identical = diff <= float_tolerance and agreement >= 1.0 - _EPS
    evidence = f"largest probability difference {diff:.2e} (tolerance {float_tolerance:.0e})"
    evidence += f"; same class on {agreement:.1%} of the images"
    status = "pass" if identical else "fail"
    rows = [["Keras vs float32 LiteRT: identical", status, diff, float_tolerance, evidence]]
    names = ["int8"] + ["float16"] * ("float16" in table.index)
    rows += [_delta_rule(table, name, (int8_pass_delta, int8_max_delta)) for name in names]
    choice, why = _recommend(identical, rows[1][1], rows[2][1] if len(rows) > 2 else None)
    others = table.index.difference([KERAS_ROW, "float32", *names], sort=False)
    rows += [_delta_rule(table, name, (int8_pass_delta, int8_max_delta)) for name in others]
    rows.append(["recommendation", choice or "none", np.nan, np.nan, why])
    result = pd.DataFrame(rows, columns=["rule", "status", "value", "threshold", "evidence"])
    result.attrs["recommendation"] = choice
    return result


def speed_verdict(table: pd.DataFrame, interval: tuple[float, float] | None = None) -> str:
    """Say plainly whether INT8 runs faster than float32 here (ratio of median latencies):
    a direction only when ``interval`` (else ratio / 1.05 to ratio x 1.05) excludes 1."""
    t32, t8 = (float(_row(table, n)["latency_median_ms"]) for n in ("float32", "int8"))
    ratio, where = t32 / t8, f"(median {t8:.2f} ms vs {t32:.2f} ms per image at batch 1"
    low, high = interval or (ratio / 1.05, ratio * 1.05)
    where += f"; 95 % interval {low:.2f}-{high:.2f}x)" if interval else ")"
    if low > 1:
        return f"INT8 is {ratio:.2f}x faster than float32 here {where}."
    if high >= 1:
        return f"No clear speed difference between INT8 and float32 here ({ratio:.2f}x) {where}."
    return (
        f"INT8 is SLOWER than float32 here: {1 / ratio:.2f}x the time {where}. With XNNPACK "
        "this happens when INT8 ops run outside the delegate (quantization.delegation_report), "
        "e.g. MobileNetV3's HARD_SWISH, which XNNPACK runs in float only."
    )


def _check_classes(classes: Sequence[str]) -> list[str]:
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes={classes}: give at least 2 class names, without duplicates.")
    if any(not c or "\n" in c or "\r" in c or c != c.strip() for c in classes):
        raise ValueError(f"classes={classes!r}: names must not be empty or hold line breaks.")
    return classes


def write_labels(path: str | os.PathLike, classes: Sequence[str]) -> Path:
    """Write the class names in the model's output order, one per line (UTF-8)."""
    Path(path).write_text("\n".join(_check_classes(classes)) + "\n", encoding="utf-8")
    return Path(path)


def _io_entry(detail: Mapping, key: str, text: str) -> dict:
    """A tensor's dtype, shape and quantization, and how to feed or read it (``key``)."""
    q = _quantization(detail)
    if q is not None and key == "pixels":
        text += "; then quantized: round(pixel / scale) + zero_point"
    elif q is not None:
        text += "; dequantize first: (value - zero_point) * scale"
    dtype, shape = np.dtype(detail["dtype"]).name, detail["shape"]
    return {"dtype": dtype, "shape": shape, "quantization": q, key: text}


def write_metadata(path, classes, tflite_path, threshold=0.5, metrics=None, **info) -> Path:
    """Write JSON that says how to feed the model of ``tflite_path`` (its input's dtype,
    shape, size, quantization, pixels) and read its output (``meaning``,
    ``decision_threshold``, ``decision_rule``); ``metrics`` and ``info`` are stored as given."""
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold={threshold} must be strictly between 0 and 1.")
    model, classes = LiteModel(tflite_path, num_threads=1), _check_classes(classes)
    pixels = "RGB pixels in 0-255, resized (bilinear, antialias) as in training"
    meaning = "probability of each class, in the order of 'classes' (softmax)"
    rule = "the class with the highest probability"
    if len(classes) == 2:
        meaning = f"probability of the second class, {classes[1]!r} (sigmoid)"
        rule = f"{classes[1]!r} when probability >= {threshold:g}, else {classes[0]!r}"
    height, width = model.image_size
    data = {"model_file": model.path.name, "classes": classes, "num_classes": len(classes)}
    data["input"] = _io_entry(model.input_details, "pixels", pixels)
    data["input"] |= {"height": height, "width": width, "pixel_range": [0, 255]}
    data["output"] = _io_entry(model.output_details, "meaning", meaning)
    data["decision_threshold"] = float(threshold) if len(classes) == 2 else None
    data |= {"decision_rule": rule, "metrics": dict(metrics or {}), **info}
    Path(path).write_text(json.dumps(jsonable(data), indent=2, ensure_ascii=False), "utf-8")
    return Path(path)


def read_metadata(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _predict_scanned(model: LiteModel, root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """``checks.scan`` a folder (class subfolders, or flat through a link) and predict."""
    from helpers import checks, dataset

    labelled = any(e.is_dir() and not checks.is_system_name(e.name) for e in root.iterdir())
    with tempfile.TemporaryDirectory(prefix="predict-folder-") as tmp:
        if not labelled:  # scan reads <root>/<class>/...: one link makes a flat folder a class.
            os.symlink(root, Path(tmp) / "images", target_is_directory=True)
        result = checks.scan(root if labelled else tmp)
        good, bad = result.good, result.bad
        rel = (lambda r: r) if labelled else (lambda r: r.split("/", 1)[1])
        unusable = {rel(r): why for r, why in zip(bad["relpath"], bad["reason"])}
        if unusable:
            listed = "; ".join(f"{k}: {v}" for k, v in list(unusable.items())[:5])
            warnings.warn(f"{len(unusable)} file(s) unusable, left out: {listed}", stacklevel=3)
        if good.empty:
            raise ValueError(f"no usable image in {root} (unusable: {len(unusable)}).")
        labels = sorted(set(good["label"]))
        ds = dataset.make_dataset(good, labels, model.image_size, cache=False, label_mode="int")
        probabilities = np.concatenate([model.predict(x) for x, _ in ds.as_numpy_iterator()])
    frame = pd.DataFrame({"file": good["relpath"].map(rel), "true_label": good["label"]})
    frame.attrs["unusable"] = unusable
    return frame if labelled else frame.drop(columns="true_label"), probabilities


def predict_folder(tflite_path, folder, metadata_path=None, num_threads: int = 2) -> pd.DataFrame:
    """Run a ``.tflite`` classifier on every image of a folder, read as in training.

    Files are checked by ``checks.scan`` (unusable ones named in a warning and left out)
    and resized by ``dataset.make_dataset``. Classes and threshold come from
    ``metadata_path`` (default: ``metadata.json`` beside the model, else class indices
    and 0.5). Columns: ``file``, ``true_label`` (with class subfolders), ``probability``
    (binary: of the second class, else of the predicted one), ``p_<class>`` (multi-class),
    ``predicted_label``; ``.attrs``: ``unusable``, ``classes_from``, ``threshold``."""
    model = LiteModel(tflite_path, num_threads=num_threads)
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder of images.")
    meta_path = Path(metadata_path or model.path.with_name(METADATA_FILE))
    meta = read_metadata(meta_path) if meta_path.is_file() else {}
    if meta and (meta["input"]["height"], meta["input"]["width"]) != model.image_size:
        raise ValueError(f"{meta_path} describes another model than {model.path.name}.")
    frame, probabilities = _predict_scanned(model, root)
    k = probabilities.shape[1] if probabilities.ndim == 2 else 2
    names = meta.get("classes") or [str(i) for i in range(k)]
    threshold = meta.get("decision_threshold") or 0.5
    if len(names) != k:
        raise ValueError(f"{meta_path} lists {len(names)} classes but the model has {k}.")
    frame["probability"] = probabilities if probabilities.ndim == 1 else probabilities.max(1)
    for i, name in enumerate(names if probabilities.ndim == 2 else []):
        frame[f"p_{name}"] = probabilities[:, i]
    frame["predicted_label"] = [names[i] for i in decide(probabilities, threshold)]
    frame.attrs.update(classes_from=str(meta_path) if meta else "indices", threshold=threshold)
    return frame


def _curves_item(run_dir: Path) -> tuple[bool, str]:
    phases = []
    for name in ("phase1", "phase2"):
        metrics = read_json(run_dir / f"{name}_metrics.json", default=None)
        history = (run_dir / f"{name}_history.json").is_file()
        if metrics is not None or history:
            verdict = (metrics or {}).get("diagnosis")
            verdict = verdict.get("verdict") if isinstance(verdict, Mapping) else verdict
            phases.append((name, history, verdict))
    bad = [(n, h, v) for n, h, v in phases if not h or str(v).startswith(("None", "overfitting"))]
    problems = [f"{n}: {v or 'no diagnosis'}" if h else f"{n}: no history" for n, h, v in bad]
    listed = ", ".join(f"{n} {v or 'undiagnosed'}" for n, _, v in phases) or "no phase found"
    tail = f"; problem: {'; '.join(problems)}" if problems else "; none overfitting"
    return bool(phases) and not problems, f"diagnosis: {listed}{tail}"


def _test_item(run_dir: Path) -> tuple[bool, str]:
    accesses = (read_json(run_dir / "test_access.json", default=None) or {}).get("accesses", [])
    listed = "; ".join(f"{a.get('time')} {a.get('purpose')!r}" for a in accesses[:5])
    if len(accesses) == 1:
        return True, f"one access ({listed})"
    return False, f"{len(accesses)} accesses: {listed}" if accesses else "no test access recorded"


def _conversion_item(out: Path) -> tuple[bool, str]:
    notes = []
    for file in ("model.tflite", "model_qt.tflite"):
        try:
            model = LiteModel(out / file, num_threads=1)
            if not np.all(np.isfinite(model.predict(np.full((*model.image_size, 3), 127.0)))):
                raise ValueError("non-finite output")
            notes.append(f"{file} loads and predicts ({model.size_mb:.2f} MB)")
        except FileNotFoundError:
            notes.append(f"{file} missing in {out}")
        except Exception as error:  # noqa: BLE001 - any failure is the evidence.
            notes.append(f"{file} fails: {error}")
    return all("predicts" in note for note in notes), "; ".join(notes)


def _accuracy_item(table: pd.DataFrame | None, max_delta: float) -> tuple[bool, str]:
    if table is None or not {"float32", "int8"} <= set(table.index):
        return False, "no comparison of float32 and int8: run notebook 06's test-split cell"
    a32, a8 = table.loc["float32", "accuracy"], table.loc["int8", "accuracy"]
    on = f" on {int(table['images'].iloc[0])} images" if "images" in table else ""
    text = f"float32 {a32:.4f}, INT8 {a8:.4f}: {_change(a32 - a8)}{on}"
    return a32 - a8 <= max_delta + _EPS, text


def pre_deployment_checklist(
    run_dir, target_size_mb=10.0, export_dir=None, comparison=None, int8_max_delta=INT8_MAX_DELTA
) -> pd.DataFrame:
    """The sheet's pre-deployment checklist, from a run folder's files: learning curves
    checked (``phase*_history.json``, no "overfitting" diagnosis), test set read once
    (``test_access.json``), ``model.tflite`` and ``model_qt.tflite`` in ``export_dir``
    (default ``run_dir/export``) load and predict, INT8 within ``int8_max_delta`` of
    float32 (``comparison``, default ``run_dir/comparison.csv``), INT8 file at most
    ``target_size_mb``. Columns ``item``, ``passed``, ``evidence``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not target_size_mb > 0:
        raise ValueError(f"run_dir={str(run_dir)!r}: a folder; target_size_mb: positive MB.")
    out = Path(export_dir or run_dir / "export")
    if comparison is None and (run_dir / COMPARISON_FILE).is_file():
        comparison = pd.read_csv(run_dir / COMPARISON_FILE, index_col=0)
    int8 = out / "model_qt.tflite"
    size = int8.stat().st_size / 1e6 if int8.is_file() else math.inf
    items = {"Learning curves checked": _curves_item(run_dir)}
    items["Test set evaluated once"] = _test_item(run_dir)
    items["Conversions tested (float32 and INT8)"] = _conversion_item(out)
    accuracy = _accuracy_item(comparison, int8_max_delta)
    items[f"Quantized accuracy checked (loss < {int8_max_delta:.0%})"] = accuracy
    fits = (size <= target_size_mb, f"{int8.name} is {size:.2f} MB")
    fits = fits if int8.is_file() else (False, f"{int8} missing")
    items[f"Size acceptable for the target (≤ {target_size_mb:g} MB)"] = fits
    rows = [(item, bool(passed), evidence) for item, (passed, evidence) in items.items()]
    return pd.DataFrame(rows, columns=["item", "passed", "evidence"])


def release(checklist: pd.DataFrame, recommended: str | None) -> tuple[str, str]:
    """What the checklist does to acceptance's ``recommended`` variant: ``("ship", why)`` or
    ``("hold", why)``. Every failed item holds the release (it concerns the trained model, the
    test figures or the files, which all variants share), except the quantized-accuracy item
    when acceptance already chose a variant other than INT8 because of it."""
    if recommended is None:
        return "hold", "no variant passed acceptance: float32 LiteRT differs from Keras"
    failed = list(checklist.loc[~checklist["passed"].astype(bool), "item"])
    holds = [i for i in failed if recommended == "int8" or not i.startswith("Quantized")]
    if holds:
        listed = "; ".join(holds)
        return "hold", f"hold {recommended}: the checklist fails ({listed}); fix, then run again"
    why = f"ship {recommended}: every checklist item passed"
    if failed:
        why = f"ship {recommended}: the failed item ({failed[0]}) is why acceptance left INT8"
    return "ship", why

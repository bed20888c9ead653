"""Benchmarks of the course, printed as tables (figures only, no pass/fail assertions).

``python -m helpers.batch.bench deployment``: per
backbone, each LiteRT variant's size, batch-1 latency (measured interleaved, so that other
programs' load hits them alike) and speed-up. ``... bench phases``: one table of each phase's
wall time in the course's full setting (3,000 images, 224 px): demo data, decoding, the stored
views, phases 1 and 2 on them and end to end, LiteRT. ``--help`` lists the options. Demo data
in a temporary folder; backbones without ImageNet weights offline get random ones, with their
BatchNormalization statistics re-estimated (:func:`reestimate_batchnorm`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import backbones, dataset, demo_data, features, quantization, verification

CLASSES = ["fake", "real"]
DEFAULT_BACKBONES = ("EfficientNetLite0", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0")
VARIANTS = ("float32", "float16", "dynamic", "int8")
HARD_SWISH = ("hard_swish", "hard_silu")  # Keras' names of MobileNetV3's activation.
OPTIONS = {  # Integer options of each bench and their defaults.
    "deployment": "image-size=224 per-class=50 threads=2 runs=100 calibration=100",
    "phases": "image-size=224 per-class=1500 batch-size=32 steps=3 calibration=200 predict=420 "
    "threads=2",
}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPU(s)"


def demo_frame(root: Path, per_class: int, image_size: int, val_share=0.4, workers=1):
    """Generate a demo dataset under ``root``; its files split per class into train and val."""
    folder = demo_data.generate(per_class, image_size, out_root=root, workers=workers)
    frame = pd.read_csv(folder / "metadata.csv")[["path", "label"]]
    frame["relpath"], frame["decode_path"] = frame.path, [str(folder / p) for p in frame.path]
    val = frame.groupby("label").sample(frac=val_share, random_state=0).index
    return frame.assign(split=np.where(frame.index.isin(val), "val", "train"))


def _arrays(frame: pd.DataFrame, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    ds = dataset.make_dataset(frame[frame.split == split], CLASSES, size, 32, cache=False)
    x, y = dataset.dataset_arrays(ds)
    return x.astype(np.float32), y.reshape(-1)


def reestimate_batchnorm(base, images: np.ndarray) -> int:
    """Set BatchNormalization statistics to those of ``images`` (one pass, momentum 0), so a
    random backbone's activations keep a trained one's scale; the number of layers set."""
    import keras

    bn = keras.layers.BatchNormalization
    layers = [layer for layer in base._flatten_layers() if isinstance(layer, bn)]
    momenta, trainable, base.trainable = [la.momentum for la in layers], base.trainable, True
    for layer in layers:
        layer.momentum = 0.0
    base(np.asarray(images, np.float32), training=True)  # Trainable: statistics update.
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    base.trainable = trainable
    return len(layers)


def classifier(name: str, size: int, images: np.ndarray):
    """The course's classifier on backbone ``name``, frozen and compiled; (model, base,
    head, what its weights are). The head alone takes pooled features (the feature cache)."""
    import keras

    keras.utils.set_random_seed(0)
    pretrained = backbones.get_spec(name).pretrained_offline
    weights = "imagenet" if pretrained else None
    base, _ = backbones.build_backbone(name, weights, (size, size, 3), verbose=False)
    if not pretrained:
        reestimate_batchnorm(base, images[:32])
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    features = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    head = keras.Sequential(
        [keras.layers.Dropout(0.2), keras.layers.Dense(1, activation="sigmoid")]
    )
    model = keras.Model(inputs, head(features))
    for m in (model, head):
        m.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    return model, base, head, "ImageNet weights" if pretrained else "RANDOM weights"


def convert(saved_model: Path, variant: str, calibration: np.ndarray) -> bytes:
    """The LiteRT flatbuffer of an exported model as the course's ``variant``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def rewrite_hard_swish(model):
    """A copy of ``model`` whose hard-swish layers compute ``(x * 1/6) * relu6(x + 3)``: the
    same function, which the converter emits as ADD and two MULs that XNNPACK runs in INT8,
    instead of one HARD_SWISH op that it runs in float only (None: no hard-swish)."""
    import keras

    def swish(x):
        return keras.ops.multiply(keras.ops.multiply(x, 1.0 / 6.0), keras.ops.relu6(x + 3.0))

    def hard(layer) -> bool:
        activation = isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"]
        return activation in HARD_SWISH

    def clone(layer):
        if hard(layer):
            return keras.layers.Lambda(swish, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    if not any(hard(layer) for layer in model._flatten_layers()):
        return None
    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    new.set_weights(model.get_weights())
    return new


def litert_quantizer(float_file: bytes, variant: str, calibration: np.ndarray, tmp: Path) -> bytes:
    """LiteRT Quantizer's ``variant`` ("lq_static": static_wi8_ai8 with running min/max ranges,
    notebook 05's fix; "lq_dynamic": dynamic_wi8_afp32) of a float32 LiteRT file."""
    from litert_quantizer import quantizer, recipe

    (source := tmp / "float.tflite").write_bytes(float_file)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # Progress bars.
        warnings.simplefilter("ignore")  # The calibrator's note on preserving every tensor.
        if variant == "lq_dynamic":
            qt, ranges = quantizer.Quantizer(str(source), recipe.dynamic_wi8_afp32()), None
        else:
            qt = quantizer.Quantizer(str(source), recipe.static_wi8_ai8())
            ranges = quantization.min_max_ranges(source, [{"image": x[None]} for x in calibration])
        return bytes(qt.quantize(ranges, enable_progress_report=False).quantized_model)


def latencies(interpreters: dict, runs: int, rounds: int = 10) -> pd.DataFrame:
    """Batch-1 milliseconds (median, p95) of each interpreter, interleaved in ``rounds``."""
    times: dict[str, list[float]] = {name: [] for name in interpreters}
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            for _ in range(max(1, runs // rounds)):
                start = time.perf_counter()
                interpreter.invoke()
                times[name].append((time.perf_counter() - start) * 1e3)
    median, p95 = ({k: np.percentile(t, q) for k, t in times.items()} for q in (50, 95))
    return pd.DataFrame({"median_ms": median, "p95_ms": p95})


def bench_backbone(name: str, frame: pd.DataFrame, args, tmp: Path) -> pd.DataFrame:
    """Build, convert and measure one backbone's classifier (size, latency, speed-up)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    x, start = _arrays(frame, "train", args.image_size)[0], time.perf_counter()
    model, _, _, label = classifier(name, args.image_size, x)
    signature = [tf.TensorSpec((1, args.image_size, args.image_size, 3), tf.float32, "image")]
    model.export(tmp / name, input_signature=signature, verbose=False)  # Batch 1, quietly.
    calibration = x[: args.calibration]
    files = {v: convert(tmp / name, v, calibration) for v in VARIANTS}
    if (rewritten := rewrite_hard_swish(model)) is not None:
        rewritten.export(tmp / "hs", input_signature=signature, verbose=False)
        files["int8 + hard-swish rewrite"] = convert(tmp / "hs", "int8", calibration)
    for variant in ("lq_static", "lq_dynamic"):
        files[variant] = litert_quantizer(files["float32"], variant, calibration, tmp)
    print(f"\n== {name}: {label}; built and converted in {time.perf_counter() - start:.0f} s")
    interpreters = {v: Interpreter(model_content=files[v], num_threads=args.threads) for v in files}
    for interpreter in interpreters.values():
        interpreter.allocate_tensors()
    table = latencies(interpreters, args.runs).rename_axis("variant")
    table.insert(0, "size_mb", [len(files[v]) / 1e6 for v in files])
    table["speedup"] = table.loc["float32", "median_ms"] / table["median_ms"]
    table["outside XNNPACK"] = [quantization.non_delegated_summary(files[v]) for v in files]
    print(table.round(3).to_markdown())
    return table.assign(backbone=name)


def deployment(args, tmp: Path) -> None:
    """Size and latency of every variant for each backbone (the converter's, MobileNetV3's
    hard-swish rewrite, LiteRT Quantizer's), then a summary of the INT8 files."""
    names = [backbones.get_spec(name).name for name in args.backbones or DEFAULT_BACKBONES]
    runs = f"{args.threads} thread(s), batch 1, {args.runs} timed runs per model"
    print(f"Deployment bench: {', '.join(names)} at {args.image_size} px; {runs}; {_load()}.")
    frame = demo_frame(tmp, args.per_class, args.image_size + 32)
    tables = pd.concat([bench_backbone(name, frame, args, tmp) for name in names])
    print("\n== INT8 against float32 (speed-up > 1: faster)")
    int8 = [v for v in ("int8", "int8 + hard-swish rewrite", "lq_static") if v in tables.index]
    summary = tables[tables.index.isin(int8)].reset_index().set_index("backbone")
    print(summary.round(3).to_markdown())


def _augment():
    """Random flip, brightness and contrast, as the course's augmentation (on batches)."""
    import keras

    flips = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomBrightness(0.2)]
    return keras.Sequential([*flips, keras.layers.RandomContrast(0.2)])


def _row(rows: list, phase: str, seconds: float, images=None, note: str = "") -> None:
    rate = images / seconds if images else None
    rows.append({"phase": phase, "s": seconds, "images": images, "images/s": rate, "note": note})


def _timed(rows: list, phase: str, call, images=None, note: str = ""):
    """``call()``'s result; its wall time (and images/s) appended to ``rows`` as ``phase``."""
    start = time.perf_counter()
    out = call()
    _row(rows, phase, time.perf_counter() - start, images, note)
    return out


def _fit_s(model, batches, steps: int) -> float:
    """Seconds of ``steps`` training steps of ``model``, timed in one ``fit`` after a warm-up
    step (which traces the training function and starts the input pipeline)."""
    import keras

    ends: list[float] = []
    stamp = lambda *_, **__: ends.append(time.perf_counter())  # noqa: E731
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=stamp)
    model.fit(batches, steps_per_epoch=steps + 1, shuffle=False, callbacks=[clock], verbose=0)
    return ends[-1] - ends[0]


def _both_ways(rows, phase, stored, cycled, model, images, steps: int, n: int) -> None:
    """One training epoch (no validation pass) of ``stored`` on stored arrays (``cycled``:
    ``features.cycle``'s), measured; and of ``model`` on ``images``, estimated from steps."""
    fast = _fit_s(stored, *cycled)
    _row(rows, f"{phase}: one epoch on stored arrays", fast, n, "after a warm-up step")
    slow = _fit_s(model, images, steps) / steps * cycled[1]
    note = f"estimated from {steps} steps after a warm-up; {slow / fast:.1f}x the stored route"
    _row(rows, f"{phase}: one epoch end to end on images", slow, n, note)


def _data(rows: list, args, tmp: Path) -> tuple[pd.DataFrame, dict]:
    """Demo data generated, split 70/15/15 and decoded once: the frame, {split: (x, y)}."""
    n, size = 2 * args.per_class, args.image_size
    make = functools.partial(demo_frame, tmp, args.per_class, size, 0.3, None)
    frame = _timed(rows, "demo data: generate (temporary folder)", make, n)
    frame.loc[frame.index[frame.split == "val"][::2], "split"] = "test"  # Half of the 30 %.
    decode = lambda: {s: _arrays(frame, s, size) for s in ("train", "val", "test")}  # noqa: E731
    return frame, _timed(rows, "decode + resize every image once (tf.data)", decode, n)


def _training(rows: list, frame: pd.DataFrame, arrays: dict, args, tmp: Path):
    """The stored views as notebooks 01-04 compute them (``features.frozen``), then one epoch
    of phase 1 (03) and of phase 2 (04) each way; the classifier and its weights' label."""
    import keras

    size, cut = args.image_size, features.CUTS[args.backbone]
    model, base, head, label = classifier(args.backbone, size, arrays["train"][0])
    bottom, top = features.split_backbone(base, cut)
    train, val = (frame[frame.split == s] for s in ("train", "val"))
    store = functools.partial(features.frozen, tmp, classes=CLASSES, image_size=size, bottom=bottom)
    for view, part, aug in (("train", train, None), ("aug", train, _augment()), ("val", val, None)):
        call = functools.partial(store, view, part, augmentation=aug)
        what = "one augmented view of train" if aug else view
        _timed(rows, f"bottom activations: {what}", call, len(part), f"read, decode; cut {cut}")
    pooled = functools.partial(store, "train", train, top=top)
    pooled = _timed(rows, "pooled features of train (top forward)", pooled, len(train))
    y = (train.label == CLASSES[1]).to_numpy(np.float32)[:, None]
    cycle = functools.partial(features.cycle, labels=y, batch_size=args.batch_size)
    augmented = functools.partial(dataset.make_dataset, cache=False, augment=_augment())
    images = augmented(train, CLASSES, size, args.batch_size).repeat()  # Decodes each batch.
    both = functools.partial(_both_ways, rows, model=model, images=images, steps=args.steps)
    both("phase 1 (head)", head, cycle([pooled]), n=len(train))
    below, base.trainable = {id(layer) for layer in bottom.layers}, True
    for layer in base.layers:  # As notebook 04: above the cut, BatchNormalization frozen.
        bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = id(layer) not in below and not bn
    inputs, pooling = keras.Input(top.inputs[0].shape[1:]), keras.layers.GlobalAveragePooling2D()
    tuner = keras.Model(inputs, head(pooling(top(inputs, training=False))))  # As notebook 04.
    for m in (tuner, model):
        m.compile(keras.optimizers.Adam(1e-5), "binary_crossentropy", metrics=["accuracy"])
    both("phase 2 (above the cut)", tuner, cycle([store("train", train)]), n=len(train))
    return model, label


def _litert(rows: list, model, arrays: dict, args, tmp: Path) -> None:
    """Notebook 05's export and float32 / INT8 conversions, then batch-1 predictions."""
    import tensorflow as tf

    x, size = arrays["train"][0], args.image_size
    calibration = x[:: max(1, len(x) // args.calibration)][: args.calibration]
    images = np.concatenate([arrays["val"][0], arrays["test"][0]])[: args.predict]
    spec = [tf.TensorSpec((1, size, size, 3), tf.float32)]  # Batch 1, as notebook 05.
    export = functools.partial(model.export, tmp / "saved", verbose=False, input_signature=spec)
    _timed(rows, "LiteRT: export the SavedModel", export)
    for variant in ("float32", "int8"):
        call = functools.partial(convert, tmp / "saved", variant, calibration)
        note = f"{len(calibration)} calibration images" if variant == "int8" else ""
        (tmp / variant).write_bytes(_timed(rows, f"LiteRT {variant}: convert", call, note=note))
        lite = verification.LiteModel(tmp / variant, num_threads=args.threads)
        call, note = functools.partial(lite.predict, images), f"batch 1, {args.threads} thread(s)"
        _timed(rows, f"LiteRT {variant}: predict", call, len(images), note)


def phases(args, tmp: Path) -> None:
    """Each phase of the course's run on ``2 x per_class`` demo images, timed: one table."""
    n, size = 2 * args.per_class, args.image_size
    print(f"Phases bench: {n:,} demo images at {size} px, {args.backbone}; {_load()}.")
    rows: list[dict] = []
    frame, arrays = _data(rows, args, tmp)
    model, label = _training(rows, frame, arrays, args, tmp)
    _litert(rows, model, arrays, args, tmp)
    print(f"\n{args.backbone} ({label}), batch {args.batch_size}; wall time of each phase:")
    table = pd.DataFrame(rows).set_index("phase").astype(object).fillna("")
    print(table.to_markdown(floatfmt=("", ".1f", ".0f", ".0f", "")))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's name and options (each integer >= 1), or exit with argparse's message."""
    parser = argparse.ArgumentParser("python -m helpers.batch.bench", description=__doc__[:67])
    sub = parser.add_subparsers(dest="bench", required=True)
    for bench, options in OPTIONS.items():
        part = sub.add_parser(bench)
        for flag, value in (option.split("=") for option in options.split()):
            part.add_argument(f"--{flag}", type=int, default=int(value))
    phase_parser = sub.choices["phases"]
    phase_parser.add_argument("--backbone", default="EfficientNetLite0", choices=features.CUTS)
    sub.choices["deployment"].add_argument("--backbones", nargs="+", help="registry names")
    args = parser.parse_args(argv)
    if bad := [k for k, v in vars(args).items() if isinstance(v, int) and v < 1]:
        parser.error(f"--{bad[0].replace('_', '-')} must be >= 1.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before TensorFlow loads: no cuInit.
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:  # The demo data.
        globals()[args.bench](args, Path(tmp))  # The function of each bench's name.
    print(f"Machine: {_load()} at the end.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks of the course, printed as tables (figures only, no pass/fail assertions).

``python -m helpers.batch.bench training``: images/s of the input pipeline (with and without
augmentation), phase 1 with and without the feature cache. ``... bench deployment``: per
backbone, each LiteRT variant's size, batch-1 latency (measured interleaved, so that other
programs' load hits them alike) and speed-up. ``--help`` lists the options. Demo data
in a temporary folder; backbones without ImageNet weights offline get random ones, with their
BatchNormalization statistics re-estimated (:func:`reestimate_batchnorm`).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import backbones, dataset, demo_data

CLASSES = ["fake", "real"]
DEFAULT_BACKBONES = ("EfficientNetLite0", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0")
VARIANTS = ("float32", "float16", "dynamic", "int8")
OPTIONS = {  # Integer options of each bench and their defaults.
    "training": "image-size=224 per-class=100 batch-size=32 epochs=10",
    "deployment": "image-size=224 per-class=50 threads=2 runs=100 calibration=100",
}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPU(s)"


def demo_frame(root: Path, per_class: int, image_size: int, seed=0, val_share=0.4) -> pd.DataFrame:
    """Generate a demo dataset under ``root``; its files split per class into train and val."""
    folder = demo_data.generate(per_class, image_size, seed=seed, out_root=root, workers=1)
    frame = pd.read_csv(folder / "metadata.csv")[["path", "label"]]
    frame["relpath"], frame["decode_path"] = frame.path, [str(folder / p) for p in frame.path]
    val = frame.groupby("label").sample(frac=val_share, random_state=seed).index
    return frame.assign(split=np.where(frame.index.isin(val), "val", "train"))


def _arrays(frame: pd.DataFrame, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    ds = dataset.make_dataset(frame[frame.split == split], CLASSES, size, 32, cache=False)
    x, y = dataset.dataset_arrays(ds)
    return x.astype(np.float32), y.reshape(-1)


def reestimate_batchnorm(base, images: np.ndarray) -> int:
    """Set BatchNormalization statistics to those of ``images`` (one pass, momentum 0), so a
    random backbone's activations keep a trained one's scale; the number of layers set."""
    import keras

    layers = [
        la for la in base._flatten_layers() if isinstance(la, keras.layers.BatchNormalization)
    ]
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
    from ai_edge_litert.interpreter import Interpreter

    x, start = _arrays(frame, "train", args.image_size)[0], time.perf_counter()
    model, _, _, label = classifier(name, args.image_size, x)
    model.export(tmp / name, verbose=False)  # A SavedModel, quietly.
    files = {v: convert(tmp / name, v, x[: args.calibration]) for v in VARIANTS}
    print(f"\n== {name}: {label}; built and converted in {time.perf_counter() - start:.0f} s")
    interpreters = {v: Interpreter(model_content=files[v], num_threads=args.threads) for v in files}
    for interpreter in interpreters.values():
        interpreter.allocate_tensors()
    table = latencies(interpreters, args.runs).rename_axis("variant")
    table.insert(0, "size_mb", [len(files[v]) / 1e6 for v in VARIANTS])
    table["speedup"] = table.loc["float32", "median_ms"] / table["median_ms"]
    print(table.round(3).to_markdown())
    return table.assign(backbone=name)


def deployment(args, tmp: Path) -> None:
    """Size and latency of every variant for each backbone, then INT8's summary."""
    names = [backbones.get_spec(name).name for name in args.backbones or DEFAULT_BACKBONES]
    runs = f"{args.threads} thread(s), batch 1, {args.runs} timed runs per model"
    print(f"Deployment bench: {', '.join(names)} at {args.image_size} px; {runs}; {_load()}.")
    frame = demo_frame(tmp, args.per_class, args.image_size + 32)
    tables = pd.concat([bench_backbone(name, frame, args, tmp) for name in names])
    print("\n== INT8 against float32 (speed-up > 1: faster)")
    print(tables.loc[["int8"]].set_index("backbone").round(3).to_markdown())


def _images_per_s(make, repeat: int = 2) -> float:
    """Images/s of one pass over ``make()``, best of ``repeat`` after a warm-up pass."""
    best = 0.0
    for _ in range(repeat + 1):
        start, count = time.perf_counter(), sum(int(x.shape[0]) for x, _ in make())
        best = max(best, count / (time.perf_counter() - start))
    return best


def training(args, tmp: Path) -> None:
    """Input pipeline with and without augmentation; phase 1 with and without the cache."""
    import keras

    size, batch = args.image_size, args.batch_size
    print(f"Training bench: {args.backbone} at {size} px, batch {batch}; {_load()}.")
    frame = demo_frame(tmp, args.per_class, size + 32, val_share=0.3)
    flips = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomBrightness(0.2)]
    augment = keras.Sequential([*flips, keras.layers.RandomContrast(0.2)])
    for what, layer in (("no augmentation", None), ("flip, brightness, contrast", augment)):
        train = frame[frame.split == "train"]
        make = functools.partial(dataset.make_dataset, train, CLASSES, size, batch, cache=False)
        rate = _images_per_s(functools.partial(make, augment=layer))
        print(f"Input pipeline (read, decode, resize; {what}): {rate:7.0f} images/s")
    (x, y), (x_val, y_val) = [_arrays(frame, split, size) for split in ("train", "val")]
    model, base, head, label = classifier(args.backbone, size, x)
    fit = {"epochs": args.epochs, "batch_size": batch, "verbose": 0}
    start = time.perf_counter()
    cache, val_cache = (base.predict(i, verbose=0).mean(axis=(1, 2)) for i in (x, x_val))
    extract = time.perf_counter() - start
    head.fit(cache, y, validation_data=(val_cache, y_val), **fit)
    cached, start = time.perf_counter() - start, time.perf_counter()
    model.fit(x, y, validation_data=(x_val, y_val), **fit)
    end_to_end = time.perf_counter() - start
    print(
        f"Phase 1 ({label}), {args.epochs} epochs: with the feature cache {cached:.1f} s "
        f"(features {extract:.1f} s once), end to end {end_to_end:.1f} s: "
        f"{end_to_end / cached:.1f}x faster with the cache."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m helpers.batch.bench", description=__doc__[:67])
    sub = parser.add_subparsers(dest="bench", required=True)
    for bench, options in OPTIONS.items():
        part = sub.add_parser(bench)
        for flag, value in (option.split("=") for option in options.split()):
            part.add_argument(f"--{flag}", type=int, default=int(value))
    sub.choices["training"].add_argument("--backbone", default="EfficientNetLite0")
    sub.choices["deployment"].add_argument("--backbones", nargs="+", help="registry names")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before TensorFlow loads: no cuInit.
    if bad := [k for k, v in vars(args).items() if isinstance(v, int) and v < 1]:
        parser.error(f"--{bad[0].replace('_', '-')} must be >= 1.")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:  # The demo data.
        (deployment if args.bench == "deployment" else training)(args, Path(tmp))
    print(f"Machine: {_load()} at the end.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

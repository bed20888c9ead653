"""Benchmarks of the course, printed as tables (figures only, no pass/fail assertions).

``python -m helpers.bench deployment [--backbones ...] [--image-size 224] [--threads 2]
[--runs 100]``: for each backbone, the binary classifier converted to every LiteRT variant
(plus, for MobileNetV3, INT8 with hard-swish rewritten for XNNPACK): size, latency at
batch 1 (median and p95, the variants measured interleaved so that load from other
programs hits them alike; float32 and INT8 measured ``--repeat`` times), ratio to
float32, accuracy against float32 on held-out demo images, and the ops that run outside
XNNPACK. Building and converting (single-threaded, about 3/4 of the time) runs in
``--jobs`` processes; latency is measured afterwards, alone.

``python -m helpers.bench training [--backbone EfficientNetLite0] [--image-size 224]``:
images/s of the input pipeline (decode + resize), of augmentation and of the frozen
training step; phase 1 (10 epochs) with and without the feature cache; phase 2 seconds
per epoch.

Both generate a small demo dataset in a temporary folder (offline). Only
EfficientNet-Lite0 has ImageNet weights offline; the other backbones are built with
random weights, which the output says. With random weights the activations of a deep
network shrink or grow from layer to layer, so INT8 scales collapse and XNNPACK refuses
some quantized ops: by default the bench therefore re-estimates their BatchNormalization
statistics on demo images (:func:`reestimate_batchnorm`) so that activations have the
ranges of a trained network. Their accuracy figures still mean little.
"""

from __future__ import annotations

import os

# Keep TensorFlow's C++ start-up chatter out of the tables (before TensorFlow loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DEFAULT_BACKBONES = ("EfficientNetLite0", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0")
CLASSES = ["fake", "real"]
#: The speed targets of the INT8 model against float32 (median latency ratio).
SPEED_TARGETS = {"MobileNetV3Small": 1.0, "MobileNetV3Large": 1.2, "EfficientNetB0": 1.8}


def _print(text: str = "") -> None:
    print(text, flush=True)


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPU(s)"


def demo_frame(
    root: Path, per_class: int, image_size: int, seed: int = 0, val_share: float = 0.4
) -> pd.DataFrame:
    """Generate a demo dataset under ``root`` and split it per class into train and val."""
    from helpers import demo_data

    folder = demo_data.generate(
        per_class=per_class, image_size=image_size, seed=seed, out_root=root, workers=1
    )
    rows = []
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        files = sorted((folder / label).glob("*.jpg"))
        order = rng.permutation(len(files))
        n_val = int(round(len(files) * val_share))
        for rank, index in enumerate(order):
            path = files[index]
            rows.append(
                {
                    "relpath": f"{label}/{path.name}",
                    "decode_path": str(path),
                    "label": label,
                    "split": "val" if rank < n_val else "train",
                }
            )
    return pd.DataFrame(rows)


def _arrays(frame: pd.DataFrame, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from helpers import dataset

    ds = dataset.make_dataset(frame, CLASSES, image_size, batch_size=32, cache=False)
    x, y = dataset.dataset_arrays(ds)
    return x.astype(np.float32), y.reshape(-1).astype(int)


def reestimate_batchnorm(backbone, images: np.ndarray) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the statistics of
    its input on ``images`` (one forward pass in training mode with momentum 0).

    For benchmarking randomly initialised backbones only: their activations then have
    the unit scale of a trained network's instead of collapsing or exploding with depth,
    so INT8 calibration finds realistic ranges. Returns the number of layers updated.
    """
    import keras

    layers = [
        layer for layer in _walk(backbone) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    backbone_trainable = backbone.trainable
    try:
        backbone.trainable = True
        for layer in layers:
            layer.trainable = True
            layer.momentum = 0.0
        backbone(np.asarray(images, np.float32), training=True)
    finally:
        for layer, (momentum, trainable) in zip(layers, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
        backbone.trainable = backbone_trainable
    return len(layers)


def _walk(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if getattr(layer, "layers", None):
            yield from _walk(layer)


def _fit_head(model, backbone, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    import tensorflow as tf

    from helpers import training

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32)[:, None])).batch(32)
    features = training.cache_features(backbone, ds)
    training.fit_head_on_features(model, features, None, epochs, patience=None, verbose=0)


# ---------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------


def _convert_backbone(name: str, options: dict, frame: pd.DataFrame, work: str) -> dict:
    """Build, fit and convert one backbone's classifier; predict the validation images.

    Runs in a worker process (conversion is single-threaded, so two backbones convert
    side by side on two cores); latency is measured afterwards, in the main process.
    """
    import keras

    from helpers import backbones, quantization, verification

    size = options["image_size"]
    train = _arrays(frame[frame["split"] == "train"], size)
    x_val, y_val = _arrays(frame[frame["split"] == "val"], size)
    spec = backbones.get_spec(name)
    keras.utils.set_random_seed(0)
    weights = "imagenet" if spec.pretrained_offline else None
    start = time.perf_counter()
    backbone, _ = backbones.build_backbone(name, weights, (size, size, 3), verbose=False)
    if weights is None:
        label = "RANDOM weights"
        if options["bn_stats"]:
            reestimate_batchnorm(backbone, train[0][:32])
            label += " + BatchNorm statistics re-estimated on 32 demo images"
    else:
        label = "ImageNet weights (offline)"
    model = backbones.build_classifier(backbone, 2)
    _fit_head(model, backbone, *train, epochs=options["head_epochs"])
    built = time.perf_counter() - start

    representative = quantization.representative_dataset(
        frame, CLASSES, size, size=options["calibration"], splits=("train",)
    )
    out = Path(work) / name
    start = time.perf_counter()
    files: dict[str, Path] = dict(quantization.convert_all(model, representative, out))
    rewrite = ""
    if quantization.count_hard_swish(model):
        rewritten = quantization.rewrite_hard_swish(model)
        rewrite = (
            f"{rewritten.hard_swish_replaced} hard-swish rewritten, factor 6 absorbed by "
            f"{len(rewritten.scale_folds)} layers, {rewritten.multiplies_dropped} hard-sigmoid "
            f"MULs dropped, {len(rewritten.hard_swish_unscaled)} left unscaled"
        )
        path = out / "model_qt_hswish.tflite"
        quantization.convert(rewritten, "int8", representative, path, method="saved_model_first")
        files["int8 hard-swish rewritten"] = path
    converted = time.perf_counter() - start

    reference = verification.keras_probabilities(model, x_val)
    rows = {}
    for variant, path in files.items():
        lite = verification.LiteModel(path, num_threads=1)
        probabilities = lite.predict(x_val)
        predicted = (probabilities >= 0.5).astype(int)
        report = quantization.delegation_report(path)
        outside = report.attrs["not_delegated"]
        rows[variant] = {
            "file": str(path),
            "size_mb": lite.size_mb,
            "accuracy": float(np.mean(predicted == y_val)),
            "agree_keras": float(np.mean(predicted == (reference >= 0.5))),
            "max_diff": float(np.max(np.abs(probabilities - reference))),
            "partitions": report.attrs["partitions"],
            "outside_xnnpack": ", ".join(f"{op} x{n}" for op, n in outside.items()) or "none",
        }
    return {
        "name": name,
        "rows": rows,
        "label": label,
        "rewrite": rewrite,
        "built_s": built,
        "converted_s": converted,
        "val_images": len(x_val),
    }


def _measure(result: dict, threads: int, runs: int, repeat: int) -> pd.DataFrame:
    """Latency of one backbone's files, interleaved, ``repeat`` times, and the ratios."""
    from helpers import verification

    table = pd.DataFrame.from_dict(result["rows"], orient="index")
    files = {variant: Path(row["file"]) for variant, row in result["rows"].items()}
    # Every file once, then the key ones (float32 and INT8) again to show the noise.
    key = {v: p for v, p in files.items() if v == "float32" or v.startswith("int8")}
    repeats = [
        verification.side_by_side_latency(
            files if i == 0 else key, runs=runs, warmup=10, rounds=10, threads=threads
        )
        for i in range(repeat)
    ]
    table["median_ms"] = repeats[0]["median_ms"]
    table["p95_ms"] = repeats[0]["p95_ms"]
    base = table.loc["float32"]
    table["size_ratio"] = table["size_mb"] / base["size_mb"]
    table["speedup"] = base["median_ms"] / table["median_ms"]
    for i, extra in enumerate(repeats[1:], start=2):
        ratio = extra.loc["float32", "median_ms"] / extra["median_ms"]
        table[f"speedup_rep{i}"] = ratio.reindex(table.index)
    table["acc_delta"] = table["accuracy"] - base["accuracy"]
    table["int8_rule"] = [
        verification._status(-d, verification.INT8_PASS_DELTA, verification.INT8_MAX_DELTA)
        for d in table["acc_delta"]
    ]
    table.insert(0, "backbone", result["name"])
    table.insert(1, "threads", threads)
    table.index.name = "variant"
    return table


def _convert_all_backbones(names, options, frame, work, jobs) -> dict[str, dict]:
    """Run :func:`_convert_backbone` for each name, ``jobs`` processes at a time."""
    if jobs <= 1 or len(names) == 1:
        return {name: _convert_backbone(name, options, frame, work) for name in names}
    import concurrent.futures
    import multiprocessing

    # TensorFlow is not fork-safe once loaded: start clean worker processes.
    from helpers import bench  # By module name, so that spawned workers can import it.

    context = multiprocessing.get_context("spawn")
    costly_first = sorted(names, key=lambda n: -_COST.get(n, 1))
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            name: pool.submit(bench._convert_backbone, name, options, frame, work)
            for name in costly_first
        }
        return {name: futures[name].result() for name in names}


#: Relative conversion cost, to start the slowest backbones first.
_COST = {"EfficientNetB0": 4, "MobileNetV3Large": 3, "MobileNetV3Small": 2}


def deployment(args) -> int:
    """Size, latency and delegation of every variant for each backbone."""
    from helpers import backbones

    names = list(args.backbones or DEFAULT_BACKBONES)
    for name in names:
        backbones.get_spec(name)
    threads = list(dict.fromkeys(args.threads))
    _print(
        f"Deployment bench: {', '.join(names)} at {args.image_size} px, LiteRT interpreter "
        f"with XNNPACK, {' and '.join(map(str, threads))} thread(s), batch 1, {args.runs} timed "
        f"runs per model interleaved in 10 rounds; float32 and INT8 measured {args.repeat}x."
    )
    _print(f"Machine: {_load()} at the start (other programs running make timings noisy).")
    options = {
        "image_size": args.image_size,
        "bn_stats": args.bn_stats,
        "head_epochs": args.head_epochs,
        "calibration": args.calibration,
    }
    with tempfile.TemporaryDirectory(prefix="bench-deployment-") as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        start = time.perf_counter()
        frame = demo_frame(work / "data", args.per_class, args.image_size + 32)
        n_train = int((frame["split"] == "train").sum())
        n_val = len(frame) - n_train
        _print(
            f"Demo data: {n_train} train images (head fit, calibration: {args.calibration} of "
            f"them), {n_val} validation images (accuracy), generated in "
            f"{time.perf_counter() - start:.1f} s. Converting with {args.jobs} process(es)..."
        )
        start = time.perf_counter()
        results = _convert_all_backbones(names, options, frame, str(work), args.jobs)
        _print(f"Built, fitted, converted and checked in {time.perf_counter() - start:.0f} s.")
        tables = []
        for name in names:
            result = results[name]
            for count in threads:
                table = _measure(result, count, args.runs, args.repeat)
                tables.append(table)
                _print()
                _print(
                    f"== {name}, {count} thread(s): {result['label']}; built and head fitted "
                    f"in {result['built_s']:.0f} s, converted in {result['converted_s']:.0f} s"
                )
                if result["rewrite"]:
                    _print(f"   ({result['rewrite']})")
                _print(_format(table.drop(columns=["backbone", "threads", "file"])))
    summary = pd.concat(tables)
    _print()
    _print("== Summary: INT8 speed-up over float32 (median latency ratio; > 1 is faster)")
    for name in names:
        for count in threads:
            part = summary[(summary["backbone"] == name) & (summary["threads"] == count)]
            for variant in [v for v in part.index if v.startswith("int8")]:
                ratios = [part.loc[variant, "speedup"]] + [
                    part.loc[variant, c] for c in part.columns if c.startswith("speedup_rep")
                ]
                line = (
                    f"  {name:18s} {count} thr {variant:26s} "
                    + " / ".join(f"{r:.2f}x" for r in ratios)
                    + f"  accuracy delta {part.loc[variant, 'acc_delta'] * 100:+.1f} points "
                    f"({part.loc[variant, 'int8_rule']}), outside XNNPACK: "
                    f"{part.loc[variant, 'outside_xnnpack']}"
                )
                target = SPEED_TARGETS.get(name)
                # The target applies to the best INT8 file: the rewritten one if any.
                best = "int8 hard-swish rewritten" if len(part.index) > 4 else "int8"
                if target is not None and variant == best:
                    met = min(ratios) >= target
                    line += f"; target >= {target:.1f}x: {'met' if met else 'MISSED'}"
                _print(line)
    random = [n for n in names if not backbones.get_spec(n).pretrained_offline]
    if random:
        _print(
            f"Note: {', '.join(random)} use RANDOM weights (no ImageNet weights offline): "
            "sizes, latencies and delegation are representative, their accuracy and INT8 "
            "accuracy deltas are not (a head on random features, 1 image = "
            f"{100 / n_val:.1f} points)."
        )
    _print(f"Machine: {_load()} at the end.")
    return 0


def _format(table: pd.DataFrame) -> str:
    columns = [
        "size_mb",
        "size_ratio",
        "median_ms",
        "p95_ms",
        "speedup",
        *[c for c in table.columns if c.startswith("speedup_rep")],
        "accuracy",
        "acc_delta",
        "int8_rule",
        "max_diff",
        "partitions",
        "outside_xnnpack",
    ]
    shown = table[columns].copy()
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        return shown.to_string(
            float_format=lambda v: f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.2f}"
        )


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _throughput(iterable_factory, repeat: int = 2) -> float:
    """Images/s of one pass over a fresh iterator, best of ``repeat`` (first one warms up)."""
    best = 0.0
    for _ in range(repeat + 1):
        count = 0
        start = time.perf_counter()
        for images, _ in iterable_factory():
            count += int(images.shape[0])
        rate = count / (time.perf_counter() - start)
        best = max(best, rate)
    return best


def training_bench(args) -> int:
    """Input pipeline, augmentation, frozen step, phase 1 with/without cache, phase 2."""
    import keras

    from helpers import augmentation, backbones, dataset, training

    size = args.image_size
    _print(
        f"Training bench: {args.backbone} at {size} px, batch {args.batch_size}; {_load()} "
        "(other programs running make timings noisy)."
    )
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        frame = demo_frame(Path(tmp), args.per_class, size + 32, val_share=0.3)
        train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
        _print(f"Demo data: {len(train)} train and {len(val)} validation JPEGs of {size + 32} px.")

        def pipeline():
            return dataset.make_dataset(train, CLASSES, size, args.batch_size, cache=False)

        decode = _throughput(pipeline)
        _print(f"Input pipeline (read + decode + resize, no cache): {decode:7.0f} images/s")

        cached = dataset.make_dataset(train, CLASSES, size, args.batch_size, cache=True)
        layer = augmentation.build_augmentation(seed=0, warn=False)
        batches = max(2, len(train) // args.batch_size - 1)
        augment = augmentation.augmentation_throughput(cached.repeat(), layer, batches=batches)
        _print(
            f"Augmentation alone (flip, brightness, contrast, saturation): {augment:7.0f} images/s"
        )

        keras.utils.set_random_seed(0)
        weights = "imagenet" if backbones.get_spec(args.backbone).pretrained_offline else None
        backbone, record = backbones.build_backbone(
            args.backbone, weights, (size, size, 3), verbose=False
        )
        model = backbones.build_classifier(backbone, 2)
        training.compile_model(model, 1e-3, 2)
        x, y = next(iter(cached))
        model.train_on_batch(x, y)  # Warm-up: traces the training step.
        steps = 5
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        step = steps * int(x.shape[0]) / (time.perf_counter() - start)
        _print(
            f"Frozen training step ({record.backbone}, {record.weights} weights; forward "
            f"through the backbone, backward through the head): {step:7.0f} images/s"
        )
        verdict = "not the bottleneck" if augment > 2 * step else "a possible bottleneck"
        _print(f"  -> augmentation runs at {augment / step:.1f}x the training step: {verdict}.")

        val_ds = dataset.make_dataset(val, CLASSES, size, args.batch_size, cache=True)
        for _ in val_ds:  # Fill the caches so both phase-1 routes start from decoded images.
            pass
        for _ in cached:
            pass
        epochs = args.phase1_epochs

        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        features_train = training.cache_features(backbone, cached)
        features_val = training.cache_features(backbone, val_ds)
        extract = time.perf_counter() - start
        head_model = backbones.build_classifier(backbone, 2)
        start = time.perf_counter()
        training.fit_head_on_features(
            head_model, features_train, features_val, epochs, patience=None, verbose=0
        )
        head = time.perf_counter() - start
        with_cache = extract + head

        keras.utils.set_random_seed(0)
        end_to_end = backbones.build_classifier(backbone, 2)
        training.compile_model(end_to_end, 1e-3, 2)
        start = time.perf_counter()
        training.fit(end_to_end, cached, val_ds, epochs, patience=None, verbose=0)
        without_cache = time.perf_counter() - start
        _print(
            f"Phase 1, {epochs} epochs: with the feature cache {with_cache:6.1f} s "
            f"(features {extract:.1f} s once + head {head:.1f} s), end to end without it "
            f"{without_cache:6.1f} s: {without_cache / with_cache:.1f}x faster with the cache."
        )

        times: list[float] = []

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self._start)

        counts = backbones.unfreeze(backbone)
        training.compile_model(end_to_end, 1e-5, 2)
        end_to_end.fit(
            cached,
            validation_data=val_ds,
            epochs=args.phase2_epochs,
            verbose=0,
            callbacks=[EpochTimer()],
            shuffle=False,
        )
        per_epoch = ", ".join(f"{t:.1f}" for t in times)
        steady = np.median(times[1:]) if len(times) > 1 else times[0]
        _print(
            f"Phase 2 (all {counts['unfrozen_layers']} weighted layers unfrozen, BatchNorm "
            f"frozen), {len(train)} train + {len(val)} val images: seconds per epoch "
            f"{per_epoch} (the first includes tracing); steady {steady:.1f} s/epoch = "
            f"{len(train) / steady:.0f} train images/s."
        )
    _print(f"Machine: {_load()} at the end.")
    return 0


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.bench", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    dep = sub.add_parser("deployment", help="size, latency and delegation per variant")
    dep.add_argument("--backbones", nargs="+", default=None, help="registry names")
    dep.add_argument("--image-size", type=int, default=224)
    dep.add_argument(
        "--threads", type=int, nargs="+", default=[2], help="interpreter threads (one or more)"
    )
    dep.add_argument("--jobs", type=int, default=2, help="conversion processes")
    dep.add_argument("--runs", type=int, default=100, help="timed runs per model")
    dep.add_argument(
        "--repeat", type=int, default=2, help="measurements of float32 and INT8 (noise)"
    )
    dep.add_argument("--calibration", type=int, default=100, help="representative images")
    dep.add_argument("--per-class", type=int, default=100, help="demo images per class")
    dep.add_argument("--head-epochs", type=int, default=20)
    dep.add_argument(
        "--no-bn-stats",
        dest="bn_stats",
        action="store_false",
        help="keep random backbones' BatchNorm statistics as initialised",
    )
    dep.add_argument("--out", default=None, help="keep the models in this folder")
    tr = sub.add_parser("training", help="input pipeline, augmentation, phase 1 and 2 timings")
    tr.add_argument("--backbone", default="EfficientNetLite0")
    tr.add_argument("--image-size", type=int, default=224)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--per-class", type=int, default=100, help="demo images per class")
    tr.add_argument("--phase1-epochs", type=int, default=10)
    tr.add_argument("--phase2-epochs", type=int, default=2)
    args = parser.parse_args(argv)
    for key in ("image_size", "threads", "runs", "repeat", "calibration", "per_class", "jobs"):
        value = getattr(args, key, None)
        if isinstance(value, list):
            value = min(value)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1 (got {value}).")
    if args.bench == "deployment":
        return deployment(args)
    return training_bench(args)


if __name__ == "__main__":
    sys.exit(main())

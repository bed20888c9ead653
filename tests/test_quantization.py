"""What runs where in a converted model: op counts and delegation to XNNPACK.

The model is a randomly initialised MobileNetV3Small at 64 px with the course's head (no
ImageNet weights offline), converted the way notebook 05 does it: exported once with a
batch of one, then ``TFLiteConverter.from_saved_model`` per variant.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import backbones, quantization, verification

SIZE = 64


def convert(saved_model_dir: str, variant: str, images: np.ndarray) -> bytes:
    """Notebook 05's converter for ``variant``, calibrated on ``images``."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, bytes]:
    keras.utils.set_random_seed(0)
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, (SIZE, SIZE, 3), verbose=False)
    backbone.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(x))
    saved = str(tmp_path_factory.mktemp("saved") / "model")
    signature = [tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32)]
    model.export(saved, input_signature=signature, verbose=False)
    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    return {variant: convert(saved, variant, images) for variant in ("float32", "int8")}


def test_file_names_are_the_sheets():
    assert quantization.VARIANTS == ("float32", "dynamic", "int8", "float16")
    assert quantization.FILE_NAMES["int8"] == "model_qt.tflite"
    assert quantization.FILE_NAMES["float32"] == "model.tflite"


def test_the_export_fixes_the_batch_to_one(converted):
    for content in converted.values():
        detail = quantization._interpreter(content).get_input_details()[0]
        assert list(detail["shape_signature"]) == [1, SIZE, SIZE, 3]


def test_int8_hard_swish_runs_outside_xnnpack(converted):
    # XNNPACK takes HARD_SWISH in float only: in INT8 exactly those nodes fall outside, and
    # the graph is cut into one partition per gap plus one (INT8 slower than float32).
    report = quantization.delegation_report(converted["int8"])
    assert report.loc["HARD_SWISH", "count"] == 18
    assert report.attrs["not_delegated"] == {"HARD_SWISH": 18}
    assert report.attrs["partitions"] == 19
    assert report.loc["HARD_SWISH", "dtypes"] == "int8"
    assert report["count"].sum() == report.attrs["nodes"]
    assert report.attrs["delegated_nodes"] == report.attrs["nodes"] - 18
    assert "HARD_SWISH x18 outside XNNPACK (19 partitions)" == (
        quantization.non_delegated_summary(converted["int8"])
    )


def test_float32_runs_entirely_in_xnnpack(converted):
    report = quantization.delegation_report(converted["float32"])
    assert report.attrs["not_delegated"] == {}
    assert report.attrs["partitions"] == 1
    assert report.attrs["delegated_nodes"] == report.attrs["nodes"]
    assert (report["not_delegated"] == 0).all()
    assert quantization.non_delegated_summary(converted["float32"]).startswith("all ")


# LiteRT Quantizer (notebook 05's two-step flow), on tiny dense models: fast and deterministic.
def _float_tflite(model: keras.Model, folder, shape: tuple) -> str:
    """Notebook 05's first step: export with an ``image`` input, convert to float32 LiteRT."""
    saved = str(folder / "saved")
    signature = [tf.TensorSpec((1, *shape), tf.float32, name="image")]
    model.export(saved, input_signature=signature, verbose=False)
    path = folder / "float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved).convert())
    return str(path)


@pytest.fixture(scope="module")
def sigmoid_head(tmp_path_factory):
    """4x4 pixels, Dense(16, relu), Dense(1, sigmoid): float32 LiteRT, 200 one-image samples."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, "relu", name="hidden"),
            keras.layers.Dense(1, "sigmoid", name="logit"),
        ]
    )
    path = _float_tflite(model, tmp_path_factory.mktemp("sigmoid"), (4, 4, 3))
    x = np.random.default_rng(0).uniform(0, 1, size=(200, 4, 4, 3)).astype(np.float32)
    return path, [{"image": row[None]} for row in x], model.predict(x, verbose=0)[:, 0]


def _logit_range(statistics: dict) -> tuple[float, float]:
    logit = [n for n in statistics if "MatMul" in n and "logit" in n]
    assert len(logit) == 1, f"no single logit tensor among {list(statistics)}"
    q = statistics[logit[0]]
    return float(np.min(q["min"])), float(np.max(q["max"]))


def test_out_of_the_box_calibration_gives_a_sigmoid_head_a_zero_width_range(sigmoid_head):
    # The collapse notebook 05 explains: per-sample min == max for a one-number tensor, averaged.
    from litert_quantizer import quantizer, recipe

    path, samples, _ = sigmoid_head
    averaged = quantizer.Quantizer(path, recipe.static_wi8_ai8()).calibrate(
        {"serving_default": samples}
    )
    low, high = _logit_range(averaged)
    assert low == high
    low, high = _logit_range(quantization.min_max_ranges(path, samples))
    assert high - low > 0.1  # The logits of 200 random images spread out.


def test_every_litert_quantizer_variant_loads_and_predicts(sigmoid_head, tmp_path):
    from litert_quantizer import qtyping, quantizer, recipe
    from litert_quantizer.algorithm_manager import AlgorithmName

    path, samples, expected = sigmoid_head
    ranges = quantization.min_max_ranges(path, samples)
    variants = {"dynamic": (recipe.dynamic_wi8_afp32(), None)}
    variants |= {"weight_only": (recipe.weight_only_wi8_afp32(), None)}
    variants |= {"static": (recipe.static_wi8_ai8(), ranges), "fp16": (None, None)}
    x = np.concatenate([s["image"] for s in samples])
    for name, (chosen, statistics) in variants.items():
        qt = quantizer.Quantizer(path, chosen)
        if name == "fp16":
            operation = qtyping.TFLOperationName.ALL_SUPPORTED
            algorithm = AlgorithmName.FLOAT_CASTING
            qt.add_weight_only_config(".*", operation, 16, algorithm_key=algorithm)
        out = tmp_path / f"{name}.tflite"
        qt.quantize(statistics, enable_progress_report=False).export_model(str(out))
        got = verification.LiteModel(out).predict(x[:40])  # Quantizes an int8 input.
        assert np.abs(np.ravel(got) - expected[:40]).max() < 0.05, name


def test_layer_errors_names_the_layer_made_hard_to_quantize(tmp_path):
    """A middle layer fed a rare huge input: its calibrated range is 1,000 times what the
    usual images need, so it alone crushes their values to a few levels."""
    from litert_quantizer import quantizer, recipe

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu", name="easy")(inputs)
    x = keras.layers.Dense(16, name="hard")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(x))
    easy = np.zeros((8, 16), np.float32)
    easy[np.arange(8), np.arange(8)], easy[np.arange(8), np.arange(8) + 8] = 1, -1
    model.get_layer("easy").set_weights([easy, np.zeros(16, np.float32)])
    kernel, bias = model.get_layer("hard").get_weights()
    kernel[0, :] = 1000.0  # Input 0, zero in usual images, drives every output of "hard".
    model.get_layer("hard").set_weights([kernel, bias])
    kernel, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel - kernel.mean(), bias])  # The spike cancels.
    path = _float_tflite(model, tmp_path, (8,))
    usual = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    usual[:, 0] = 0
    calibration = [{"image": row[None]} for row in [*usual[:32], np.eye(1, 8)[0] * 5]]
    calibration = [{"image": s["image"].astype(np.float32)} for s in calibration]
    qt = quantizer.Quantizer(path, recipe.static_wi8_ai8())
    quantized = tmp_path / "int8.tflite"
    qt.quantize(
        quantization.min_max_ranges(path, calibration), enable_progress_report=False
    ).export_model(str(quantized))
    table = quantization.layer_errors(path, quantized, [{"image": r[None]} for r in usual[32:]])
    assert list(table["op"]) == ["FULLY_CONNECTED"] * 3 + ["LOGISTIC"]
    assert table.nlargest(1, "noise_added")["layer"].item() == "hard"
    assert table.set_index("layer").loc["easy", "snr_db"] > 20  # The rest is fine.


def test_hard_swish_rewrite_keeps_the_function_and_puts_int8_in_xnnpack(tmp_path):
    # MobileNetV3's HARD_SWISH runs outside XNNPACK in INT8 (test above); the bench's rewrite
    # (x * 1/6) * relu6(x + 3) computes the same and converts to ops XNNPACK runs in INT8.
    from helpers.batch import bench

    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    model = bench.classifier("MobileNetV3Small", SIZE, images)[0]
    rewritten = bench.rewrite_hard_swish(model)
    before, after = model.predict(images, verbose=0), rewritten.predict(images, verbose=0)
    assert np.abs(before - after).max() < 1e-5
    signature = [tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image")]
    rewritten.export(str(tmp_path / "saved"), input_signature=signature, verbose=False)
    int8 = bench.convert(tmp_path / "saved", "int8", images)
    report = quantization.delegation_report(int8)
    assert "HARD_SWISH" not in report.index and report.attrs["partitions"] == 1
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    assert bench.rewrite_hard_swish(plain) is None  # Nothing to rewrite.

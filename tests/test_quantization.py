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

from helpers import backbones, quantization

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

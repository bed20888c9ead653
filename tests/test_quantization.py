"""LiteRT conversion, quantization, the hard-swish rewrite and the representative dataset.

The converted model is the course's binary classifier on a randomly initialised
MobileNetV3Small at 64 px (no ImageNet weights offline), with its BatchNorm statistics
re-estimated on demo images so that INT8 calibration sees realistic activation ranges.
Tolerances: float32 LiteRT vs Keras 1e-5 on probabilities (float32 rounding only); the
hard-swish rewrite vs the original Keras model 1e-5.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import backbones, bench, dataset, quantization, verification

SIZE = 64
CLASSES = ["fake", "real"]
FLOAT_TOLERANCE = 1e-5


# ---------------------------------------------------------------------------------------
# Fixtures: demo images, one MobileNetV3Small classifier, its conversions
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> pd.DataFrame:
    """A tiny demo dataset split into train and val rows (a manifest-like frame)."""
    root = tmp_path_factory.mktemp("demo")
    return bench.demo_frame(root, per_class=8, image_size=80, val_share=0.25)


@pytest.fixture(scope="module")
def images(demo) -> np.ndarray:
    ds = dataset.make_dataset(demo, CLASSES, SIZE, batch_size=16, cache=False)
    return dataset.dataset_arrays(ds)[0]


@pytest.fixture(scope="module")
def model(images) -> keras.Model:
    keras.utils.set_random_seed(0)
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, (SIZE, SIZE, 3), verbose=False)
    bench.reestimate_batchnorm(backbone, images)
    return backbones.build_classifier(backbone, 2)


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    """A small classifier that converts in about a second."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(x))


@pytest.fixture(scope="module")
def representative(demo):
    with pytest.warns(UserWarning, match="100-500"):
        return quantization.representative_dataset(demo, CLASSES, SIZE, size=12)


@pytest.fixture(scope="module")
def converted(model, representative, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tflite")
    paths = quantization.convert_all(model, representative, out)
    paths["int8_hswish"] = out / "model_qt_hswish.tflite"
    quantization.convert(model, "int8", representative, paths["int8_hswish"], hard_swish="xnnpack")
    return paths


# ---------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------


def test_every_variant_loads_and_predicts_a_batch(converted, images):
    assert {v: p.name for v, p in converted.items() if v in quantization.VARIANTS} == (
        quantization.FILE_NAMES
    )
    sizes = {}
    for variant, path in converted.items():
        lite = verification.LiteModel(path)
        probabilities = lite.predict(images[:5])
        assert probabilities.shape == (5,), variant
        assert np.all((probabilities >= 0) & (probabilities <= 1)), variant
        sizes[variant] = lite.size_mb
    # Weights in INT8 take about a quarter of float32, in float16 about a half.
    assert sizes["int8"] < 0.4 * sizes["float32"]
    assert sizes["dynamic"] < 0.4 * sizes["float32"]
    assert 0.4 * sizes["float32"] < sizes["float16"] < 0.6 * sizes["float32"]


def test_float32_matches_keras_within_tolerance(model, converted, images):
    expected = verification.keras_probabilities(model, images)
    got = verification.LiteModel(converted["float32"]).predict(images)
    assert np.max(np.abs(got - expected)) <= FLOAT_TOLERANCE


def test_keras_and_saved_model_conversion_paths_agree(tiny, images):
    a = quantization.convert(tiny, "float32", method="keras")
    b = quantization.convert(tiny, "float32", method="saved_model")
    runs = []
    for content in (a, b):
        interpreter = quantization._interpreter(content)
        detail = interpreter.get_input_details()[0]
        # The batch dimension is fixed to 1 so that shape ops fold away.
        assert list(detail["shape_signature"]) == [1, SIZE, SIZE, 3]
        out = []
        for image in images[:3]:
            interpreter.set_tensor(detail["index"], image[None])
            interpreter.invoke()
            out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
        runs.append(np.concatenate(out))
    assert np.max(np.abs(runs[0] - runs[1])) <= 1e-6
    dynamic = quantization.convert(tiny, "float32", method="keras", batch_size=None)
    shape = quantization._interpreter(dynamic).get_input_details()[0]["shape_signature"]
    assert list(shape) == [-1, SIZE, SIZE, 3]


def test_int8_io_details_are_what_the_metadata_says(tiny, converted, images, tmp_path):
    # Default: float32 input and output around the integer graph.
    meta = verification.build_metadata(CLASSES, tflite_path=converted["int8"])
    lite = verification.LiteModel(converted["int8"])
    assert meta["input"]["dtype"] == "float32" == np.dtype(lite.input_details["dtype"]).name
    assert meta["input"]["quantization"] is None and meta["output"]["quantization"] is None
    assert meta["input"]["pixel_range"] == [0, 255]
    assert meta["output"]["meaning"].startswith("probability of the second class, 'real'")

    # Integer input and output: the metadata carries the interpreter's scale and zero point.
    representative = quantization.array_representative(images)
    float_path = tmp_path / "model_qt.tflite"
    quantization.convert(tiny, "int8", representative, float_path)
    path = tmp_path / "model_qt_uint8.tflite"
    quantization.convert(tiny, "int8", representative, path, io_type="uint8")
    written = verification.write_metadata(
        tmp_path / "metadata.json", classes=CLASSES, tflite_path=path, threshold=0.5
    )
    meta = verification.read_metadata(written)
    lite = verification.LiteModel(path)
    for key, detail in (("input", lite.input_details), ("output", lite.output_details)):
        scale, zero_point = detail["quantization"]
        assert meta[key]["dtype"] == "uint8" == np.dtype(detail["dtype"]).name
        assert meta[key]["quantization"] == {"scale": float(scale), "zero_point": int(zero_point)}
        assert meta[key]["shape"] == [int(s) for s in detail["shape"]]
    assert meta["input"]["height"] == meta["input"]["width"] == SIZE
    # LiteModel quantizes the 0-255 pixels and dequantizes the output itself: the same
    # probabilities as the float-I/O INT8 model, up to one output quantization step.
    float_io = verification.LiteModel(float_path).predict(images)
    uint8_io = lite.predict(images)
    step = meta["output"]["quantization"]["scale"]
    assert np.max(np.abs(float_io - uint8_io)) <= 2 * step + 1e-6


def test_convert_validates_its_arguments(model, representative):
    with pytest.raises(ValueError, match="variant="):
        quantization.convert(model, "int4")
    with pytest.raises(ValueError, match="representative="):
        quantization.convert(model, "int8")
    with pytest.raises(ValueError, match="io_type="):
        quantization.convert(model, "float32", io_type="uint8")
    with pytest.raises(ValueError, match="hard_swish="):
        quantization.convert(model, "float32", hard_swish="yes")
    with pytest.raises(ValueError, match="batch_size="):
        quantization.with_fixed_batch(model, 0)


# ---------------------------------------------------------------------------------------
# Hard-swish rewrite and delegation
# ---------------------------------------------------------------------------------------


def test_hard_swish_rewrite_keeps_predictions(model, images, tmp_path):
    assert quantization.count_hard_swish(model) == 18
    kernels = [w.numpy().copy() for w in model.weights]
    before = verification.keras_probabilities(model, images)
    exact = quantization.rewrite_hard_swish(model, fold=False)
    rewritten = quantization.rewrite_hard_swish(model)
    for copy in (exact, rewritten):
        assert copy.hard_swish_replaced == 18
        assert quantization.count_hard_swish(copy) == 0
        after = verification.keras_probabilities(copy, images)
        assert np.max(np.abs(before - after)) <= 1e-5
    # Folding: the factor 6 of every hard-swish and the 1/6 of the 9 squeeze-and-excitation
    # hard-sigmoids are absorbed into kernels downstream; nothing is left to rescale.
    assert rewritten.multiplies_dropped == 9
    assert rewritten.rescales_inserted == 0 and rewritten.hard_swish_unscaled == []
    assert "head" in rewritten.scale_folds  # Through the classifier's pooling and dropout.
    assert exact.scale_folds == {}
    # The original is untouched.
    assert quantization.count_hard_swish(model) == 18
    for weight, kept in zip(model.weights, kernels, strict=True):
        np.testing.assert_array_equal(weight.numpy(), kept)
    after = verification.keras_probabilities(rewritten, images)
    # The rewritten model saves and reloads in safe mode (its layer is registered).
    rewritten.save(tmp_path / "rewritten.keras")
    reloaded = keras.models.load_model(tmp_path / "rewritten.keras", safe_mode=True)
    again = verification.keras_probabilities(reloaded, images)
    assert np.max(np.abs(again - after)) <= 1e-6


def test_rewrite_removes_hard_swish_from_int8_ops_and_delegation_report(converted, images):
    original = quantization.op_counts(converted["int8"])
    rewritten = quantization.op_counts(converted["int8_hswish"])
    assert original.get("HARD_SWISH") == 18
    assert "HARD_SWISH" not in rewritten
    # Each hard-swish becomes ADD (RELU6 fused) + MUL; the 9 hard-sigmoid MULs are folded.
    assert rewritten["MUL"] == original["MUL"] + 18 - 9
    assert rewritten["ADD"] > original["ADD"]

    # XNNPACK takes HARD_SWISH in float only: in INT8 exactly those nodes fall outside,
    # and the graph is cut into one partition per gap plus one.
    report = quantization.delegation_report(converted["int8"])
    assert report.attrs["not_delegated"] == {"HARD_SWISH": 18}
    assert report.attrs["partitions"] == 19
    assert report.loc["HARD_SWISH", "dtypes"] == "int8"
    assert report["count"].sum() == report.attrs["nodes"]
    for path in (converted["float32"], converted["int8_hswish"]):
        report = quantization.delegation_report(path)
        assert report.attrs["not_delegated"] == {}
        assert report.attrs["partitions"] == 1
        assert report.attrs["delegated_nodes"] == report.attrs["nodes"]
    assert "all" in quantization.non_delegated_summary(converted["float32"])


def test_rewritten_int8_errs_like_the_original_int8(model, converted, images):
    # Random weights at 64 px are fragile under INT8; both models stay close to Keras
    # on average (the rewrite adds two rounding points per hard-swish).
    reference = verification.keras_probabilities(model, images)
    for variant in ("int8", "int8_hswish"):
        got = verification.LiteModel(converted[variant]).predict(images)
        assert np.mean(np.abs(got - reference)) < 0.05, variant


def test_naive_hard_swish_forms_are_folded_back_by_the_converter():
    # Why the rewrite multiplies by 1/6 first (or folds it away): the converter fuses
    # x * relu6(x + 3) / 6 back into one HARD_SWISH op, which XNNPACK runs in float only.
    ops = keras.ops
    forms = {
        "naive": lambda x: ops.multiply(ops.multiply(x, ops.relu6(ops.add(x, 3.0))), 1 / 6),
        "rewrite": lambda x: quantization.XnnpackHardSwish()(x),
        "scaled": lambda x: quantization.XnnpackHardSwish(scaled=True)(x),
    }
    found = {}
    for name, form in forms.items():
        inputs = keras.Input((8, 8, 4))
        x = keras.layers.Conv2D(4, 1)(inputs)
        tiny = keras.Model(inputs, keras.layers.Conv2D(4, 1)(form(x)))
        found[name] = quantization.op_counts(quantization.convert(tiny, "float32"))
    assert found["naive"].get("HARD_SWISH") == 1
    assert "HARD_SWISH" not in found["rewrite"] and "HARD_SWISH" not in found["scaled"]
    assert found["rewrite"]["MUL"] == 2 and found["scaled"]["MUL"] == 1


def test_rewrite_handles_a_layer_called_twice():
    # A Dense layer applied twice cannot absorb a factor per call: its hard-swish inputs
    # stay unscaled and the function is unchanged.
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Activation("hard_swish")(keras.layers.Conv2D(4, 1)(inputs))
    dense = keras.layers.Dense(4, name="twice")
    a = dense(x)
    b = dense(keras.layers.Activation("hard_swish")(a))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Add()([a, b])))
    shared = keras.Model(inputs, outputs)
    rewritten = quantization.rewrite_hard_swish(shared)
    assert len(rewritten.hard_swish_unscaled) == 2 and "twice" not in rewritten.scale_folds
    probe = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(shared(probe))
    got = keras.ops.convert_to_numpy(rewritten(probe))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_trained_parameter_share(model):
    share = quantization.trained_parameter_share(model)
    head = model.get_layer("head")
    assert share["head_params"] == int(np.prod(head.kernel.shape)) + 1
    assert share["trainable_params"] == share["head_params"]  # The backbone is frozen.
    assert share["total_params"] == sum(int(np.prod(w.shape)) for w in model.weights)
    assert 0 < share["head_share"] < 0.01
    assert "post-training quantization" in share["sentence"]
    with pytest.raises(ValueError, match="head_layers"):
        quantization.trained_parameter_share(model, head_layers=("nope",))


# ---------------------------------------------------------------------------------------
# Representative dataset
# ---------------------------------------------------------------------------------------


def _manifest(tmp_path, counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    """A manifest of tiny JPEGs: ``counts[(split, label)]`` images each."""
    rows = []
    rng = np.random.default_rng(0)
    for (split, label), n in counts.items():
        for i in range(n):
            path = tmp_path / label / f"{split}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=95)
            rows.append(
                {
                    "relpath": f"{label}/{path.name}",
                    "label": label,
                    "split": split,
                    "decode_path": str(path),
                }
            )
    return pd.DataFrame(rows)


def test_calibration_sample_is_stratified_and_never_reads_test(tmp_path):
    df = _manifest(
        tmp_path,
        {("train", "fake"): 45, ("train", "real"): 15, ("val", "fake"): 15, ("val", "real"): 5},
    )
    df = pd.concat([df, df.assign(split="test").head(10)], ignore_index=True)
    with pytest.warns(UserWarning, match="100-500"):
        sample = quantization.calibration_sample(df, CLASSES, size=40, seed=0)
    assert len(sample) == 40 and sample.index.is_unique
    assert sample["label"].value_counts().to_dict() == {"fake": 30, "real": 10}
    assert set(sample["split"]) <= {"train", "val"}
    with pytest.warns(UserWarning):
        again = quantization.calibration_sample(df, CLASSES, size=40, seed=0)
        other = quantization.calibration_sample(df, CLASSES, size=40, seed=1)
    assert list(again.index) == list(sample.index)
    assert set(other.index) != set(sample.index)
    with pytest.warns(UserWarning):
        only_val = quantization.calibration_sample(df, CLASSES, size=8, splits=("val",))
    assert set(only_val["split"]) == {"val"}
    assert only_val["label"].value_counts().to_dict() == {"fake": 6, "real": 2}
    # A tiny sample still sees every class.
    with pytest.warns(UserWarning):
        tiny = quantization.calibration_sample(df, CLASSES, size=2)
    assert sorted(tiny["label"]) == CLASSES


def test_calibration_size_and_split_validation(tmp_path):
    df = _manifest(tmp_path, {("train", "fake"): 3, ("train", "real"): 3})
    for size in (0, -5):
        with pytest.raises(ValueError, match="size="):
            quantization.calibration_sample(df, CLASSES, size=size, splits=("train",))
    with pytest.raises(ValueError, match="size="):
        quantization.calibration_sample(df, CLASSES, size=2.5, splits=("train",))
    for size in (50, 600):
        with pytest.warns(UserWarning) as record:
            quantization.calibration_sample(df, CLASSES, size=size, splits=("train",))
        messages = [str(w.message) for w in record]
        assert any("outside the sheet's range of 100-500" in m for m in messages)
        assert any("using all of them" in m for m in messages)
    with pytest.raises(ValueError, match="no \\['val'\\] rows"):
        quantization.calibration_sample(df, CLASSES, size=100)
    with pytest.raises(ValueError, match="test split"):
        quantization.calibration_sample(df, CLASSES, size=100, splits=("train", "test"))
    with pytest.raises(ValueError, match="split_col="):
        quantization.calibration_sample(df.drop(columns="split"), CLASSES, size=100)
    with pytest.raises(ValueError, match="not in classes"):
        quantization.calibration_sample(df, ["fake", "other"], size=100, splits=("train",))


def test_representative_dataset_yields_training_pixels(tmp_path):
    df = _manifest(tmp_path, {("train", "fake"): 4, ("train", "real"): 4, ("val", "real"): 2})
    with pytest.warns(UserWarning, match="100-500"):
        generate = quantization.representative_dataset(df, CLASSES, (16, 12), size=6)
    batches = list(generate())
    assert len(batches) == generate.size == 6
    expected, _ = dataset.dataset_arrays(
        dataset.make_dataset(generate.sample, CLASSES, (16, 12), batch_size=1, cache=False)
    )
    for i, batch in enumerate(batches):
        assert isinstance(batch, list) and len(batch) == 1
        image = batch[0]
        assert image.dtype == np.float32 and image.shape == (1, 16, 12, 3)
        assert 0 <= image.min() and image.max() <= 255 and image.max() > 1
        np.testing.assert_array_equal(image[0], expected[i])
    # The generator can be called again (the converter may iterate it more than once).
    assert len(list(generate())) == 6


def test_allocation_edges():
    assert quantization._allocate({"a": 10, "b": 10}, 5) in ({"a": 3, "b": 2}, {"a": 2, "b": 3})
    assert quantization._allocate({"a": 99, "b": 1}, 10) == {"a": 9, "b": 1}
    assert quantization._allocate({"a": 5, "b": 3, "c": 1}, 1) == {"a": 1, "b": 0, "c": 0}
    assert quantization._allocate({"a": 2, "b": 0}, 5) == {"a": 2, "b": 0}


def test_demo_frame_is_offline_and_split(demo):
    assert set(demo["split"]) == {"train", "val"}
    assert demo.groupby("label").size().to_dict() == {"fake": 8, "real": 8}

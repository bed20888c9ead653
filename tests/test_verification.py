"""LiteModel, the variant comparison, the sheet's acceptance rules and the shipping side.

A tiny classifier (course head on a one-convolution backbone, 32 px) keeps conversions to
about a second; the acceptance rules are checked on hand-made tables.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import backbones, dataset, quantization, verification
from helpers.runs import write_json

SIZE = 32
CLASSES = ["fake", "real"]


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


def _write_images(folder, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # Different sizes and a PNG, so that decode and resize are exercised.
        shape = (40 + 3 * i, 48, 3)
        base = rng.integers(0, 255, shape, dtype=np.uint8)
        if seed % 2:
            base = (base * 0.5).astype(np.uint8)  # Darker images for one class.
        suffix = "png" if i == 0 else "jpg"
        Image.fromarray(base).save(folder / f"img_{i}.{suffix}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _write_images(root / "fake", 6, seed=1)
    _write_images(root / "real", 6, seed=2)
    return root


@pytest.fixture(scope="module")
def arrays(folder):
    scan = dataset.scan(folder, cache_dir=folder.parent / "normalised")
    good = scan.good
    x, y = dataset.dataset_arrays(dataset.make_dataset(good, CLASSES, SIZE, cache=False))
    return good, x, y.reshape(-1).astype(int)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    # Enough weights (about 18 000) for INT8 to be visibly smaller than float32.
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    backbone = keras.Model(inputs, x, name="tiny_backbone")
    return backbones.build_classifier(backbone, 2)


@pytest.fixture(scope="module")
def converted(model, arrays, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    representative = quantization.array_representative(arrays[1])
    return quantization.convert_all(model, representative, out)


# ---------------------------------------------------------------------------------------
# LiteModel
# ---------------------------------------------------------------------------------------


def test_lite_model_predicts_like_keras_and_times_itself(model, converted, arrays):
    _, x, _ = arrays
    lite = verification.LiteModel(converted["float32"], num_threads=1)
    assert lite.image_size == (SIZE, SIZE)
    assert np.dtype(lite.input_details["dtype"]) == np.float32
    got = lite.predict(x)
    assert got.shape == (len(x),)
    assert np.max(np.abs(got - verification.keras_probabilities(model, x))) <= 1e-5
    assert lite.predict(x[0]).shape == (1,)  # One image without a batch axis.
    timing = lite.latency(runs=20, warmup=2)
    assert set(timing) >= {"median_ms", "p95_ms", "runs", "threads"}
    assert timing["runs"] == 20 and timing["threads"] == 1
    assert 0 < timing["median_ms"] <= timing["p95_ms"]
    with pytest.raises(ValueError, match="resize them as in training"):
        lite.predict(np.zeros((1, SIZE + 1, SIZE, 3), np.float32))
    with pytest.raises(ValueError, match="runs="):
        lite.latency(runs=0)
    with pytest.raises(FileNotFoundError):
        verification.LiteModel(converted["float32"].parent / "missing.tflite")


def test_side_by_side_latency_rows(converted):
    table = verification.side_by_side_latency(converted, runs=12, warmup=2, rounds=3, threads=1)
    assert list(table.index) == list(converted)
    assert (table["runs"] == 12).all() and (table["median_ms"] > 0).all()


# ---------------------------------------------------------------------------------------
# Comparison table, acceptance, speed verdict
# ---------------------------------------------------------------------------------------


def test_compare_variants_table(model, converted, arrays):
    _, x, y = arrays
    table = verification.compare_variants(
        model, converted, x, y, CLASSES, threads=1, runs=10, keras_runs=3
    )
    assert list(table.index) == ["Keras", "float32", "dynamic", "int8", "float16"]
    for column in (
        "accuracy",
        "roc_auc",
        "agreement_with_keras",
        "max_prob_diff_vs_keras",
        "size_mb",
        "size_ratio_vs_float32",
        "latency_median_ms",
        "latency_p95_ms",
        "threads",
    ):
        assert column in table.columns
    assert table.loc["Keras", "max_prob_diff_vs_keras"] == 0
    assert table.loc["float32", "max_prob_diff_vs_keras"] <= 1e-5
    assert table.loc["float32", "agreement_with_keras"] == 1.0
    assert table.loc["float32", "size_ratio_vs_float32"] == 1.0
    assert table.loc["int8", "size_mb"] < table.loc["float32", "size_mb"]
    assert table.loc["int8", "file"] == "model_qt.tflite"
    assert (table.loc["float32":, "threads"] == 1).all()
    probabilities = table.attrs["probabilities"]
    assert set(probabilities) == {"keras", *converted}
    expected = verification.LiteModel(converted["int8"], num_threads=1).predict(x)
    np.testing.assert_array_equal(probabilities["int8"], expected)
    rules = verification.acceptance(table)
    assert rules.loc[0, "status"] == "pass"  # Keras = float32 LiteRT.
    # Round trip through the CSV the checklist reads.
    path = verification.save_comparison(table, converted["int8"].parent / "comparison.csv")
    again = verification.load_comparison(path)
    assert list(again.index) == list(table.index)
    assert again.loc["int8", "accuracy"] == pytest.approx(table.loc["int8", "accuracy"])


def _table(acc32=0.90, acc8=0.89, acc16=0.90, diff=1e-6, agreement=1.0, t32=8.0, t8=5.0):
    return pd.DataFrame(
        {
            "accuracy": [acc32, acc32, acc8, acc16],
            "agreement_with_keras": [1.0, agreement, 0.97, 1.0],
            "max_prob_diff_vs_keras": [0.0, diff, 0.05, 0.001],
            "latency_median_ms": [20.0, t32, t8, 7.0],
            "threads": [2, 2, 2, 2],
        },
        index=pd.Index(["Keras", "float32", "int8", "float16"], name="model"),
    )


def _status(rules: pd.DataFrame, start: str) -> str:
    return rules.loc[rules["rule"].str.startswith(start), "status"].item()


@pytest.mark.parametrize(
    ("acc8", "expected", "recommendation"),
    [
        (0.90, "pass", "int8"),
        (0.8901, "pass", "int8"),  # 0.99 points lost.
        (0.89, "borderline", "int8"),  # Exactly 1 point: borderline.
        (0.885, "borderline", "int8"),
        (0.88, "borderline", "int8"),  # Exactly 2 points: still borderline.
        (0.8799, "fail", "float16"),  # 2.01 points: fail, float16 holds.
        (0.95, "pass", "int8"),  # A gain is no loss.
    ],
)
def test_int8_rule_edges(acc8, expected, recommendation):
    rules = verification.acceptance(_table(acc8=acc8))
    assert _status(rules, "Keras vs float32") == "pass"
    assert _status(rules, "float32 vs INT8") == expected
    assert rules.attrs["recommendation"] == recommendation
    assert _status(rules, "recommendation") == recommendation


def test_recommendation_falls_back_to_float32_and_refuses_a_broken_conversion():
    rules = verification.acceptance(_table(acc8=0.80, acc16=0.85))
    assert _status(rules, "float32 vs float16") == "fail"
    assert rules.attrs["recommendation"] == "float32"
    rules = verification.acceptance(_table(diff=3e-4))
    assert _status(rules, "Keras vs float32") == "fail"
    assert rules.attrs["recommendation"] is None
    assert "fix the conversion" in rules.iloc[-1]["evidence"]
    rules = verification.acceptance(_table(agreement=0.99))
    assert _status(rules, "Keras vs float32") == "fail"
    # The tolerance is a parameter.
    rules = verification.acceptance(_table(diff=3e-4), float_tolerance=1e-3)
    assert _status(rules, "Keras vs float32") == "pass"
    without_fp16 = _table(acc8=0.5).drop(index="float16")
    assert verification.acceptance(without_fp16).attrs["recommendation"] == "float32"
    with pytest.raises(ValueError, match="no 'int8' row"):
        verification.acceptance(_table().drop(index="int8"))
    with pytest.raises(ValueError, match="int8_pass_delta"):
        verification.acceptance(_table(), int8_max_delta=0.01, int8_pass_delta=0.02)


def test_speed_verdict_says_faster_or_slower():
    assert verification.speed_verdict(_table(t32=8.0, t8=5.0)).startswith(
        "INT8 is 1.60x faster than float32"
    )
    slower = verification.speed_verdict(_table(t32=1.5, t8=5.0))
    assert slower.startswith("INT8 is SLOWER than float32 here: 3.33x the time")
    assert "hard_swish='xnnpack'" in slower
    assert "about as fast" in verification.speed_verdict(_table(t32=5.0, t8=5.1))


# ---------------------------------------------------------------------------------------
# Shipping artefacts
# ---------------------------------------------------------------------------------------


def test_labels_and_metadata_round_trip(tmp_path, converted):
    path = verification.write_labels(tmp_path / "labels.txt", CLASSES)
    assert path.read_text() == "fake\nreal\n"
    assert verification.read_labels(path) == CLASSES
    with pytest.raises(ValueError, match="duplicates"):
        verification.write_labels(tmp_path / "x.txt", ["a", "a"])
    with pytest.raises(ValueError, match="at least 2"):
        verification.write_labels(tmp_path / "x.txt", ["a"])

    metrics = {"val_accuracy_int8": 0.93, "auc": float("nan")}
    written = verification.write_metadata(
        tmp_path / "metadata.json",
        classes=CLASSES,
        tflite_path=converted["int8"],
        threshold=0.4,
        metrics=metrics,
        backbone="tiny",
    )
    meta = verification.read_metadata(written)
    assert meta == json.loads(written.read_text())
    assert meta["classes"] == CLASSES and meta["model_file"] == "model_qt.tflite"
    assert meta["decision_threshold"] == 0.4
    assert meta["decision_rule"] == "'real' when probability >= 0.4, else 'fake'"
    assert meta["input"]["height"] == SIZE and meta["input"]["pixel_range"] == [0, 255]
    assert meta["input"]["dtype"] == "float32" and meta["input"]["quantization"] is None
    assert "second class, 'real'" in meta["output"]["meaning"]
    assert meta["metrics"] == {"val_accuracy_int8": 0.93, "auc": None}
    assert meta["backbone"] == "tiny"
    with pytest.raises(ValueError, match="image_size="):
        verification.build_metadata(CLASSES, image_size=SIZE + 1, tflite_path=converted["int8"])
    with pytest.raises(ValueError, match="threshold="):
        verification.build_metadata(CLASSES, image_size=SIZE, threshold=1.0)
    plain = verification.build_metadata(["a", "b", "c"], image_size=(24, 32))
    assert plain["decision_threshold"] is None and plain["input"]["width"] == 32


def test_predict_folder_equals_lite_model_on_the_same_images(converted, folder, arrays, tmp_path):
    good, x, _ = arrays
    expected = verification.LiteModel(converted["int8"]).predict(x)
    meta = verification.write_metadata(
        tmp_path / "meta.json", classes=CLASSES, tflite_path=converted["int8"], threshold=0.5
    )
    table = verification.predict_folder(converted["int8"], folder, metadata_path=meta)
    assert list(table.columns) == ["file", "probability", "predicted_label", "true_label"]
    assert list(table["file"]) == list(good["relpath"])
    np.testing.assert_array_equal(table["probability"].to_numpy(), expected)
    assert list(table["predicted_label"]) == [CLASSES[int(p >= 0.5)] for p in expected]
    assert list(table["true_label"]) == list(good["label"])

    # A flat folder of images (no class subfolders), with one unreadable file.
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("img_1.jpg", "img_2.jpg"):
        (flat / name).write_bytes((folder / "real" / name).read_bytes())
    (flat / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="left out"):
        loose = verification.predict_folder(converted["int8"], flat, metadata_path=meta)
    assert list(loose["file"]) == ["img_1.jpg", "img_2.jpg"]
    assert "true_label" not in loose.columns and "broken.jpg" in loose.attrs["unusable"]
    index = [list(good["relpath"]).index(f"real/{name}") for name in loose["file"]]
    np.testing.assert_array_equal(loose["probability"].to_numpy(), expected[index])

    # Without metadata the labels are class indices.
    bare = verification.predict_folder(converted["float32"], folder)
    assert set(bare["predicted_label"]) <= {"0", "1"}
    with pytest.raises(ValueError, match="not a folder"):
        verification.predict_folder(converted["int8"], tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------
# Pre-deployment checklist
# ---------------------------------------------------------------------------------------


def _run_dir(tmp_path, converted, diagnosis="good", accesses=1):
    run = tmp_path / "run"
    export = run / "export"
    export.mkdir(parents=True)
    for name in ("model.tflite", "model_qt.tflite"):
        (export / name).write_bytes(converted["int8" if "qt" in name else "float32"].read_bytes())
    for phase in ("phase1", "phase2"):
        write_json(run / f"{phase}_history.json", {"loss": [0.6, 0.4], "val_loss": [0.6, 0.45]})
        write_json(run / f"{phase}_metrics.json", {"accuracy": 0.9, "diagnosis": "good"})
    write_json(run / "phase2_metrics.json", {"accuracy": 0.92, "diagnosis": diagnosis})
    log = [{"time": f"2026-01-0{i + 1}T10:00:00", "purpose": "final"} for i in range(accesses)]
    write_json(run / "test_access.json", {"accesses": log})
    verification.save_comparison(_table(acc32=0.92, acc8=0.915), export / "comparison.csv")
    return run


def test_checklist_all_pass(tmp_path, converted):
    run = _run_dir(tmp_path, converted)
    table = verification.pre_deployment_checklist(run, target_size_mb=5.0)
    assert list(table.columns) == ["item", "passed", "evidence"]
    assert table["passed"].all(), table.to_string()
    assert len(table) == 5
    assert "one access" in table.loc[1, "evidence"]
    assert "0.50 points lost" in table.loc[3, "evidence"]


def test_checklist_failures(tmp_path, converted):
    run = _run_dir(tmp_path, converted, diagnosis="overfitting", accesses=2)
    (run / "export" / "model_qt.tflite").unlink()
    table = verification.pre_deployment_checklist(
        run, target_size_mb=5.0, comparison=_table(acc32=0.92, acc8=0.85)
    ).set_index("item")
    assert not table.loc["Learning curves checked", "passed"]
    assert "phase2: overfitting" in table.loc["Learning curves checked", "evidence"]
    assert not table.loc["Test set evaluated once", "passed"]
    assert "2 accesses" in table.loc["Test set evaluated once", "evidence"]
    conversions = table.loc["Conversions tested (float32 and INT8)"]
    assert not conversions["passed"] and "model_qt.tflite missing" in conversions["evidence"]
    assert not table.loc["Quantized accuracy checked (loss < 2%)", "passed"]
    assert not table.loc["Size acceptable for the target (≤ 5 MB)", "passed"]

    small = _run_dir(tmp_path / "b", converted)
    table = verification.pre_deployment_checklist(small, target_size_mb=1e-4).set_index("item")
    assert not table.loc["Size acceptable for the target (≤ 0.0001 MB)", "passed"]
    with pytest.raises(ValueError, match="target_size_mb="):
        verification.pre_deployment_checklist(small, target_size_mb=0)


def test_size_latency_bars_draws_both_charts():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers import plots

    table = _table().assign(size_mb=[13.0, 13.5, 4.0, 6.8], latency_p95_ms=[25, 9, 6, 8])
    table.loc["Keras", "latency_median_ms"] = np.nan  # An untimed row is skipped.
    fig = plots.size_latency_bars(table, "Variants")
    size_ax, time_ax = fig.axes
    assert "MB" in size_ax.get_ylabel() and "ms" in time_ax.get_ylabel()
    assert len(size_ax.patches) == 4 and len(time_ax.patches) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks columns"):
        plots.size_latency_bars(table.drop(columns="size_mb"), "x")

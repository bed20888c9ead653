"""The decision rule, LiteModel, the variant comparison, the sheet's acceptance rules and the
shipping side.

A tiny classifier (the course's head on a one-convolution backbone, 32 px) keeps conversions
to about a second; they are made as notebook 05 makes them. The acceptance rules are checked
on hand-made tables.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from helpers import antispoofing, checks, dataset, quantization, verification
from helpers.runs import write_json

SIZE = 32
CLASSES = ["fake", "real"]


def _write_images(folder, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # Different sizes and a PNG, so that decode and resize are exercised.
        base = rng.integers(0, 255, (40 + 3 * i, 48, 3), dtype=np.uint8)
        if seed % 2:
            base = (base * 0.5).astype(np.uint8)  # Darker images for one class.
        Image.fromarray(base).save(folder / f"img_{i}.{'png' if i == 0 else 'jpg'}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _write_images(root / "fake", 6, seed=1)
    _write_images(root / "real", 6, seed=2)
    return root


@pytest.fixture(scope="module")
def arrays(folder):
    good = checks.scan(folder, cache_dir=folder.parent / "normalised").good
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
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(x))


@pytest.fixture(scope="module")
def converted(model, arrays, tmp_path_factory):
    """Notebook 05's four files, plus an INT8 model with float input and output."""
    out = tmp_path_factory.mktemp("export")
    saved = str(out / "saved_model")
    model.export(saved, input_signature=[tf.TensorSpec((1, SIZE, SIZE, 3))], verbose=False)
    paths = {}
    for variant, name in [*quantization.FILE_NAMES.items(), ("int8_float_io", "float_io.tflite")]:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if variant.startswith("int8"):
            converter.representative_dataset = lambda: ([x[None]] for x in arrays[1])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if variant == "int8":
            converter.inference_input_type = converter.inference_output_type = tf.int8
        paths[variant] = out / name
        paths[variant].write_bytes(converter.convert())
    return paths


def _four(converted):
    return {v: p for v, p in converted.items() if v in quantization.VARIANTS}


def test_decide_is_one_rule_for_sigmoid_and_softmax():
    p = np.array([0.2, 0.5, 0.64, 0.9])
    np.testing.assert_array_equal(verification.decide(p), [0, 1, 1, 1])
    np.testing.assert_array_equal(verification.decide(p, threshold=0.65), [0, 0, 0, 1])
    np.testing.assert_array_equal(verification.decide(p[:, None], 0.65), [0, 0, 0, 1])
    softmax = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    np.testing.assert_array_equal(verification.decide(softmax, threshold=0.9), [1, 0])


def test_lite_model_predicts_like_keras_and_times_itself(model, converted, arrays):
    _, x, _ = arrays
    lite = verification.LiteModel(converted["float32"], num_threads=1)
    assert lite.image_size == (SIZE, SIZE)
    assert np.dtype(lite.input_details["dtype"]) == np.float32
    got = lite.predict(x)
    assert got.shape == (len(x),)
    assert np.max(np.abs(got - model.predict(x, verbose=0)[:, 0])) <= 1e-5
    assert lite.predict(x[0]).shape == (1,)  # One image without a batch axis.
    times = []  # Each invoke's milliseconds, when asked for.
    lite.predict(x, times)
    assert len(times) == len(x) and min(times) > 0
    with pytest.raises(ValueError, match="resize them as in training"):
        lite.predict(np.zeros((1, SIZE + 1, SIZE, 3), np.float32))
    with pytest.raises(FileNotFoundError):
        verification.LiteModel(converted["float32"].parent / "missing.tflite")


def test_lite_model_quantizes_an_int8_input_and_dequantizes_its_output(converted, arrays):
    _, x, _ = arrays
    lite = verification.LiteModel(converted["int8"])
    assert np.dtype(lite.input_details["dtype"]) == np.int8
    scale, zero_point = lite.output_details["quantization"]
    # The same probabilities as the INT8 model with float input and output, within rounding.
    float_io = verification.LiteModel(converted["int8_float_io"]).predict(x)
    assert np.max(np.abs(float_io - lite.predict(x))) <= 2 * scale + 1e-6
    # Notebook 06's hand-written loop gives exactly what LiteModel gives.
    in_scale, in_zero_point = lite.input_details["quantization"]
    q = np.clip(np.round(x[0] / in_scale) + in_zero_point, -128, 127).astype(np.int8)
    lite.interpreter.set_tensor(lite.input_details["index"], q[None])
    lite.interpreter.invoke()
    raw = lite.interpreter.get_tensor(lite.output_details["index"])
    by_hand = (raw.astype(np.float32) - zero_point) * scale
    assert np.array_equal(by_hand.ravel(), lite.predict(x[0]))


def test_compare_variants_table(model, converted, arrays, tmp_path):
    _, x, y = arrays
    table = verification.compare_variants(
        model, _four(converted), x, y, CLASSES, threads=1, runs=10, keras_runs=3
    )
    assert list(table.index) == ["Keras", "float32", "dynamic", "int8", "float16"]
    assert list(table.columns) == [
        "file",
        "accuracy",
        "roc_auc",
        "agreement_with_keras",
        "flips_vs_keras",
        "max_prob_diff_vs_keras",
        "size_mb",
        "size_ratio_vs_float32",
        "latency_median_ms",
        "latency_p95_ms",
        "threads",
        "images",
    ]
    assert table.loc["Keras", "max_prob_diff_vs_keras"] == 0
    assert table.loc["float32", "max_prob_diff_vs_keras"] <= 1e-5
    assert table.loc["float32", "agreement_with_keras"] == 1.0
    assert table.loc["float32", "flips_vs_keras"] == 0 and table.loc["Keras", "flips_vs_keras"] == 0
    flips = (1 - table["agreement_with_keras"]) * len(x)
    np.testing.assert_allclose(table["flips_vs_keras"], flips, atol=1e-9)
    latency = table.attrs["latency_ms"]  # Every prediction's invoke: 12 images, at least 10.
    assert list(latency.columns) == list(quantization.VARIANTS) and len(latency) == len(x) == 12
    assert (latency.median() == table.loc["float32":, "latency_median_ms"]).all()
    assert (table["latency_median_ms"] <= table["latency_p95_ms"]).all()
    assert table.loc["float32", "size_ratio_vs_float32"] == 1.0
    assert table.loc["int8", "size_mb"] < 0.4 * table.loc["float32", "size_mb"]
    assert 0.4 < table.loc["float16", "size_ratio_vs_float32"] < 0.6
    assert table.loc["int8", "file"] == "model_qt.tflite"
    assert (table.loc["float32":, "threads"] == 1).all() and (table["images"] == len(x)).all()
    probabilities = table.attrs["probabilities"]
    assert set(probabilities) == {"keras", *quantization.VARIANTS}
    expected = verification.LiteModel(converted["int8"], num_threads=1).predict(x)
    np.testing.assert_array_equal(probabilities["int8"], expected)
    assert verification.acceptance(table).loc[0, "status"] == "pass"  # Keras = float32.
    # The threshold is decide's: at 0.99 every image is the first class.
    high = verification.compare_variants(
        model,
        {"float32": converted["float32"]},
        x,
        y,
        CLASSES,
        threads=1,
        runs=2,
        threshold=0.99,
        keras_runs=0,
    )
    assert high.loc["float32", "accuracy"] == np.mean(y == 0)
    more = verification.compare_variants(model, {"int8": converted["int8"]}, x, y, CLASSES, 1, 30)
    assert len(more.attrs["latency_ms"]) == 30  # 12 images cycled to 30 timed runs...
    assert len(more.attrs["probabilities"]["int8"]) == 12  # ...and predicted once.
    # Round trip through the CSV the checklist reads.
    table.to_csv(tmp_path / verification.COMPARISON_FILE)
    again = pd.read_csv(tmp_path / verification.COMPARISON_FILE, index_col=0)
    assert list(again.index) == list(table.index)
    assert again.loc["int8", "accuracy"] == pytest.approx(table.loc["int8", "accuracy"])


def _table(acc32=0.90, acc8=0.89, acc16=0.90, diff=1e-6, agreement=1.0, t32=8.0, t8=5.0):
    return pd.DataFrame(
        {
            "accuracy": [acc32, acc32, acc8, acc16],
            "roc_auc": [0.95, 0.95, 0.9412, 0.95],
            "agreement_with_keras": [1.0, agreement, 0.97, 1.0],
            "flips_vs_keras": [0, round(100 * (1 - agreement)), 3, 0],
            "images": [100] * 4,
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
    # The evidence gives flips and AUC change beside the delta, and no direction word.
    evidence = rules.loc[rules["rule"].str.startswith("float32 vs INT8"), "evidence"].item()
    assert "3 of 100 predictions differ from Keras; ROC AUC change -0.0088" in evidence
    assert not any(word in evidence for word in ("gained", "lost", "improved", "better", "worse"))
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
    assert "HARD_SWISH" in slower and "delegation_report" in slower
    assert verification.speed_verdict(_table(t32=5.0, t8=5.1)).startswith("No clear speed")
    # With an interval, a direction only when it excludes 1.
    faster = verification.speed_verdict(_table(t32=8.0, t8=5.0), interval=(0.9, 2.1))
    assert faster.startswith("No clear speed difference") and "95 % interval 0.90-2.10x" in faster
    assert "faster" in verification.speed_verdict(_table(t32=8.0, t8=5.0), (1.2, 2.0))
    assert "SLOWER" in verification.speed_verdict(_table(t32=1.5, t8=5.0), (0.2, 0.4))


def test_labels_and_metadata_round_trip(tmp_path, converted):
    path = verification.write_labels(tmp_path / "labels.txt", CLASSES)
    assert path.read_text() == "fake\nreal\n"
    with pytest.raises(ValueError, match="duplicates"):
        verification.write_labels(tmp_path / "x.txt", ["a", "a"])
    with pytest.raises(ValueError, match="at least 2"):
        verification.write_labels(tmp_path / "x.txt", ["a"])
    with pytest.raises(ValueError, match="line breaks"):
        verification.write_labels(tmp_path / "x.txt", ["a", "b\n"])

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
    assert meta["input"]["height"] == meta["input"]["width"] == SIZE
    assert meta["input"]["pixel_range"] == [0, 255]
    assert meta["output"]["meaning"].startswith("probability of the second class, 'real'")
    assert meta["metrics"] == {"val_accuracy_int8": 0.93, "auc": None}
    assert meta["backbone"] == "tiny"
    # The integer input and output carry the interpreter's scale and zero point.
    lite = verification.LiteModel(converted["int8"])
    for key, detail in (("input", lite.input_details), ("output", lite.output_details)):
        scale, zero_point = detail["quantization"]
        assert meta[key]["dtype"] == "int8" == np.dtype(detail["dtype"]).name
        assert meta[key]["quantization"] == {"scale": float(scale), "zero_point": int(zero_point)}
        assert meta[key]["shape"] == [int(s) for s in detail["shape"]]
    assert "round(pixel / scale) + zero_point" in meta["input"]["pixels"]
    assert "dequantize first" in meta["output"]["meaning"]
    floats = verification.write_metadata(
        tmp_path / "m.json", classes=CLASSES, tflite_path=converted["float32"]
    )
    assert verification.read_metadata(floats)["input"]["quantization"] is None
    with pytest.raises(ValueError, match="threshold="):
        verification.write_metadata(tmp_path / "m.json", CLASSES, converted["int8"], 1.0)


def test_predict_folder_equals_lite_model_on_the_same_images(converted, folder, arrays, tmp_path):
    good, x, _ = arrays
    expected = verification.LiteModel(converted["int8"]).predict(x)
    meta = verification.write_metadata(
        tmp_path / "meta.json", classes=CLASSES, tflite_path=converted["int8"], threshold=0.5
    )
    table = verification.predict_folder(converted["int8"], folder, metadata_path=meta)
    assert list(table.columns) == ["file", "true_label", "probability", "predicted_label"]
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
    assert set(bare["predicted_label"]) <= {"0", "1"} and bare.attrs["classes_from"] == "indices"
    with pytest.raises(ValueError, match="not a folder"):
        verification.predict_folder(converted["int8"], tmp_path / "nowhere")


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
    _table(acc32=0.92, acc8=0.915).to_csv(run / verification.COMPARISON_FILE)
    return run


def test_checklist_all_pass(tmp_path, converted):
    run = _run_dir(tmp_path, converted)
    table = verification.pre_deployment_checklist(run, target_size_mb=5.0)
    assert list(table.columns) == ["item", "passed", "evidence"]
    assert table["passed"].all(), table.to_string()
    assert len(table) == 5
    assert "one access" in table.loc[1, "evidence"]
    assert "change -0.50 points" in table.loc[3, "evidence"]


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
    with pytest.raises(ValueError, match="target_size_mb"):
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


def test_fit_threshold_is_06s_rule_on_p_of_the_second_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    p = np.clip(0.3 * labels + rng.uniform(0, 0.7, 60), 0, 1)  # P(second class)
    t, info = verification.fit_threshold(p, labels, ["fake", "real"])
    scores = antispoofing.bona_fide_scores(p, ["fake", "real"], "real")
    attack = antispoofing.is_attack(labels, ["fake", "real"], "real")
    assert info == {**antispoofing.choose_threshold(scores, attack), "created": info["created"]}
    assert t == info["threshold"] and info["fitted_on"] == "val"
    # The bona fide class first: the score is 1 - p, the rule on p is 1 - t.
    t0, info0 = verification.fit_threshold(1 - p, 1 - labels, ["real", "fake"])
    assert t0 == pytest.approx(1 - info0["threshold"])
    np.testing.assert_array_equal(
        verification.decide(1 - p, t0) == 1 - labels, verification.decide(p, t) == labels
    )
    apcer = verification.fit_threshold(p, labels, ["fake", "real"], method="apcer")[1]
    assert apcer["method"] == "apcer" and apcer["val_apcer"] <= 0.05
    assert verification.fit_threshold(p, labels, ["cat", "dog"]) == (0.5, None)
    three = np.stack([p / 2, p / 2, 1 - p], axis=1)
    t3, info3 = verification.fit_threshold(three, labels * 2, ["fake", "print", "real"])
    assert t3 == 0.5 and info3["fitted_on"] == "val"  # 3 classes: argmax, threshold beside


def _checklist(**failed: bool) -> pd.DataFrame:
    items = [
        "Learning curves checked",
        "Test set evaluated once",
        "Quantized accuracy checked (loss < 2%)",
    ]
    return pd.DataFrame({"item": items, "passed": [not failed.get(i[:4], False) for i in items]})


def test_release_holds_on_a_failed_checklist_item():
    assert verification.release(_checklist(), "int8") == (
        "ship",
        "ship int8: every checklist item passed",
    )
    decision, why = verification.release(_checklist(Lear=True), "int8")
    assert decision == "hold" and "Learning curves checked" in why
    decision, why = verification.release(_checklist(Lear=True, Test=True), "float32")
    assert decision == "hold" and "Learning curves checked; Test set evaluated once" in why
    # Acceptance already left INT8 because of its accuracy: the release says so and ships.
    decision, why = verification.release(_checklist(Quan=True), "float16")
    assert decision == "ship" and "is why acceptance left INT8" in why
    assert verification.release(_checklist(Quan=True), "int8")[0] == "hold"
    assert verification.release(_checklist(), None)[0] == "hold"


def test_other_files_get_the_accuracy_rule_without_changing_the_recommendation():
    # LiteRT Quantizer's files (and dynamic range) sit in the same table, judged by the same rule.
    table = _table(acc8=0.895)
    extra = table.loc[["int8", "int8"]].set_axis(["dynamic", "lq_static_oob"])
    extra.loc["lq_static_oob", "accuracy"] = 0.85  # A broken file: 5 points lost.
    rules = verification.acceptance(pd.concat([table, extra]))
    assert _status(rules, "float32 vs dynamic") == "pass"
    assert _status(rules, "float32 vs lq_static_oob") == "fail"
    assert rules.attrs["recommendation"] == "int8"
    assert rules.iloc[-1]["rule"] == "recommendation"

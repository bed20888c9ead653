"""ISO/IEC 30107-3 style metrics, the threshold policy, the production view, and the
Grad-CAM code of notebook 07 (run from the notebook's own cells)."""

from __future__ import annotations

import math

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from helpers import antispoofing as pad
from helpers import backbones
from helpers.config import NOTEBOOKS_DIR

CLASSES = ["fake", "real"]


# ---------------------------------------------------------------------------------------
# Scores and labels
# ---------------------------------------------------------------------------------------


def test_bona_fide_scores_follow_the_class_order():
    p = np.array([[0.9], [0.2]])
    assert np.allclose(pad.bona_fide_scores(p, CLASSES), [0.9, 0.2])
    # With the bona fide class first, the sigmoid is P(attack) and the score is 1 - p.
    assert np.allclose(pad.bona_fide_scores(p, ["live", "spoof"], bona_fide="live"), [0.1, 0.8])
    softmax = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert np.allclose(pad.bona_fide_scores(softmax, ["print", "real", "screen"]), [0.2, 0.1])
    with pytest.raises(ValueError, match="not one of classes"):
        pad.bona_fide_scores(p, ["a", "b"])
    with pytest.raises(ValueError, match="logits"):
        pad.bona_fide_scores(np.array([3.0, -2.0]), CLASSES)


def test_is_attack_reads_names_indices_and_one_hot():
    assert pad.is_attack(["fake", "real", "fake"], CLASSES).tolist() == [True, False, True]
    assert pad.is_attack(np.array([[1.0], [0.0]]), CLASSES).tolist() == [False, True]
    assert pad.is_attack(np.eye(2), CLASSES).tolist() == [True, False]
    with pytest.raises(ValueError, match="not in classes"):
        pad.is_attack(["spoof"], CLASSES)


# ---------------------------------------------------------------------------------------
# Metrics at a threshold
# ---------------------------------------------------------------------------------------


def _hand_made():
    """10 screen attacks (2 accepted), 5 print attacks (3 accepted), 20 bona fide (4 rejected)."""
    screen = [0.9, 0.8] + [0.1] * 8
    prints = [0.95, 0.7, 0.6] + [0.2] * 2
    bona = [0.3] * 4 + [0.9] * 16
    scores = np.array(screen + prints + bona)
    attack = np.array([True] * 15 + [False] * 20)
    types = np.array(["screen"] * 10 + ["print"] * 5 + ["none"] * 20)
    return scores, attack, types


def test_apcer_per_type_max_bpcer_and_acer():
    scores, attack, types = _hand_made()
    result = pad.evaluate_pad(scores, attack, types, 0.5)
    assert result["apcer"]["screen"]["rate"] == pytest.approx(0.2)
    assert result["apcer"]["screen"]["errors"] == 2 and result["apcer"]["screen"]["n"] == 10
    assert result["apcer"]["print"]["rate"] == pytest.approx(0.6)
    assert result["apcer_max"]["rate"] == pytest.approx(0.6)
    assert result["apcer_max"]["type"] == "print"
    assert result["bpcer"]["rate"] == pytest.approx(0.2) and result["bpcer"]["n"] == 20
    assert result["acer"] == pytest.approx((0.6 + 0.2) / 2)
    confusion = result["confusion_by_type"]
    assert confusion.loc["bona fide", "bona fide"] == 16
    assert confusion.loc["bona fide", "attack"] == 4
    assert confusion.iloc[1:].sum().to_dict() == {"bona fide": 5, "attack": 10}
    assert confusion.loc["attack: print", "bona fide"] == 3
    rates = result["rates"]
    assert rates.loc["APCER print", "n"] == 5 and rates.loc["BPCER", "errors"] == 4
    assert {"ci_low", "ci_high"} <= set(rates.columns)


def test_a_score_equal_to_the_threshold_is_accepted():
    scores = np.array([0.5, 0.5, 0.4, 0.6])
    attack = np.array([True, False, True, False])
    apcer, bpcer = pad.apcer_bpcer(scores, attack, 0.5)
    assert apcer["errors"] == 1 and apcer["rate"] == 0.5
    assert bpcer["errors"] == 0


def test_an_attack_type_without_samples_is_nan_with_a_note():
    scores, attack, types = _hand_made()
    result = pad.evaluate_pad(scores, attack, types, 0.5, types=["screen", "print", "replay"])
    assert math.isnan(result["apcer"]["replay"]["rate"])
    assert any("replay" in note for note in result["notes"])
    # The worst type is taken over the types that were measured.
    assert result["apcer_max"]["rate"] == pytest.approx(0.6)
    no_bona = pad.evaluate_pad(scores[attack], attack[attack], types[attack], 0.5)
    assert math.isnan(no_bona["bpcer"]["rate"]) and math.isnan(no_bona["eer"])
    assert any("BPCER" in note for note in no_bona["notes"])


def test_eer_at_an_exact_crossing_and_an_interpolated_one():
    exact_scores = np.array([0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.65])
    exact_attack = np.array([False] * 4 + [True] * 4)
    rate, threshold = pad.eer(exact_scores, exact_attack)
    assert rate == pytest.approx(0.25) and threshold == pytest.approx(0.65)
    # At 0.6 APCER = 2/3 and BPCER = 1/2, at 0.7 APCER = 1/3 and BPCER = 1/2: the joined
    # curves cross half way, at APCER = BPCER = 0.5 and threshold 0.65.
    scores = np.array([0.3, 0.8, 0.2, 0.6, 0.7])
    attack = np.array([False, False, True, True, True])
    rate, threshold = pad.eer(scores, attack)
    assert rate == pytest.approx(0.5) and threshold == pytest.approx(0.65)


def test_bpcer_at_apcer_picks_the_lowest_bpcer_and_refuses_unresolvable_targets():
    rng = np.random.default_rng(0)
    attack_scores = np.linspace(0.0, 0.5, 30)
    bona_scores = rng.uniform(0.3, 1.0, 50)
    scores = np.concatenate([attack_scores, bona_scores])
    attack = np.array([True] * 30 + [False] * 50)
    found = pad.bpcer_at_apcer(scores, attack, 0.10)
    assert found["apcer"]["rate"] <= 0.10
    expected = np.mean(bona_scores < found["threshold"])
    assert found["bpcer"]["rate"] == pytest.approx(expected)
    # The next lower distinct score would accept one more attack and break the target.
    lower = scores[scores < found["threshold"]].max()
    assert np.mean(attack_scores >= lower) > 0.10
    too_few = pad.bpcer_at_apcer(scores, attack, 0.01)
    assert math.isnan(too_few["bpcer"]["rate"]) and math.isnan(too_few["threshold"])
    assert "needs ≥ 100 attacks" in too_few["note"] and "here 30" in too_few["note"]
    result = pad.evaluate_pad(scores, attack, None, 0.5)
    assert math.isnan(result["bpcer_at_apcer"][0.01]["bpcer"]["rate"])
    assert any("100 attacks" in note for note in result["notes"])


# ---------------------------------------------------------------------------------------
# The threshold policy
# ---------------------------------------------------------------------------------------


def test_threshold_is_fitted_on_validation_and_saved(tmp_path):
    scores, attack, _ = _hand_made()
    info = pad.choose_threshold(scores, attack, method="eer")
    assert info["fitted_on"] == "val" and info["method"] == "eer"
    assert info["threshold"] == pytest.approx(pad.eer(scores, attack)[1])
    strict = pad.choose_threshold(scores, attack, method="apcer", target_apcer=0.10)
    assert strict["val_apcer"] <= 0.10
    pad.save_threshold(tmp_path, info)
    assert pad.load_threshold(tmp_path)["threshold"] == pytest.approx(info["threshold"])
    result = pad.evaluate_pad(scores, attack, None, pad.load_threshold(tmp_path))
    assert result["fitted_on"] == "val"
    with pytest.raises(FileNotFoundError, match="notebook 06"):
        pad.load_threshold(tmp_path / "elsewhere")


def test_threshold_is_never_fitted_on_the_test_split():
    scores, attack, _ = _hand_made()
    with pytest.raises(ValueError, match="never fitted on the test split"):
        pad.choose_threshold(scores, attack, split_name="test")
    splits = np.array(["val"] * (len(scores) - 1) + ["test"])
    with pytest.raises(ValueError, match="never fitted on the test split"):
        pad.choose_threshold(scores, attack, splits=splits)
    with pytest.raises(ValueError, match="never fitted on the test split"):
        pad.save_threshold("unused", {"threshold": 0.5, "fitted_on": "test"})
    with pytest.raises(ValueError, match="needs ≥ 100 attacks"):
        pad.choose_threshold(scores, attack, method="apcer", target_apcer=0.01)
    with pytest.raises(ValueError, match="'eer' or 'apcer'"):
        pad.choose_threshold(scores, attack, method="best")


def test_pad_table_has_one_row_per_model():
    scores, attack, types = _hand_made()
    results = {
        "keras": pad.evaluate_pad(scores, attack, types, 0.5),
        "litert int8": pad.evaluate_pad(np.clip(scores - 0.05, 0, 1), attack, types, 0.5),
    }
    table = pad.pad_table(results)
    assert list(table.index) == ["keras", "litert int8"]
    assert table.loc["keras", "APCER print"] == pytest.approx(0.6)
    assert table.loc["keras", "N attack"] == 15
    text = pad.pad_table(results, style="text")
    assert text.loc["keras", "APCER screen"].startswith("20.0 % (2/10, 95 % CI")
    with pytest.warns(UserWarning, match="different thresholds"):
        pad.pad_table({"a": results["keras"], "b": pad.evaluate_pad(scores, attack, types, 0.4)})


# ---------------------------------------------------------------------------------------
# Production ratio and groups
# ---------------------------------------------------------------------------------------


def test_production_view_arithmetic():
    view = pad.production_view(0.05, 0.05, attack_share=0.05)
    production = view.loc["production (5 % attacks)"]
    assert production["precision of an attack alarm"] == pytest.approx(
        0.95 * 0.05 / (0.95 * 0.05 + 0.05 * 0.95)
    )
    assert production["precision of an attack alarm"] == pytest.approx(0.5)
    assert view.loc["balanced (50 % attacks)", "precision of an attack alarm"] == pytest.approx(
        0.95
    )
    other = pad.production_view(0.1, 0.05, attack_share=0.05).iloc[1]
    assert other["precision of an attack alarm"] == pytest.approx(0.045 / (0.045 + 0.0475))
    assert other["false alarms per 1000 genuine users"] == pytest.approx(50)
    assert other["missed attacks per 1000 attacks"] == pytest.approx(100)
    assert other["missed attacks per 1000 presentations"] == pytest.approx(5)
    assert other["false alarms per 1000 presentations"] == pytest.approx(47.5)


def test_resampling_reproduces_the_production_view():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(0, 0.6, 400), rng.uniform(0.4, 1, 400)])
    attack = np.array([True] * 400 + [False] * 400)
    apcer, bpcer = pad.apcer_bpcer(scores, attack, 0.5)
    expected = pad.production_view(apcer, bpcer, 0.05).iloc[1]
    measured = pad.empirical_view(scores, attack, 0.5, attack_share=0.05, size=20_000).iloc[0]
    assert measured["attack share"] == pytest.approx(0.05)
    assert measured["precision of an attack alarm"] == pytest.approx(
        expected["precision of an attack alarm"], abs=0.05
    )


def test_per_group_rates_show_where_errors_concentrate():
    scores = np.array([0.9, 0.9, 0.2, 0.1, 0.8, 0.3, 0.9])
    attack = np.array([False, False, True, True, True, False, False])
    groups = np.array(["phone", "phone", "tablet", "tablet", "phone", "tablet", "webcam"])
    table = pad.per_group_rates(scores, attack, groups, 0.5)
    assert table.loc["phone", "apcer"] == 1.0 and table.loc["tablet", "apcer"] == 0.0
    assert table.loc["tablet", "bpcer"] == 1.0 and table.loc["phone", "bpcer"] == 0.0
    assert math.isnan(table.loc["webcam", "apcer"])
    assert table.loc["webcam", "APCER"].startswith("n/a (no samples")
    assert table.loc["phone", "BPCER"].startswith("0.0 % (0/2, 95 % CI")
    assert table.loc["all", "n_attack"] == 3


# ---------------------------------------------------------------------------------------
# Comparisons of notebook 07's bias demonstration
# ---------------------------------------------------------------------------------------


def _correct(right: int, n: int) -> np.ndarray:
    return np.arange(n) < right


@pytest.fixture(scope="module")
def said():
    """The sentence notebook 07 prints for each comparison, from the notebook's own cell."""
    cells = nbformat.read(NOTEBOOKS_DIR / "07_antispoofing_evaluation.ipynb", as_version=4).cells
    source = next(c.source for c in cells if "def said(" in c.source)
    namespace = {"PAD": False}
    exec(source, namespace)
    return namespace["said"]


def test_the_bias_verdict_follows_its_interval(said):
    from helpers import stats

    cases = {"inconclusive": ((9, 12), (11, 12)), "held": ((48, 80), (56, 70))}
    for expected, (a, b) in cases.items():
        c = stats.unpaired(_correct(*a), _correct(*b))
        c["verdict"] = stats.verdict(
            c["ci_low"], c["ci_high"], (0, math.inf), c["difference"], c["n"]
        )
        assert c["verdict"].startswith(expected)
        sentence = said("capture bias flatters its own test split", c)
        outcome = sentence.split("»", 1)[1]  # What follows the claim's own words.
        assert c["verdict"] in outcome and f"n = {c['n']}" in outcome
        banned = ("improv", "gain", "better", "worse", "hurt", "flattered")
        assert not any(word in outcome for word in banned), sentence


# ---------------------------------------------------------------------------------------
# Grad-CAM, as notebook 07 writes it
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def notebook():
    """The functions of notebook 07's Grad-CAM cell, defined as the notebook defines them."""
    cells = nbformat.read(NOTEBOOKS_DIR / "07_antispoofing_evaluation.ipynb", as_version=4).cells
    source = next(c.source for c in cells if "def grad_cam(" in c.source)
    namespace = {"keras": keras, "np": np, "tf": tf}
    exec(source, namespace)
    return namespace


def _classifier(base_model: keras.Model) -> keras.Model:
    """The course's classifier, as notebook 03 builds it."""
    inputs = keras.Input(base_model.input_shape[1:])
    x = base_model(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(x))


def _cam(notebook, model, images, target):
    base_model = model.layers[1]
    grad_model = notebook["gradcam_model"](base_model, model.layers[2:])
    return notebook["grad_cam"](grad_model, images, target)


def test_grad_cam_highlights_the_region_that_drives_the_output(notebook):
    size = 16
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(inputs)  # Only the left half...
    x = keras.layers.ZeroPadding2D(((0, 0), (0, size // 2)))(x)  # ...reaches the conv.
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False)(x)
    model = _classifier(keras.Model(inputs, x, name="toy_backbone"))
    conv = model.layers[1].layers[-1]
    conv.set_weights([np.full(conv.kernel.shape, 0.05, dtype="float32")])
    head = model.get_layer("head")
    head.set_weights([np.ones(head.kernel.shape, "float32"), np.zeros(1, "float32")])
    images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype("float32")
    maps = _cam(notebook, model, images, target=1)
    assert maps.shape == (3, size, size)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() == pytest.approx(1)
    left, right = maps[:, :, : size // 2].sum(), maps[:, :, size // 2 :].sum()
    assert left > 4 * right
    # Nothing speaks for "fake" here: the head only has positive weights.
    assert np.all(_cam(notebook, model, images, target=0) == 0)


def test_grad_cam_on_lite0_has_the_input_size_and_depends_on_the_input(notebook):
    keras.utils.set_random_seed(0)
    base_model, _ = backbones.build_backbone("EfficientNetLite0", "imagenet", (96, 96, 3), False)
    assert base_model.layers[-1].name == "top_activation"  # Its output: the last feature map.
    model = _classifier(base_model)
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 255, (96, 96, 3)).astype("float32")
    second = np.zeros_like(first)
    second[:, :48] = 255.0
    images = np.stack([first, second])
    grad_model = notebook["gradcam_model"](base_model, model.layers[2:])
    feature_map, logits = grad_model(images)
    assert feature_map.shape == (2, 3, 3, 1280)
    # The rebuilt forward pass is the classifier's: the sigmoid of its logit is the output.
    assert np.allclose(tf.sigmoid(logits), model(images), atol=1e-5)
    maps = notebook["grad_cam"](grad_model, images, 1)
    assert maps.shape == (2, 96, 96) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert not np.allclose(maps[0], maps[1], atol=1e-3)
    single = notebook["grad_cam"](grad_model, first[None], 1)
    assert np.allclose(single[0], maps[0], atol=1e-5)


def test_overlay_blends_the_heatmap_over_the_image():
    image = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype("float32")
    heat = np.random.default_rng(1).uniform(0, 1, (8, 8))
    blended = pad.overlay(image, heat, alpha=0.4)
    assert blended.shape == (8, 8, 3) and blended.dtype == np.uint8
    assert np.array_equal(pad.overlay(image, heat, alpha=0.0), np.rint(image).astype("uint8"))
    with pytest.raises(ValueError, match="heatmap"):
        pad.overlay(image, heat[:4])


def test_plots_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers import plots

    scores, attack, types = _hand_made()
    fig = plots.roc_det({"keras": (scores, attack, 0.5), "int8": (scores * 0.9, attack)}, "t")
    assert len(fig.axes) == 2
    result = pad.evaluate_pad(scores, attack, types, 0.5)
    plots.rates_with_ci(result["rates"], "rates")
    both = pd.concat([result["rates"].reset_index().assign(model=m) for m in ("a", "b")])
    plots.rates_with_ci(both, "rates")
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3))
    plots.gradcam_grid(images, np.random.default_rng(1).uniform(0, 1, (2, 8, 8)), ["a", "b"], "g")
    plt.close("all")
    assert isinstance(result["rates"], pd.DataFrame)

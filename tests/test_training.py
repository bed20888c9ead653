"""Training: the diagnosis, limits, evaluation, saving and guard of helpers.training, and the
Keras code of notebooks 03-04 (their cells, run here): the head, the feature cache, unfreeze."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from helpers import backbones, features, training

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------
# Learning-curve diagnosis on hand-made histories
# ---------------------------------------------------------------------------------------


def _history(loss, val_loss, acc=None, val_acc=None) -> dict:
    history = {"loss": list(loss), "val_loss": list(val_loss)}
    if acc is not None:
        history.update({"accuracy": list(acc), "val_accuracy": list(val_acc)})
    return history


GOOD = _history(
    [0.69, 0.50, 0.40, 0.35, 0.33, 0.32, 0.315, 0.31],
    [0.68, 0.52, 0.42, 0.38, 0.37, 0.365, 0.36, 0.36],
    [0.55, 0.75, 0.83, 0.86, 0.87, 0.87, 0.875, 0.88],
    [0.56, 0.74, 0.81, 0.84, 0.85, 0.85, 0.855, 0.855],
)
# Issue 12's measured failure (phase 1, full profile, 94 validation images): validation loss fell
# until epoch 14 of 15 while the accuracy gap grew; it was called "overfitting".
PHASE1_ISSUE12 = _history(
    [
        0.6532,
        0.5131,
        0.4184,
        0.3774,
        0.3574,
        0.2988,
        0.2789,
        0.2601,
        0.2565,
        0.2471,
        0.2246,
        0.213,
        0.2053,
        0.208,
        0.1939,
    ],
    [
        0.5985,
        0.5272,
        0.4915,
        0.4718,
        0.4564,
        0.4492,
        0.4349,
        0.431,
        0.4247,
        0.419,
        0.4157,
        0.4086,
        0.4082,
        0.4078,
        0.4084,
    ],
    [
        0.6214,
        0.7816,
        0.8641,
        0.8689,
        0.8883,
        0.9102,
        0.9199,
        0.9296,
        0.9272,
        0.9223,
        0.932,
        0.9466,
        0.949,
        0.9296,
        0.9587,
    ],
    [0.766, 0.7979, 0.8085] + [0.7872] * 10 + [0.7766, 0.7766],
)
EPOCHS = np.arange(15)
FALLING_TRAIN_LOSS = 0.5 * np.exp(-EPOCHS / 4) + 0.15


def test_diagnose_good_curves():
    result = training.diagnose(GOOD)
    assert result.verdict == "good"
    assert not result.evidence["still_falling"] and result.remedies == []
    assert result.sentence.startswith("Good: training loss went 0.69 → 0.31")
    assert "minimum 0.360 at epoch 7 of 8" in result.sentence


def test_diagnose_validation_loss_still_falling_suggests_more_epochs_not_fewer():
    history = _history(
        [0.9, 0.7, 0.5, 0.4], [0.9, 0.7, 0.55, 0.45], [0.6, 0.7, 0.8, 0.85], [0.6, 0.7, 0.78, 0.82]
    )
    result = training.diagnose(history)
    assert result.verdict == "still improving" and result.evidence["still_falling"]
    assert "more epochs may help, not fewer" in result.sentence
    assert result.remedies == ["more epochs"]


@pytest.mark.parametrize("seed", range(20))
def test_diagnose_validation_loss_falling_every_epoch_is_never_overfitting(seed):
    # (a) Noisy decrements, all positive, while the train-val accuracy gap grows to ~0.2.
    rng = np.random.default_rng(seed)
    val_loss = 0.7 - np.cumsum(rng.uniform(0.0005, 0.03, 15))
    acc = np.minimum(np.linspace(0.70, 0.99, 15) + rng.normal(0, 0.01, 15), 1.0)
    val_acc = 0.78 + rng.normal(0, 0.01, 15)
    result = training.diagnose(_history(FALLING_TRAIN_LOSS, val_loss, acc, val_acc))
    assert result.verdict != "overfitting", result.sentence


def test_diagnose_issue12_phase1_history_is_not_overfitting_and_skips_remedies_in_use():
    result = training.diagnose(PHASE1_ISSUE12, in_use={"augmentation", "early_stopping"})
    assert result.verdict == "good", result.sentence
    assert result.evidence["val_loss_min_epoch"] == 14
    assert "minimum 0.408 at epoch 14 of 15" in result.sentence
    assert "noise 0.00" in result.sentence


@pytest.mark.parametrize("seed", range(20))
def test_diagnose_minimum_at_epoch_5_then_rising_by_10_times_the_noise_is_overfitting(seed):
    # (b) Minimum 0.40 at epoch 5, then a steady rise of 10 noise standard deviations.
    noise = 0.005
    trend = np.where(EPOCHS < 4, 0.60 - 0.05 * EPOCHS, 0.40 + (EPOCHS - 4) * 10 * noise / 10)
    val_loss = trend + np.random.default_rng(seed).normal(0, noise, 15)
    result = training.diagnose(_history(FALLING_TRAIN_LOSS, val_loss))
    assert result.verdict == "overfitting", result.sentence
    assert result.evidence["val_loss_min_epoch"] <= 7
    assert noise / 5 < result.evidence["val_loss_noise"] < noise * 3  # of the right order


def test_diagnose_flat_validation_loss_wiggling_within_its_noise_is_not_overfitting():
    # (c) By hand: a flat curve wiggling by about +-0.005, minimum at epoch 6.
    val_loss = [
        0.452,
        0.447,
        0.455,
        0.446,
        0.451,
        0.444,
        0.453,
        0.448,
        0.450,
        0.445,
        0.454,
        0.449,
        0.451,
        0.446,
        0.452,
    ]
    result = training.diagnose(_history(FALLING_TRAIN_LOSS, val_loss))
    assert result.verdict == "good", result.sentence
    assert result.evidence["val_loss_noise"] > 0.002
    # And on 300 seeded white-noise curves the false "overfitting" rate stays low (~2 %).
    rng = np.random.default_rng(0)
    verdicts = [
        training.diagnose(_history(FALLING_TRAIN_LOSS, 0.45 + rng.normal(0, 0.01, 15))).verdict
        for _ in range(300)
    ]
    assert verdicts.count("overfitting") < 15


OVERFITTING = _history(
    [0.70, 0.55, 0.45, 0.40, 0.33, 0.27, 0.22, 0.18, 0.15, 0.12],
    [0.60, 0.45, 0.36, 0.31, 0.32, 0.34, 0.37, 0.40, 0.42, 0.45],
    [0.60, 0.72, 0.80, 0.84, 0.88, 0.91, 0.93, 0.95, 0.96, 0.97],
    [0.65, 0.75, 0.82, 0.85, 0.85, 0.84, 0.84, 0.83, 0.83, 0.82],
)


def test_diagnose_overfitting_on_validation_loss_names_epochs_and_values():
    result = training.diagnose(OVERFITTING)
    assert result.verdict == "overfitting"
    assert result.sentence.startswith(
        "Overfitting: validation loss rose from 0.31 at epoch 4 (its minimum) to 0.45 at "
        "epoch 10, its last 3 epochs averaging 0.103 above the minimum's neighbourhood, while "
        "training loss kept falling (0.40 → 0.12). Validation loss: minimum 0.310 at epoch 4 of "
        "10; epoch-to-epoch noise"
    )
    assert result.remedies == list(training.OVERFITTING_REMEDIES.values())
    assert result.evidence["val_loss_min_epoch"] == 4


def test_diagnose_remedies_in_use_are_not_recommended_again():
    # (d)
    result = training.diagnose(OVERFITTING, in_use={"augmentation"})
    assert "data augmentation" not in result.remedies and "more data" in result.remedies
    assert result.sentence.endswith("Already in use, so not recommended again: data augmentation.")
    everything = training.diagnose(OVERFITTING, in_use=training.OVERFITTING_REMEDIES)
    assert everything.verdict == "overfitting" and everything.remedies == []
    with pytest.raises(ValueError, match="unknown keys \\['augment'\\]"):
        training.diagnose(OVERFITTING, in_use={"augment"})


@pytest.mark.parametrize(("d", "verdict"), [(0.011, "overfitting"), (0.009, "good")])
def test_diagnose_validation_loss_tolerance_edge(d, verdict):
    # A noiseless V (noise 0): minimum 0.50, so the floor is 2 % of it (0.010); the last 3 epochs
    # average 0.5 + 2d, the median of the minimum and its neighbours is 0.5 + d: a rise of d.
    history = _history(
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.42, 0.40], [0.9, 0.8, 0.7, 0.6, 0.5] + [0.5] * 3
    )
    history["val_loss"][5:] = [0.5 + d, 0.5 + 2 * d, 0.5 + 3 * d]
    result = training.diagnose(history, tolerance=0.02)
    assert result.verdict == verdict and result.evidence["val_loss_limit"] == pytest.approx(0.01)
    assert result.evidence["val_loss_rise"] == pytest.approx(d)
    assert result.evidence["val_loss_noise"] == 0


def test_diagnose_rising_validation_loss_with_rising_training_loss_is_not_overfitting():
    history = _history([0.6, 0.4, 0.3, 0.5, 0.7], [0.6, 0.45, 0.35, 0.5, 0.7])
    result = training.diagnose(history)
    assert result.verdict == "good" and result.evidence["unstable"]
    assert "unstable" in result.sentence
    assert result.remedies == list(training.UNSTABLE_REMEDIES.values())


@pytest.mark.parametrize(
    ("best", "verdict"), [(0.69, "underfitting"), (0.70, "good"), (0.71, "good")]
)
def test_diagnose_underfitting_threshold_edges(best, verdict):
    acc = [0.55, 0.62, 0.66, best, best]
    history = _history([0.69, 0.635, 0.63, 0.63, 0.63], [0.69, 0.645, 0.64, 0.64, 0.64], acc, acc)
    result = training.diagnose(history)
    assert result.verdict == verdict
    if verdict == "underfitting":
        assert "best training accuracy is 0.69 (epoch 4)" in result.sentence
        assert result.remedies == list(training.UNDERFITTING_REMEDIES.values())


@pytest.mark.parametrize("seed", range(10))
def test_diagnose_low_accuracies_with_flat_training_loss_is_underfitting(seed):
    # (e) Both accuracies wiggle around 0.60 while both losses are flat (with noise) from epoch 4.
    rng = np.random.default_rng(seed)
    flat = np.minimum(1.0, 0.69 - 0.01 * EPOCHS)[:4].tolist() + [0.66] * 11
    loss, val_loss = flat + rng.normal(0, 0.003, 15), np.add(flat, 0.01) + rng.normal(0, 0.003, 15)
    acc, val_acc = 0.60 + rng.normal(0, 0.01, 15), 0.58 + rng.normal(0, 0.01, 15)
    result = training.diagnose(_history(loss, val_loss, acc, val_acc))
    assert result.verdict == "underfitting", result.sentence
    assert "training loss stopped falling" in result.sentence
    # The same accuracies while the training loss still falls steeply: not (yet) underfitting.
    falling = training.diagnose(
        _history(FALLING_TRAIN_LOSS - 0.02 * EPOCHS, val_loss, acc, val_acc)
    )
    assert falling.verdict != "underfitting", falling.sentence


def test_diagnose_underfitting_needs_both_accuracies_low():
    history = _history(
        [0.69, 0.64, 0.635, 0.635, 0.635],
        [0.69, 0.645, 0.64, 0.64, 0.64],
        [0.60, 0.70, 0.75, 0.78, 0.78],
        [0.55, 0.60, 0.65, 0.68, 0.68],
    )
    assert training.diagnose(history).verdict == "good"
    capped = {**history, "accuracy": [0.60, 0.65, 0.66, 0.68, 0.68]}
    assert training.diagnose(capped).verdict == "underfitting"


def test_diagnose_overfitting_on_accuracy_gap_with_flat_validation_loss():
    history = _history(
        [0.60, 0.50, 0.42, 0.36, 0.31, 0.27],
        [0.55, 0.48, 0.46, 0.46, 0.46, 0.46],
        [0.70, 0.78, 0.84, 0.89, 0.93, 0.96],
        [0.72, 0.78, 0.80, 0.80, 0.80, 0.80],
    )
    result = training.diagnose(history)
    assert result.verdict == "overfitting"
    assert "validation accuracy stalled (0.80 → 0.80)" in result.sentence
    assert result.evidence["rule"].startswith("train-val accuracy gap")
    # A new validation-loss minimum in the last 3 epochs: validation still improves.
    history["val_loss"][-1] = 0.455
    assert training.diagnose(history).verdict != "overfitting"


def test_diagnose_loss_only_and_multiclass_histories():
    loss_only = {k: v for k, v in GOOD.items() if "acc" not in k}
    result = training.diagnose(loss_only)
    assert result.verdict == "good" and not result.evidence["has_accuracy"]
    # A 5-class history has larger losses (ln 5 = 1.61 at chance); the relative rule holds.
    multi = _history(
        [1.6, 1.2, 0.9, 0.7, 0.5],
        [1.6, 1.25, 1.0, 1.1, 1.3],
        [0.2, 0.5, 0.7, 0.8, 0.9],
        [0.2, 0.5, 0.65, 0.64, 0.62],
    )
    assert training.diagnose(multi).verdict == "overfitting"


def test_diagnose_short_history_and_bad_input():
    result = training.diagnose(_history([0.7, 0.5], [0.7, 0.6]))
    assert result.verdict == "too short to tell" and "2 epochs" in result.sentence
    with pytest.raises(ValueError, match="val_loss"):
        training.diagnose({"loss": [0.5, 0.4, 0.3]})
    # Extra keys written by fit are ignored.
    assert (
        training.diagnose({**GOOD, "epochs_run": 8, "best_epoch": 8, "seconds": 1.0}).verdict
        == "good"
    )


# ---------------------------------------------------------------------------------------
# Fine-tuning limits, notebook 04's unfreeze and notebook 03's feature cache
# ---------------------------------------------------------------------------------------


def test_finetune_warnings_edges():
    assert training.finetune_warnings(1e-5, 10) == []
    assert training.finetune_warnings(10**-5, 10) == []
    [message] = training.finetune_warnings(1e-4, 10)
    assert message.startswith(
        "LR too high in fine-tuning: destroys the pretrained weights; use 1e-5 at most"
    )
    [message] = training.finetune_warnings(1e-5, 11)
    assert message.startswith("Too many epochs in fine-tuning:")
    assert len(training.finetune_warnings(1e-3, 20)) == 2
    with pytest.raises(ValueError, match="learning_rate"):
        training.finetune_warnings(0, 5)


def _cell(notebook: str, marker: str, **namespace) -> dict:
    """Run the code cell of ``notebooks/<notebook>.ipynb`` that contains ``marker``."""
    cells = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
    [source] = [c.source for c in cells if c.cell_type == "code" and marker in c.source]
    namespace = {"keras": keras, "np": np, "pd": pd, **namespace}
    exec(source, namespace)
    return namespace


def _classifier(size: int = 32) -> keras.Model:
    """Notebook 03's classifier on a small random MobileNetV3Small."""
    base, _ = backbones.build_backbone("MobileNetV3Small", None, (size, size, 3), verbose=False)
    base.trainable = False
    cell = _cell(
        "03_phase1",
        "def build_model(",
        base_model=base,
        shape=(size, size, 3),
        classes=["fake", "real"],
        DROPOUT_RATE=0.2,
    )
    return cell["model"]


def test_unfreeze_keeps_every_batchnorm_frozen_and_honours_the_cut():
    model = _classifier()
    base = model.layers[1]
    batchnorm = [
        layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    unfreeze = _cell("04_phase2", "def unfreeze(", CUT=None, features=features)["unfreeze"]
    assert unfreeze(model) is base and base.trainable
    assert batchnorm and not any(layer.trainable for layer in batchnorm)
    assert all(layer.trainable for layer in base.layers if layer not in batchnorm)
    unfreeze(model, keep_batchnorm_frozen=False)
    assert all(layer.trainable for layer in batchnorm)
    cut = features.CUTS["MobileNetV3Small"]
    unfreeze = _cell("04_phase2", "def unfreeze(", CUT=cut, features=features)["unfreeze"]
    unfreeze(model)
    start = [layer.name for layer in base.layers].index(cut)
    assert not any(layer.trainable for layer in base.layers[:start])
    assert base.layers[start].trainable
    assert any(layer.trainable for layer in base.layers[start:])
    unfreeze = _cell("04_phase2", "def unfreeze(", CUT="no_such_layer", features=features)
    with pytest.raises(ValueError, match="UNFREEZE_FROM='no_such_layer'"):
        unfreeze["unfreeze"](model)


@pytest.fixture(scope="module")
def lite0():
    backbone, _ = backbones.build_backbone(
        "EfficientNetLite0", "imagenet", (64, 64, 3), verbose=False
    )
    backbone.trainable = False
    return backbone


def _images(n: int = 64, seed: int = 0):
    """Two kinds of toy images: a bright noise and a darker, smoother one."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype("float32").reshape(-1, 1)
    images = rng.uniform(0, 255, (n, 64, 64, 3)).astype("float32")
    images[labels[:, 0] == 1] = 0.5 * images[labels[:, 0] == 1] + 40
    return images, labels


def test_feature_cache_is_equivalent_to_end_to_end_frozen_training(lite0):
    """Notebook 03's head trained on ``base_model.predict`` features = trained end to end.

    The end-to-end classifier sees the same batches in the same order (no shuffle, dropout 0)
    and its frozen backbone computes, inside fit, the features that were cached, so Adam gets
    the same gradients up to float rounding (another graph, another summation order): the
    weights match within a tolerance, not bit for bit. Lite0 has no Dropout inside the
    backbone; Keras' EfficientNetB0-B7 do (stochastic depth), and in Keras 3 the outer
    ``training=True`` of fit reaches them, so there the two routes are not equivalent.
    """
    build_model = _cell(
        "03_phase1",
        "def build_model(",
        base_model=lite0,
        shape=(64, 64, 3),
        classes=["fake", "real"],
        DROPOUT_RATE=0.0,
    )["build_model"]
    images, labels = _images(96)
    end_to_end, cached = build_model(lite0), build_model(lite0)
    initial = end_to_end.get_layer("head").get_weights()
    cached.get_layer("head").set_weights(initial)
    end_to_end.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    end_to_end.fit(images, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
    features = lite0.predict(images, batch_size=32, verbose=0)
    head = keras.Sequential([keras.Input(features.shape[1:]), *cached.layers[-3:]])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    head.fit(features, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)

    kernel_e, bias_e = end_to_end.get_layer("head").get_weights()
    kernel_c, bias_c = cached.get_layer("head").get_weights()
    assert np.abs(kernel_c - initial[0]).max() > 1e-3  # the head did train
    np.testing.assert_allclose(kernel_c, kernel_e, atol=1e-4)
    np.testing.assert_allclose(bias_c, bias_e, atol=1e-4)
    # The head shares the classifier's layers: training it trained `cached` in place.
    assert head.layers[-1] is cached.get_layer("head")
    np.testing.assert_allclose(np.asarray(cached(images)), np.asarray(head(features)), atol=1e-5)


def test_class_weight_from_data_json_reaches_the_loss():
    """Notebook 03 passes notebook 01's class weights (JSON keys as ints) to fit."""
    rng = np.random.default_rng(0)
    labels = (rng.uniform(size=(200, 1)) < 0.9).astype("float32")
    features = (rng.normal(size=(200, 4)) + 0.3 * labels).astype("float32")
    biases = {}
    for name, weights in (("none", None), ("weighted", {"0": 10.0, "1": 1.0})):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
        class_weight = {int(k): v for k, v in weights.items()} if weights else None
        model.fit(features, labels, batch_size=32, epochs=8, class_weight=class_weight, verbose=0)
        biases[name] = float(model.layers[-1].bias.numpy()[0])
    # Weighting the rare class 0 ten times pulls the output (and the bias) towards it.
    assert biases["weighted"] < biases["none"] - 0.5


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def _identity(width: int) -> keras.Model:
    """A model whose output is its input: known probabilities."""
    inputs = keras.Input((width,))
    return keras.Model(inputs, keras.layers.Identity()(inputs))


def test_evaluate_binary_matches_sklearn_and_names_the_classes():
    probabilities = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.6], "float32")
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0], "float32")
    ds = tf.data.Dataset.from_tensor_slices(
        (probabilities.reshape(-1, 1), labels.reshape(-1, 1))
    ).batch(3)
    result = training.evaluate(_identity(1), ds, ["fake", "real"])
    assert result["auc"] == pytest.approx(roc_auc_score(labels, probabilities))
    assert result["accuracy"] == pytest.approx(6 / 8)
    cm = result["confusion"]
    assert list(cm.index) == ["fake", "real"] and list(cm.columns) == ["fake", "real"]
    assert cm.loc["real", "fake"] == 1 and cm.loc["fake", "real"] == 1
    assert cm.loc["fake", "fake"] == 3 and cm.to_numpy().sum() == 8
    np.testing.assert_allclose(result["probabilities"], probabilities)


def test_evaluate_multiclass_one_vs_rest_macro():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
    labels = np.arange(30) % 3
    ds = tf.data.Dataset.from_tensor_slices((probabilities, labels)).batch(8)
    result = training.evaluate(_identity(3), ds, ["a", "b", "c"])
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert result["auc"] == pytest.approx(expected, rel=1e-6)
    assert list(result["confusion"].columns) == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------
# Saving phases
# ---------------------------------------------------------------------------------------


def test_save_and_load_phase_round_trip(tmp_path):
    model = _classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = np.array([[0], [1], [0], [1]], "float32")
    model.fit(images, labels, epochs=1, verbose=0)  # builds the optimizer's state too
    history = {"loss": [0.7, 0.6], "val_loss": [0.7, 0.65], "best_epoch": 2}
    metrics = {
        "accuracy": 0.5,
        "auc": float("nan"),
        "confusion": pd.DataFrame(
            [[1, 1], [0, 2]], index=["fake", "real"], columns=["fake", "real"]
        ),
        "probabilities": np.array([0.2, 0.7]),
    }
    path = training.save_phase(tmp_path, "phase1", model, history, metrics)
    assert path == tmp_path / "phase1.keras"
    assert {p.name for p in tmp_path.iterdir()} == {
        "phase1.keras",
        "phase1_history.json",
        "phase1_metrics.json",
    }
    saved = json.loads((tmp_path / "phase1_metrics.json").read_text())
    assert saved["confusion"]["index"] == ["fake", "real"] and saved["auc"] is None
    assert json.loads((tmp_path / "phase1_history.json").read_text())["best_epoch"] == 2
    reloaded = training.load_phase_model(tmp_path, "phase1")
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    with pytest.raises(FileNotFoundError, match="phase2"):
        training.load_phase_model(tmp_path, "phase2")
    with pytest.raises(ValueError, match="plain file stem"):
        training.load_phase_model(tmp_path, "../phase1")


# ---------------------------------------------------------------------------------------
# Test split guard
# ---------------------------------------------------------------------------------------


@pytest.fixture
def manifest():
    return pd.DataFrame(
        {
            "relpath": [f"{i}.jpg" for i in range(10)],
            "label": ["fake", "real"] * 5,
            "split": ["train"] * 6 + ["val"] * 2 + ["test"] * 2,
        }
    )


def test_tuning_splits_exclude_the_test_rows(manifest):
    train, val = training.tuning_splits(manifest)
    assert len(train) == 6 and len(val) == 2
    assert "test" not in set(train["split"]) | set(val["split"])


def test_test_split_is_used_once_and_recorded(manifest, tmp_path):
    rows = training.test_split(manifest, tmp_path, "final evaluation of phase 2")
    assert list(rows["relpath"]) == ["8.jpg", "9.jpg"]
    log = json.loads((tmp_path / "test_access.json").read_text())
    assert log["accesses"][0]["purpose"] == "final evaluation of phase 2"
    with pytest.raises(RuntimeError, match="invalidat|no longer estimates"):
        training.test_split(manifest, tmp_path, "compare two learning rates")
    training.test_split(manifest, tmp_path, "re-report the final model", allow_repeat=True)
    log = json.loads((tmp_path / "test_access.json").read_text())
    assert [a["repeat"] for a in log["accesses"]] == [False, True]
    with pytest.raises(ValueError, match="purpose"):
        training.test_split(manifest, tmp_path / "other", "")


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def test_learning_curves_join_phases_and_mark_the_boundary():
    import matplotlib

    matplotlib.use("Agg")
    from helpers import plots

    phase2 = {
        "loss": [0.30, 0.28],
        "val_loss": [0.36, 0.35],
        "accuracy": [0.88, 0.9],
        "val_accuracy": [0.85, 0.86],
        "best_epoch": 2,
    }
    fig = plots.learning_curves([("phase 1", GOOD), ("phase 2: fine-tuning", phase2)], "Curves")
    loss_ax, acc_ax = fig.axes
    train = next(line for line in loss_ax.get_lines() if line.get_label() == "train")
    assert list(train.get_xdata()) == list(range(1, 11))  # 8 + 2 epochs on one axis
    boundaries = [line for line in loss_ax.get_lines() if list(line.get_xdata()) == [8.5, 8.5]]
    assert boundaries and any("fine-tuning" in t.get_text() for t in loss_ax.texts)
    assert "loss" in loss_ax.get_ylabel() and "epoch" in acc_ax.get_xlabel()
    # A loss-only history draws the loss panel only.
    loss_only = {"loss": [0.5, 0.4], "val_loss": [0.5, 0.45]}
    assert len(plots.learning_curves([("p", loss_only)], "t").axes) == 1


def test_compare_curves_and_confusion_figures():
    import matplotlib

    matplotlib.use("Agg")
    from helpers import plots

    ax = plots.compare_curves({"correct": GOOD, "high LR": {"val_loss": [0.5, 0.9, 1.4]}})
    assert [line.get_label() for line in ax.get_lines()] == ["correct", "high LR"]
    assert ax.get_title() and "val_loss" in ax.get_ylabel()
    cm = pd.DataFrame(
        [[3, 1], [0, 4]],
        index=pd.Index(["fake", "real"], name="true class"),
        columns=pd.Index(["fake", "real"], name="predicted class"),
    )
    ax = plots.confusion(cm, "Confusion")
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fake", "real"]

"""The sheet's augmentation as notebook 02 writes it (its cell, run here), and what 02 measures."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

from helpers import augmentation as aug

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_augmentation.ipynb"


def _build(flip: bool = True):
    """Notebook 02's ``build_augmentation``, from the cell that defines it."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    [source] = [c.source for c in cells if "def build_augmentation(" in c.source]
    namespace = {
        "keras": keras,
        "FLIP": flip,
        "BRIGHTNESS": 0.2,
        "CONTRAST": 0.2,
        "SATURATION": 0.2,
    }
    keras.utils.set_random_seed(0)
    exec(source, namespace)
    return namespace["build_augmentation"]


def _images(n: int = 64, size: int = 24, seed: int = 0) -> np.ndarray:
    """Random colour images in 0-255, not saturated to the edges (room for jitter)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 235, (n, size, size, 3)).astype("float32")


def _gradients(n: int = 8, size: int = 32) -> np.ndarray:
    """Horizontal gradients: a flipped image is recognisable (left/right swapped)."""
    ramp = np.linspace(0, 255, size, dtype="float32")
    image = np.stack([np.tile(ramp, (size, 1))] * 3, axis=-1)
    return np.repeat(image[None], n, axis=0)


def _saturation(images: np.ndarray) -> np.ndarray:
    high, low = images.max(-1), images.min(-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)


def _single(name: str, images: np.ndarray) -> np.ndarray:
    """One jitter at the sheet's ±0.2, the others off, no flip, in training mode."""
    ranges = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, name: 0.2}
    model = _build(flip=False)(**ranges)
    return keras.ops.convert_to_numpy(model(images, training=True))


def test_the_sheet_layers_with_keras_3_ranges():
    model = _build()(0.2, 0.2, 0.2)
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [
        keras.layers.RandomFlip,
        keras.layers.RandomBrightness,
        keras.layers.RandomContrast,
        keras.layers.RandomSaturation,
    ]
    flip, brightness, contrast, saturation = model.layers
    assert flip.mode == "horizontal"
    assert tuple(brightness.value_range) == tuple(contrast.value_range) == (0, 255)
    # Keras 3.15 reads RandomContrast(0.2) as (0, 0.2): contrast would only go up.
    assert tuple(keras.layers.RandomContrast(0.2).factor) == (0, 0.2)
    assert tuple(contrast.factor) == (0.2, 0.2)
    # RandomSaturation multiplies by f / (1 - f): the factor range gives 0.8 and 1.2.
    low, high = saturation.factor
    assert low / (1 - low) == pytest.approx(0.8) and high / (1 - high) == pytest.approx(1.2)
    assert [type(layer) for layer in _build(flip=False)(0.2, 0.2, 0.2).layers] == kinds[1:]


def test_brightness_shift_is_within_pm_20_percent_of_the_range():
    x = _images()
    shift = (_single("brightness", x) - x).mean(axis=(1, 2, 3))
    assert np.all(np.abs(shift) <= 0.2 * 255 + 1e-3)
    # The draws cover the range (not a constant), both directions.
    assert shift.min() < -0.1 * 255 and shift.max() > 0.1 * 255


def test_contrast_factor_is_within_0_8_and_1_2():
    x = _images()
    y = _single("contrast", x)
    mean = x.mean(axis=(1, 2), keepdims=True)
    # Per image: (y - mean) = c (x - mean); estimate c by least squares.
    c = ((y - mean) * (x - mean)).sum(axis=(1, 2, 3)) / ((x - mean) ** 2).sum(axis=(1, 2, 3))
    assert np.all(c >= 0.8 - 1e-3) and np.all(c <= 1.2 + 1e-3)
    assert c.min() < 0.9 and c.max() > 1.1


def test_saturation_change_stays_within_about_pm_20_percent_and_keeps_hue():
    x = _images(n=128)
    y = _single("saturation", x)
    before, after = _saturation(x), _saturation(y)
    ratio = after.mean(axis=(1, 2)) / before.mean(axis=(1, 2))
    assert ratio.min() >= 0.8 - 0.01 and ratio.max() <= 1.2 + 0.01
    assert ratio.min() < 0.9 and ratio.max() > 1.1
    # Per pixel too (pixels that can still grow by 20 % without hitting full saturation).
    room = before < 0.8
    per_pixel = after[room] / before[room]
    assert per_pixel.min() >= 0.8 - 0.01 and per_pixel.max() <= 1.2 + 0.01
    # Value (max channel) and hue are untouched.
    np.testing.assert_allclose(y.max(-1), x.max(-1), atol=0.05)
    hue_in = tf.image.rgb_to_hsv(x / 255).numpy()[..., 0]
    hue_out = tf.image.rgb_to_hsv(np.clip(y, 0, 255) / 255).numpy()[..., 0]
    shift = np.abs(hue_in - hue_out)
    assert np.minimum(shift, 1 - shift).max() < 1e-3


def test_plain_keras_saturation_factor_is_not_a_delta():
    # RandomSaturation(0.2) draws f in [0, 0.2]: the saturation drops to 25 % at most.
    x = _images(n=32)
    y = keras.ops.convert_to_numpy(keras.layers.RandomSaturation(0.2, seed=0)(x, training=True))
    assert (_saturation(y).mean() / _saturation(x).mean()) < 0.3


def test_flip_probability_is_about_one_half():
    x = _gradients(n=400)
    y = keras.ops.convert_to_numpy(_build()(0.0, 0.0, 0.0)(x, training=True))
    flipped = np.all(np.isclose(y, x[:, :, ::-1], atol=1e-3), axis=(1, 2, 3))
    kept = np.all(np.isclose(y, x, atol=1e-3), axis=(1, 2, 3))
    assert np.all(flipped | kept)
    # 400 draws: the standard deviation of the rate is 0.025; 4 sigma either side.
    assert 0.4 < flipped.mean() < 0.6


def test_output_stays_within_0_255_even_on_extreme_images():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.choice([0.0, 255.0], size=(32, 16, 16, 3)),  # saturated primaries
            rng.uniform(0, 255, (32, 16, 16, 3)),
        ]
    ).astype("float32")
    model = _build()(0.2, 0.2, 0.2)
    for _ in range(3):
        y = keras.ops.convert_to_numpy(model(x, training=True))
        assert y.min() >= 0.0 and y.max() <= 255.0
        assert y.shape == x.shape and y.dtype == np.float32


def test_inference_mode_is_the_identity():
    x = _images(n=4)
    model = _build()(0.2, 0.2, 0.2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), x)


def test_the_config_saved_for_notebooks_03_04_rebuilds_the_same_layers():
    model = _build()(0.2, 0.2, 0.2)
    config = json.loads(json.dumps(model.get_config()))  # As augmentation.json stores it.
    rebuilt = keras.Sequential.from_config(config)
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in model.layers]
    for old, new in zip(model.layers[1:], rebuilt.layers[1:], strict=True):
        assert tuple(new.factor) == pytest.approx(tuple(old.factor))
        assert tuple(new.value_range) == tuple(old.value_range)


def test_too_aggressive_ranges_are_named_at_0_5_not_at_0_2(capsys):
    build = _build()
    build(0.2, 0.2, 0.2)
    assert capsys.readouterr().out == ""
    build(0.5, 0.2, 0.5)
    out = capsys.readouterr().out
    assert "too aggressive" in out and "'brightness': 0.5" in out and "'saturation': 0.5" in out
    assert "contrast" not in out


def test_augmentation_need_thresholds():
    assert aug.augmentation_need({"fake": 1999, "real": 50_000})["level"] == "indispensable"
    need = aug.augmentation_need({"fake": 2000, "real": 9000})
    assert need["level"] == "recommended" and need["smallest_class"] == "fake"
    assert aug.augmentation_need({"fake": 10_000, "real": 20_000})["level"] == "recommended"
    top = aug.augmentation_need({"fake": 10_001, "real": 20_000})
    assert top["level"] == "useful but less critical" and "10,001" in top["sentence"]
    with pytest.raises(ValueError, match="per_class_counts"):
        aug.augmentation_need({})


def test_throughput_is_positive_and_needs_batches():
    x = _images(n=24, size=32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((24, 1), "float32"))).batch(4)
    layers = _build()(0.2, 0.2, 0.2)
    assert aug.augmentation_throughput(ds, layers, batches=3) > 0
    with pytest.raises(ValueError, match="batches=0"):
        aug.augmentation_throughput(ds, layers, batches=0)
    with pytest.raises(ValueError, match="fewer than 2 batches"):
        aug.augmentation_throughput(ds.take(1), layers, batches=3)


def test_augmentation_grid_has_original_plus_draws():
    import matplotlib

    matplotlib.use("Agg")
    from helpers import plots

    fig = plots.augmentation_grid(_gradients(n=2), _build()(0.2, 0.2, 0.2), draws=3)
    axes = fig.axes
    assert len(axes) == 2 * 4
    assert axes[0].get_title() == "original" and axes[3].get_title() == "draw 3"
    assert "px" in axes[0].get_ylabel() and fig._suptitle.get_text()

"""The sheet's anti-spoofing augmentation: ranges, flip probability, pixel range, placement."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import augmentation as aug
from helpers import backbones


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


def _single(layer_name: str, images: np.ndarray, seed: int = 1) -> np.ndarray:
    """Run one jitter alone (the others off) in training mode."""
    kwargs = {"flip": False, "brightness": 0, "contrast": 0, "saturation": 0}
    kwargs[layer_name] = 0.2
    model = aug.build_augmentation(**kwargs, seed=seed)
    return keras.ops.convert_to_numpy(model(images, training=True))


def test_sheet_ranges_and_layers():
    assert aug.SHEET_RANGES == {
        "flip_probability": 0.5,
        "brightness": 0.2,
        "contrast": 0.2,
        "saturation": 0.2,
    }
    model = aug.build_augmentation(seed=0)
    kinds = [type(layer) for layer in model.layers]
    assert kinds[:4] == [
        keras.layers.RandomFlip,
        keras.layers.RandomBrightness,
        keras.layers.RandomContrast,
        keras.layers.RandomSaturation,
    ]
    assert model.get_layer("flip").mode == "horizontal"
    assert tuple(model.get_layer("brightness").value_range) == (0, 255)
    assert tuple(model.get_layer("contrast").value_range) == (0, 255)


def test_saturation_factor_maps_pm_delta_to_keras_factor():
    low, high = aug.saturation_factor(0.2)
    # Keras multiplies the saturation by f / (1 - f).
    assert low / (1 - low) == pytest.approx(0.8)
    assert high / (1 - high) == pytest.approx(1.2)
    assert aug.saturation_factor(0.0) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="saturation=1"):
        aug.saturation_factor(1.0)


def test_brightness_shift_is_within_pm_20_percent_of_the_range():
    x = _images()
    y = _single("brightness", x)
    shift = (y - x).mean(axis=(1, 2, 3))
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


def test_contrast_layer_gets_a_symmetric_factor():
    # Keras 3.15 reads RandomContrast(0.2) as (0, 0.2): contrast would only go up.
    layer = aug.build_augmentation(seed=0).get_layer("contrast")
    assert tuple(layer.factor) == (0.2, 0.2)


def test_plain_keras_saturation_factor_is_not_a_delta():
    # RandomSaturation(0.2) draws f in [0, 0.2]: the saturation drops to 25 % at most.
    x = _images(n=32)
    y = keras.ops.convert_to_numpy(keras.layers.RandomSaturation(0.2, seed=0)(x, training=True))
    assert (_saturation(y).mean() / _saturation(x).mean()) < 0.3


def test_flip_probability_is_about_one_half():
    x = _gradients(n=400)
    model = aug.build_augmentation(brightness=0, contrast=0, saturation=0, seed=3)
    y = keras.ops.convert_to_numpy(model(x, training=True))
    flipped = np.all(np.isclose(y, x[:, :, ::-1]), axis=(1, 2, 3))
    kept = np.all(np.isclose(y, x), axis=(1, 2, 3))
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
    model = aug.build_augmentation(seed=5)
    for _ in range(3):
        y = keras.ops.convert_to_numpy(model(x, training=True))
        assert y.min() >= 0.0 and y.max() <= 255.0
        assert y.shape == x.shape and y.dtype == np.float32


def test_inference_mode_is_the_identity():
    x = _images(n=4)
    model = aug.build_augmentation(seed=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), x)


def test_check_ranges_warns_at_0_5_not_at_0_2():
    assert aug.check_ranges(0.2, 0.2, 0.2) == []
    messages = aug.check_ranges(0.5, 0.2, 0.5)
    assert len(messages) == 2
    assert all("Data augmentation too aggressive" in m for m in messages)
    assert "brightness" in messages[0] and "saturation" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug.build_augmentation(seed=0)  # the sheet's ranges: no warning
    with pytest.warns(UserWarning, match="too aggressive: contrast"):
        aug.build_augmentation(contrast=0.5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug.build_augmentation(contrast=0.5, seed=0, warn=False)
    with pytest.raises(ValueError, match="brightness=-0.1"):
        aug.check_ranges(-0.1, 0.2, 0.2)


def test_augmentation_need_thresholds():
    assert aug.augmentation_need({"fake": 1999, "real": 50_000})["level"] == "indispensable"
    need = aug.augmentation_need({"fake": 2000, "real": 9000})
    assert need["level"] == "recommended" and need["smallest_class"] == "fake"
    assert aug.augmentation_need({"fake": 10_000, "real": 20_000})["level"] == "recommended"
    top = aug.augmentation_need({"fake": 10_001, "real": 20_000})
    assert top["level"] == "useful but less critical" and "10,001" in top["sentence"]
    with pytest.raises(ValueError, match="per_class_counts"):
        aug.augmentation_need({})


def test_augment_dataset_maps_batches_and_keeps_labels():
    x = _images(n=20, size=16)
    y = np.arange(20, dtype="float32").reshape(-1, 1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    out = aug.augment_dataset(ds, aug.build_augmentation(seed=0), seed=1)
    images, labels = zip(*[(a.numpy(), b.numpy()) for a, b in out], strict=True)
    np.testing.assert_array_equal(np.concatenate(labels), y)
    assert not np.allclose(np.concatenate(images), x)
    with pytest.raises(ValueError, match="batched"):
        aug.augment_dataset(tf.data.Dataset.from_tensor_slices((x, y)), aug.build_augmentation())


def test_augment_dataset_seed_is_reproducible_when_deterministic():
    x = _images(n=48, size=16)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((48, 1), "float32"))).batch(8)
    model = aug.build_augmentation(seed=0)

    def draw():
        out = aug.augment_dataset(ds, model, seed=7, deterministic=True)
        return np.concatenate([a.numpy() for a, _ in out])

    np.testing.assert_array_equal(draw(), draw())


def test_throughput_is_positive():
    x = _images(n=24, size=32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((24, 1), "float32"))).batch(4)
    assert aug.augmentation_throughput(ds, aug.build_augmentation(), batches=3) > 0


def test_augmentation_is_not_inside_the_classifier():
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, (64, 64, 3), verbose=False)
    model = backbones.build_classifier(backbone, 2)

    def every_layer(m):
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from every_layer(layer)

    inside = [
        layer.name
        for layer in every_layer(model)
        if isinstance(layer, (*aug.AUGMENTATION_LAYER_TYPES, aug.ClipPixels))
    ]
    assert inside == []


def test_augmentation_grid_has_original_plus_draws():
    import matplotlib

    matplotlib.use("Agg")
    from helpers import plots

    fig = plots.augmentation_grid(_gradients(n=2), aug.build_augmentation(seed=0), draws=3)
    axes = fig.axes
    assert len(axes) == 2 * 4
    assert axes[0].get_title() == "original" and axes[3].get_title() == "draw 3"
    assert "px" in axes[0].get_ylabel() and fig._suptitle.get_text()

"""Data augmentation for the anti-spoofing example, following the course sheet.

The sheet's recipe for anti-spoofing (real photo vs photo of a screen or a print) is a
horizontal flip with probability 0.5 and brightness, contrast and saturation jitter of
±0.2 each; its Keras example is ``RandomFlip("horizontal")``, ``RandomBrightness(0.2)``,
``RandomContrast(0.2)``. Its rules:

- when to enable it: fewer than 2 000 images per class, indispensable; 2 000-10 000,
  recommended; more than 10 000, useful but less critical;
- anti-pattern "Data augmentation too aggressive": unrealistic images confuse the model,
  so stay in moderate ranges (±0.2);
- augmentation applies to the training split only and never ends up inside the exported
  model. That is why this module returns a separate ``keras.Sequential`` that is mapped
  over the training ``tf.data`` pipeline (:func:`augment_dataset`) instead of layers
  placed in front of the classifier.

Pixels are float 0-255 everywhere in the course (the backbones normalise inside).

What each Keras 3 layer's ``factor`` means (read from the Keras 3.15 source, checked by
``tests/test_augmentation.py``):

- ``RandomFlip("horizontal")``: each image is mirrored when a uniform draw is below 0.5.
- ``RandomBrightness(0.2, value_range=(0, 255))``: adds one delta per image, drawn
  uniformly in [-0.2, 0.2] x 255 (so up to ±51 grey levels), then clips to [0, 255].
- ``RandomContrast``: per image, ``(x - mean) * c + mean`` (mean per channel), then clips
  to ``value_range``. Its docstring says a single float 0.2 draws ``c`` in [0.8, 1.2], but
  in Keras 3.15 the base class turns 0.2 into the factor ``(0, 0.2)`` (negative values are
  cut at the layer's lower bound 0), so ``c`` is drawn in [1.0, 1.2]: contrast is only
  ever *increased*. The sheet's ±0.2 is therefore passed as the pair ``(0.2, 0.2)``, which
  gives ``c`` in [0.8, 1.2].
- ``RandomSaturation(factor)``: ``factor`` is NOT a ±delta. A value ``f`` drawn in the
  factor range multiplies the HSV saturation by ``f / (1 - f)``: 0.5 is a no-op, 0 gives
  grey, 1 full saturation, and ``RandomSaturation(0.2)`` means ``f`` in [0, 0.2], i.e. a
  multiplier in [0, 0.25] (images almost grey: the aggressive anti-pattern). The sheet's
  ±0.2 (multiplier in [0.8, 1.2]) is therefore ``factor=(0.8 / 1.8, 1.2 / 2.2)``, about
  ``(0.444, 0.545)``; :func:`saturation_factor` does that mapping.
- ``RandomSaturation``'s ``value_range`` is used for one thing only in Keras 3.15: to clip
  the multiplied HSV saturation channel, whose range is 0-1 whatever the pixel range
  (TensorFlow's RGB-to-HSV keeps V in the pixel scale and S, H in 0-1). With
  ``value_range=(0, 255)`` a saturation pushed above 1 is not clipped, HSV-to-RGB then
  gives pixels down to about -47 and, once clipped, hue shifts of up to 0.024 (about
  9 degrees, measured on random images). So this module passes ``value_range=(0, 1)`` to
  that layer only; the others get ``(0, 255)``. A final :class:`ClipPixels` layer keeps
  the output in [0, 255] whatever a future Keras does.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping

import keras
import numpy as np

#: The course sheet's augmentation for anti-spoofing: flip probability and ± ranges.
SHEET_RANGES: dict[str, float] = {
    "flip_probability": 0.5,
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": 0.2,
}

#: The sheet's anti-pattern: beyond ±0.2 the images stop looking like real captures.
MAX_MODERATE_RANGE = 0.2

#: The sheet's thresholds in images per class (smallest class): below the first,
#: augmentation is indispensable; up to the second, recommended; above, less critical.
NEED_THRESHOLDS = (2_000, 10_000)

#: Layer types that make up an augmentation pipeline; none may be inside an exported model.
AUGMENTATION_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.RandomFlip,
    keras.layers.RandomBrightness,
    keras.layers.RandomContrast,
    keras.layers.RandomSaturation,
    keras.layers.RandomRotation,
    keras.layers.RandomZoom,
    keras.layers.RandomTranslation,
    keras.layers.RandomCrop,
    keras.layers.RandomHue,
)

_ANTI_PATTERN = "Data augmentation too aggressive"


@keras.saving.register_keras_serializable(package="course")
class ClipPixels(keras.layers.Layer):
    """Clip pixel values to ``[low, high]`` (0-255 by default); no weights, no randomness."""

    def __init__(self, low: float = 0.0, high: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        if not low < high:
            raise ValueError(f"ClipPixels needs low < high, got low={low}, high={high}.")
        self.low = float(low)
        self.high = float(high)

    def call(self, inputs, training=None):
        return keras.ops.clip(inputs, self.low, self.high)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "low": self.low, "high": self.high}


def saturation_factor(delta: float) -> tuple[float, float]:
    """Keras ``RandomSaturation`` factor range for a saturation multiplier in 1 ± ``delta``.

    Keras multiplies the saturation by ``f / (1 - f)`` for ``f`` drawn in the factor
    range, so a multiplier ``m`` needs ``f = m / (1 + m)``.
    """
    if not 0 <= delta < 1:
        raise ValueError(
            f"saturation={delta} must be in [0, 1): it is the ± fraction of the saturation."
        )
    low, high = 1.0 - delta, 1.0 + delta
    return low / (1.0 + low), high / (1.0 + high)


def check_ranges(brightness: float, contrast: float, saturation: float) -> list[str]:
    """Warnings naming the sheet's anti-pattern for each range above ±0.2 (empty if none)."""
    messages = []
    for name, value in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        if value is None:
            continue
        if value < 0:
            raise ValueError(f"{name}={value} must be >= 0 (it is a ± range).")
        if value > MAX_MODERATE_RANGE + 1e-12:
            messages.append(
                f"{_ANTI_PATTERN}: {name}=±{value:g} exceeds the moderate "
                f"±{MAX_MODERATE_RANGE:g} of the course sheet; such images look unrealistic "
                "and confuse the model. "
                f"Use {name}={MAX_MODERATE_RANGE:g} or less."
            )
    return messages


def build_augmentation(
    flip: bool = True,
    brightness: float | None = 0.2,
    contrast: float | None = 0.2,
    saturation: float | None = 0.2,
    seed: int | None = None,
    name: str = "augmentation",
    warn: bool = True,
) -> keras.Sequential:
    """The sheet's anti-spoofing augmentation as a ``keras.Sequential`` on 0-255 images.

    Args:
        flip: mirror each image horizontally with probability 0.5.
        brightness: ± brightness shift as a fraction of the 0-255 range (0 or None: off).
        contrast: ± contrast factor around 1 (0 or None: off).
        saturation: ± fraction of the HSV saturation (0 or None: off); mapped to Keras'
            ``RandomSaturation`` factor by :func:`saturation_factor`.
        seed: base seed of the random layers (each layer gets ``seed + i``), for
            reproducible draws; None draws from Keras' global seed.
        name: the Sequential's name.
        warn: ``warnings.warn`` the anti-pattern messages of :func:`check_ranges`.

    Returns:
        A Sequential to call with ``training=True`` on image batches of the training split
        only (see :func:`augment_dataset`); never put it inside the exported model.
    """
    for label, value in (("brightness", brightness), ("contrast", contrast)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{label}={value} must be in [0, 1] (a ± fraction).")
    if warn:
        for message in check_ranges(brightness or 0.0, contrast or 0.0, saturation or 0.0):
            warnings.warn(message, UserWarning, stacklevel=2)

    def layer_seed(index: int) -> int | None:
        # Each layer gets its own seed so that flips and jitters are not correlated.
        return None if seed is None else int(seed) + index

    layers: list[keras.layers.Layer] = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(0), name="flip"))
    if brightness:
        layers.append(
            keras.layers.RandomBrightness(
                brightness, value_range=(0, 255), seed=layer_seed(1), name="brightness"
            )
        )
    if contrast:
        layers.append(
            # A pair, not a single float: Keras 3.15 reads RandomContrast(0.2) as a factor
            # in [1.0, 1.2] only (see the module docstring); (0.2, 0.2) gives [0.8, 1.2].
            keras.layers.RandomContrast(
                (contrast, contrast), value_range=(0, 255), seed=layer_seed(2), name="contrast"
            )
        )
    if saturation:
        # The sheet's ±0.2 is a multiplier in [0.8, 1.2]. Keras clips the saturation
        # channel (0-1) to value_range, hence (0, 1) here; see the module docstring.
        layers.append(
            keras.layers.RandomSaturation(
                saturation_factor(saturation),
                value_range=(0, 1),
                seed=layer_seed(3),
                name="saturation",
            )
        )
    # A last clip keeps the output in [0, 255] whatever the layers above do.
    layers.append(ClipPixels(0.0, 255.0, name="clip_0_255"))
    return keras.Sequential(layers, name=name)


def augmentation_need(per_class_counts: Mapping[str, int]) -> dict:
    """How much the sheet says augmentation matters, from the smallest class's image count.

    Returns:
        ``{"smallest_class", "smallest_count", "level", "sentence"}`` where ``level`` is
        "indispensable" (< 2 000 images per class), "recommended" (2 000-10 000) or
        "useful but less critical" (> 10 000).
    """
    if not per_class_counts:
        raise ValueError("per_class_counts is empty: give {class name: number of images}.")
    for label, count in per_class_counts.items():
        if int(count) < 0:
            raise ValueError(f"per_class_counts[{label!r}]={count} must be >= 0.")
    smallest_class = min(per_class_counts, key=lambda label: int(per_class_counts[label]))
    smallest = int(per_class_counts[smallest_class])
    low, high = NEED_THRESHOLDS
    if smallest < low:
        level, why = "indispensable", f"fewer than {low:,} images per class"
    elif smallest <= high:
        level, why = "recommended", f"between {low:,} and {high:,} images per class"
    else:
        level, why = "useful but less critical", f"more than {high:,} images per class"
    sentence = (
        f"The smallest class ({smallest_class!r}) has {smallest:,} images: {why}, so the "
        f"course sheet rates data augmentation as {level}."
    )
    return {
        "smallest_class": smallest_class,
        "smallest_count": smallest,
        "level": level,
        "sentence": sentence,
    }


def _reseed(augmentation: keras.Model, seed: int) -> None:
    """Reset the random state of every layer of ``augmentation`` from ``seed``."""
    for index, layer in enumerate(augmentation.layers):
        generator = getattr(layer, "generator", None)
        if generator is not None and hasattr(generator, "state"):
            generator.state.assign(np.array([int(seed) + index, 0], dtype=generator.state.dtype))


def augment_dataset(
    ds, augmentation: keras.Model, seed: int | None = None, deterministic: bool = False
):
    """Map ``augmentation`` (with ``training=True``) over a batched ``(images, labels)`` dataset.

    For the training split only: validation and test images must stay as captured, and
    the augmentation stays outside the model that is exported.

    Args:
        ds: a batched ``tf.data.Dataset`` of ``(images, labels)`` (images 0-255).
        augmentation: e.g. :func:`build_augmentation`'s Sequential.
        seed: reset the layers' random state from this seed first, so the sequence of
            draws restarts from the same point; None leaves the state as it is.
        deterministic: map one batch at a time so that, with ``seed``, every batch gets
            the same draws on every run. With the default parallel map the layers share
            one random state across concurrent calls, so which batch gets which draw
            varies from run to run (measured: reseeded parallel runs differ).

    Returns:
        The augmented dataset, mapped with ``num_parallel_calls=AUTOTUNE`` (or sequentially
        when ``deterministic``) and prefetched.
    """
    import tensorflow as tf

    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"ds must be a tf.data.Dataset, got {type(ds).__name__}.")
    if len(ds.element_spec) != 2 or len(ds.element_spec[0].shape) != 4:
        raise ValueError(
            "ds must yield batched (images, labels) with images of shape (B, H, W, 3); got "
            f"{ds.element_spec}."
        )
    if seed is not None:
        _reseed(augmentation, seed)

    def apply(images, labels):
        return augmentation(images, training=True), labels

    parallel = None if deterministic else tf.data.AUTOTUNE
    return ds.map(apply, num_parallel_calls=parallel).prefetch(tf.data.AUTOTUNE)


def augmentation_throughput(ds, augmentation: keras.Model, batches: int = 10) -> float:
    """Images per second through ``augmentation`` alone, mapped like :func:`augment_dataset`.

    The input batches are cached first so that reading and decoding are not counted; the
    first batch is a warm-up (graph tracing) and is not timed either. Compare with the
    model's training step: if augmentation is much faster, it is not the bottleneck.
    """
    if batches < 1:
        raise ValueError(f"batches={batches} must be >= 1.")
    source = ds.take(batches + 1).cache()
    for _ in source:  # Fill the cache so that only augmentation is timed below.
        pass
    iterator = iter(augment_dataset(source, augmentation))
    next(iterator)  # Warm-up: traces the map function.
    count = 0
    start = time.perf_counter()
    for images, _ in iterator:
        count += int(images.shape[0])
    seconds = time.perf_counter() - start
    if count == 0:
        raise ValueError(f"ds has fewer than 2 batches; cannot time {batches} batches.")
    return count / seconds

"""Converting the course's Keras classifier to LiteRT, quantizing it, and checking the result.

The course sheet's post-training quantization (PTQ) recipe, encoded here:

- ``float32``: a plain conversion (``model.tflite``), the reference for everything else.
- ``dynamic``: ``Optimize.DEFAULT`` without data: weights stored in INT8, activations
  computed in float (``model_dynamic.tflite``).
- ``int8``: full integer quantization (``model_qt.tflite``, the sheet's name):
  ``Optimize.DEFAULT`` + a representative dataset + ``supported_ops=[TFLITE_BUILTINS_INT8]``.
  The representative dataset is 100-500 images of the train or val split, fed exactly as
  the model sees them in training (same resize, 0-255 float pixels, no augmentation).
- ``float16``: weights stored in float16 (``model_fp16.tflite``), the sheet's fallback when
  INT8 loses too much accuracy.

Input and output of every variant stay **float32** by default, INT8 included: the model
takes the same 0-255 RGB pixels as the Keras model and returns probabilities; the
converter adds a QUANTIZE op after the input and a DEQUANTIZE op before the output, both
run by XNNPACK. ``convert(..., io_type="uint8"|"int8")`` makes them integer instead; the
quantization parameters are then in the model's input/output details, and
``helpers.verification.write_metadata`` writes them down.

Fixed batch. :func:`convert` fixes the input's batch dimension to 1 by default: with a
dynamic batch, Keras 3's ``Reshape`` (EfficientNet's squeeze-and-excitation) converts to
SHAPE / STRIDED_SLICE / PACK / RESHAPE ops that XNNPACK does not take, which cuts
EfficientNetB0 into 17 delegate partitions; with batch 1 they fold away (1 partition).

MobileNetV3 and XNNPACK. MobileNetV3 uses hard-swish, ``x * relu6(x + 3) / 6``; Keras 3.15
builds it as ``Activation("hard_swish")`` (serialised as ``"hard_silu"``) and the LiteRT
converter turns it into one ``HARD_SWISH`` op. XNNPACK, LiteRT's default CPU delegate on
x86, accepts ``HARD_SWISH`` in float only, so in an INT8 model every hard-swish runs on a
slow built-in kernel, with a switch out of and back into the delegate around each one
(MobileNetV3Small: 18 ops outside, 19 partitions): INT8 ends up 2-4x slower than float32.
:func:`rewrite_hard_swish` (``convert(..., hard_swish="xnnpack")``) re-expresses it with
ADD (RELU6 fused) and MUL, which XNNPACK runs in INT8, in a copy of the model with the
same weights; by default the factor 1/6 is folded into the downstream convolution
kernels, so each hard-swish costs ADD + one MUL. The converter folds the naive orders
``x * relu6(x + 3) / 6`` and ``x * (relu6(x + 3) / 6)`` back into HARD_SWISH (the test
suite checks the first), hence this form. :func:`delegation_report` shows which ops still
run outside the delegate.

The dynamic-range variant is the slowest here: XNNPACK does not take its hybrid
DEPTHWISE_CONV_2D ops (float activations, INT8 weights), which then run on built-in
kernels between delegate partitions.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

#: The conversion variants, in the order the course presents them.
VARIANTS = ("float32", "dynamic", "int8", "float16")
#: File name of each variant (``model_qt.tflite`` is the sheet's name for the INT8 model).
FILE_NAMES = {
    "float32": "model.tflite",
    "dynamic": "model_dynamic.tflite",
    "int8": "model_qt.tflite",
    "float16": "model_fp16.tflite",
}
#: The sheet's size of the representative dataset (images).
CALIBRATION_RANGE = (100, 500)
#: Splits the representative dataset may come from (never the test split).
CALIBRATION_SPLITS = ("train", "val")
#: Input/output types of the INT8 variant: float32 (default) or integer.
IO_TYPES = ("float32", "int8", "uint8")
#: How :func:`convert` builds the converter (see its docstring).
CONVERSION_METHODS = ("auto", "keras", "saved_model", "saved_model_first")
#: Hard-swish handling in :func:`convert`: as Keras builds it, or rewritten for XNNPACK.
HARD_SWISH_MODES = (None, "keep", "xnnpack")
#: Activation names under which Keras serialises hard-swish.
_HARD_SWISH_NAMES = frozenset({"hard_swish", "hard_silu"})
#: The node name LiteRT gives a delegate's kernel in ``_get_ops_details``.
_DELEGATE_NODE = "DELEGATE"


# ---------------------------------------------------------------------------------------
# Representative dataset
# ---------------------------------------------------------------------------------------


def _check_calibration_size(size: int) -> int:
    """Validate ``size``: an error below 1, a warning outside the sheet's 100-500."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size={size!r} must be an integer number of images (sheet: 100-500).")
    size = int(size)
    if size < 1:
        raise ValueError(
            f"size={size}: the representative dataset needs at least 1 image "
            f"(the sheet recommends {CALIBRATION_RANGE[0]}-{CALIBRATION_RANGE[1]})."
        )
    low, high = CALIBRATION_RANGE
    if not low <= size <= high:
        warnings.warn(
            f"size={size} is outside the sheet's range of {low}-{high} representative images: "
            + (
                "too few may miss the activation ranges of real inputs."
                if size < low
                else "more costs conversion time and rarely changes the scales."
            ),
            UserWarning,
            stacklevel=3,
        )
    return size


def _allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """Proportional allocation of ``size`` over classes (largest remainder, at least 1 each)."""
    total = sum(counts.values())
    size = min(size, total)
    labels = [c for c in counts if counts[c] > 0]
    if size < len(labels):
        # Fewer images than classes: one image each for the largest classes.
        order = sorted(labels, key=lambda c: (-counts[c], c))
        return {c: int(c in order[:size]) for c in counts}
    quota = {c: counts[c] * size / total for c in labels}
    alloc = {c: max(1, min(counts[c], math.floor(quota[c]))) for c in labels}
    # Hand out what is left by largest remainder, then take back any excess the
    # one-per-class floor created, from the classes furthest above their quota.
    while sum(alloc.values()) < size:
        open_ = [c for c in labels if alloc[c] < counts[c]]
        best = max(open_, key=lambda c: (quota[c] - alloc[c], counts[c], c))
        alloc[best] += 1
    while sum(alloc.values()) > size:
        over = [c for c in labels if alloc[c] > 1]
        worst = max(over, key=lambda c: (alloc[c] - quota[c], c))
        alloc[worst] -= 1
    return {c: alloc.get(c, 0) for c in counts}


def calibration_sample(
    df: pd.DataFrame,
    classes: Sequence[str],
    size: int = 200,
    seed: int = 0,
    split_col: str = "split",
    splits: Sequence[str] = CALIBRATION_SPLITS,
) -> pd.DataFrame:
    """The rows of a class-stratified sample for the representative dataset.

    Each class gets a share of ``size`` proportional to its share of the chosen splits
    (at least one image per class), drawn at random with ``seed``; the rows come back in
    a shuffled order, with their original index. Usable rows only (``status == "ok"``
    where the frame has a status column).

    Args:
        df: the manifest (or scanned files with a split column).
        classes: the class names, in label order.
        size: number of images (sheet: 100-500); capped, with a warning, at the rows
            available.
        seed: seed of the draw.
        split_col: the column holding the split names.
        splits: splits to draw from; "train" and/or "val", never "test".

    Raises:
        ValueError: ``size`` below 1, a missing split column or split, "test" in
            ``splits``, or labels outside ``classes``.
    """
    size = _check_calibration_size(size)
    classes = list(classes)
    if isinstance(splits, str):
        splits = (splits,)
    splits = tuple(splits)
    if not splits:
        raise ValueError("splits is empty: give 'train' and/or 'val'.")
    wrong = [s for s in splits if s not in CALIBRATION_SPLITS]
    if wrong:
        raise ValueError(
            f"splits={splits}: {wrong} not allowed. The representative dataset comes from the "
            "train or val split (sheet); the test split stays unseen until the final evaluation."
        )
    if split_col not in df.columns:
        raise ValueError(
            f"split_col={split_col!r} is not a column of the manifest (columns: "
            f"{list(df.columns)}); use the manifest written by dataset.make_split."
        )
    rows = df[df["status"] == "ok"] if "status" in df.columns else df
    present = set(rows[split_col])
    missing = [s for s in splits if s not in present]
    if missing:
        raise ValueError(
            f"the manifest has no {missing} rows in column {split_col!r} (splits present: "
            f"{sorted(map(str, present))}); pass splits= with the ones it has."
        )
    rows = rows[rows[split_col].isin(splits)]
    unknown = sorted(set(rows["label"]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} of the manifest are not in classes {classes}.")
    counts = {c: int((rows["label"] == c).sum()) for c in classes}
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        warnings.warn(
            f"class(es) {empty} have no image in splits {splits}: the calibration will not see "
            "them.",
            UserWarning,
            stacklevel=2,
        )
    if size > len(rows):
        warnings.warn(
            f"size={size} but splits {splits} hold only {len(rows)} usable images: using all "
            "of them.",
            UserWarning,
            stacklevel=2,
        )
    alloc = _allocate(counts, size)
    rng = np.random.default_rng(seed)
    chosen: list[Any] = []
    for c in classes:
        index = rows.index[rows["label"] == c].to_numpy()
        if alloc[c]:
            chosen.extend(rng.choice(index, size=alloc[c], replace=False).tolist())
    order = rng.permutation(len(chosen))
    return rows.loc[[chosen[i] for i in order]]


def representative_dataset(
    df: pd.DataFrame,
    classes: Sequence[str],
    image_size: int | tuple[int, int],
    size: int = 200,
    seed: int = 0,
    split_col: str = "split",
    splits: Sequence[str] = CALIBRATION_SPLITS,
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A generator function for ``converter.representative_dataset``.

    Each call yields ``[image]`` with ``image`` a float32 array of shape (1, H, W, 3),
    pixels in 0-255, decoded and resized by ``dataset.make_dataset`` exactly as in
    training and never augmented, for the rows of :func:`calibration_sample`. The
    function carries the sample as ``.sample`` (rows) and ``.size``.

    Args:
        df, classes, size, seed, split_col, splits: as in :func:`calibration_sample`.
        image_size: the model's input side (or (height, width)), as in training.
    """
    from helpers import dataset

    sample = calibration_sample(df, classes, size, seed, split_col, splits)
    label_mode = "binary" if len(classes) == 2 else "int"
    ds = dataset.make_dataset(
        sample,
        classes,
        image_size,
        batch_size=1,
        shuffle=False,
        cache=False,
        augment=None,
        label_mode=label_mode,
    )

    def generate() -> Iterator[list[np.ndarray]]:
        for images, _ in ds.as_numpy_iterator():
            yield [images.astype(np.float32)]

    generate.sample = sample  # type: ignore[attr-defined]
    generate.size = len(sample)  # type: ignore[attr-defined]
    return generate


def array_representative(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A representative dataset from an in-memory (N, H, W, 3) float 0-255 array."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images must be (N, H, W, 3) with N >= 1; got {images.shape}.")

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None]]

    generate.size = len(images)  # type: ignore[attr-defined]
    return generate


# ---------------------------------------------------------------------------------------
# Hard-swish rewrite
# ---------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="course")
class XnnpackHardSwish(keras.layers.Layer):
    """Hard-swish in operators XNNPACK runs in INT8.

    ``scaled=False``: ``(x * 1/6) * relu6(x + 3)``, exactly Keras' hard-swish; the
    converter emits ADD (RELU6 fused) and two MULs instead of one HARD_SWISH op, which
    XNNPACK runs in float only. ``scaled=True``: ``x * relu6(x + 3)``, six times
    hard-swish, one MUL fewer; :func:`rewrite_hard_swish` then divides the weights of the
    layers downstream by 6, so that the model computes the same function.
    """

    def __init__(self, scaled: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scaled = bool(scaled)

    def call(self, inputs):
        ops = keras.ops
        gate = ops.relu6(ops.add(inputs, 3.0))
        if self.scaled:
            return ops.multiply(inputs, gate)
        return ops.multiply(ops.multiply(inputs, 1.0 / 6.0), gate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "scaled": self.scaled}


def _is_hard_swish(layer) -> bool:
    """Whether ``layer`` is an ``Activation`` layer computing hard-swish."""
    if not isinstance(layer, keras.layers.Activation):
        return False
    activation = layer.get_config().get("activation")
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", "")
    return name in _HARD_SWISH_NAMES


def _walk(model) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        if getattr(layer, "layers", None):
            yield from _walk(layer)


def count_hard_swish(model: keras.Model) -> int:
    """Number of hard-swish ``Activation`` layers in ``model`` (nested models included)."""
    return sum(1 for layer in _walk(model) if _is_hard_swish(layer))


#: Layers through which a positive factor on the input passes unchanged to the output.
_SCALE_TRANSPARENT = (
    keras.layers.ZeroPadding2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.Dropout,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Identity,
)
#: Linear layers whose kernel can absorb a factor on their input (bias unchanged).
_SCALE_ABSORBING = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


class _ScaleTracker:
    """Rebuilds a graph in which some tensors are a known factor times the true tensor.

    Used as ``clone_model``'s ``call_function``: a scaled hard-swish multiplies its
    output by 6; padding, pooling, dropout and reshaping pass the factor on; Multiply
    multiplies the factors; a constant multiplication by k is dropped and divides the
    factor by k (hard-sigmoid's ``* 1/6`` in squeeze-and-excitation); a Conv2D,
    DepthwiseConv2D or Dense layer called once absorbs the factor into its kernel. Any
    other op (a residual Add, say) gets its inputs rescaled to factor 1 by an explicit
    multiplication, so the rebuilt graph is always correct. Such a rescale right after
    a scaled hard-swish would be folded back into HARD_SWISH by the converter, so the
    hard-swish layers whose factor reached a rescale are recorded in ``blocked``;
    :func:`rewrite_hard_swish` rebuilds the graph with those left unscaled.
    """

    def __init__(self, shared: set[int], originals: dict[int, int]):
        self.factors: dict[int, float] = {}
        self.sources: dict[int, frozenset[str]] = {}
        self.folds: dict[int, tuple[Any, float]] = {}
        self.shared = shared
        self.originals = originals
        self.calls: collections.Counter[int] = collections.Counter()
        self.conflicts: set[int] = set()
        self.blocked: set[str] = set()
        self.dropped = 0
        self.rescaled = 0

    def factor(self, tensor) -> float:
        return self.factors.get(id(tensor), 1.0)

    def unit(self, value):
        if not isinstance(value, keras.KerasTensor) or self.factor(value) == 1.0:
            return value
        self.rescaled += 1
        self.blocked.update(self.sources.get(id(value), ()))
        return keras.ops.multiply(value, 1.0 / self.factor(value))

    def _set(self, tensor, factor: float, sources=frozenset()):
        if factor != 1.0:
            self.factors[id(tensor)] = factor
            self.sources[id(tensor)] = frozenset(sources)
        return tensor

    def __call__(self, op, *args, **kwargs):
        from keras.src import tree

        tensors = [t for t in tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        factors = [self.factor(t) for t in tensors]
        sources = frozenset().union(*(self.sources.get(id(t), frozenset()) for t in tensors))
        if isinstance(op, XnnpackHardSwish) and op.scaled:
            return self._set(op(self.unit(args[0])), 6.0, {op.name})
        if isinstance(op, _SCALE_TRANSPARENT) and len(tensors) == 1:
            return self._set(op(*args, **kwargs), factors[0], sources)
        if isinstance(op, keras.layers.Multiply):
            return self._set(op(*args, **kwargs), float(np.prod(factors)), sources)
        constant = _constant_factor(op, args, kwargs)
        if constant is not None:
            # Skip the multiplication: the tensor stays as it is, with its factor / k.
            self.dropped += 1
            return self._set(tensors[0], factors[0] / constant, sources)
        if isinstance(op, _SCALE_ABSORBING) and len(tensors) == 1:
            original = self.originals.get(id(op), id(op))
            self.calls[original] += 1
            if self.calls[original] > 1:
                # A layer called twice in this graph cannot absorb a factor per call.
                self.conflicts.add(original)
            elif original not in self.shared:
                if factors[0] != 1.0:
                    self.folds[id(op)] = (op, factors[0])
                return op(*args, **kwargs)
        args, kwargs = tree.map_structure(self.unit, (args, kwargs))
        out = op(*args, **kwargs)
        if isinstance(op, keras.Model) and len(op.outputs) == 1:
            # A nested model (the backbone) hands its output's factor on.
            inner = op.outputs[0]
            return self._set(out, self.factor(inner), self.sources.get(id(inner), ()))
        return out


def _constant_factor(op, args, kwargs) -> float | None:
    """k when ``op`` is ``tensor * k`` or ``tensor / (1/k)`` with a positive scalar k."""
    if isinstance(op, keras.layers.Layer) or kwargs or len(args) != 2:
        return None
    name = type(op).__name__
    if name not in ("Multiply", "Divide", "TrueDivide"):
        return None
    tensor, constant = args
    if name == "Multiply" and not isinstance(tensor, keras.KerasTensor):
        tensor, constant = constant, tensor
    if not isinstance(tensor, keras.KerasTensor) or not isinstance(
        constant, (int, float, np.floating, np.integer)
    ):
        return None
    value = float(constant)
    if not value > 0:
        return None
    return value if name == "Multiply" else 1.0 / value


def rewrite_hard_swish(
    model: keras.Model, fold: bool = True, check: bool = True, atol: float = 1e-5
) -> keras.Model:
    """A copy of ``model`` whose hard-swish runs in INT8 under XNNPACK, same predictions.

    The functional graph (nested backbone included) is cloned with
    ``keras.models.clone_model(..., recursive=True)``, each hard-swish ``Activation``
    becoming an :class:`XnnpackHardSwish` of the same name; the trained weights are
    copied with ``set_weights``. With ``fold`` (default) the hard-swish computes
    ``x * relu6(x + 3)`` (six times hard-swish) and the factor 6 is absorbed into the
    kernels of the convolutions and Dense layers downstream (see :class:`_ScaleTracker`),
    together with the ``* 1/6`` of the squeeze-and-excitation hard-sigmoids: MobileNetV3
    then converts to ADD and one MUL per hard-swish instead of ADD and two MULs (measured
    on MobileNetV3Small INT8: about 20 % faster than without folding, and closer to
    float32, since each dropped MUL is one rounding fewer). The original model is left
    untouched. The copy is for conversion: do not train it further.

    Args:
        model: a functional Keras model (the course's classifier or a backbone).
        fold: absorb the factors into downstream weights (False: the exact 3-op form).
        check: compare both models on two random 0-255 images and raise if any output
            differs by more than ``atol`` (relative to the largest output when above 1).
        atol: the tolerance of that check (float32 rounding only: 1e-5).

    Returns:
        The rewritten model; ``.hard_swish_replaced`` (layers replaced),
        ``.scale_folds`` ({layer: factor absorbed}), ``.multiplies_dropped``,
        ``.rescales_inserted`` (explicit multiplications left) and
        ``.hard_swish_unscaled`` (layers kept in the 3-op form because their factor
        could not be absorbed, e.g. MobileNetV3Large's stem feeding a residual Add)
        describe the rewrite.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
    shared: set[int] = set()  # Layers called more than once in the graph (by id).
    unscaled: set[str] = set()  # Hard-swish layers left in the exact 3-op form.
    originals: dict[int, int] = {}
    replaced = 0

    def clone(layer):
        nonlocal replaced
        if _is_hard_swish(layer):
            replaced += 1
            scaled = fold and layer.name not in unscaled
            new = XnnpackHardSwish(scaled=scaled, name=layer.name, dtype=layer.dtype_policy.name)
        else:
            new = layer.__class__.from_config(layer.get_config())
        originals[id(new)] = id(layer)
        return new

    tracker = None
    # A pass may find hard-swish layers whose factor cannot be absorbed, or layers called
    # twice; the next pass leaves those unscaled (MobileNetV3 needs at most two passes).
    for _ in range(count_hard_swish(model) + 2):
        replaced = 0
        originals.clear()
        tracker = _ScaleTracker(shared, originals) if fold else None
        new = keras.models.clone_model(
            model, clone_function=clone, call_function=tracker, recursive=True
        )
        if tracker is not None and any(tracker.factor(t) != 1.0 for t in new.outputs):
            # The model ends on a scaled tensor (a bare backbone): rescale its outputs.
            outputs = [tracker.unit(t) for t in new.outputs]
            inputs = new.inputs[0] if len(new.inputs) == 1 else new.inputs
            new = keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=new.name)
        if tracker is None or (tracker.blocked <= unscaled and tracker.conflicts <= shared):
            break
        unscaled |= tracker.blocked
        shared |= tracker.conflicts
    new.set_weights(model.get_weights())
    folds = list(tracker.folds.values()) if tracker is not None else []
    for layer, factor in folds:
        layer.kernel.assign(layer.kernel / factor)
    new.hard_swish_replaced = replaced
    new.scale_folds = {layer.name: factor for layer, factor in folds}
    new.multiplies_dropped = tracker.dropped if tracker is not None else 0
    new.rescales_inserted = tracker.rescaled if tracker is not None else 0
    new.hard_swish_unscaled = sorted(unscaled)
    if check:
        shape = tuple(int(s) if s is not None else 64 for s in model.input_shape[1:])
        probe = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(np.float32)
        before = keras.ops.convert_to_numpy(model(probe, training=False))
        after = keras.ops.convert_to_numpy(new(probe, training=False))
        # Relative to the output's magnitude: a bare backbone's features exceed 1.
        diff = float(np.max(np.abs(before - after))) / max(1.0, float(np.max(np.abs(before))))
        if not diff <= atol:
            raise RuntimeError(
                f"the hard-swish rewrite changed the outputs by {diff:.2e} (> atol={atol:g}); "
                "try fold=False, and report the model."
            )
    return new


# ---------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------


def _configure(converter, variant: str, representative, io_type: str) -> None:
    """Set the converter's options for ``variant`` (the sheet's recipe for each)."""
    import tensorflow as tf

    if variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "float16":
        # Float16 quantization is Optimize.DEFAULT restricted to float16 weights.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type != "float32":
            dtype = {"int8": tf.int8, "uint8": tf.uint8}[io_type]
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype


def with_fixed_batch(model: keras.Model, batch_size: int = 1) -> keras.Model:
    """``model`` called on an input of static batch size (same layers, same weights)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer or None.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} must have a single input to be converted.")
    shape = tuple(model.input_shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            f"model {model.name!r} has an input of unknown size {shape}; build it with a fixed "
            "input_shape (the training image size) before converting."
        )
    if model.input_shape[0] == batch_size:
        return model
    inputs = keras.Input(batch_shape=(int(batch_size), *shape), name=model.inputs[0].name)
    return keras.Model(inputs, model(inputs), name=model.name)


def _check_options(variant: str, hard_swish: str | None, io_type: str, method: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} must be one of {VARIANTS}.")
    if hard_swish not in HARD_SWISH_MODES:
        raise ValueError(f"hard_swish={hard_swish!r} must be one of {HARD_SWISH_MODES}.")
    if io_type not in IO_TYPES:
        raise ValueError(f"io_type={io_type!r} must be one of {IO_TYPES}.")
    if io_type != "float32" and variant != "int8":
        raise ValueError(
            f"io_type={io_type!r} applies to variant='int8' only (got variant={variant!r})."
        )
    if method not in CONVERSION_METHODS:
        raise ValueError(f"method={method!r} must be one of {CONVERSION_METHODS}.")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence stdout, Python's and the C++ converter's (file descriptor 1), for a while.

    The quantizer prints a "fully_quantize: ..." line from C++ that no Python redirect
    catches. Where descriptor 1 cannot be duplicated (some embedded interpreters), only
    Python's stdout is redirected.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        with contextlib.redirect_stdout(StringIO()):
            yield
        return
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(StringIO()):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class _Session:
    """One model prepared for conversion; its SavedModel is exported once, on demand."""

    def __init__(self, model: keras.Model, hard_swish: str | None, batch_size: int | None):
        if not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
        if hard_swish == "xnnpack" and count_hard_swish(model):
            model = rewrite_hard_swish(model)
        if batch_size is not None:
            model = with_fixed_batch(model, batch_size)
        self.model = model
        self._tmp = tempfile.TemporaryDirectory(prefix="tflite-")
        self._saved: Path | None = None

    def close(self) -> None:
        self._tmp.cleanup()

    def _saved_model(self) -> Path:
        if self._saved is None:
            import tensorflow as tf

            path = Path(self._tmp.name) / "saved_model"
            # Keras' export makes the batch dimension dynamic unless given a signature;
            # keep the model's own (static when batch_size is set).
            signature = [
                tf.TensorSpec(self.model.input_shape, tf.float32, name=self.model.inputs[0].name)
            ]
            # Keras prints the exported endpoints; keep notebook outputs readable.
            with contextlib.redirect_stdout(StringIO()):
                self.model.export(str(path), format="tf_saved_model", input_signature=signature)
            self._saved = path
        return self._saved

    def convert(self, variant: str, representative, io_type: str, method: str) -> bytes:
        import tensorflow as tf

        order = {
            "auto": ("keras", "saved_model"),
            "keras": ("keras",),
            "saved_model": ("saved_model",),
            "saved_model_first": ("saved_model", "keras"),
        }[method]
        errors = []
        for name in order:
            try:
                if name == "keras":
                    converter = tf.lite.TFLiteConverter.from_keras_model(self.model)
                else:
                    converter = tf.lite.TFLiteConverter.from_saved_model(str(self._saved_model()))
                _configure(converter, variant, representative, io_type)
                # The converter also prints the signature and warns that input statistics
                # are missing (not needed: the representative dataset calibrates the input).
                with _quiet_stdout(), warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
                    return converter.convert()
            except Exception as error:  # noqa: BLE001 - try the next method, report all.
                errors.append(f"{name}: {type(error).__name__}: {error}")
        raise RuntimeError(
            f"converting {self.model.name!r} to {variant} failed: " + " | ".join(errors)
        )


def _write(content: bytes, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def convert(
    model: keras.Model,
    variant: str,
    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
    path: str | os.PathLike | None = None,
    hard_swish: str | None = None,
    io_type: str = "float32",
    method: str = "auto",
    batch_size: int | None = 1,
) -> bytes:
    """Convert a Keras model to a LiteRT flatbuffer.

    Args:
        model: the classifier (float RGB 0-255 input, preprocessing inside).
        variant: "float32", "dynamic" (INT8 weights, float activations, no data),
            "int8" (full integer, needs ``representative``) or "float16".
        representative: the generator function of :func:`representative_dataset`
            (int8 only; ignored by the other variants).
        path: also write the bytes there (folders created).
        hard_swish: None/"keep" converts hard-swish as Keras builds it; "xnnpack"
            converts :func:`rewrite_hard_swish`'s copy instead (faster INT8 MobileNetV3
            under XNNPACK, same predictions).
        io_type: int8 only: "float32" (default: float input 0-255 and float
            probabilities), "uint8" or "int8" (integer input and output; their scale
            and zero point are in the interpreter's details and the metadata).
        method: "keras" (``TFLiteConverter.from_keras_model``, checked to work with
            Keras 3.15 and TF 2.21), "saved_model" (``model.export`` then
            ``from_saved_model``), "auto" (the first, falling back to the second if it
            raises) or "saved_model_first" (the reverse).
        batch_size: 1 (default) fixes the batch dimension of the input, so that
            shape-dependent ops fold away at conversion (Keras 3's ``Reshape`` in
            EfficientNet's squeeze-and-excitation blocks otherwise leaves SHAPE,
            STRIDED_SLICE, PACK and RESHAPE ops outside XNNPACK, 17 partitions instead of
            one); None keeps it dynamic. LiteModel runs one image at a time either way.

    Returns:
        The model's bytes.
    """
    _check_options(variant, hard_swish, io_type, method)
    if variant == "int8" and representative is None:
        raise ValueError(
            "variant='int8' needs representative=: a generator function of 100-500 "
            "calibration images (see representative_dataset)."
        )
    session = _Session(model, hard_swish, batch_size)
    try:
        content = session.convert(variant, representative, io_type, method)
    finally:
        session.close()
    if path is not None:
        _write(content, path)
    return content


def convert_all(
    model: keras.Model,
    representative: Callable[[], Iterator[list[np.ndarray]]] | None,
    out_dir: str | os.PathLike,
    variants: Sequence[str] = VARIANTS,
    hard_swish: str | None = None,
    method: str = "saved_model_first",
    batch_size: int | None = 1,
) -> dict[str, Path]:
    """Convert ``model`` to each variant into ``out_dir`` under :data:`FILE_NAMES`.

    The model is exported to a SavedModel once and every variant converted from it
    (about half the time of ``from_keras_model`` per variant, which traces the model
    each time); ``from_keras_model`` is the fallback. Other arguments as in
    :func:`convert`; ``representative`` may be None when "int8" is not asked for.

    Returns:
        ``{variant: path}`` in the order of ``variants``.
    """
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"variants={variants}: give one or more of {VARIANTS}.")
    for variant in variants:
        _check_options(variant, hard_swish, "float32", method)
    if "int8" in variants and representative is None:
        raise ValueError("variants include 'int8': give representative= (representative_dataset).")
    out_dir = Path(out_dir)
    session = _Session(model, hard_swish, batch_size)
    paths = {}
    try:
        for variant in variants:
            content = session.convert(variant, representative, "float32", method)
            paths[variant] = _write(content, out_dir / FILE_NAMES[variant])
    finally:
        session.close()
    return paths


# ---------------------------------------------------------------------------------------
# What runs where: op counts and delegation to XNNPACK
# ---------------------------------------------------------------------------------------


def _interpreter(source: str | os.PathLike | bytes, delegate: bool = True, num_threads: int = 2):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(source, (bytes, bytearray)):
        interpreter = Interpreter(
            model_content=bytes(source),
            num_threads=num_threads,
            experimental_op_resolver_type=resolver,
        )
    else:
        interpreter = Interpreter(
            model_path=str(source), num_threads=num_threads, experimental_op_resolver_type=resolver
        )
    interpreter.allocate_tensors()
    return interpreter


def op_counts(source: str | os.PathLike | bytes) -> dict[str, int]:
    """``{op type: count}`` of a LiteRT model, as converted (no delegate applied)."""
    ops = _interpreter(source, delegate=False, num_threads=1)._get_ops_details()
    return dict(collections.Counter(op["op_name"] for op in ops))


def delegation_report(tflite_path: str | os.PathLike | bytes, num_threads: int = 2) -> pd.DataFrame:
    """Which ops of a LiteRT model XNNPACK runs and which fall back to built-in kernels.

    Method: the model is loaded with LiteRT's default XNNPACK delegate. The interpreter
    then lists the original nodes followed by one ``DELEGATE`` node per delegated
    partition, whose inputs and outputs are the partition's boundary tensors. Walking
    back from each partition's outputs to its inputs through the original nodes gives
    the nodes it replaced; every other node runs outside the delegate. The test suite
    checks the method: every node of a float32 MobileNetV3 is delegated, and in its INT8
    model exactly the HARD_SWISH nodes are not.

    Returns:
        One row per op type: ``count``, ``delegated``, ``not_delegated`` and the
        ``dtypes`` of the non-delegated ops' outputs; ``.attrs`` holds ``nodes``,
        ``delegated_nodes``, ``partitions`` (delegate kernels: one means a single switch
        into XNNPACK) and ``not_delegated`` (``{op: count}``).
    """
    interpreter = _interpreter(tflite_path, delegate=True, num_threads=num_threads)
    ops = interpreter._get_ops_details()
    original = [op for op in ops if op["op_name"] != _DELEGATE_NODE]
    delegates = [op for op in ops if op["op_name"] == _DELEGATE_NODE]
    producer: dict[int, int] = {}
    for op in original:
        for tensor in op["outputs"]:
            producer[int(tensor)] = op["index"]
    by_index = {op["index"]: op for op in original}
    covered: set[int] = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [int(t) for t in delegate["outputs"]]
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor in seen:
                continue
            seen.add(tensor)
            node = producer.get(tensor)
            if node is None or node in covered:
                continue
            covered.add(node)
            stack.extend(int(t) for t in by_index[node]["inputs"] if int(t) >= 0)
    rows: dict[str, dict[str, Any]] = {}
    for op in original:
        row = rows.setdefault(
            op["op_name"], {"count": 0, "delegated": 0, "not_delegated": 0, "dtypes": set()}
        )
        row["count"] += 1
        if op["index"] in covered:
            row["delegated"] += 1
        else:
            row["not_delegated"] += 1
            row["dtypes"].update(np.dtype(t).name for t in op["result_types"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "op"
    if len(table):
        table["dtypes"] = table["dtypes"].map(lambda s: ", ".join(sorted(s)))
        table = table.sort_values(["not_delegated", "count"], ascending=False)
    table.attrs = {
        "nodes": len(original),
        "delegated_nodes": len(covered),
        "partitions": len(delegates),
        "not_delegated": {op: int(n) for op, n in table["not_delegated"].items() if n > 0}
        if len(table)
        else {},
    }
    return table


def non_delegated_summary(tflite_path: str | os.PathLike | bytes) -> str:
    """One line: "all 109 ops in XNNPACK (1 partition)" or "HARD_SWISH x18 outside ..."."""
    report = delegation_report(tflite_path)
    attrs = report.attrs
    outside = attrs["not_delegated"]
    if not outside:
        return f"all {attrs['nodes']} ops in XNNPACK ({attrs['partitions']} partition)"
    listed = ", ".join(f"{op} x{n}" for op, n in outside.items())
    return f"{listed} outside XNNPACK ({attrs['partitions']} partitions)"


# ---------------------------------------------------------------------------------------
# Why post-training quantization suffices here
# ---------------------------------------------------------------------------------------


def trained_parameter_share(model: keras.Model, head_layers: Sequence[str] = ("head",)) -> dict:
    """How many of the classifier's parameters were trained: the head versus the total.

    With a frozen backbone only the head's weights change; the backbone keeps the
    ImageNet weights whose activation ranges are well behaved, so calibrating on a few
    hundred images (post-training quantization) is enough, and quantization-aware
    training, which retrains every weight with simulated rounding, buys little.

    Returns:
        ``{"head_params", "trainable_params", "total_params", "head_share",
        "sentence"}``.
    """
    names = set(head_layers)
    head = 0
    found = []
    for layer in _walk(model):
        if layer.name in names:
            found.append(layer.name)
            head += sum(int(np.prod(w.shape)) for w in layer.weights)
    if not found:
        raise ValueError(
            f"head_layers={tuple(head_layers)} name no layer of {model.name!r}; the course's "
            "classifier calls its output layer 'head'."
        )
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    share = head / total if total else float("nan")
    sentence = (
        f"The head holds {head:,} of the model's {total:,} parameters ({share:.3%}); the other "
        f"{1 - share:.3%} are the pretrained backbone's. When only the head is trained, the "
        "weights to quantize are almost all ImageNet weights with well-behaved ranges, so "
        "post-training quantization calibrated on 100-500 images is enough."
    )
    return {
        "head_params": head,
        "trainable_params": trainable,
        "total_params": total,
        "head_share": share,
        "sentence": sentence,
    }

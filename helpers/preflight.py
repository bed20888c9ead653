"""Pre-flight check of a headless run's parameters and data, before any notebook runs.

:class:`CourseParameters` declares what every notebook parameter may be; :func:`check`
turns pydantic's errors into one sentence per parameter; :func:`check_data` runs notebook
01's validation on ``DATA_DIR`` and checks the files and weights that parameters name;
:func:`preflight` raises :class:`PreflightError` listing every problem. Cheap to import:
no Keras or TensorFlow (``helpers.backbones`` imports Keras only where a model is built).
"""

import contextlib
import difflib
import os
import re
import socket
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from helpers.backbones import REGISTRY
from helpers.config import DATA_DIR, NOTEBOOKS_DIR, project_path

MIN_PER_CLASS = 10  # Notebook 01: fewer images of a class cannot fill three splits.
SCAN_FILE = "scan.pkl"  # In the run folder: the scan notebook 01 reuses.
DEFAULT_BACKBONE = "MobileNetV3Large"  # The notebooks' default BACKBONE.
WEIGHTS_CHOICES = ("imagenet", "auto", "random", "none")  # Any case, as in backbones.py
WEIGHTS_HOST = "storage.googleapis.com"  # Where Keras downloads ImageNet weights from.


# Registry name -> ImageNet weights offline (no download needed).
BACKBONES = {name: spec.pretrained_offline for name, spec in REGISTRY.items()}
BACKBONE_NAMES = tuple(BACKBONES)


def _sums_to_one(shares: tuple[float, ...]) -> tuple[float, ...]:
    if abs(sum(shares) - 1) > 1e-6:
        raise ValueError(f"they sum to {sum(shares):.6g}")
    return shares


def _weights(value: str) -> str:
    if value.lower() not in WEIGHTS_CHOICES and not value.endswith((".h5", ".keras")):
        close = difflib.get_close_matches(value.lower(), WEIGHTS_CHOICES[:2], 1)
        raise ValueError(f"did you mean {close[0]!r}?" if close else "not a .h5 or .keras file")
    return value


def rule(allowed: str) -> Any:
    """A required field; ``allowed`` completes "must be ..." in :func:`check`'s sentences."""
    return Field(description=allowed)


Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[float, Field(gt=0, lt=1)]
Text = Annotated[str, Field(min_length=1)]
Side = Annotated[int, Field(ge=32, le=1024)]
AsTuple = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)  # YAML: no tuples
Shares = Annotated[tuple[Share, Share, Share], AsTuple, AfterValidator(_sums_to_one)]
Counts = Annotated[tuple[Count, ...], AsTuple, Field(min_length=1)]
FRACTION, SHARE = "a number from 0 to 1", "a number between 0 and 1 (both excluded)"
WEIGHTS_RULE = '"imagenet", "auto", None (random) or the path of a .h5 or .keras weights file'


class CourseParameters(BaseModel):
    """What each parameter of the course's notebooks may be (their cells tagged parameters).

    Every field is required, so that a partial set of parameters is checked with
    :func:`check`, which ignores missing ones (each notebook has its own defaults). Strict:
    an int passes for a float, a bool never for a number; a list passes for a tuple.
    """

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    RUN_DIR: Text | None = rule("a folder path, or None (set by the runner)")
    PROFILE: Literal["full", "small"] | None = rule('"full", "small" or None')
    SEED: Annotated[int, Field(ge=0, le=2**32 - 1)] = rule("an integer from 0 to 2**32 - 1")
    BACKBONE: Literal[BACKBONE_NAMES] = rule("one of " + ", ".join(BACKBONE_NAMES))
    WEIGHTS: Annotated[Text, AfterValidator(_weights)] | None = rule(WEIGHTS_RULE)
    IMAGE_SIZE: Side | None = rule("an integer from 32 to 1024, or None (the profile's size)")
    BATCH_SIZE: Annotated[int, Field(ge=1, le=4096)] = rule("an integer from 1 to 4096")
    # 01: data
    DATA_DIR: Text | None = rule("the path of a folder of class folders, or None (demo data)")
    METADATA_CSV: Text | None = rule("the path of a CSV file, or None")
    GROUP_COLUMN: Text | None = rule("a metadata column name, or None (no groups)")
    SPLIT_RATIOS: Shares = rule("three shares (train, val, test) in (0, 1) summing to 1")
    NEAR_DUPLICATE_DISTANCE: Annotated[int, Field(ge=0, le=64)] = rule("an integer from 0 to 64")
    # 02: augmentation
    AUGMENT: bool | None = rule("True, False or None (the sheet's rule)")
    FLIP: bool = rule("True or False")
    BRIGHTNESS: Fraction = rule(FRACTION)
    CONTRAST: Fraction = rule(FRACTION)
    SATURATION: Fraction = rule(FRACTION)
    AGGRESSIVE_RANGE: Fraction = rule(FRACTION)
    # 03-04: training
    EPOCHS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    DEMO_EPOCHS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    LEARNING_RATE: Annotated[float, Field(gt=0, le=1)] = rule("a number > 0 and ≤ 1")
    DROPOUT_RATE: Annotated[float, Field(ge=0, lt=1)] = rule("a number ≥ 0 and < 1")
    PATIENCE: Count = rule("an integer ≥ 1 (epochs)")
    CLASS_WEIGHTS: Literal["auto"] | bool = rule('"auto", True or False')
    TARGET_ACCURACY: Fraction = rule(FRACTION)
    COMPARE_RANDOM: bool = rule("True or False")
    UNFREEZE_FROM: Text | int | None = rule("a layer name, a layer index or None (all layers)")
    FAILURE_DEMOS: bool = rule("True or False")
    # 05-06: quantization and verification
    CALIBRATION_SIZE: Count = rule("an integer ≥ 1 (images)")
    CALIBRATION_SWEEP: Counts = rule("a non-empty list of integers ≥ 1")
    HARD_SWISH: Literal["xnnpack"] | None = rule('"xnnpack" or None')
    THREADS: Annotated[int, Field(ge=1, le=256)] = rule("an integer from 1 to 256")
    LATENCY_RUNS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    FLOAT_TOLERANCE: Fraction = rule(FRACTION)
    INT8_MAX_DELTA: Fraction = rule(FRACTION)
    TARGET_SIZE_MB: Annotated[float, Field(gt=0)] = rule("a number > 0 (MB)")
    BONA_FIDE_CLASS: Text = rule("a class name")
    THRESHOLD_METHOD: Literal["eer", "apcer"] = rule('"eer" or "apcer"')
    TARGET_APCER: Share = rule(SHARE)
    # 07: anti-spoofing evaluation
    PRODUCTION_ATTACK_SHARE: Share = rule(SHARE)
    GRADCAM_PER_CASE: Count = rule("an integer ≥ 1 (images)")
    BIAS_DEMO: bool = rule("True or False")
    BIAS: Literal["device", "date"] = rule('"device" or "date"')


class PreflightError(ValueError):
    """Parameters or data that would make the run fail; the message lists every problem."""


def _sentence(name: str, value: Any, errors: list[dict]) -> str:
    field = CourseParameters.model_fields[name]
    if isinstance(value, str) and any(e["type"] == "literal_error" for e in errors):
        expected = " ".join(e["ctx"]["expected"] for e in errors if e["type"] == "literal_error")
        choices = {c.lower(): c for c in re.findall(r"'([^']*)'", expected)}
        close = difflib.get_close_matches(value.lower(), choices, 1)
        hint = f"; did you mean {choices[close[0]]!r}?" if close else ""
        text = f"{name}={value!r}: unknown; choose {field.description}{hint}"
    else:
        text = f"{name}={value!r}: must be {field.description}"
    details = []
    for e in errors:  # What the allowed values leave unsaid: which item, which custom rule.
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if len(e["loc"]) > 1 and isinstance(e["loc"][1], int):
            what = "missing" if e["type"] == "missing" else f"{e['input']!r}: {msg}"
            details.append(f"item {e['loc'][1] + 1} is {what}")
        elif e["type"] == "value_error":
            details.append(msg)
    return text + (f" ({'; '.join(details)})" if details else "")


def check(parameters: dict[str, Any]) -> list[str]:
    """One sentence per parameter that breaks its rule (names without one are ignored)."""
    try:
        CourseParameters.model_validate(parameters)
        return []
    except ValidationError as error:
        grouped: dict[str, list[dict]] = {}
        for e in error.errors(include_url=False):
            if e["type"] != "missing" or len(e["loc"]) > 1:  # Not given: the notebook's.
                grouped.setdefault(str(e["loc"][0]), []).append(e)
    return [_sentence(name, parameters[name], errors) for name, errors in grouped.items()]


def _may_be_trainable(root: Path) -> bool:
    """False when no decoding can make ``root`` trainable (counting files, not decoding)."""
    from helpers.dataset import is_system_name

    classes = [p for p in root.iterdir() if p.is_dir() and not is_system_name(p.name)]
    counts = [sum(1 for f in c.rglob("*") if f.is_file()) for c in classes]
    return sum(n > 0 for n in counts) >= 2 and all(n >= MIN_PER_CLASS for n in counts)


def _data_problems(value: Any, run_dir: str | os.PathLike | None) -> list[str]:
    """Notebook 01's validation of ``DATA_DIR``; a passing scan is saved in ``run_dir``."""
    data_dir = project_path(value, DATA_DIR)
    if not data_dir.is_dir():
        return [
            f"DATA_DIR={value!r}: {data_dir} "
            f"{'is not a folder' if data_dir.exists() else 'does not exist'}; put your images "
            "in data/<dataset>/<class>/ and set DATA_DIR to data/<dataset>"
        ]
    from helpers import dataset  # pandas and PIL: half a second

    # Usable or not is decided without TensorFlow: its check (verify_native, 8 s to import)
    # only matters to the scan notebook 01 reuses, so it runs only for that.
    full = run_dir is not None and _may_be_trainable(data_dir)
    try:
        scan = dataset.scan(data_dir, verify_native=full)
        dataset.check_trainable(scan, min_per_class=MIN_PER_CLASS)
    except ValueError as error:
        return [f"DATA_DIR={value!r}: {error}"]
    if full:
        dataset.save_scan(scan, Path(run_dir) / SCAN_FILE)
    return []


def _online(timeout: float = 3.0) -> bool:
    """Whether the weights' host resolves (in a thread: a failing DNS can hang)."""
    found: list[object] = []

    def probe() -> None:
        with contextlib.suppress(OSError, UnicodeError):
            found.append(socket.getaddrinfo(WEIGHTS_HOST, 443))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(found)


def _weights_problems(weights: Any, backbone: Any) -> list[str]:
    """``"imagenet"`` must be offline, cached or downloadable; a path must be a file."""
    word = str(weights).lower()
    if weights is None or word in ("", *WEIGHTS_CHOICES[1:]):
        return []
    if word == "imagenet":
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        name, cached = str(backbone), [f.name.lower().replace("_", "") for f in cache.glob("*")]
        # Offline weights, an unknown name (check's job), a cached file or a network.
        if BACKBONES.get(name, True) or any(name.lower() in f for f in cached) or _online():
            return []
        return [
            f"WEIGHTS={weights!r} with BACKBONE={backbone!r}: its ImageNet weights are not in "
            f"the Keras cache ({cache}) and {WEIGHTS_HOST} cannot be reached (no network); "
            f"run `make weights` once online (then copy {cache} here), or use "
            'WEIGHTS="auto" (falls back to EfficientNetLite0) or BACKBONE="EfficientNetLite0"'
        ]
    path = Path(str(weights)).expanduser()
    path = path if path.is_absolute() else NOTEBOOKS_DIR / path  # Where the notebooks run.
    if path.is_file():
        return []
    return [
        f"WEIGHTS={weights!r}: no such file ({path}; a relative path is read from the "
        'notebooks\' folder); give an existing weights file, or "imagenet", "auto" or None'
    ]


def check_data(parameters: dict[str, Any], run_dir: str | os.PathLike | None = None) -> list[str]:
    """Problems with the data, files and weights that ``parameters`` name; empty when none.

    ``DATA_DIR`` must pass notebook 01's ``dataset.scan`` and ``check_trainable`` (the whole
    report comes back); with ``run_dir``, its scan is saved there for notebook 01 to reuse.
    ``METADATA_CSV`` and a ``WEIGHTS`` path must be files; ``"imagenet"`` must be to be had.
    """
    problems = []
    if parameters.get("DATA_DIR") is not None:
        problems += _data_problems(parameters["DATA_DIR"], run_dir)
    csv = parameters.get("METADATA_CSV")
    if csv is not None and not project_path(csv, DATA_DIR).is_file():
        problems.append(
            f"METADATA_CSV={csv!r}: no such file ({project_path(csv, DATA_DIR)}; a relative "
            "path is read from the project root)"
        )
    weights = parameters.get("WEIGHTS")
    return problems + _weights_problems(weights, parameters.get("BACKBONE", DEFAULT_BACKBONE))


def preflight(parameters: dict[str, Any], run_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`PreflightError` listing every problem ("- ..." lines): parameters
    first, then, only when they all pass, data (see :func:`check_data`)."""
    problems = check(parameters) or check_data(parameters, run_dir)
    if problems:
        raise PreflightError("\n".join("- " + p.replace("\n", "\n  ") for p in problems))

"""Pre-flight check of a headless run's parameters (:func:`check_parameters`) and data
(:func:`check_data`), before any notebook runs. Cheap to import: no Keras, TF or pandas."""

import ast
import contextlib
import difflib
import json
import os
import re
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from helpers.backbones import REGISTRY
from helpers.config import DATA_DIR, NOTEBOOKS_DIR, project_path
from helpers.runs import declared_parameters

MIN_PER_CLASS = 10  # Notebook 01: fewer images of a class cannot fill three splits.
SCAN_FILE = "scan.pkl"  # In the run folder: the scan notebook 01 reuses.
DEFAULT_BACKBONE = "MobileNetV3Large"  # The notebooks' default BACKBONE.
WEIGHTS_CHOICES = ("imagenet", "auto", "random", "none")  # Any case, as in backbones.py
WEIGHTS_HOST = "storage.googleapis.com"  # Where Keras downloads ImageNet weights from.
RUNNER_PARAMETERS = ("RUN_DIR", "PROFILE")  # Set by the runner, never given.
BACKBONES = {name: spec.pretrained_offline for name, spec in REGISTRY.items()}


class PreflightError(ValueError):
    """Parameters or data that would make the run fail; the message lists every problem."""


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
Size = Annotated[int, Field(ge=32, le=1024)]  # Image sides in pixels.
Fraction = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[float, Field(gt=0, lt=1)]
Text = Annotated[str, Field(min_length=1)]
AsTuple = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)  # YAML: no tuples
Shares = Annotated[tuple[Share, Share, Share], AsTuple, AfterValidator(_sums_to_one)]
Counts = Annotated[tuple[Count, ...], AsTuple, Field(min_length=1)]
FRACTION, SHARE = "a number from 0 to 1", "a number between 0 and 1 (both excluded)"
WEIGHTS_RULE = '"imagenet", "auto", None (random) or the path of a .h5 or .keras weights file'
BOOL = "True or False"


class CourseParameters(BaseModel):
    """What each parameter may be (a missing one is the notebook's default); strict: an int
    passes for a float, no bool does."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    RUN_DIR: Text | None = rule("a folder path, or None (set by the runner)")
    PROFILE: Literal["full", "small"] | None = rule('"full", "small" or None')
    SEED: Annotated[int, Field(ge=0, le=2**32 - 1)] = rule("an integer from 0 to 2**32 - 1")
    BACKBONE: Literal[tuple(BACKBONES)] = rule("one of " + ", ".join(BACKBONES))
    WEIGHTS: Annotated[Text, AfterValidator(_weights)] | None = rule(WEIGHTS_RULE)
    IMAGE_SIZE: Size | None = rule("an integer from 32 to 1024, or None (the profile's size)")
    BATCH_SIZE: Annotated[int, Field(ge=1, le=4096)] = rule("an integer from 1 to 4096")
    DATA_DIR: Text | None = rule("the path of a folder of class folders, or None (demo data)")
    METADATA_CSV: Text | None = rule("the path of a CSV file, or None")
    GROUP_COLUMN: Text | None = rule("a metadata column name, or None (no groups)")
    SPLIT_RATIOS: Shares = rule("three shares (train, val, test) in (0, 1) summing to 1")
    NEAR_DUPLICATE_DISTANCE: Annotated[int, Field(ge=0, le=64)] = rule("an integer from 0 to 64")
    AUGMENT: bool | None = rule("True, False or None (the sheet's rule)")
    FLIP: bool = rule(BOOL)
    BRIGHTNESS: Fraction = rule(FRACTION)
    CONTRAST: Fraction = rule(FRACTION)
    SATURATION: Fraction = rule(FRACTION)
    AGGRESSIVE_RANGE: Fraction = rule(FRACTION)
    EPOCHS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    DEMO_EPOCHS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    OVERFIT_EPOCHS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    COPIES: Count | None = rule("an integer ≥ 1 (augmented copies), or None (the profile's)")
    PER_CLASS: Count | None = rule("an integer ≥ 1 (images per class), or None (the profile's)")
    LEARNING_RATE: Annotated[float, Field(gt=0, le=1)] = rule("a number > 0 and ≤ 1")
    DROPOUT_RATE: Annotated[float, Field(ge=0, lt=1)] = rule("a number ≥ 0 and < 1")
    PATIENCE: Count = rule("an integer ≥ 1 (epochs)")
    CLASS_WEIGHTS: Literal["auto"] | bool = rule('"auto", True or False')
    TARGET_ACCURACY: Fraction = rule(FRACTION)
    COMPARE_RANDOM: bool = rule(BOOL)
    UNFREEZE_FROM: Text | int | None = rule('"auto", a layer name, a layer index or None (all)')
    FAILURE_DEMOS: bool = rule(BOOL)
    CALIBRATION_SIZE: Count = rule("an integer ≥ 1 (images)")
    CALIBRATION_SWEEP: Counts = rule("a non-empty list of integers ≥ 1")
    DEBUG_IMAGES: Count = rule("an integer ≥ 1 (validation images)")
    WORST_LAYERS: Count = rule("an integer ≥ 1 (layers kept in float)")
    THREADS: Annotated[int, Field(ge=1, le=256)] = rule("an integer from 1 to 256")
    LATENCY_RUNS: Count | None = rule("an integer ≥ 1, or None (the profile's)")
    FLOAT_TOLERANCE: Fraction = rule(FRACTION)
    INT8_MAX_DELTA: Fraction = rule(FRACTION)
    TARGET_SIZE_MB: Annotated[float, Field(gt=0)] = rule("a number > 0 (MB)")
    BONA_FIDE_CLASS: Text = rule("a class name")
    THRESHOLD_METHOD: Literal["eer", "apcer"] = rule('"eer" or "apcer"')
    TARGET_APCER: Share = rule(SHARE)
    PRODUCTION_ATTACK_SHARE: Share = rule(SHARE)
    GRADCAM_PER_CASE: Count = rule("an integer ≥ 1 (images)")
    BIAS_DEMO: bool = rule(BOOL)
    BIAS: Literal["device", "date"] = rule('"device" or "date"')


def _sentence(model: type[BaseModel], name: str, value: Any, errors: list[dict]) -> str:
    allowed = model.model_fields[name].description
    literal = [e["ctx"]["expected"] for e in errors if e["type"] == "literal_error"]
    if isinstance(value, str) and literal:
        choices = {c.lower(): c for c in re.findall(r"'([^']*)'", " ".join(literal))}
        close = difflib.get_close_matches(value.lower(), choices, 1)
        hint = f"; did you mean {choices[close[0]]!r}?" if close else ""
        text = f"{name}={value!r}: unknown; choose {allowed}{hint}"
    else:
        text = f"{name}={value!r}: must be {allowed}"
    details = []  # What the rule leaves unsaid: which item, which custom check.
    for e in errors:
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if len(e["loc"]) > 1 and isinstance(e["loc"][1], int):
            what = "missing" if e["type"] == "missing" else f"{e['input']!r}: {msg}"
            details.append(f"item {e['loc'][1] + 1} is {what}")
        elif e["type"] == "value_error":
            details.append(msg)
    return text + (f" ({'; '.join(details)})" if details else "")


def check(parameters: dict[str, Any], model: type[BaseModel] = CourseParameters) -> list[str]:
    """One sentence per parameter that breaks its rule (names without one are ignored)."""
    try:
        model.model_validate(parameters)
        return []
    except ValidationError as error:
        grouped: dict[str, list[dict]] = {}
        for e in error.errors(include_url=False):
            if e["type"] != "missing" or len(e["loc"]) > 1:  # Not given: the notebook's.
                grouped.setdefault(str(e["loc"][0]), []).append(e)
    return [_sentence(model, name, parameters[name], e) for name, e in grouped.items()]


def default_rule(notebook: str, name: str, text: str) -> tuple[Any, Any]:
    """The rule of a parameter the course has none for: the type of its default (any for None
    or computed; a list or tuple of one type types the items)."""
    try:
        default = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        default = None
    kind, word = (Any, "any") if default is None else (type(default), type(default).__name__)
    if isinstance(default, (list, tuple)):
        items = {type(d) for d in default}
        kind = Annotated[tuple[items.pop() if len(items) == 1 else Any, ...], AsTuple]
        word = "list or tuple"
    return kind, rule(f"of type {word}, as {notebook} declares {name} = {text}")


def check_parameters(parameters: dict[str, Any], notebooks: Sequence[Path]) -> list[str]:
    """Every problem of ``parameters`` for these notebooks, a sentence each: a name none
    declares, a value papermill cannot inject, a broken rule (course's, :func:`default_rule`)."""
    decl = {Path(p).stem: declared_parameters(p) for p in notebooks}
    names = {n for d in decl.values() for n in d} - set(RUNNER_PARAMETERS)
    extra = {n: default_rule(nb, n, d[n]) for nb, d in reversed(decl.items()) for n in d}
    extra = {n: f for n, f in extra.items() if n not in CourseParameters.model_fields}
    model = pydantic.create_model("Declared", __base__=CourseParameters, **extra)
    problems = []
    for name, value in parameters.items():
        if name in RUNNER_PARAMETERS:
            problems.append(f"{name} is set by the runner (the run folder, --profile); drop it")
        elif name not in names:
            problems.append(_unknown(name, notebooks, names))
        else:
            try:
                json.dumps(value)  # What papermill can inject.
                problems += check({name: value}, model)
            except TypeError:
                kind = type(value).__name__
                problems.append(f"{name}={value!r} is a {kind}: papermill cannot inject it")
    return problems


def _unknown(name: str, notebooks: Sequence[Path], names: set[str]) -> str:
    """The sentence for a name no chosen notebook declares, with the closest names."""
    where = ", ".join(p.stem for p in notebooks)
    others = sorted(set(Path(notebooks[0]).parent.glob("[0-9][0-9]_*.ipynb")) - set(notebooks))
    if elsewhere := ", ".join(p.stem for p in others if name in declared_parameters(p)):
        return (
            f"Parameter {name!r} is declared by {elsewhere}, which this run does not execute "
            f"(it runs {where}); add the notebook or drop the parameter."
        )
    upper = {n.upper(): n for n in sorted(names)}
    close = [upper[n] for n in difflib.get_close_matches(name.upper(), upper, 3, 0.6)]
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    declared = ", ".join(upper.values())
    return f"Unknown parameter {name!r}: none of {where} declares it.{hint} Declared: {declared}."


def _may_be_trainable(root: Path) -> bool:
    """False when no decoding can make ``root`` trainable (counting files, not decoding)."""
    from helpers.checks import is_system_name

    classes = [p for p in root.iterdir() if p.is_dir() and not is_system_name(p.name)]
    counts = [sum(1 for f in c.rglob("*") if f.is_file()) for c in classes]
    return sum(n > 0 for n in counts) >= 2 and all(n >= MIN_PER_CLASS for n in counts)


def _data_problems(value: Any, run_dir: str | os.PathLike | None) -> list[str]:
    """Notebook 01's validation of ``DATA_DIR``; a passing scan is saved in ``run_dir``."""
    data_dir = project_path(value, DATA_DIR)
    if not data_dir.is_dir():
        state = "is not a folder" if data_dir.exists() else "does not exist"
        return [
            f"DATA_DIR={value!r}: {data_dir} {state}; put your images in "
            "data/<dataset>/<class>/ and set DATA_DIR to data/<dataset>"
        ]
    from helpers import checks  # pandas and PIL: half a second

    # TensorFlow's decoding check (8 s to import) is for the scan notebook 01 reuses only.
    full = run_dir is not None and _may_be_trainable(data_dir)
    try:
        scan = checks.scan(data_dir, verify_native=full)
        checks.check_trainable(scan, min_per_class=MIN_PER_CLASS)
    except ValueError as error:
        return [f"DATA_DIR={value!r}: {error}"]
    if full:
        checks.save_scan(scan, Path(run_dir) / SCAN_FILE)
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
    if weights is None or str(weights).lower() in ("", *WEIGHTS_CHOICES[1:]):
        return []
    if str(weights).lower() == "imagenet":
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        cached = [f.name.lower().replace("_", "") for f in cache.glob("*")]
        # Offline weights, an unknown name (check's job), a cached file or a network.
        if BACKBONES.get(backbone, True) or any(backbone.lower() in f for f in cached) or _online():
            return []
        fix = 'WEIGHTS="auto" (falls back to EfficientNetLite0) or BACKBONE="EfficientNetLite0"'
        return [
            f"WEIGHTS={weights!r} with BACKBONE={backbone!r}: its ImageNet weights are not in "
            f"{cache} and {WEIGHTS_HOST} cannot be reached; run `make weights` once online "
            f"(then copy {cache} here), or use {fix}"
        ]
    path = NOTEBOOKS_DIR / Path(str(weights)).expanduser()  # Relative: where notebooks run.
    if path.is_file():
        return []
    return [f"WEIGHTS={weights!r}: no such file {path} (a relative path starts in notebooks/)"]


def check_data(parameters: dict[str, Any], run_dir: str | os.PathLike | None = None) -> list[str]:
    """Problems of the data (the scan saved in ``run_dir`` for 01), metadata and weights."""
    problems = []
    if parameters.get("DATA_DIR") is not None:
        problems += _data_problems(parameters["DATA_DIR"], run_dir)
    csv = parameters.get("METADATA_CSV")
    if csv is not None and not (path := project_path(csv, DATA_DIR)).is_file():
        problems.append(f"METADATA_CSV={csv!r}: no such file {path} (relative to the project)")
    backbone = str(parameters.get("BACKBONE", DEFAULT_BACKBONE))
    return problems + _weights_problems(parameters.get("WEIGHTS"), backbone)


def bullets(problems: list[str]) -> str:
    """Problems as "- ..." lines, continuation lines indented under their bullet."""
    return "\n".join("- " + p.replace("\n", "\n  ") for p in problems)


def preflight(parameters: dict[str, Any], run_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`PreflightError` listing every problem: the rules, then the data."""
    if problems := check(parameters) or check_data(parameters, run_dir):
        raise PreflightError(bullets(problems))

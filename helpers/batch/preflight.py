"""Pre-flight check of a headless run's parameters and data, before any notebook runs.

:func:`check_parameters`: names the notebooks declare, the type of their defaults, then
the course's rules (:class:`CourseParameters`, one sentence per broken rule);
:func:`check_data`: notebook 01's validation of ``DATA_DIR``, the files and weights named.
Cheap to import: no Keras, TensorFlow or pandas.
"""

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

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from helpers.backbones import REGISTRY
from helpers.config import DATA_DIR, NOTEBOOKS_DIR, project_path

MIN_PER_CLASS = 10  # Notebook 01: fewer images of a class cannot fill three splits.
SCAN_FILE = "scan.pkl"  # In the run folder: the scan notebook 01 reuses.
DEFAULT_BACKBONE = "MobileNetV3Large"  # The notebooks' default BACKBONE.
WEIGHTS_CHOICES = ("imagenet", "auto", "random", "none")  # Any case, as in backbones.py
WEIGHTS_HOST = "storage.googleapis.com"  # Where Keras downloads ImageNet weights from.
RUNNER_PARAMETERS = ("RUN_DIR", "PROFILE")  # Set by the runner, never given.
BACKBONES = {name: spec.pretrained_offline for name, spec in REGISTRY.items()}
BACKBONE_NAMES = tuple(BACKBONES)


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
    """What each parameter of the course's notebooks may be (their cells tagged parameters).

    Every field is required so that :func:`check` can ignore missing ones (each notebook
    has its defaults). Strict: an int passes for a float, a bool never for a number.
    """

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    RUN_DIR: Text | None = rule("a folder path, or None (set by the runner)")
    PROFILE: Literal["full", "small"] | None = rule('"full", "small" or None')
    SEED: Annotated[int, Field(ge=0, le=2**32 - 1)] = rule("an integer from 0 to 2**32 - 1")
    BACKBONE: Literal[BACKBONE_NAMES] = rule("one of " + ", ".join(BACKBONE_NAMES))
    WEIGHTS: Annotated[Text, AfterValidator(_weights)] | None = rule(WEIGHTS_RULE)
    IMAGE_SIZE: Annotated[int, Field(ge=32, le=1024)] | None = rule(
        "an integer from 32 to 1024, or None (the profile's size)"
    )
    BATCH_SIZE: Annotated[int, Field(ge=1, le=4096)] = rule("an integer from 1 to 4096")
    # 01: data
    DATA_DIR: Text | None = rule("the path of a folder of class folders, or None (demo data)")
    METADATA_CSV: Text | None = rule("the path of a CSV file, or None")
    GROUP_COLUMN: Text | None = rule("a metadata column name, or None (no groups)")
    SPLIT_RATIOS: Shares = rule("three shares (train, val, test) in (0, 1) summing to 1")
    NEAR_DUPLICATE_DISTANCE: Annotated[int, Field(ge=0, le=64)] = rule("an integer from 0 to 64")
    # 02: augmentation
    AUGMENT: bool | None = rule("True, False or None (the sheet's rule)")
    FLIP: bool = rule(BOOL)
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
    COMPARE_RANDOM: bool = rule(BOOL)
    UNFREEZE_FROM: Text | int | None = rule("a layer name, a layer index or None (all layers)")
    FAILURE_DEMOS: bool = rule(BOOL)
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
    BIAS_DEMO: bool = rule(BOOL)
    BIAS: Literal["device", "date"] = rule('"device" or "date"')


def _sentence(name: str, value: Any, errors: list[dict]) -> str:
    allowed = CourseParameters.model_fields[name].description
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


def declared_parameters(notebook: str | os.PathLike) -> dict[str, str]:
    """Name -> source text of its default, from the notebook's cell tagged ``parameters``."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    source = "".join(tagged[0]["source"]) if tagged else ""
    return {
        target.id: ast.get_source_segment(source, node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _kind(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "list or tuple"
    return "bool" if isinstance(value, bool) else type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of ``default``: an int passes for a float, a list for
    a tuple (homogeneous defaults type the items too), a bool never for a number."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        same = len({_kind(d) for d in default}) == 1
        return isinstance(value, (list, tuple)) and (
            not same or all(_fits(v, default[0]) for v in value)
        )
    return isinstance(value, type(default))


def _injectable(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_injectable, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _injectable(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def check_value(name: str, value: Any, notebook: str, default_text: str) -> str | None:
    """Why ``value`` does not suit the notebook's default (None, not a literal: anything)."""
    if not _injectable(value):
        return (
            f"{name}={value!r} is a {type(value).__name__}, which cannot be injected into a "
            "notebook (use a number, string, bool, None, list or dict; quote dates)"
        )
    try:
        default = ast.literal_eval(default_text)
    except (ValueError, SyntaxError):
        return None
    if default is None or _fits(value, default):
        return None
    return (
        f"{name}={value!r} is a {_kind(value)}, but {notebook} declares "
        f"{name} = {default_text} (expects {_kind(default)})"
    )


def _unknown(name: str, notebooks: Sequence[Path], names: set[str]) -> str:
    """The sentence for a name no chosen notebook declares, with the closest names."""
    where = ", ".join(p.stem for p in notebooks)
    others = sorted(set(Path(notebooks[0]).parent.glob("[0-9][0-9]_*.ipynb")) - set(notebooks))
    elsewhere = [p.stem for p in others if name in declared_parameters(p)]
    if elsewhere:
        return (
            f"Parameter {name!r} is declared by {', '.join(elsewhere)}, which this run does "
            f"not execute (it runs {where}); add the notebook or drop the parameter."
        )
    upper = {n.upper(): n for n in sorted(names)}
    close = [upper[n] for n in difflib.get_close_matches(name.upper(), upper, 3, 0.6)]
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return f"Unknown parameter {name!r}: none of {where} declares it.{hint} Declared: " + (
        ", ".join(sorted(names - set(RUNNER_PARAMETERS))) + "."
    )


def check_parameters(parameters: dict[str, Any], notebooks: Sequence[Path]) -> list[str]:
    """Every problem of ``parameters`` for these notebooks, as sentences (empty: all good).

    A name must be declared by one of them (else the closest names are suggested). The
    course's rules decide for the names they know; the others, and the sentence where a
    rule is broken by a value of the wrong type, follow the type of the declared default.
    """
    if not notebooks:
        return ["No notebooks to run."]
    declared = {Path(p).stem: declared_parameters(p) for p in notebooks}
    names = {n for d in declared.values() for n in d}
    problems = []
    for name, value in parameters.items():
        if name in RUNNER_PARAMETERS:
            found = [f"{name} is set by the runner (the run folder, --profile); do not give it"]
        elif name not in names:
            found = [_unknown(name, notebooks, names)]
        else:
            found = check({name: value})
            if found or name not in CourseParameters.model_fields:
                typed = [
                    check_value(name, value, nb, d[name]) for nb, d in declared.items() if name in d
                ]
                found = [p for p in typed if p][:1] or found
        problems += [p for p in found if p not in problems]
    return problems


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

    # TensorFlow's decoding check (8 s to import) only matters to the scan notebook 01
    # reuses, so it runs only for that.
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
            f"the Keras cache ({cache}) and {WEIGHTS_HOST} cannot be reached; run `make "
            f'weights` once online (then copy {cache} here), or use WEIGHTS="auto" (falls '
            'back to EfficientNetLite0) or BACKBONE="EfficientNetLite0"'
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

    ``DATA_DIR`` must pass notebook 01's ``checks.scan`` and ``check_trainable``; with
    ``run_dir``, its scan is saved there for notebook 01 to reuse. ``METADATA_CSV`` and a
    ``WEIGHTS`` path must be files; ``"imagenet"`` must be to be had.
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


def bullets(problems: list[str]) -> str:
    """Problems as "- ..." lines, continuation lines indented under their bullet."""
    return "\n".join("- " + p.replace("\n", "\n  ") for p in problems)


def preflight(parameters: dict[str, Any], run_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`PreflightError` listing every problem: the parameters' rules first,
    then, when they all pass, the data (:func:`check_data`)."""
    problems = check(parameters) or check_data(parameters, run_dir)
    if problems:
        raise PreflightError(bullets(problems))

"""Project paths and run profiles, all built from one project root."""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
RUNS_DIR = PROJ_ROOT / "runs"
CACHE_DIR = PROJ_ROOT / ".cache"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"

# Profiles size the course: "full" is the course as a learner runs it (minutes on a
# laptop CPU); "small" is what CI and nbval run (seconds per notebook).
_SETTINGS = {  # setting: (full, small)
    "demo_per_class": (1500, 48),
    "demo_image_size": (224, 160),
    "image_size": (224, 128),
    "phase1_epochs": (15, 4),
    "phase2_epochs": (10, 2),
    "demo_epochs": (3, 2),
    "pitfall_per_class": (300, 40),
    "augmented_copies": (2, 1),
    "overfit_epochs": (20, 3),
    "principles_per_class": (300, 48),
}
PROFILES: dict[str, dict] = {
    name: {key: values[i] for key, values in _SETTINGS.items()}
    for i, name in enumerate(("full", "small"))
}
PROFILE_ENV = "COURSE_PROFILE"


def resolve_profile(profile: str | None = None) -> str:
    """Return the profile name: the argument, else $COURSE_PROFILE, else "full"."""
    name = profile or os.environ.get(PROFILE_ENV) or "full"
    if name not in PROFILES:
        source = "the PROFILE parameter" if profile else f"${PROFILE_ENV}"
        raise ValueError(f"Unknown profile {name!r} (from {source}); use one of {list(PROFILES)}.")
    return name


def profile_settings(profile: str | None = None) -> dict:
    """Settings of the resolved profile, with its name under "profile"."""
    name = resolve_profile(profile)
    return {"profile": name, **PROFILES[name]}


def project_path(path: str | os.PathLike | None, default: Path) -> Path:
    """Resolve a user-given path: absolute as is, relative to the project root.

    Notebooks run from ``notebooks/`` (nbval, JupyterLab) or from wherever papermill
    was called; resolving against the project root makes both mean the same folder."""
    if path is None or str(path) == "":
        return default
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJ_ROOT / p

"""Data preparation for any image folder laid out as ``<data>/<class>/...``.

``keras.utils.image_dataset_from_directory`` lists files by extension and decodes them
during ``fit``: one truncated or fake image stops training mid-epoch without naming the
file, EXIF orientation is ignored, alpha is dropped silently and WEBP is skipped. This
module does the checks first and builds a pipeline that cannot fail on a file:

1. :func:`scan` opens and decodes every file once (thread pool), names every unusable
   file with the reason, applies EXIF orientation, converts odd modes to 8-bit RGB, and
   writes a normalised PNG copy (outside the user's data) for every file that TensorFlow
   would not decode natively into the same pixels. The user's files are only read.
2. :func:`find_duplicates` clusters exact (SHA-256) and near (dHash) duplicates; exact
   copies filed under two classes are label conflicts.
3. :func:`make_split` assigns train/val/test by connected units (duplicate cluster plus
   metadata group), stratified by label, deterministic, and stable through a manifest.
4. :func:`size_rules`, :func:`class_weights`, :func:`undersample`, :func:`oversample`
   apply the course sheet's dataset-size and balance rules.
5. :func:`make_dataset` builds the ``tf.data`` pipeline from the ``decode_path`` column.

TensorFlow is imported lazily, so scanning and splitting work without loading it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import math
import os
import pickle
import re
import threading
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from helpers.config import CACHE_DIR, DATA_DIR, project_path

if TYPE_CHECKING:
    import tensorflow as tf

# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

#: Files above this many pixels are refused (PIL's own bomb limit is about 89.5 MP).
DEFAULT_MAX_PIXELS = 90_000_000
#: Images with a longer side are downscaled to it in the normalised copy.
DEFAULT_MAX_SIDE = 4096
#: dHash Hamming distance at or below which two images are near duplicates.
DEFAULT_MAX_DISTANCE = 4
#: Default folder of the normalised copies (outside any user data).
DEFAULT_NORMALISED_DIR = CACHE_DIR / "normalised"

SPLITS = ("train", "val", "test")
#: The course sheet's recommended split ratios (section "Train / validation / test split").
RECOMMENDED_RATIOS = {"train": (0.70, 0.80), "val": (0.10, 0.15), "test": (0.10, 0.15)}

# Dataset-size rules of the course sheet (section "How many images do you need?"), per class.
#: Binary classification with transfer learning: minimum 500–1 000 images per class.
BINARY_TL_MINIMUM = (500, 1_000)
#: Binary classification with transfer learning: ideal 2 000–5 000 images per class.
BINARY_TL_IDEAL = (2_000, 5_000)
#: Multi-class classification with transfer learning: minimum 200–500 images per class.
MULTICLASS_TL_MINIMUM = (200, 500)
#: Multi-class classification with transfer learning: ideal 1 000+ images per class.
MULTICLASS_TL_IDEAL = (1_000, None)
#: Training from scratch (no pre-trained backbone): minimum 10 000+, ideal 50 000+ per class.
SCRATCH_MINIMUM = 10_000
SCRATCH_IDEAL = 50_000

# Augmentation rules of the course sheet (section "Data augmentation"), per class.
#: Below this many images per class augmentation is indispensable.
AUGMENTATION_INDISPENSABLE_BELOW = 2_000
#: From AUGMENTATION_INDISPENSABLE_BELOW up to this many it is recommended; above it it is
#: useful but less critical.
AUGMENTATION_RECOMMENDED_UP_TO = 10_000
#: The sheet's rule of thumb: for binary transfer learning 1 000 images per class is a good
#: minimum; below that augmentation becomes indispensable.
BINARY_TL_GOOD_MINIMUM = 1_000
#: The sheet's pre-training checklist: "augmentation enabled if < 5 000 images/class".
CHECKLIST_AUGMENT_BELOW = 5_000
#: Above this majority:minority ratio class weights alone may not be enough (sheet caveat).
IMBALANCE_WARN_RATIO = 10.0

# System entries that file managers and archivers leave behind; skipped and counted.
SYSTEM_NAMES = frozenset(
    {
        "thumbs.db",
        "desktop.ini",
        "__macosx",
        "ehthumbs.db",
        "$recycle.bin",
        "system volume information",
        "@eadir",
        "icon\r",
    }
)
# Formats TensorFlow's decode_image reads natively; candidates to be read in place.
NATIVE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF"})
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
# TensorFlow's JPEG decoder uses a faster inverse DCT than PIL: a mean difference of about
# one grey level is normal; more than this means it decodes the file differently.
JPEG_MEAN_TOLERANCE = 3.0
_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "MPO": {".jpg", ".jpeg", ".mpo"},
    "PNG": {".png"},
    "GIF": {".gif"},
    "BMP": {".bmp", ".dib"},
    "WEBP": {".webp"},
    "TIFF": {".tif", ".tiff"},
    "ICO": {".ico"},
    "PPM": {".ppm", ".pgm", ".pbm", ".pnm"},
    "TGA": {".tga"},
}
_ORIENTATION_NOTES = {
    2: "EXIF mirrored horizontally",
    3: "EXIF rotated 180°",
    4: "EXIF mirrored vertically",
    5: "EXIF rotated 90° clockwise and mirrored",
    6: "EXIF rotated 90° clockwise",
    7: "EXIF rotated 270° clockwise and mirrored",
    8: "EXIF rotated 270° clockwise",
}
FILE_COLUMNS = [
    "path",
    "relpath",
    "label",
    "status",
    "reason",
    "format",
    "width",
    "height",
    "mode",
    "notes",
    "decode_path",
    "normalised",
    "sha256",
    "dhash",
    "bytes",
]
MANIFEST_COLUMNS = ["relpath", "sha256", "label", "group", "split", "dup_cluster", "decode_path"]
_MANIFEST_REQUIRED = ("relpath", "sha256", "label", "split")

# ---------------------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------------------


def is_system_name(name: str) -> bool:
    """Whether a file or folder name is a system/hidden entry to skip (``.DS_Store``, ...)."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


@dataclass
class ScanResult:
    """Outcome of :func:`scan`: one row per file found in a class folder.

    Attributes:
        data_dir: The scanned folder (absolute).
        classes: Class folder names in Keras' alphabetical order (label index = position).
        files: One row per file; columns :data:`FILE_COLUMNS` plus ``dup_cluster``,
            ``dup_kind`` and ``dup_size`` (see :func:`find_duplicates`).
        skipped_system: Number of system/hidden entries skipped (a skipped folder counts
            once; its content is not walked).
        problems: Readable descriptions of what is wrong with the data as a whole.
        label_conflicts: Pairs of relpaths with identical bytes filed under two classes.
        ignored_root_files: Files at the top of ``data_dir`` (not in a class), ignored.
        cache_dir: Folder of the normalised copies.
        elapsed_s: Wall time of the scan.
        settings: The scan's parameters.
    """

    data_dir: Path
    classes: list[str]
    files: pd.DataFrame
    skipped_system: int = 0
    problems: list[str] = field(default_factory=list)
    label_conflicts: list[tuple[str, str]] = field(default_factory=list)
    ignored_root_files: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    elapsed_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def good(self) -> pd.DataFrame:
        """Usable files (``status == "ok"``), index reset."""
        return self.files[self.files["status"] == "ok"].reset_index(drop=True)

    @property
    def bad(self) -> pd.DataFrame:
        """Unusable files with their reason: columns ``relpath``, ``label``, ``reason``."""
        bad = self.files[self.files["status"] == "bad"]
        return bad[["relpath", "label", "reason"]].reset_index(drop=True)

    @property
    def usable_classes(self) -> list[str]:
        """Classes with at least one usable file, in Keras order."""
        present = set(self.good["label"])
        return [c for c in self.classes if c in present]

    @property
    def throughput(self) -> float:
        """Files scanned per second (all files found in class folders)."""
        return len(self.files) / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def counts(self) -> pd.DataFrame:
        """Per class: ``usable``, ``unusable`` and ``normalised`` file counts."""
        f = self.files
        rows = []
        for c in self.classes:
            sub = f[f["label"] == c]
            ok = sub["status"] == "ok"
            rows.append(
                {
                    "label": c,
                    "usable": int(ok.sum()),
                    "unusable": int((~ok).sum()),
                    "normalised": int((ok & sub["normalised"].astype(bool)).sum()),
                }
            )
        return pd.DataFrame(rows, columns=["label", "usable", "unusable", "normalised"])

    def report(self, max_rows: int = 50) -> str:
        """A readable text report: counts per class, each bad file and why, notes, duplicates.

        Args:
            max_rows: At most this many lines per list (bad files, conflicts); the rest are
                counted.
        """
        f = self.files
        n_ok = int((f["status"] == "ok").sum())
        lines = [
            f"Scan of {self.data_dir}",
            f"  {len(self.classes)} class folder(s), {len(f)} file(s): {n_ok} usable, "
            f"{len(f) - n_ok} unusable; {self.skipped_system} system/hidden entr"
            f"{'y' if self.skipped_system == 1 else 'ies'} skipped; "
            f"{len(self.ignored_root_files)} root-level file(s) ignored"
            + (f" ({', '.join(self.ignored_root_files[:5])})" if self.ignored_root_files else "")
            + ".",
            f"  Scanned in {self.elapsed_s:.2f} s ({self.throughput:.0f} files/s).",
            "",
            "Classes (label index, name: usable / unusable / read from a normalised copy):",
        ]
        for i, row in self.counts().iterrows():
            lines.append(
                f"  {i} {row['label']}: {row['usable']} / {row['unusable']} / {row['normalised']}"
            )
        bad = f[f["status"] == "bad"]
        if len(bad):
            lines += ["", f"Unusable files ({len(bad)}), left out of training:"]
            for _, row in bad.head(max_rows).iterrows():
                lines.append(f"  {row['relpath']}: {row['reason']}")
            if len(bad) > max_rows:
                lines.append(f"  ... and {len(bad) - max_rows} more (see .bad)")
        notes = note_summary(f)
        if notes:
            lines += ["", "Notes (what was done to usable files, kind: count, e.g.):"]
            for kind, (count, example) in notes.items():
                lines.append(f"  {kind}: {count} (e.g. {example})")
        n_norm = int((f["normalised"].astype(bool) & (f["status"] == "ok")).sum())
        if n_norm:
            lines.append(
                f"  {n_norm} file(s) are read from normalised PNG copies in "
                f"{self.cache_dir}; the originals are untouched."
            )
        if "dup_kind" in f.columns:
            clusters = f[f["dup_size"] > 1]
            if len(clusters):
                n_exact = clusters[clusters["dup_kind"].str.contains("exact")]["dup_cluster"]
                n_near = clusters[clusters["dup_kind"].str.contains("near")]["dup_cluster"]
                lines += [
                    "",
                    f"Duplicates: {clusters['dup_cluster'].nunique()} cluster(s) of "
                    f"{len(clusters)} files ({n_exact.nunique()} with exact copies, "
                    f"{n_near.nunique()} with near copies); each cluster stays in one split.",
                ]
        if self.label_conflicts:
            dropped = self.settings.get("drop_label_conflicts", True)
            lines += [
                "",
                f"Label conflicts ({len(self.label_conflicts)}): identical files in different "
                + ("classes, excluded from training:" if dropped else "classes (kept):"),
            ]
            for a, b in self.label_conflicts[:max_rows]:
                lines.append(f"  {a} == {b}")
            if len(self.label_conflicts) > max_rows:
                lines.append(f"  ... and {len(self.label_conflicts) - max_rows} more")
        if self.problems:
            lines += ["", "Problems:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def __repr__(self) -> str:
        n_ok = int((self.files["status"] == "ok").sum())
        return (
            f"ScanResult({str(self.data_dir)!r}, classes={self.classes}, files={len(self.files)},"
            f" usable={n_ok}, problems={len(self.problems)})"
        )


def note_summary(files: pd.DataFrame) -> dict[str, tuple[int, str]]:
    """Count notes by kind (the text before a colon) over usable files.

    Returns:
        ``{kind: (count, example relpath)}`` sorted by count, largest first.
    """
    out: dict[str, list] = {}
    ok = files[files["status"] == "ok"]
    for rel, notes in zip(ok["relpath"], ok["notes"], strict=True):
        if not notes:
            continue
        for note in str(notes).split("; "):
            kind = note.split(":")[0]
            if kind not in out:
                out[kind] = [0, rel]
            out[kind][0] += 1
    return {k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: -kv[1][0])}


@dataclass(frozen=True)
class _Options:
    """Per-file settings shared by the scan's worker threads."""

    max_pixels: int
    max_side: int
    alpha: str
    cache_dir: Path
    verify_native: bool


def scan(
    data_dir: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    cache_dir: str | os.PathLike | None = None,
    alpha: str = "white",
    workers: int | None = None,
    verify_native: bool = True,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    drop_label_conflicts: bool = True,
) -> ScanResult:
    """Find, open and fully decode every file of ``data_dir/<class>/...``.

    Classes are the immediate subfolders (sorted: Keras' order); files are found
    recursively in each class folder. System entries (``.DS_Store``, ``._*``, dot folders,
    ``__MACOSX``, ``Thumbs.db``, ...) are skipped and counted, root-level files are
    ignored; any other file in a class folder is either usable or reported with a reason.
    Nothing in ``data_dir`` is written, moved or deleted.

    Args:
        data_dir: The dataset folder; a relative path is taken from the project root.
        max_pixels: Files with more pixels are refused ("too large").
        max_side: Longer images are downscaled to this side in their normalised copy.
        cache_dir: Folder of the normalised PNG copies (default ``CACHE_DIR/normalised``);
            must be outside ``data_dir``.
        alpha: ``"white"`` composites transparent images on white, ``"drop"`` drops alpha.
        workers: Decoding threads (default 4, or 2 on a 2-core machine).
        verify_native: Decode each natively read file once with TensorFlow and compare the
            pixels with PIL's; on any failure or difference a normalised copy is used.
        max_distance: dHash distance for near duplicates (see :func:`find_duplicates`).
        drop_label_conflicts: Mark identical files filed under several classes unusable.

    Returns:
        A :class:`ScanResult`.
    """
    root = project_path(data_dir, DATA_DIR).resolve()
    if not root.is_dir():
        raise ValueError(
            f"data_dir {root} is not a folder"
            + (" (it does not exist)" if not root.exists() else "")
            + ": pass the folder that holds one subfolder per class."
        )
    if alpha not in ("white", "drop"):
        raise ValueError(f"alpha must be 'white' or 'drop', got {alpha!r}.")
    if max_pixels <= 0 or max_side <= 0:
        raise ValueError(f"max_pixels and max_side must be > 0, got {max_pixels}, {max_side}.")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_NORMALISED_DIR
    cache = cache.resolve()
    if cache == root or cache.is_relative_to(root):
        raise ValueError(
            f"cache_dir {cache} is inside data_dir {root}: the scan would find its own "
            "copies and the user's folder would be written to. Pass a cache_dir outside it."
        )
    if workers is None:
        workers = 4 if (os.cpu_count() or 2) > 2 else 2
    workers = max(1, int(workers))
    opts = _Options(int(max_pixels), int(max_side), alpha, cache, bool(verify_native))
    if verify_native:
        _tf()  # Import TensorFlow (seconds) before the clock starts.
    t0 = time.perf_counter()

    classes, entries, skipped, ignored = _list_files(root)
    problems: list[str] = []

    old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    # A truncated file must raise, never be padded with grey: force the strict mode.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Size limits are checked by the scan itself; PIL's warnings would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                records = list(pool.map(lambda e: _inspect(*e, opts), entries))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated

    files = pd.DataFrame(records, columns=FILE_COLUMNS)
    files["width"] = files["width"].astype("Int64")
    files["height"] = files["height"].astype("Int64")
    files["bytes"] = files["bytes"].astype("int64")
    files["normalised"] = files["normalised"].astype(bool)
    files = find_duplicates(files, max_distance=max_distance)
    conflicts = label_conflicts(files)
    if conflicts:
        problems.append(
            f"{len(conflicts)} label conflict(s): identical files in different classes"
            + (" (excluded from training)" if drop_label_conflicts else " (kept: fix them)")
            + ", e.g. "
            + " == ".join(conflicts[0])
            + "."
        )
        if drop_label_conflicts:
            files = _drop_conflicts(files)
    problems[:0] = _data_problems(root, classes, files, ignored)
    n_bad = int((files["status"] == "bad").sum())
    if n_bad:
        problems.append(f"{n_bad} of {len(files)} files are unusable and left out (see .bad).")
    near_cross = _cross_class_near(files)
    if near_cross:
        problems.append(
            f"{len(near_cross)} near-duplicate cluster(s) span several classes, e.g. "
            f"{', '.join(near_cross[0][:4])}: kept, each in one split; check that they "
            "are not mislabelled copies (a fake made from a real photo is expected)."
        )
    return ScanResult(
        data_dir=root,
        classes=classes,
        files=files,
        skipped_system=skipped,
        problems=problems,
        label_conflicts=conflicts,
        ignored_root_files=ignored,
        cache_dir=cache,
        elapsed_s=time.perf_counter() - t0,
        settings={
            "max_pixels": opts.max_pixels,
            "max_side": opts.max_side,
            "alpha": alpha,
            "verify_native": bool(verify_native),
            "max_distance": max_distance,
            "drop_label_conflicts": drop_label_conflicts,
            "workers": workers,
        },
    )


def _list_files(root: Path) -> tuple[list[str], list[tuple[Path, str, str]], int, list[str]]:
    """Classes, ``(path, relpath, label)`` entries, skipped count and ignored root files."""
    skipped = 0
    classes: list[str] = []
    ignored: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if is_system_name(entry.name):
            skipped += 1
        elif entry.is_dir():
            classes.append(entry.name)
        else:
            ignored.append(entry.name)
    entries: list[tuple[Path, str, str]] = []
    for label in classes:
        for dirpath, dirnames, filenames in os.walk(root / label):
            keep = [d for d in dirnames if not is_system_name(d)]
            skipped += len(dirnames) - len(keep)
            dirnames[:] = sorted(keep)
            for name in sorted(filenames):
                if is_system_name(name):
                    skipped += 1
                    continue
                path = Path(dirpath) / name
                entries.append((path, path.relative_to(root).as_posix(), label))
    return classes, entries, skipped, ignored


def _data_problems(
    root: Path, classes: list[str], files: pd.DataFrame, ignored: list[str]
) -> list[str]:
    """Problems of the dataset as a whole: no class, one class, empty classes."""
    out: list[str] = []
    if not classes:
        hint = (
            f" ({len(ignored)} file(s) lie at its top level, e.g. {ignored[0]})" if ignored else ""
        )
        out.append(
            f"no class folder in {root}{hint}: put the images in one subfolder per class, "
            "e.g. data/real/*.jpg and data/fake/*.jpg."
        )
        return out
    if len(classes) == 1:
        out.append(
            f"only one class folder ({classes[0]!r}): a classifier needs at least 2 classes; "
            "add one subfolder per class next to it."
        )
    for c in classes:
        sub = files[files["label"] == c]
        if len(sub) == 0:
            out.append(f"class {c!r} is empty (no image in {c}/): add images or remove it.")
        elif not (sub["status"] == "ok").any():
            out.append(
                f"class {c!r} has no usable image ({len(sub)} file(s), all unusable: see .bad)."
            )
    return out


def check_trainable(scan: ScanResult, min_classes: int = 2, min_per_class: int = 1) -> None:
    """Raise a ``ValueError`` with a readable report if the data cannot support training.

    Args:
        scan: A :func:`scan` result.
        min_classes: Classes with usable images needed (2 for a classifier).
        min_per_class: Usable images needed in every class folder.

    Raises:
        ValueError: Naming each class that is empty or missing and how to fix it.
    """
    issues: list[str] = []
    counts = scan.good["label"].value_counts().to_dict()
    usable = [c for c in scan.classes if counts.get(c, 0) > 0]
    if not scan.classes:
        issues.append(
            f"no class folder in {scan.data_dir}: put the images in one subfolder per class."
        )
    elif len(usable) < min_classes:
        names = ", ".join(repr(c) for c in usable) or "none"
        issues.append(
            f"{len(usable)} class(es) with usable images ({names}); training needs at least "
            f"{min_classes}: add one subfolder of images per class in {scan.data_dir}."
        )
    for c in scan.classes:
        n = counts.get(c, 0)
        if n < min_per_class:
            n_all = int((scan.files["label"] == c).sum())
            why = "empty folder" if n_all == 0 else f"{n_all} file(s), {n} usable"
            issues.append(
                f"class {c!r} has {n} usable image(s) ({why}); at least {min_per_class} needed:"
                f" add images to {c}/ or remove the folder."
            )
    if issues:
        bad = scan.bad
        tail = ""
        if len(bad):
            listed = "\n".join(
                f"    {r}: {why}"
                for r, why in zip(bad["relpath"].head(20), bad["reason"].head(20), strict=True)
            )
            more = f"\n    ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            tail = f"\n  Unusable files ({len(bad)}):\n{listed}{more}"
        raise ValueError(
            f"The data in {scan.data_dir} cannot support training:\n"
            + "\n".join(f"  - {i}" for i in issues)
            + tail
        )


def save_scan(scan: ScanResult, path: str | os.PathLike) -> Path:
    """Save ``scan`` (pickle) for :func:`load_scan`; return the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(scan))
    return path


def load_scan(path: str | os.PathLike, data_dir: str | os.PathLike) -> ScanResult | None:
    """The scan saved at ``path`` if it was made for ``data_dir`` as it is now, else None.

    None when the file is missing or unreadable, made for another folder, or older than
    anything in ``data_dir`` (a file added, removed or changed since). A headless run's
    pre-flight check (``helpers.preflight``) saves one in the run folder, so notebook 01
    does not scan the same data again.
    """
    path, root = Path(path), project_path(data_dir, DATA_DIR).resolve()
    if not path.is_file() or not root.is_dir():
        return None
    try:
        scan = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - a foreign or broken file: scan again.
        return None
    if not isinstance(scan, ScanResult) or Path(scan.data_dir) != root:
        return None
    try:
        newest = max([root.stat().st_mtime, *(p.stat().st_mtime for p in root.rglob("*"))])
    except OSError:  # A broken link, a file gone meanwhile: scan again.
        return None
    return scan if newest <= path.stat().st_mtime else None


def _tf():
    """Import TensorFlow lazily (a few seconds)."""
    import tensorflow as tf

    return tf


def _mp(pixels: float) -> str:
    """Megapixels as short text: 120 MP, 1.2 MP."""
    mp = pixels / 1e6
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.2g} MP"


def _record(path: Path, rel: str, label: str) -> dict[str, Any]:
    return {
        "path": str(path),
        "relpath": rel,
        "label": label,
        "status": "bad",
        "reason": "",
        "format": None,
        "width": None,
        "height": None,
        "mode": None,
        "notes": "",
        "decode_path": None,
        "normalised": False,
        "sha256": None,
        "dhash": None,
        "bytes": 0,
    }


def _inspect(path: Path, rel: str, label: str, opts: _Options) -> dict[str, Any]:
    """Check one file; never raises (any failure becomes a reason)."""
    rec = _record(path, rel, label)
    try:
        _inspect_into(rec, path, opts)
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop the scan.
        rec.update(
            status="bad",
            decode_path=None,
            normalised=False,
            reason=rec["reason"] or f"could not process: {type(exc).__name__}: {exc}",
        )
    return rec


def _inspect_into(rec: dict[str, Any], path: Path, opts: _Options) -> None:
    """Fill ``rec`` for ``path`` (see :func:`scan`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        rec["reason"] = f"cannot read file: {exc.strerror or exc}"
        return
    rec["bytes"] = len(data)
    rec["sha256"] = hashlib.sha256(data).hexdigest()
    if not data:
        rec["reason"] = "empty file (0 bytes)"
        return
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        rec["reason"] = f"too large: {exc} (PIL refuses it as a possible decompression bomb)"
        return
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        rec["reason"] = _not_image_reason(data, path.suffix)
        return
    with im:
        fmt = im.format or "unknown"
        rec["format"], rec["mode"] = fmt, im.mode
        w, h = im.size
        # The header's size; replaced by the oriented size once the image decodes.
        rec["width"], rec["height"] = w, h
        if w * h > opts.max_pixels:
            rec["reason"] = (
                f"too large: {_mp(w * h)} ({w}×{h}) > {_mp(opts.max_pixels)} limit "
                "(raise max_pixels to accept it)"
            )
            return
        notes: list[str] = []
        allowed = _EXTENSIONS.get(fmt)
        if allowed is not None and path.suffix.lower() not in allowed:
            notes.append(
                f"content does not match extension: {fmt} named "
                f"{path.suffix or 'without extension'}"
            )
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        animated = n_frames > 1 and fmt != "MPO"
        if animated:
            notes.append(f"animated {fmt}: first frame of {n_frames}")
        elif fmt == "MPO":
            notes.append(f"MPO (multi-picture JPEG): first image of {n_frames}")
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on bad data.
            msg = str(exc) or type(exc).__name__
            kind = (
                "truncated"
                if ("truncat" in msg.lower() or isinstance(exc, EOFError))
                else "corrupt"
            )
            rec["reason"] = f"{kind} {fmt}: {msg}"
            return
        orientation = _orientation(im)
        img = ImageOps.exif_transpose(im) if orientation in _ORIENTATION_NOTES else im
        if orientation in _ORIENTATION_NOTES:
            notes.append(_ORIENTATION_NOTES[orientation])
        rgb, mode_notes, mode_native = _to_rgb(img, opts.alpha)
        notes += mode_notes
        if (
            fmt == "PNG"
            and len(data) > 25
            and data[12:16] == b"IHDR"
            and data[24] == 16
            and not any(n.startswith("16-bit") for n in notes)
        ):
            # PIL reduces 16-bit RGB(A) PNGs to 8 bits on open; TensorFlow's result may differ.
            notes.append("16-bit → 8-bit")
            mode_native = False
        ow, oh = rgb.size
        rec["width"], rec["height"] = ow, oh
        downscale = max(ow, oh) > opts.max_side
        if downscale:
            s = opts.max_side / max(ow, oh)
            size = (max(1, round(ow * s)), max(1, round(oh * s)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            notes.append(f"downscaled to fit {opts.max_side} px: {ow}×{oh} → {size[0]}×{size[1]}")
        rec["dhash"] = f"{dhash(rgb):016x}"
        native = (
            fmt in NATIVE_FORMATS
            and not animated
            and mode_native
            and not downscale
            and orientation not in _ORIENTATION_NOTES
        )
        if native and opts.verify_native:
            why = _tf_mismatch(data, rgb, lossy=fmt in LOSSY_FORMATS)
            if why:
                notes.append(why)
                native = False
        if native:
            rec["decode_path"] = str(path)
        else:
            rec["decode_path"] = str(_write_normalised(rgb, rec["sha256"], opts))
            rec["normalised"] = True
        rec["notes"] = "; ".join(notes)
        rec["status"] = "ok"


def _orientation(im: Image.Image) -> int:
    """EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if value else 1
    except Exception:  # noqa: BLE001 - corrupt EXIF must not make an image unusable.
        return 1


def _to_rgb(im: Image.Image, alpha: str) -> tuple[Image.Image, list[str], bool]:
    """Convert to 8-bit RGB.

    Returns:
        ``(rgb image, notes, native)``: ``native`` is False when TensorFlow's
        ``decode_image(channels=3)`` would not give the same pixels (alpha, CMYK, 16-bit...).
    """
    mode = im.mode
    if mode == "RGB":
        return im, [], True
    if mode == "L":
        return im.convert("RGB"), ["grayscale → RGB"], True
    if mode == "1":
        return im.convert("L").convert("RGB"), ["1-bit → RGB"], True
    if mode == "P":
        if "transparency" in im.info:
            rgb, note = _flatten(im.convert("RGBA"), alpha, "palette with transparency")
            return rgb, [note], False
        return im.convert("RGB"), [], True
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgb, note = _flatten(im.convert("RGBA"), alpha, mode)
        return rgb, [note], False
    if mode == "CMYK":
        return im.convert("RGB"), ["CMYK → RGB"], False
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.min() >= 0 and arr.max() <= 65535):
            out, note = arr / 257.0, "16-bit → 8-bit"
        else:
            lo, hi = float(arr.min()), float(arr.max())
            out = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
            note = f"{'32-bit float' if mode == 'F' else '32-bit'} → 8-bit (min–max scaled)"
        gray = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB"), [note], False
    return im.convert("RGB"), [f"{mode} → RGB"], False


def _flatten(rgba: Image.Image, alpha: str, what: str) -> tuple[Image.Image, str]:
    """RGBA to RGB: composite on white or drop alpha; a note saying which."""
    a = rgba.getchannel("A")
    if a.getextrema()[0] == 255:
        return rgba.convert("RGB"), f"{what} → RGB (alpha fully opaque, dropped)"
    if alpha == "drop":
        return rgba.convert("RGB"), f"{what} → RGB (alpha dropped)"
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB"), f"{what} → RGB (composited on white)"


def _tf_mismatch(data: bytes, rgb: Image.Image, lossy: bool) -> str:
    """Empty if TensorFlow decodes ``data`` into ``rgb``'s pixels, else the reason."""
    tf = _tf()
    try:
        arr = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except Exception as exc:  # noqa: BLE001 - any TF failure means "not native".
        return f"TensorFlow cannot decode it natively: {_tf_error_text(exc)}"
    ref = np.asarray(rgb)
    if arr.shape != ref.shape:
        return f"TensorFlow decodes it differently: shape {arr.shape} instead of {ref.shape}"
    if not lossy:
        if np.array_equal(arr, ref):
            return ""
        diff = np.abs(arr.astype(np.int16) - ref)
        if diff.max() <= 1:
            return ""
    else:
        # Every other row is plenty to tell a faster inverse DCT from a different decoding.
        diff = np.abs(arr[::2].astype(np.int16) - ref[::2])
        if diff.mean() <= JPEG_MEAN_TOLERANCE:
            return ""
    return f"TensorFlow decodes it differently: mean pixel difference {diff.mean():.1f}"


def _tf_error_text(exc: Exception) -> str:
    """TensorFlow's error message without the op-location decorations."""
    text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\].*", "", str(exc), flags=re.S).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _write_normalised(rgb: Image.Image, sha: str, opts: _Options) -> Path:
    """Write (once) the normalised 8-bit RGB PNG of a file and return its path."""
    default = opts.max_side == DEFAULT_MAX_SIDE and opts.alpha == "white"
    name = f"{sha}.png" if default else f"{sha}-{opts.max_side}px-{opts.alpha}.png"
    target = opts.cache_dir / name
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        rgb.convert("RGB").save(tmp, "PNG", compress_level=1)
        # Atomic rename: a reader never sees a half-written copy, and two threads writing
        # the same content (duplicate files) cannot clash.
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_MAGIC: list[tuple[bytes, int, str]] = [
    (b"%PDF", 0, "not an image: PDF document"),
    (b"PK\x03\x04", 0, "not an image: ZIP archive (or Office document)"),
    (b"\x1f\x8b", 0, "not an image: gzip archive"),
    (b"Rar!", 0, "not an image: RAR archive"),
    (b"7z\xbc\xaf", 0, "not an image: 7-Zip archive"),
    (b"\x1aE\xdf\xa3", 0, "not an image: Matroska/WebM video"),
    (b"ID3", 0, "not an image: MP3 audio"),
    (b"OggS", 0, "not an image: Ogg media"),
    (b"\x7fELF", 0, "not an image: executable"),
]


def _not_image_reason(data: bytes, suffix: str) -> str:
    """Why PIL could not identify ``data``: what it looks like instead."""
    named = f"named {suffix}" if suffix else "without extension"
    head = data[:4096]
    for magic, offset, what in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return f"{what} {named}"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("latin-1").strip().lower()
        if brand in ("heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"):
            return (
                "unsupported format: HEIC/HEIF (convert it to JPEG or PNG, or install pillow-heif)"
            )
        if brand in ("avif", "avis"):
            return "unsupported format: AVIF (this PIL build cannot read it; convert to PNG)"
        return f"not an image: MP4/QuickTime video {named}"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
        return f"not an image: {'AVI video' if head[8:12] == b'AVI ' else 'WAV audio'} {named}"
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8", errors="strict" if len(data) <= 4096 else "ignore")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            low = text.lstrip("\ufeff \t\r\n").lower()
            if "<svg" in low[:1000]:
                return "unsupported format: SVG vector image (rasterise it to PNG)"
            if low.startswith(("<!doctype html", "<html")) or "<html" in low[:500]:
                return f"not an image: HTML page {named} (a failed download?)"
            printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
            if printable >= 0.95 * max(1, len(text)):
                return f"not an image: text file {named}"
    return f"unsupported format: unrecognised content {named} (starts with {data[:8].hex(' ')})"


# ---------------------------------------------------------------------------------------
# Perceptual hash and duplicates
# ---------------------------------------------------------------------------------------


def dhash(image: Image.Image, hash_size: int = 8) -> int:
    """64-bit difference hash: grayscale, resize to 9×8, compare horizontal neighbours.

    Args:
        image: Any PIL image.
        hash_size: Rows of the hash (bits = ``hash_size**2``).

    Returns:
        The hash as a non-negative int (bit i set when pixel i is brighter than its left
        neighbour, row-major, most significant bit first).
    """
    # reducing_gap first shrinks by whole factors (box filter): same result, much faster.
    gray = image.convert("L").resize(
        (hash_size + 1, hash_size), Image.Resampling.LANCZOS, reducing_gap=2.0
    )
    px = np.asarray(gray, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int | str, b: int | str) -> int:
    """Hamming distance between two hashes (ints or hex strings)."""
    a = int(a, 16) if isinstance(a, str) else int(a)
    b = int(b, 16) if isinstance(b, str) else int(b)
    return (a ^ b).bit_count()


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def _components(n: int, edges: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected-component label per node of an undirected graph given edge chunks."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    labels = np.arange(n)
    pending_a: list[np.ndarray] = []
    pending_b: list[np.ndarray] = []
    size = 0

    def collapse() -> np.ndarray:
        # Edges so far are replaced by a star per component, which keeps memory linear.
        a = np.concatenate([np.arange(n), *pending_a])
        b = np.concatenate([labels, *pending_b])
        g = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        first = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(first, comp, np.arange(n))
        return first[comp]

    for a, b in edges:
        pending_a.append(np.asarray(a, dtype=np.int64))
        pending_b.append(np.asarray(b, dtype=np.int64))
        size += len(a)
        if size > 2_000_000:
            labels = collapse()
            pending_a, pending_b, size = [], [], 0
    if n and pending_a:
        labels = collapse()
    return labels


def _near_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 1024):
    """Yield ``(i, j)`` index arrays of pairs (i < j) within ``max_distance`` bits.

    Hashes within ``max_distance`` bits of all zeros or all ones (flat images, plain
    gradients) say nothing about content and take no part.
    """
    bits = _popcount(hashes).astype(np.int64)
    useful = np.flatnonzero((bits > max_distance) & (bits < 64 - max_distance))
    sub = hashes[useful]
    # Blocks of rows against all columns keep memory at chunk × n comparisons.
    for start in range(0, len(sub), chunk):
        block = sub[start : start + chunk]
        dist = _popcount(block[:, None] ^ sub[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = j > i
        yield useful[i[keep]], useful[j[keep]]


def find_duplicates(df: pd.DataFrame, max_distance: int = DEFAULT_MAX_DISTANCE) -> pd.DataFrame:
    """Cluster exact duplicates (same ``sha256``) and near duplicates (close ``dhash``).

    Only rows with a ``dhash`` (decoded images) take part; other rows get cluster -1.
    Clusters are transitive: A~B and B~C put A, B and C together. Near-flat images (hash
    within ``max_distance`` bits of all zeros or all ones) are only matched exactly, since
    any two of them would otherwise look alike.

    Args:
        df: Rows with ``sha256`` and ``dhash`` (int or 16-hex string) columns.
        max_distance: Largest dHash Hamming distance of near duplicates; a negative value
            disables near-duplicate detection.

    Returns:
        A copy of ``df`` with ``dup_cluster`` (int, one id per cluster, singletons
        included), ``dup_size`` (files in the cluster) and ``dup_kind`` ("" for a single
        file, else "exact", "near" or "exact+near").
    """
    for col in ("sha256", "dhash"):
        if col not in df.columns:
            raise ValueError(
                f"find_duplicates needs a {col!r} column (from scan()); "
                f"got columns {list(df.columns)}."
            )
    out = df.copy()
    idx = np.flatnonzero(out["dhash"].notna().to_numpy())
    cluster = np.full(len(out), -1, dtype=np.int64)
    size = np.zeros(len(out), dtype=np.int64)
    kind = np.array([""] * len(out), dtype=object)
    if len(idx):
        sub = out.iloc[idx]
        hashes = np.array(
            [int(h, 16) if isinstance(h, str) else int(h) for h in sub["dhash"]], dtype=np.uint64
        )
        shas = sub["sha256"].astype(str).to_numpy()

        def edges():
            codes = pd.factorize(shas)[0]
            order = np.argsort(codes, kind="stable")
            same = codes[order][1:] == codes[order][:-1]
            yield order[1:][same], order[:-1][same]
            if max_distance >= 0:
                yield from _near_pairs(hashes, max_distance)

        comp = _components(len(idx), edges())
        # Renumber clusters 0, 1, ... in row order, which makes ids deterministic.
        ids = pd.factorize(comp)[0]
        counts = np.bincount(ids)
        cluster[idx] = ids
        size[idx] = counts[ids]
        sha_per_cluster = pd.Series(shas).groupby(ids).agg(["nunique", "size"])
        for c in np.flatnonzero(counts > 1):
            distinct, total = sha_per_cluster.loc[c, "nunique"], sha_per_cluster.loc[c, "size"]
            k = "near" if distinct == total else ("exact" if distinct == 1 else "exact+near")
            kind[idx[ids == c]] = k
    out["dup_cluster"] = cluster
    out["dup_size"] = size
    out["dup_kind"] = kind
    return out


def label_conflicts(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs ``(relpath_a, relpath_b)`` of identical decoded files with different labels."""
    sub = _multi_label(df[df["dhash"].notna() & df["sha256"].notna()], "sha256")
    pairs: list[tuple[str, str]] = []
    for _, grp in sub.groupby("sha256", sort=False):
        rows = list(zip(grp["relpath"], grp["label"], strict=True))
        for i, (ra, la) in enumerate(rows):
            for rb, lb in rows[i + 1 :]:
                if la != lb:
                    pairs.append(tuple(sorted((ra, rb))))
    return sorted(pairs)


def _drop_conflicts(files: pd.DataFrame) -> pd.DataFrame:
    """Mark every file of a cross-class exact-duplicate group unusable, with the reason."""
    out = files.copy()
    sub = _multi_label(out[out["dhash"].notna() & (out["status"] == "ok")], "sha256")
    for _, grp in sub.groupby("sha256", sort=False):
        for i, row in grp.iterrows():
            others = grp[grp["label"] != row["label"]]
            where = ", ".join(
                f"{r} (class {lab!r})"
                for r, lab in zip(others["relpath"], others["label"], strict=True)
            )
            out.loc[i, ["status", "reason", "decode_path"]] = [
                "bad",
                f"label conflict: identical to {where}",
                None,
            ]
            out.loc[i, "normalised"] = False
    return out


def _cross_class_near(files: pd.DataFrame) -> list[list[str]]:
    """Relpaths of near-duplicate clusters (among usable files) that span several classes."""
    ok = _multi_label(files[(files["status"] == "ok") & (files["dup_size"] > 1)], "dup_cluster")
    return [list(grp["relpath"]) for _, grp in ok.groupby("dup_cluster")]


def _multi_label(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows of ``df`` whose ``key`` value is shared by rows of several labels."""
    if df.empty:
        return df
    n_labels = df.groupby(key)["label"].transform("nunique")
    return df[n_labels.to_numpy() > 1]


# ---------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------


def _norm_rel(p: str) -> str:
    """A relative path as posix text without a leading ``./`` (NFC-normalised)."""
    s = unicodedata.normalize("NFC", str(p).strip().replace("\\", "/"))
    while s.startswith("./"):
        s = s[2:]
    return s


def attach_metadata(
    scan_or_df: ScanResult | pd.DataFrame,
    metadata_csv: str | os.PathLike,
    group_col: str | None = None,
    path_col: str = "path",
) -> pd.DataFrame:
    """Merge a metadata CSV (one row per file, ``path`` relative to the data folder).

    Columns that already exist in the files table (``label``...) get a ``_meta`` suffix;
    a metadata label that disagrees with the folder raises a warning. Files without a
    metadata row keep empty values.

    Args:
        scan_or_df: A :class:`ScanResult` (its ``files``) or a files DataFrame.
        metadata_csv: The CSV; a relative path is taken from the project root.
        group_col: Metadata column that becomes ``group`` (default ``source`` if present,
            else no group: every file is its own group).
        path_col: Column of paths relative to the data folder.

    Returns:
        The files table with the metadata columns and a ``group`` column (str, "" = none).
    """
    files = scan_or_df.files if isinstance(scan_or_df, ScanResult) else scan_or_df
    csv_path = project_path(metadata_csv, DATA_DIR)
    if not csv_path.is_file():
        raise ValueError(f"metadata_csv {csv_path} does not exist.")
    meta = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    if path_col not in meta.columns:
        raise ValueError(
            f"{csv_path} has no {path_col!r} column (columns: "
            f"{list(meta.columns)}); pass path_col=... naming the relative paths."
        )
    if group_col is None:
        group_col = "source" if "source" in meta.columns else None
    elif group_col not in meta.columns:
        raise ValueError(
            f"group_col {group_col!r} is not a column of {csv_path} "
            f"(columns: {list(meta.columns)})."
        )
    meta = meta.copy()
    meta["relpath"] = meta[path_col].map(_norm_rel)
    dup = meta["relpath"].duplicated(keep=False)
    if dup.any():
        raise ValueError(
            f"{csv_path} lists {int(dup.sum())} rows with a repeated path, e.g. "
            f"{meta.loc[dup, 'relpath'].iloc[0]!r}; keep one row per file."
        )
    meta = meta.drop(columns=[path_col]) if path_col != "relpath" else meta
    rename = {c: f"{c}_meta" for c in meta.columns if c in files.columns and c != "relpath"}
    meta = meta.rename(columns=rename)
    out = files.copy()
    out["_key"] = out["relpath"].map(_norm_rel)
    meta = meta.rename(columns={"relpath": "_key"})
    matched = out["_key"].isin(set(meta["_key"]))
    if len(out) and len(meta) and not matched.any():
        raise ValueError(
            f"No path of {csv_path} matches a scanned file: e.g. metadata {meta['_key'].iloc[0]!r}"
            f" vs file {out['_key'].iloc[0]!r}. Paths must be relative to the data folder "
            "(class/file.jpg)."
        )
    out = out.merge(meta, on="_key", how="left")
    new_cols = [c for c in meta.columns if c != "_key"]
    out[new_cols] = out[new_cols].fillna("")
    missing_files = int((~matched).sum())
    unmatched_meta = int((~meta["_key"].isin(set(out["_key"]))).sum())
    if missing_files or unmatched_meta:
        warnings.warn(
            f"attach_metadata: {missing_files} file(s) have no row in {csv_path.name} and "
            f"{unmatched_meta} row(s) match no scanned file.",
            stacklevel=2,
        )
    if "label_meta" in out.columns:
        disagree = matched.to_numpy() & (out["label_meta"] != out["label"]).to_numpy()
        if disagree.any():
            first = out.loc[disagree, "relpath"].iloc[0]
            warnings.warn(
                f"attach_metadata: {int(disagree.sum())} file(s) are in a class folder that "
                f"disagrees with the metadata label, e.g. {first}; the folder label is used.",
                stacklevel=2,
            )
    if group_col is not None:
        col = rename.get(group_col, group_col)
        out["group"] = out[col].astype(str)
    elif "group" not in out.columns:
        out["group"] = ""
    return out.drop(columns=["_key"])


# ---------------------------------------------------------------------------------------
# Splitting and manifests
# ---------------------------------------------------------------------------------------


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` ratios; warn outside the course sheet's ranges.

    Raises:
        ValueError: Unless there are three ratios, each > 0, summing to 1.
    """
    try:
        r = tuple(float(x) for x in ratios)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"ratios must be three numbers (train, val, test), got {ratios!r}."
        ) from exc
    if len(r) != 3 or any(not math.isfinite(x) or x <= 0 for x in r):
        raise ValueError(f"ratios must be three numbers > 0 (train, val, test), got {ratios!r}.")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(
            f"ratios must sum to 1, got {ratios!r} (sum {sum(r):.4g}); e.g. (0.7, 0.15, 0.15)."
        )
    for name, x in zip(SPLITS, r, strict=True):
        lo, hi = RECOMMENDED_RATIOS[name]
        if not lo - 1e-9 <= x <= hi + 1e-9:
            warnings.warn(
                f"{name} ratio {x:g} is outside the course sheet's recommended {lo:g}–{hi:g}.",
                stacklevel=3,
            )
    return r  # type: ignore[return-value]


def _split_units(df: pd.DataFrame, group_col: str | None) -> np.ndarray:
    """Unit id per row: connected components of shared sha256, dup_cluster and group."""
    n = len(df)

    def edges():
        for col in ("sha256", "dup_cluster", group_col):
            if not col or col not in df.columns:
                continue
            s = df[col]
            valid = s.notna().to_numpy()
            if col == "dup_cluster":
                valid = valid & (s.fillna(-1).astype(np.int64).to_numpy() >= 0)
            else:
                valid = valid & (s.fillna("").astype(str).str.len().to_numpy() > 0)
            rows = np.flatnonzero(valid)
            if len(rows) < 2:
                continue
            codes = pd.factorize(s.iloc[rows].astype(str))[0]
            order = np.argsort(codes, kind="stable")
            same = codes[order][1:] == codes[order][:-1]
            yield rows[order[1:][same]], rows[order[:-1][same]]

    return pd.factorize(_components(n, edges()))[0]


def _seeded_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def make_split(
    df: pd.DataFrame,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_col: str | None = "group",
    manifest_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Assign each usable file to train/val/test: stratified, group-aware, deterministic.

    The unit of assignment is a connected component of files sharing a ``sha256``, a
    ``dup_cluster`` or a non-empty ``group``, so duplicates and same-source images never
    cross splits. Units are taken largest first (ties in a seeded-hash order) and each
    goes to the split that most reduces the squared deviation of the per-class counts
    from their targets (``ratio × class count``, relative to the class size).

    With ``manifest_path``: if the file exists, files listed in it (same relpath and
    sha256) keep their split, a changed file (same relpath, other sha256) counts as new,
    new files join their unit's split if it has one, else are placed greedily, and files
    that disappeared are dropped with a warning. The manifest is then (re)written.

    Args:
        df: Files table (rows with ``status == "bad"`` are dropped); needs ``relpath``
            and ``label``, ideally ``sha256``, ``dup_cluster`` and ``group``.
        ratios: ``(train, val, test)``, each > 0, summing to 1.
        seed: Changes the order of equal-size units, hence which files go where.
        group_col: Column of group names ("" or missing = no group); None for no groups.
        manifest_path: CSV manifest to reuse and update.

    Returns:
        The usable rows with ``split``, ``split_unit`` (int) and ``split_origin``
        ("manifest", "unit": joined its unit's split, "greedy"); notes in
        ``.attrs["split_notes"]``.
    """
    r = np.asarray(check_ratios(ratios))
    for col in ("relpath", "label"):
        if col not in df.columns:
            raise ValueError(f"make_split needs a {col!r} column; got {list(df.columns)}.")
    out = df[df["status"] == "ok"].copy() if "status" in df.columns else df.copy()
    out = out.reset_index(drop=True)
    if out["relpath"].duplicated().any():
        first = out.loc[out["relpath"].duplicated(), "relpath"].iloc[0]
        raise ValueError(f"relpath {first!r} appears twice; each file must have one row.")
    if group_col and group_col in out.columns:
        out[group_col] = out[group_col].fillna("").astype(str)
    notes: list[str] = []
    n = len(out)
    split = np.array([""] * n, dtype=object)
    origin = np.array(["greedy"] * n, dtype=object)

    manifest = Path(manifest_path) if manifest_path is not None else None
    if manifest is not None and manifest.is_file():
        if "sha256" not in out.columns:
            raise ValueError("make_split needs a 'sha256' column to reuse a manifest.")
        old = read_manifest(manifest)
        old_key = dict(
            zip(zip(old["relpath"], old["sha256"], strict=True), old["split"], strict=True)
        )
        keys = list(zip(out["relpath"], out["sha256"].astype(str), strict=True))
        for i, k in enumerate(keys):
            if k in old_key:
                split[i], origin[i] = old_key[k], "manifest"
        old_rel = set(old["relpath"])
        changed = [k[0] for k in keys if k[0] in old_rel and k not in old_key]
        current = set(out["relpath"])
        gone = sorted(set(old["relpath"]) - current)
        if changed:
            notes.append(
                f"{len(changed)} changed file(s) (new content under a known path) "
                f"treated as new, e.g. {changed[0]}."
            )
        if gone:
            notes.append(
                f"{len(gone)} file(s) of the manifest are gone and dropped, e.g. {gone[0]}."
            )
            warnings.warn(f"make_split: {notes[-1]}", stacklevel=2)
        n_new = int((origin != "manifest").sum())
        notes.append(
            f"manifest {manifest.name}: {n - n_new} file(s) kept their split, {n_new} new."
        )

    units = _split_units(out, group_col) if n else np.zeros(0, dtype=np.int64)
    classes = sorted(out["label"].astype(str).unique())
    cidx = pd.Series(range(len(classes)), index=classes)
    lab = cidx.loc[out["label"].astype(str)].to_numpy() if n else np.zeros(0, dtype=np.int64)
    totals = np.bincount(lab, minlength=len(classes)).astype(float)
    target = r[:, None] * totals[None, :]
    counts = np.zeros((3, len(classes)))
    sidx = {s: i for i, s in enumerate(SPLITS)}
    for i in np.flatnonzero(split != ""):
        counts[sidx[split[i]], lab[i]] += 1

    # New files whose unit already has a split (from the manifest) join it.
    members_of = pd.Series(np.arange(n)).groupby(units).indices if n else {}
    todo: list[int] = []
    for u, members in members_of.items():
        fixed = [s for s in split[members] if s]
        free = [m for m in members if not split[m]]
        if not free:
            continue
        if fixed:
            values, freq = np.unique(fixed, return_counts=True)
            if len(values) > 1:
                notes.append(
                    f"unit of {out['relpath'].iloc[members[0]]} already spans "
                    f"{', '.join(values)} in the manifest (a leak to fix by hand)."
                )
            best = values[np.argmax(freq)]
            for m in free:
                split[m], origin[m] = best, "unit"
                counts[sidx[best], lab[m]] += 1
        else:
            todo.append(u)
    # Largest units first; equal sizes in a seeded, content-defined order.
    rel = out["relpath"].astype(str).to_numpy()
    info = []
    for u in todo:
        members = members_of[u]
        info.append((-len(members), _seeded_key(seed, min(rel[members])), members))
    info.sort(key=lambda t: (t[0], t[1]))
    scale = np.where(totals > 0, totals, 1.0)
    for _, _, members in info:
        vec = np.bincount(lab[members], minlength=len(classes)).astype(float)
        # Change of sum_c ((count - target) / total_c)^2 when adding the unit to split s.
        delta = (((counts + vec - target) ** 2 - (counts - target) ** 2) / scale**2).sum(axis=1)
        best = int(np.argmin(delta))
        counts[best] += vec
        split[members] = SPLITS[best]

    out["split"] = split
    out["split_unit"] = units.astype(np.int64)
    out["split_origin"] = origin
    sizes = np.bincount(units) if n else np.zeros(0, dtype=np.int64)
    if n and sizes.max() > max(target[1].sum(), 1.0):
        notes.append(
            f"the largest unit has {sizes.max()} of {n} files, more than the whole "
            "val target: groups this large make the ratios approximate."
        )
    for c in classes:
        for s in ("val", "test"):
            if not ((out["label"] == c) & (out["split"] == s)).any() and (out["label"] == c).any():
                msg = f"class {c!r} has no image in {s} (too few files or units)."
                notes.append(msg)
                warnings.warn(f"make_split: {msg}", stacklevel=2)
    out.attrs["split_notes"] = notes
    if manifest is not None:
        write_manifest(out, manifest)
    return out


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the split manifest CSV (UTF-8, sorted by relpath).

    Columns: :data:`MANIFEST_COLUMNS` (``relpath, sha256, label, group, split,
    dup_cluster, decode_path``); missing optional ones are written empty.

    Returns:
        The manifest path.
    """
    missing = [c for c in _MANIFEST_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"write_manifest needs columns {missing} (run make_split first).")
    out = pd.DataFrame({c: df[c] if c in df.columns else "" for c in MANIFEST_COLUMNS})
    out = out.sort_values("relpath", kind="stable")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    out.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    os.replace(tmp, p)
    return p


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest` (all columns as str)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"manifest {p} does not exist.")
    df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in _MANIFEST_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest {p} lacks columns {missing}; it needs at least {list(_MANIFEST_REQUIRED)}."
        )
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"manifest {p} row {i + 2}: split {df['split'].iloc[i]!r} is not one of {SPLITS}."
        )
    return df


def check_no_leakage(df: pd.DataFrame) -> list[str]:
    """Problems where one sha256, dup_cluster or group appears in two splits (empty: none)."""
    if "split" not in df.columns:
        raise ValueError("check_no_leakage needs a 'split' column (run make_split first).")
    problems: list[str] = []
    for col in ("sha256", "dup_cluster", "group"):
        if col not in df.columns:
            continue
        sub = df[df[col].notna()]
        if col == "dup_cluster":
            sub = sub[sub[col].astype(np.int64) >= 0]
        else:
            sub = sub[sub[col].astype(str) != ""]
        n_split = sub.groupby(col)["split"].nunique()
        for key in n_split[n_split > 1].index:
            rows = sub[sub[col] == key]
            where = ", ".join(sorted(rows["split"].unique()))
            show = str(key)[:12] + "…" if col == "sha256" else str(key)
            examples = ", ".join(rows["relpath"].head(3)) if "relpath" in rows else ""
            problems.append(f"{col} {show} is in {where}: {examples}")
    return problems


# ---------------------------------------------------------------------------------------
# Balance and the sheet's size rules
# ---------------------------------------------------------------------------------------


def class_counts(
    df: pd.DataFrame, split: str | None = None, label_col: str = "label"
) -> dict[str, int]:
    """Images per class (sorted by class name), usable rows only, optionally one split."""
    sub = df[df["status"] == "ok"] if "status" in df.columns else df
    if split is not None:
        if "split" not in sub.columns:
            raise ValueError("class_counts(split=...) needs a 'split' column (make_split).")
        sub = sub[sub["split"] == split]
    vc = sub[label_col].value_counts()
    return {str(k): int(vc[k]) for k in sorted(vc.index)}


def _fmt_range(lo: int, hi: int | None) -> str:
    return f"{lo:,}+" if hi is None else f"{lo:,}–{hi:,}"


def augmentation_advice(count: int) -> str:
    """The sheet's augmentation advice for a per-class count."""
    if count < AUGMENTATION_INDISPENSABLE_BELOW:
        return "indispensable"
    if count <= AUGMENTATION_RECOMMENDED_UP_TO:
        return "recommended"
    return "useful but less critical"


def size_rules(counts: dict[str, int], n_classes: int | None = None) -> pd.DataFrame:
    """The course sheet's dataset-size rules per class (transfer learning).

    Args:
        counts: ``{class: images}``.
        n_classes: Number of classes of the task (default ``len(counts)``); 2 or fewer
            uses the binary rules, more the multi-class rules.

    Returns:
        One row per class: ``label, count, task, minimum, ideal, min_required,
        ideal_required, status`` ("below minimum" / "minimum met" / "ideal met"),
        ``augmentation`` ("indispensable" / "recommended" / "useful but less critical"),
        ``checklist_augment`` (the checklist's "< 5 000/class": True = enable it) and
        ``from_scratch`` (the from-scratch rule, for comparison).
    """
    k = len(counts) if n_classes is None else int(n_classes)
    binary = k <= 2
    mn, ideal = (
        (BINARY_TL_MINIMUM, BINARY_TL_IDEAL)
        if binary
        else (MULTICLASS_TL_MINIMUM, MULTICLASS_TL_IDEAL)
    )
    rows = []
    for label, count in counts.items():
        count = int(count)
        if count < mn[0]:
            status = "below minimum"
        elif count < ideal[0]:
            status = "minimum met"
        else:
            status = "ideal met"
        if count >= SCRATCH_IDEAL:
            scratch = "enough even from scratch (ideal 50,000+ met)"
        elif count >= SCRATCH_MINIMUM:
            scratch = "from-scratch minimum 10,000+ met (ideal 50,000+)"
        else:
            scratch = "too few to train from scratch (10,000+ needed, 50,000+ ideal)"
        rows.append(
            {
                "label": label,
                "count": count,
                "task": "binary" if binary else f"{k} classes",
                "minimum": _fmt_range(*mn),
                "ideal": _fmt_range(*ideal),
                "min_required": mn[0],
                "ideal_required": ideal[0],
                "status": status,
                "augmentation": augmentation_advice(count),
                "checklist_augment": count < CHECKLIST_AUGMENT_BELOW,
                "from_scratch": scratch,
            }
        )
    return pd.DataFrame(rows)


def imbalance_ratio(counts: dict[str, int]) -> float:
    """Majority over minority count (``inf`` if a class is empty, 1.0 for no class)."""
    values = [int(v) for v in counts.values()]
    if not values:
        return 1.0
    return float("inf") if min(values) == 0 else max(values) / min(values)


def _warn_imbalance(counts: dict[str, int]) -> None:
    ratio = imbalance_ratio(counts)
    if ratio > IMBALANCE_WARN_RATIO:
        warnings.warn(
            f"class imbalance {ratio:.1f}:1 exceeds {IMBALANCE_WARN_RATIO:g}:1: class weights "
            "alone may be insufficient; also oversample, collect more minority images and "
            "judge the model on per-class recall / PR-AUC.",
            stacklevel=3,
        )


def _train_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows to rebalance, rows kept as is)``: only train rows when there is a split."""
    if "split" in df.columns:
        is_train = df["split"] == "train"
        return df[is_train], df[~is_train]
    return df, df.iloc[:0]


def undersample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Randomly keep the minority count of every class (train rows only if split).

    Returns:
        The rebalanced rows (class order, then original order), val/test rows unchanged.
    """
    part, rest = _train_rows(df)
    if part.empty:
        return df.copy()
    n_min = int(part[label_col].value_counts().min())
    rng = np.random.default_rng(seed)
    keep = []
    for _, grp in part.groupby(label_col, sort=True):
        pick = np.sort(rng.choice(len(grp), size=n_min, replace=False))
        keep.append(grp.iloc[pick])
    return pd.concat([*keep, rest]).reset_index(drop=True)


def oversample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Duplicate minority rows up to the majority count (train rows only if split).

    Whole copies first, then a random remainder without replacement, so every image is
    repeated as evenly as possible. Use with augmentation, else copies are identical.

    Returns:
        The rebalanced rows with an ``oversampled`` column (True for added copies).
    """
    part, rest = _train_rows(df)
    if part.empty:
        return df.assign(oversampled=False)
    n_max = int(part[label_col].value_counts().max())
    rng = np.random.default_rng(seed)
    pieces = []
    for _, grp in part.groupby(label_col, sort=True):
        pieces.append(grp.assign(oversampled=False))
        extra = n_max - len(grp)
        if extra <= 0:
            continue
        reps, remainder = divmod(extra, len(grp))
        idx = np.concatenate(
            [
                np.tile(np.arange(len(grp)), reps),
                np.sort(rng.choice(len(grp), size=remainder, replace=False)),
            ]
        )
        pieces.append(grp.iloc[idx].assign(oversampled=True))
    return pd.concat([*pieces, rest.assign(oversampled=False)]).reset_index(drop=True)


def class_weights(labels: Iterable, classes: Sequence[str]) -> dict[int, float]:
    """Balanced class weights for ``model.fit(class_weight=...)``: ``n / (k × count)``.

    Args:
        labels: Training labels, as class names or label indices.
        classes: All class names in label-index order.

    Returns:
        ``{label index: weight}``.
    """
    from sklearn.utils.class_weight import compute_class_weight

    classes = list(classes)
    values = list(labels)
    if values and isinstance(values[0], str | np.str_):
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise ValueError(f"labels {unknown} are not in classes {classes}.")
        y = np.array([index[v] for v in values])
    else:
        y = np.asarray(values, dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes)) if len(y) else np.zeros(len(classes), int)
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(
            f"class(es) {empty} have no training label: balanced weights are "
            "undefined; add images or remove the class."
        )
    _warn_imbalance({c: int(n) for c, n in zip(classes, counts, strict=True)})
    w = compute_class_weight("balanced", classes=np.arange(len(classes)), y=y)
    return {i: float(x) for i, x in enumerate(w)}


# ---------------------------------------------------------------------------------------
# tf.data pipeline
# ---------------------------------------------------------------------------------------


def make_dataset(
    df: pd.DataFrame,
    classes: Sequence[str],
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool | str | os.PathLike = True,
    augment: Callable | None = None,
    label_mode: str = "binary",
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``(images, labels)`` batches from ``decode_path``.

    read → decode (3 channels, first frame) → resize (bilinear, antialias) → float32 in
    0–255 (what Keras' MobileNetV3/EfficientNet expect) → cache → shuffle (each epoch) →
    batch → ``augment`` per batch → prefetch.

    Args:
        df: Rows with ``decode_path`` (or ``path``) and ``label``; use scanned good files.
        classes: Class names; label index = position (alphabetical, like Keras).
        image_size: Output side, or ``(height, width)``.
        batch_size: Images per batch.
        shuffle: Shuffle (after the cache) with ``seed``, reshuffled every epoch.
        seed: Shuffle seed.
        cache: True caches decoded images in memory, a path caches to that file prefix
            (delete it when the data change), False does not cache.
        augment: Callable applied to each image batch (a Keras layer is called with
            ``training=True``).
        label_mode: "binary" (float32, shape (B, 1), needs 2 classes), "categorical"
            (one-hot float32) or "int" (int32, shape (B,)).

    Returns:
        The dataset (finite; iterate it once per epoch).
    """
    tf = _tf()
    classes = list(classes)
    if label_mode not in ("binary", "categorical", "int"):
        raise ValueError(
            f"label_mode must be 'binary', 'categorical' or 'int', got {label_mode!r}."
        )
    if label_mode == "binary" and len(classes) != 2:
        raise ValueError(
            f"label_mode='binary' needs exactly 2 classes, got {len(classes)} "
            f"({classes}); use label_mode='categorical' or 'int'."
        )
    if len(df) == 0:
        raise ValueError("make_dataset got no rows: nothing to read (check the scan/split).")
    if "status" in df.columns and (df["status"] != "ok").any():
        n_bad = int((df["status"] != "ok").sum())
        raise ValueError(
            f"make_dataset got {n_bad} unusable row(s) (status != 'ok'), e.g. "
            f"{df.loc[df['status'] != 'ok', 'relpath'].iloc[0]}; pass scan.good."
        )
    col = "decode_path" if "decode_path" in df.columns else "path"
    if col not in df.columns:
        raise ValueError("make_dataset needs a 'decode_path' (or 'path') column (from scan()).")
    unknown = sorted(set(df["label"]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes {classes}.")
    if isinstance(image_size, int | np.integer):
        size = (int(image_size), int(image_size))
    else:
        size = tuple(int(s) for s in image_size)
        if len(size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    if min(size) <= 0 or batch_size <= 0:
        raise ValueError(f"image_size {image_size!r} and batch_size {batch_size} must be > 0.")

    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in df["label"]], dtype=np.int32)
    if label_mode == "binary":
        labels = y.astype(np.float32)[:, None]
    elif label_mode == "categorical":
        labels = np.eye(len(classes), dtype=np.float32)[y]
    else:
        labels = y
    paths = [str(p) for p in df[col]]

    def load(path, label):
        raw = tf.io.read_file(path)
        img = tf.io.decode_image(raw, channels=3, expand_animations=False)
        img.set_shape([None, None, 3])
        img = tf.image.resize(img, size, method="bilinear", antialias=True)
        return tf.clip_by_value(tf.cast(img, tf.float32), 0.0, 255.0), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is True:
        ds = ds.cache()
    elif cache not in (False, None, ""):
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        fn = _augment_fn(augment)
        ds = ds.map(lambda x, lab: (fn(x), lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _augment_fn(augment: Callable) -> Callable:
    """Wrap a Keras layer so that it runs in training mode; other callables as they are."""
    try:
        import keras

        if isinstance(augment, keras.layers.Layer):
            return lambda x: augment(x, training=True)
    except ImportError:  # pragma: no cover - Keras ships with TensorFlow here.
        pass
    return augment


def split_datasets(
    df: pd.DataFrame,
    classes: Sequence[str],
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    seed: int = 0,
    augment: Callable | None = None,
    label_mode: str = "binary",
    cache: bool = True,
) -> dict[str, tf.data.Dataset]:
    """``{"train", "val", "test"}`` datasets from a split table: train shuffled/augmented.

    Splits without rows are left out.
    """
    if "split" not in df.columns:
        raise ValueError("split_datasets needs a 'split' column (run make_split first).")
    out = {}
    for s in SPLITS:
        part = df[df["split"] == s]
        if len(part):
            out[s] = make_dataset(
                part,
                classes,
                image_size,
                batch_size,
                shuffle=s == "train",
                seed=seed,
                cache=cache,
                augment=augment if s == "train" else None,
                label_mode=label_mode,
            )
    return out


def dataset_arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Materialise a (small) dataset as numpy ``(x, y)``, batched or not."""
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0,)), np.zeros((0,))
    spec = ds.element_spec[0]
    batched = spec.shape.rank is not None and spec.shape.rank == 4
    join = np.concatenate if batched else np.stack
    return join(xs), join(ys)

"""File validation: decode every file of a ``<data>/<class>/...`` folder once, name the bad ones
(Keras would stop mid-``fit`` without naming it); copy, outside the data, each file TensorFlow
would not decode as PIL does (EXIF orientation, odd modes as 8-bit RGB)."""

import concurrent.futures
import hashlib
import io
import os
import pickle
import re
import threading
import time
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps

from helpers import duplicates
from helpers.config import CACHE_DIR, DATA_DIR, project_path

DEFAULT_MAX_PIXELS = 90_000_000  # Refused above this (PIL's own bomb limit is about 89.5 MP).
DEFAULT_MAX_SIDE = 4096  # Longer images are downscaled to this side in their PNG copy.
NORMALISED_DIR = CACHE_DIR / "normalised"
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "@eadir", "icon\r"}
NATIVE_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF"}  # What tf.io.decode_image reads.
JPEG_MEAN_TOLERANCE = 3.0  # TensorFlow's faster inverse DCT: about one grey level from PIL's.
FILE_COLUMNS = "path relpath label status reason format width height mode notes decode_path"
FILE_COLUMNS = [*FILE_COLUMNS.split(), "normalised", "sha256", "dhash", "bytes"]
_ORIENTATION = {2: "mirrored horizontally", 3: "rotated 180°", 4: "mirrored vertically"}
_ORIENTATION |= {6: "rotated 90° clockwise", 8: "rotated 270° clockwise"}
_ORIENTATION |= {5: "rotated 90° clockwise and mirrored", 7: "rotated 270° clockwise and mirrored"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif"}


def is_system_name(name: str) -> bool:
    """Whether a file or folder name is a system or hidden entry (``.DS_Store``, ...)."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


@dataclass
class ScanResult:
    """What :func:`scan` found: the ``classes`` in Keras' order, a row per file in ``files``."""

    data_dir: Path
    classes: list[str]
    files: pd.DataFrame
    skipped_system: int = 0  # System/hidden entries skipped (a skipped folder counts once).
    problems: list[str] = field(default_factory=list)  # What is wrong with the data as a whole.
    label_conflicts: list[tuple[str, str]] = field(default_factory=list)
    ignored_root_files: list[str] = field(default_factory=list)  # Files outside any class.
    cache_dir: Path | None = None  # Folder of the normalised copies.
    elapsed_s: float = 0.0

    @property
    def good(self) -> pd.DataFrame:
        """Usable files (``status == "ok"``), index reset."""
        return self.files[self.files["status"] == "ok"].reset_index(drop=True)

    @property
    def bad(self) -> pd.DataFrame:
        """Unusable files: ``relpath``, ``label`` and ``reason``."""
        bad = self.files[self.files["status"] == "bad"]
        return bad[["relpath", "label", "reason"]].reset_index(drop=True)

    def counts(self) -> pd.DataFrame:
        """Per class: ``usable``, ``unusable`` and ``normalised`` (read from a copy) files."""
        f, ok = self.files, self.files["status"] == "ok"
        table = pd.DataFrame({"usable": ok, "unusable": ~ok, "normalised": ok & f["normalised"]})
        table = table.groupby(f["label"]).sum().reindex(self.classes, fill_value=0)
        return table.astype(int).rename_axis("label").reset_index()

    def report(self, max_rows: int = 50) -> str:
        """A readable report: counts per class, each unusable file and why, notes, problems."""
        bad, good, n = self.bad, self.good, len(self.files)
        lines = [
            f"Scan of {self.data_dir}: {n} files, {len(good)} usable, in {self.elapsed_s:.2f} s;"
            f" {self.skipped_system} system entries skipped, root files ignored: "
            f"{self.ignored_root_files}.\n\n{self.counts().to_string(index=False)}"
        ]
        if len(bad):
            lines.append(f"\nUnusable files ({len(bad)}), left out of training:")
            lines += [f"  {r}: {why}" for r, why in bad[["relpath", "reason"]].values[:max_rows]]
        notes = good.assign(note=good["notes"].str.split("; ")).explode("note")
        notes = notes[notes["note"].fillna("") != ""]
        kinds = notes.groupby(notes["note"].str.split(":").str[0])["relpath"]
        if len(notes):
            lines.append(f"\nDone to usable files (copies in {self.cache_dir}; originals intact):")
            for kind, count, example in kinds.agg(["size", "first"]).itertuples():
                lines.append(f"  {kind}: {count} (e.g. {example})")
        lines += ["\nProblems:", *(f"  - {p}" for p in self.problems)] if self.problems else []
        return "\n".join(lines)


def scan(
    data_dir: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 4,
    verify_native: bool = True,
    max_distance: int = duplicates.DEFAULT_MAX_DISTANCE,
) -> ScanResult:
    """Open and decode every file of ``data_dir/<class>/...`` (system entries skipped, top-level
    files ignored): over ``max_pixels`` refused, over ``max_side`` downscaled in their copy in
    ``cache_dir``; ``verify_native`` compares TensorFlow's pixels with PIL's."""
    root = project_path(data_dir, DATA_DIR).resolve()
    cache = Path(cache_dir or NORMALISED_DIR).expanduser().resolve()
    if not root.is_dir():
        why = "does not exist" if not root.exists() else "is not a folder"
        raise ValueError(f"data_dir {root} {why}: pass a folder with one subfolder per class.")
    if cache.is_relative_to(root):
        raise ValueError(f"cache_dir {cache} is inside data_dir {root}: pass one outside it.")
    opts = {"max_pixels": max_pixels, "max_side": max_side, "cache": cache}
    if verify_native:
        import tensorflow  # noqa: F401 - Imported (seconds) before the clock starts.
    start = time.perf_counter()
    classes, entries, skipped, ignored = _list_files(root)
    files = _decode_all(entries, opts | {"verify_native": verify_native}, workers)
    files = duplicates.find_duplicates(files, max_distance)
    conflicts = duplicates.label_conflicts(files)
    files = duplicates.drop_conflicts(files)
    problems = _data_problems(root, classes, files, ignored)
    if conflicts:
        example = " == ".join(conflicts[0])
        problems.append(f"label conflicts left out (file each in one class): {example}, ...")
    if crossing := duplicates.cross_class_clusters(files):
        problems.append(f"near-duplicates in two classes (check the labels): {crossing[0][:4]}")
    elapsed = time.perf_counter() - start
    return ScanResult(root, classes, files, skipped, problems, conflicts, ignored, cache, elapsed)


def _decode_all(entries: list, opts: dict, workers: int) -> pd.DataFrame:
    """Inspect every file in a thread pool; one row per file."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # PIL's default: a truncated file raises.
    with warnings.catch_warnings():  # The scan checks sizes itself: PIL's warnings are noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            records = list(pool.map(lambda entry: _inspect(*entry, opts), entries))
    files = pd.DataFrame(records, columns=FILE_COLUMNS)
    return files.astype({"width": "Int64", "height": "Int64", "normalised": bool})


def _list_files(root: Path) -> tuple[list[str], list[tuple[Path, str, str]], int, list[str]]:
    """Classes, ``(path, relpath, label)`` entries, skipped count and ignored root files."""
    top = sorted(os.scandir(root), key=lambda e: e.name)
    classes = [e.name for e in top if e.is_dir() and not is_system_name(e.name)]
    ignored = [e.name for e in top if not e.is_dir() and not is_system_name(e.name)]
    skipped, entries = len(top) - len(classes) - len(ignored), []
    for label in classes:
        for folder, subfolders, names in os.walk(root / label):
            keep = sorted(d for d in subfolders if not is_system_name(d))
            skipped += len(subfolders) - len(keep) + sum(map(is_system_name, names))
            subfolders[:] = keep
            for name in sorted(n for n in names if not is_system_name(n)):
                path = Path(folder) / name
                entries.append((path, path.relative_to(root).as_posix(), label))
    return classes, entries, skipped, ignored


def _data_problems(root: Path, classes: list, files: pd.DataFrame, ignored: list) -> list[str]:
    """Problems of the dataset as a whole: no class, one class, empty classes, bad files."""
    if not classes:
        hint = "put the images in one subfolder per class, e.g. data/real/*.jpg"
        return [f"no class folder in {root} (files at its top: {ignored[:3]}): {hint}."]
    out = [f"only one class folder ({classes[0]!r}): add one subfolder per class next to it."]
    out = out if len(classes) == 1 else []
    for c in classes:
        status = files.loc[files["label"] == c, "status"]
        if not (status == "ok").any():
            what = "is empty" if status.empty else f"has no usable image ({len(status)} bad)"
            out.append(f"class {c!r} {what}: add images to {c}/ or remove it.")
    return out


def check_trainable(scan: ScanResult, min_classes: int = 2, min_per_class: int = 1) -> None:
    """Raise a ``ValueError`` naming each missing or too small class (``min_*``) and the fix."""
    counts = scan.good["label"].value_counts().reindex(scan.classes, fill_value=0)
    usable = list(counts[counts > 0].index)
    small = [(c, n) for c, n in counts.items() if n < min_per_class]
    fix = f"usable image(s) of {min_per_class} needed: add some or remove"
    issues = [f"class {c!r} has {n} {fix} {c}/." for c, n in small]
    if len(usable) < min_classes:
        need = f"training needs {min_classes}: add one subfolder of images per class"
        found = f"{len(usable) or 'no'} class folder(s) with usable images {usable}"
        issues.insert(0, f"{found} in {scan.data_dir}; {need}.")
    if issues:
        bad = "".join(f"\n    {r}: {why}" for r, why in scan.bad[["relpath", "reason"]].values)
        text = "".join(f"\n  - {issue}" for issue in issues)
        bad = f"\n  Unusable files:{bad}" if bad else ""
        raise ValueError(f"The data in {scan.data_dir} cannot support training:{text}{bad}")


def save_scan(scan: ScanResult, path: str | os.PathLike) -> Path:
    """Save ``scan`` (pickle) for :func:`load_scan`; return the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(scan))
    return path


def load_scan(path: str | os.PathLike, data_dir: str | os.PathLike) -> ScanResult | None:
    """The scan saved at ``path`` if it was made for ``data_dir`` as it is now, else None."""
    path, root = Path(path), project_path(data_dir, DATA_DIR).resolve()
    try:
        scan = pickle.loads(path.read_bytes())
        newest = max([root.stat().st_mtime, *(p.stat().st_mtime for p in root.rglob("*"))])
    except Exception:  # noqa: BLE001 - missing, foreign or broken: scan again.
        return None
    if not isinstance(scan, ScanResult) or Path(scan.data_dir) != root:
        return None
    return scan if newest <= path.stat().st_mtime else None


def _inspect(path: Path, rel: str, label: str, opts: dict) -> dict[str, Any]:
    """One file's row; never raises (a failure becomes the reason)."""
    rec = dict.fromkeys(FILE_COLUMNS) | {"reason": "", "notes": "", "normalised": False}
    rec.update(path=str(path), relpath=rel, label=label, bytes=0)
    try:
        reason = _inspect_into(rec, path, opts)
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop the scan.
        reason = f"could not process: {type(exc).__name__}: {exc}"
    if reason:
        rec.update(status="bad", reason=reason, decode_path=None, normalised=False, dhash=None)
    return rec


def _inspect_into(rec: dict[str, Any], path: Path, opts: dict) -> str:
    """Fill ``rec`` for ``path``; return why the file is unusable ("" if usable)."""
    data = path.read_bytes()
    rec.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if not data:
        return "empty file (0 bytes)"
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        return f"too large: {exc}"
    except Exception:  # noqa: BLE001 - PIL could not identify it.
        return _not_image_reason(data, path.suffix)
    fmt, (w, h), mp = im.format, im.size, opts["max_pixels"] / 1e6
    rec.update(format=fmt, mode=im.mode, width=w, height=h)
    if w * h > opts["max_pixels"]:
        return f"too large: {w * h / 1e6:.2g} MP ({w}×{h}) > {mp:.2g} MP limit (max_pixels)"
    expected = Image.registered_extensions().get(path.suffix.lower())
    frames = getattr(im, "n_frames", 1)
    notes = [f"animated {fmt}: first frame of {frames}"] if frames > 1 and fmt != "MPO" else []
    if expected != fmt and not {expected, fmt} <= {"JPEG", "MPO"}:
        notes.append(f"content does not match extension: {fmt} named {path.suffix or '(none)'}")
    try:
        im.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on bad data.
        msg = str(exc) or type(exc).__name__
        truncated = "truncat" in msg.lower() or isinstance(exc, EOFError)
        return f"{'truncated' if truncated else 'corrupt'} {fmt}: {msg}"
    rgb, native = _upright_rgb(im, notes)
    rec.update(width=rgb.width, height=rgb.height)
    if max(rgb.size) > opts["max_side"]:
        size = tuple(max(1, round(s * opts["max_side"] / max(rgb.size))) for s in rgb.size)
        notes.append(f"downscaled to fit {opts['max_side']} px: {w}×{h} → {size[0]}×{size[1]}")
        rgb, native = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), False
    rec["dhash"] = duplicates.perceptual_hash(rgb)
    native = native and fmt in NATIVE_FORMATS and (frames == 1 or fmt == "MPO")
    verify = native and opts["verify_native"]
    why = _tf_mismatch(data, rgb, lossy=fmt in ("JPEG", "MPO")) if verify else ""
    native, notes = native and not why, notes + [why] * bool(why)
    copy = None if native else _write_normalised(rgb, rec["sha256"], opts)
    rec.update(decode_path=str(copy or path), normalised=not native, notes="; ".join(notes))
    rec["status"] = "ok"
    return ""


def _upright_rgb(im: Image.Image, notes: list[str]) -> tuple[Image.Image, bool]:
    """8-bit RGB after EXIF orientation, and whether TensorFlow would decode the same pixels."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - corrupt EXIF must not make an image unusable.
        orientation = 1
    if orientation in _ORIENTATION:
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF {_ORIENTATION[orientation]}")
    mode, native = im.mode, orientation not in _ORIENTATION
    if mode in ("RGB", "L", "1") or (mode == "P" and "transparency" not in im.info):
        notes += {"L": ["grayscale → RGB"], "1": ["1-bit → RGB"]}.get(mode, [])
        return im.convert("RGB"), native
    if mode in ("RGBA", "LA", "PA", "La", "RGBa", "P"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        opaque = rgba.getchannel("A").getextrema()[0] == 255
        notes.append(f"{mode} → RGB ({'alpha opaque' if opaque else 'composited on white'})")
        return Image.alpha_composite(white, rgba).convert("RGB"), False
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im, dtype=np.float64)  # 16-bit integers, or floats scaled to 0-255.
        arr = arr / 257.0 if mode != "F" else arr * 255.0 / max(arr.max(), 1e-12)
        notes.append(f"{'32-bit float' if mode == 'F' else '16-bit'} → 8-bit")
        return Image.fromarray(np.rint(arr.clip(0, 255)).astype(np.uint8)).convert("RGB"), False
    notes.append(f"{mode} → RGB")
    return im.convert("RGB"), False


def _tf_mismatch(data: bytes, rgb: Image.Image, lossy: bool) -> str:
    """Empty if TensorFlow decodes ``data`` into ``rgb``'s pixels, else the reason."""
    import tensorflow as tf

    try:
        arr = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except Exception as exc:  # noqa: BLE001 - any TensorFlow failure means "not native".
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\].*", "", str(exc), flags=re.S).strip()
        return f"TensorFlow cannot decode it natively: {(text or repr(exc)).splitlines()[0]}"
    ref = np.asarray(rgb)
    if arr.shape != ref.shape:
        return f"TensorFlow decodes it differently: shape {arr.shape} instead of {ref.shape}"
    diff = np.abs(arr.astype(np.int16) - ref)
    if (diff.mean() <= JPEG_MEAN_TOLERANCE) if lossy else (diff.max() <= 1):
        return ""
    return f"TensorFlow decodes it differently: mean pixel difference {diff.mean():.1f}"


def _write_normalised(rgb: Image.Image, sha: str, opts: dict) -> Path:
    """Write (once) the normalised 8-bit RGB PNG of a file and return its path."""
    name = f"{sha}.png" if opts["max_side"] == DEFAULT_MAX_SIDE else f"{sha}-{opts['max_side']}.png"
    target = opts["cache"] / name
    if not (target.is_file() and target.stat().st_size > 0):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
        rgb.save(tmp, "PNG", compress_level=1)
        os.replace(tmp, target)  # Atomic: no reader sees half a file, no two threads clash.
    return target


def _not_image_reason(data: bytes, suffix: str) -> str:
    """Why PIL could not identify ``data``: what it looks like instead."""
    named, head = f"named {suffix or '(no extension)'}", data[:4096]
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "unsupported format: HEIC/HEIF or AVIF (convert it to JPEG or PNG)"
    if "<svg" in text[:1000]:
        return "unsupported format: SVG vector image (rasterise it to PNG)"
    if "<html" in text[:500] or text.startswith("<!doctype html"):
        return f"not an image: HTML page {named} (a failed download?)"
    printable = sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text)
    if b"\x00" not in head and text.count("\ufffd") <= 1 and printable:
        return f"not an image: text file {named}"
    return f"unsupported format: unrecognised content {named} (starts with {data[:8].hex(' ')})"


def attach_metadata(
    scan_or_df: ScanResult | pd.DataFrame, metadata_csv, group_col=None, path_col="path"
) -> pd.DataFrame:
    """Merge a metadata CSV (a row per file, ``path_col`` relative to the data folder); its
    ``group_col`` (default ``source`` if any) becomes ``group``, clashing columns get ``_meta``."""
    files = scan_or_df.files if isinstance(scan_or_df, ScanResult) else scan_or_df
    csv = project_path(metadata_csv, DATA_DIR)
    if not csv.is_file():
        raise ValueError(f"metadata_csv {csv} does not exist.")
    meta = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for col in (path_col, group_col):
        if col and col not in meta:
            raise ValueError(f"{col!r} is not a column of {csv} {list(meta)}: pass another.")
    group_col = group_col or ("source" if "source" in meta else None)
    group_col = f"{group_col}_meta" if group_col in files else group_col
    key = meta.pop(path_col).map(_norm_rel)
    meta = meta.rename(columns={c: f"{c}_meta" for c in meta if c in files}).assign(_key=key)
    if meta["_key"].duplicated().any():
        raise ValueError(f"{csv} lists a path twice: {meta['_key'][meta['_key'].duplicated()][:3]}")
    keys = files["relpath"].map(_norm_rel)
    matched = keys.isin(set(meta["_key"]))
    if len(files) and not matched.any():
        how = "paths must be relative to the data folder (class/file.jpg)"
        raise ValueError(f"No path of {csv} matches a scanned file ({keys.iloc[0]!r}...): {how}.")
    unmatched = int((~meta["_key"].isin(set(keys))).sum())
    if unmatched or not matched.all():
        counts = f"{int((~matched).sum())} file(s) have no row, {unmatched} row(s) match no file"
        warnings.warn(f"attach_metadata: {counts} ({csv.name}).", stacklevel=2)
    out = files.assign(_key=keys.to_numpy()).merge(meta, on="_key", how="left")
    out[list(meta)] = out[list(meta)].fillna("")
    out["group"] = out[group_col] if group_col else out.get("group", "")
    return out.drop(columns=["_key"])


def _norm_rel(path: str) -> str:
    """A relative path as NFC posix text without a leading ``./``."""
    return re.sub(r"^(\./)+", "", unicodedata.normalize("NFC", path.strip().replace("\\", "/")))

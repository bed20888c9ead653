"""Sample folders for lessons and tests: the problem files users really have."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# Name -> (PIL mode, format, what is special about it).
_CONVERTED = {
    "photo.webp": ("RGB", "WEBP", "WEBP (skipped silently by Keras)"),
    "logo.png": ("RGBA", "PNG", "RGBA PNG (alpha dropped silently by Keras)"),
    "print.jpg": ("CMYK", "JPEG", "CMYK JPEG"),
    "scan.png": ("I;16", "PNG", "16-bit grayscale PNG"),
    "gray.png": ("L", "PNG", "8-bit grayscale PNG"),
}


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_problem_files(folder: Path, image: np.ndarray, label: str = "real") -> dict[str, str]:
    """Write a file of each troublesome kind from ``image`` in ``folder/label/``; name -> what."""
    target = Path(folder) / label
    target.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image)
    jpeg = _encode(pil, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was held rotated by 90 degrees.
    rotated = _encode(pil, "JPEG", quality=90, exif=exif)
    files = {
        "good.jpg": (jpeg, "a valid JPEG"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "a JPEG cut in half (interrupted copy)"),
        "empty.jpg": (b"", "a zero-byte file"),
        "notes.jpg": (b"This is a text file with a .jpg name.\n", "text named .jpg"),
        "rotated.jpg": (rotated, "JPEG with an EXIF orientation tag (ignored by Keras)"),
    }
    for name, (mode, fmt, what) in _CONVERTED.items():
        gray16 = Image.fromarray(np.asarray(pil.convert("L"), dtype=np.uint16) * 257)
        files[name] = (_encode(gray16 if mode == "I;16" else pil.convert(mode), fmt), what)
    for name, (data, _) in files.items():
        (target / name).write_bytes(data)
    return {name: what for name, (_, what) in files.items()}


def make_user_style_dataset(
    demo_dir: Path, out_dir: Path, per_class: int | None = None
) -> dict[str, int]:
    """A three-class dataset (real, print, screen; ``per_class`` images at most) from a demo
    dataset, laid out as users' folders are (nested folders, mixed formats, unusable and system
    files) in a new ``out_dir``; the files written per class."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder.")
    meta = pd.read_csv(Path(demo_dir) / "metadata.csv")
    formats = [("JPEG", ".JPG"), ("PNG", ".png"), ("WEBP", ".webp"), ("JPEG", ".jpeg")]
    written = {}
    for cls, rows in meta.groupby(meta["attack_type"].replace({"none": "real"})):
        for i, path in enumerate(rows["path"][:per_class]):
            fmt, ext = formats[i % len(formats)]
            folder = out_dir / cls / f"session_{i % 3}" / ("day_b" if i % 2 else "day_a")
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(Path(demo_dir) / path) as im:
                im.convert("RGB").save(folder / f"IMG_{i:04d}{ext}", fmt)
        target = out_dir / cls
        (target / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        data = next(target.rglob("*.JPG")).read_bytes()
        (target / "broken_copy.jpg").write_bytes(data[: len(data) // 3])
        (target / "readme.jpg").write_text("not a picture\n")
        written[cls] = sum(1 for f in target.rglob("*") if f.is_file())
    return written

"""Small sample files for lessons and tests: a folder of the problem files users really have."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def write_problem_files(folder: Path, image: np.ndarray, label: str = "real") -> dict[str, str]:
    """Write one file of each troublesome kind into ``folder/label/``.

    Args:
        folder: a new folder (created); nothing outside it is touched.
        image: an RGB uint8 image the files are made from.
        label: the class subfolder to write into.

    Returns:
        File name -> what is special about it.
    """
    target = Path(folder) / label
    target.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image)
    jpeg = io.BytesIO()
    pil.save(jpeg, "JPEG", quality=90)
    data = jpeg.getvalue()
    kinds = {}

    def put(name: str, payload: bytes, what: str) -> None:
        (target / name).write_bytes(payload)
        kinds[name] = what

    put("good.jpg", data, "a valid JPEG")
    put("truncated.jpg", data[: len(data) // 2], "a JPEG cut in half (interrupted copy)")
    put("empty.jpg", b"", "a zero-byte file")
    put("notes.jpg", b"This is a text file with a .jpg name.\n", "text named .jpg")
    for name, mode, fmt, what in [
        ("photo.webp", "RGB", "WEBP", "WEBP (skipped silently by Keras)"),
        ("logo.png", "RGBA", "PNG", "RGBA PNG (alpha dropped silently by Keras)"),
        ("print.jpg", "CMYK", "JPEG", "CMYK JPEG"),
        ("scan.png", "I;16", "PNG", "16-bit grayscale PNG"),
        ("gray.png", "L", "PNG", "8-bit grayscale PNG"),
    ]:
        buffer = io.BytesIO()
        if mode == "I;16":
            gray = np.asarray(pil.convert("L"), dtype=np.uint16) * 257
            Image.fromarray(gray).save(buffer, fmt)
        else:
            pil.convert(mode).save(buffer, fmt)
        put(name, buffer.getvalue(), what)
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was held rotated by 90 degrees.
    pil.save(rotated, "JPEG", quality=90, exif=exif)
    put("rotated.jpg", rotated.getvalue(), "JPEG with an EXIF orientation tag (ignored by Keras)")
    return kinds


def make_user_style_dataset(
    demo_dir: Path, out_dir: Path, per_class: int | None = None
) -> dict[str, int]:
    """A three-class dataset laid out the way users' folders really are, from a demo dataset.

    Classes ``real``, ``print`` and ``screen`` come from the demo's attack types; the files
    are spread over nested folders, re-encoded in mixed formats (JPEG with upper-case
    extensions, PNG, WEBP) and joined by a few unusable files (truncated, text named
    ``.jpg``, empty) and system files, so that the course's checks have work to do.

    Args:
        demo_dir: a folder written by ``helpers.demo_data.generate`` (with metadata.csv).
        out_dir: a new folder; refused if it exists and is not empty.
        per_class: the most images per class (None: all).

    Returns:
        Files written per class folder (bad files included).
    """
    import pandas as pd

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder.")
    meta = pd.read_csv(Path(demo_dir) / "metadata.csv")
    meta["cls"] = meta["attack_type"].replace({"none": "real"})
    written: dict[str, int] = {}
    formats = [("JPEG", ".JPG"), ("PNG", ".png"), ("WEBP", ".webp"), ("JPEG", ".jpeg")]
    for cls, rows in meta.groupby("cls"):
        rows = rows.head(per_class) if per_class else rows
        for i, row in enumerate(rows.itertuples()):
            fmt, ext = formats[i % len(formats)]
            folder = out_dir / cls / f"session_{i % 3}" / ("day_b" if i % 2 else "day_a")
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(Path(demo_dir) / row.path) as im:
                im.convert("RGB").save(folder / f"IMG_{i:04d}{ext}", fmt)
        target = out_dir / cls
        (target / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        data = (next(target.rglob("*.JPG"))).read_bytes()
        (target / "broken_copy.jpg").write_bytes(data[: len(data) // 3])
        (target / "readme.jpg").write_text("not a picture\n")
        written[cls] = sum(1 for f in target.rglob("*") if f.is_file())
    return written

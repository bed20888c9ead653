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

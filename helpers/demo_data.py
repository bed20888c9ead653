"""A deterministic, offline demo dataset for binary anti-spoofing (real versus fake).

Reals are random views of disjoint tiles of the photographs in the scikit-image, scikit-learn
and matplotlib wheels; fakes are views recaptured from a simulated screen (moiré, glare,
reflection) or print (CMYK halftone), at an angle. Both pass through the same :func:`camera`,
with device and date independent of the class unless ``bias="device"`` or ``"date"``.
Folder ``out_root/<dataset_name(...)>/``: ``real/*.jpg``, ``fake/*.jpg``, ``metadata.csv``,
``options.json``; same options, same bytes. CLI: ``make data`` (``python -m helpers.demo_data``)."""

import argparse
import concurrent.futures
import csv
import datetime as dt
import functools
import io
import json
import multiprocessing
import os
import shutil
import sys
import threading
import uuid
from collections import namedtuple
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from helpers.config import DATA_DIR, PROFILE_ENV, PROFILES, project_path, resolve_profile

GENERATOR_VERSION = "2"
DEFAULT_PER_CLASS: int = PROFILES["full"]["demo_per_class"]
DEFAULT_IMAGE_SIZE: int = PROFILES["full"]["demo_image_size"]
BIASES = ("device", "date")
METADATA_COLUMNS = tuple("path label attack_type source device capture_date jpeg_quality".split())
# Capture dates; with bias="date", reals are recent with high JPEG quality, fakes old and low.
DATE_RANGE = (dt.date(2022, 1, 1), dt.date(2024, 12, 31))
DATE_BIAS = {
    "real": ((dt.date(2024, 7, 1), dt.date(2024, 12, 31)), (90, 95)),
    "fake": ((dt.date(2022, 1, 1), dt.date(2022, 6, 30)), (70, 80)),
}


# A capture device's signature: Gaussian read noise (full scale), shot noise (variance per
# unit of signal), colour cast (R, G, B gains), vignetting (darkening at the corners, as a
# fraction) and JPEG quality range (inclusive).
Device = namedtuple("Device", "name read_noise shot_noise cast vignette quality")
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("phone_a", 0.006, 0.0004, (1.02, 1.00, 0.97), 0.10, (86, 95)),
    Device("phone_b", 0.009, 0.0006, (0.98, 1.00, 1.03), 0.16, (82, 93)),
    Device("webcam", 0.014, 0.0010, (1.01, 1.02, 0.98), 0.24, (80, 90)),
    Device("tablet", 0.010, 0.0007, (1.04, 1.00, 0.95), 0.20, (84, 94)),
    Device("phone_c", 0.005, 0.0003, (1.00, 0.99, 1.01), 0.08, (88, 95)),
    Device("laptop", 0.016, 0.0012, (1.03, 1.00, 0.93), 0.30, (80, 88)),
)}  # fmt: skip
# With bias="device" every fake comes from this device, whose signature is exaggerated.
BIASED_DEVICE = Device("tablet", 0.022, 0.0016, (1.10, 1.00, 0.86), 0.42, (84, 94))
_NO_FLIP = ("page", "text")  # Groups showing text are never mirrored.
# Gray photographs become RGB with these light tints (R, G, B gains).
_TINTS = {
    "camera": (1.00, 0.98, 0.94), "moon": (0.95, 0.97, 1.00), "coins": (1.00, 0.96, 0.88),
    "page": (1.00, 0.98, 0.93), "text": (0.97, 0.98, 1.00), "brick": (1.00, 0.93, 0.86),
    "grass": (0.92, 1.00, 0.90), "gravel": (0.98, 0.98, 0.96), "cell": (0.96, 0.94, 1.00),
}  # fmt: skip
_TEXTURES = ("brick", "grass", "gravel")  # Cut 2 x 2 only, so textures stay a small share.
_DETAIL = 6.0  # Tiles and views show a scene: half their 4 x 4 cells vary this much (std).


# Sources and views.
def _detail(image: np.ndarray) -> float:
    """How much of an image shows detail: the median std (0-255) of its 4 x 4 cells (green)."""
    g = image[::3, ::3, 1].astype(np.float32)
    k0, k1 = g.shape[0] // 4, g.shape[1] // 4
    if not k0 or not k1:  # Too small for cells.
        return float(g.std())
    return float(np.median(g[: 4 * k0, : 4 * k1].reshape(4, k0, 4, k1).std(axis=(1, 3))))


def _tiles(name: str, img: np.ndarray, grid: int = 3) -> dict[str, np.ndarray]:
    """The detailed tiles (source groups) of a photograph: at most ``grid`` per side, 150+ px."""
    ys, xs = (np.linspace(0, n, min(max(n // 150, 1), grid) + 1).astype(int) for n in img.shape[:2])
    cells = [(i, j) for i in range(len(ys) - 1) for j in range(len(xs) - 1)]
    tiles = {f"{name}-r{i}c{j}": img[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i, j in cells}
    return {k: t for k, t in tiles.items() if _detail(t) >= _DETAIL}


@functools.cache
def source_images() -> dict[str, np.ndarray]:
    """Source group → RGB uint8 photograph tile (read-only; cached, do not modify), by name."""
    import matplotlib
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    names = "astronaut chelsea coffee hubble_deep_field immunohistochemistry rocket".split()
    photos = {n.replace("_", "-"): getattr(skd, n)()[..., :3] for n in names}
    photos["retina"] = skd.retina()[212:-212, 212:-212, :3]  # The disc's inner square: no black.
    samples = load_sample_images()
    photos |= {Path(p).stem: img for p, img in zip(samples.filenames, samples.images)}
    hopper = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    photos["grace-hopper"] = np.asarray(Image.open(hopper).convert("RGB"))
    # The stereo pair shows one scene: the top of one view and the bottom of the other are
    # disjoint parts of it, so their tiles share no content.
    left, right, _ = skd.stereo_motorcycle()
    mid = left.shape[0] // 2
    photos |= {"motorcycle-top": left[:mid], "motorcycle-bottom": right[mid:]}
    for name, tint in _TINTS.items():
        gray = getattr(skd, name)().astype(np.float32)[..., None]
        photos[name] = np.clip(gray * np.asarray(tint, np.float32) + 0.5, 0, 255).astype(np.uint8)
    groups: dict[str, np.ndarray] = {}
    for name, img in photos.items():
        groups |= _tiles(name, img, 2 if name in _TEXTURES else 3)
    out = {k: np.ascontiguousarray(groups[k], dtype=np.uint8) for k in sorted(groups)}
    for arr in out.values():
        arr.flags.writeable = False
    return out


def make_view(image: np.ndarray, rng: np.random.Generator, size: int, flip=True) -> np.ndarray:
    """A random view at ``size`` px: a square crop, turned up to 8°, maybe mirrored, relit."""
    h, w = image.shape[:2]
    for _ in range(8):  # A view shows a scene: a crop mostly flat (sky, wall) is drawn again.
        angle = rng.uniform(-8.0, 8.0)
        reach = abs(np.cos(np.deg2rad(angle))) + abs(np.sin(np.deg2rad(angle)))  # Rotated extent.
        side = min(min(h, w) * rng.uniform(0.35, 1.0), min(h, w) / reach)
        win = min(int(np.ceil(side * reach)), h, w)
        y, x = int(rng.integers(0, h - win + 1)), int(rng.integers(0, w - win + 1))
        if _detail(image[y : y + win, x : x + win]) >= _DETAIL:
            break
    pil = Image.fromarray(np.ascontiguousarray(image[y : y + win, x : x + win, :3]))
    pil = pil.rotate(angle, Image.Resampling.BICUBIC)
    box = ((win - side) / 2, (win - side) / 2, (win + side) / 2, (win + side) / 2)
    pil = pil.resize((size, size), Image.Resampling.LANCZOS, box=box)
    if rng.random() < 0.5 and flip:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain, gamma = 2.0 ** rng.uniform(-0.5, 0.4), rng.uniform(0.8, 1.25)
    lut = np.clip(gain * (np.arange(256) / 255.0) ** gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(pil.point(list(lut) * 3))


# Image helpers.
def _to_float(image: np.ndarray) -> np.ndarray:
    """An image as float32 in [0, 1]."""
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def _resize(image: np.ndarray, size: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Resize an RGB image (uint8, or float per channel in PIL's mode F) to a square."""
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((size, size), resample))
    chans = [Image.fromarray(image[..., c]).resize((size, size), resample) for c in range(3)]
    return np.stack([np.asarray(c) for c in chans], axis=-1)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the spatial axes of an image or of one plane."""
    sigmas = (sigma, sigma, 0)[: image.ndim]
    return ndimage.gaussian_filter(image, sigma=sigmas, mode="reflect", truncate=3.0)


def _blob(n: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    """A soft Gaussian blob (peak 1) on an n x n grid, as an (n, n, 1) array."""
    t = np.arange(n, dtype=np.float32)
    gy, gx = (np.exp(-0.5 * ((t - c) / sigma) ** 2) for c in (cy, cx))
    return (gy[:, None] * gx[None, :])[..., None]


def _screen_blend(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Add light the way a reflection does: 1 - (1 - a)(1 - b)."""
    return 1.0 - (1.0 - base) * (1.0 - np.clip(light, 0.0, 1.0))


def _pose(n: int, rng: np.random.Generator, scale: float, degrees: float, tilt: float):
    """Where an n x n camera's pixel centres fall on a display or print turned up to ``degrees``
    and tilted up to ``tilt``, from its middle, in its pixels (``scale`` per camera pixel)."""
    theta = np.deg2rad(rng.uniform(-degrees, degrees))
    persp = (rng.uniform(-tilt, tilt, size=2) * 2 / n).astype(np.float32)
    t = (np.arange(n, dtype=np.float32) + 0.5 - n / 2).astype(np.float32)
    u, v = t[None, :], t[:, None]
    w = 1.0 + persp[0] * u + persp[1] * v
    cos, sin = np.float32(np.cos(theta) * scale), np.float32(np.sin(theta) * scale)
    return (cos * u - sin * v) / w, (sin * u + cos * v) / w


# Screen attack.
_SCREEN_OPTICS = (0.15, 0.5)  # Lens blur range (Gaussian sigma, camera pixels).
_APERTURE = 0.75  # Light-sensitive width of a camera pixel, as a fraction of its pitch.


def _filtered_profile(profile: np.ndarray, coords, centre: float, mtf: np.ndarray) -> np.ndarray:
    """An even, period-1 ``profile`` sampled on [-0.5, 0.5): its cosine series, harmonic h
    damped by ``mtf[h]``, at ``coords`` shifted by ``centre``, divided by its mean."""
    d = np.arange(profile.size) / profile.size - 0.5
    h = np.arange(mtf.size)[:, None]
    coeffs = 2.0 * (profile[None, :] * np.cos(2 * np.pi * h * d[None, :])).mean(axis=1)
    coeffs[0] /= 2.0
    weights = (coeffs * mtf).astype(np.float32)
    last = int(np.nonzero(np.abs(weights) > 1e-4)[0].max(initial=0))
    c1 = np.cos(np.float32(2 * np.pi) * (coords - np.float32(centre)))
    out = np.full(coords.shape, weights[0], np.float32)
    # Chebyshev recurrence cos(h x) = 2 cos(x) cos((h-1) x) - cos((h-2) x): one cosine only.
    prev, cur = np.ones_like(c1), c1
    for h in range(1, last + 1):
        out += weights[h] * cur
        prev, cur = cur, 2 * c1 * cur - prev
    return out / np.float32(coeffs[0])


def _display_look(img: np.ndarray, rng: np.random.Generator, reflection) -> np.ndarray:
    """Display tone (black level, gamma, bluish white), a glare blob and a faint reflection."""
    n = img.shape[0]
    black = rng.uniform(0.02, 0.07)
    img = black + (1 - black) * np.clip(img, 0, 1) ** rng.uniform(0.8, 1.2)
    white = [rng.uniform(0.86, 0.97), rng.uniform(0.96, 1.02), rng.uniform(1.03, 1.14)]
    img = img * np.array(white, np.float32)
    glare = _blob(n, rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.15, 0.45) * n)
    img = _screen_blend(img, glare * rng.uniform(0.04, 0.25))
    if reflection is None:
        sources = list(source_images().values())
        reflection = make_view(sources[int(rng.integers(len(sources)))], rng, n)
    # A strong blur, cheaply: Gaussian at a quarter resolution, then bicubic upsampling.
    small = _resize(_to_float(reflection), max(4, n // 4), Image.Resampling.BOX)
    refl = _resize(_blur(small, rng.uniform(0.02, 0.05) * n / 4), n, Image.Resampling.BICUBIC)
    img = _screen_blend(img, refl * rng.uniform(0.04, 0.12))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def simulate_screen(view: np.ndarray, rng: np.random.Generator, reflection=None) -> np.ndarray:
    """Show ``view`` on an RGB-stripe display, with a ``reflection``, and photograph it."""
    n = view.shape[0]
    pitch = rng.uniform(0.75, 2.2)  # Camera pixels per display pixel.
    xs, ys = _pose(n, rng, 1.0 / pitch, 12.0, 0.12)
    optics = rng.uniform(*_SCREEN_OPTICS)
    # The display shows the whole view and the camera frames its central part; each camera
    # pixel sees the display pixel under its centre (displays are pixelated).
    m = int(np.ceil(2 * (float(max(np.abs(xs).max(), np.abs(ys).max())) + 1.0)))
    content = _to_float(_resize(view, m))
    xs, ys = xs + m / 2, ys + m / 2
    pix = content[np.clip(ys.astype(np.int32), 0, m - 1), np.clip(xs.astype(np.int32), 0, m - 1)]
    pix = _blur(pix, optics)
    # Sub-pixel stripes and black rows: their harmonics (h / pitch cycles per camera pixel)
    # are damped by the optics and the pixel aperture; those above Nyquist alias into moiré.
    grid = np.arange(2048) / 2048 - 0.5
    half_width = rng.uniform(0.12, 1 / 6)
    stripe = np.where(np.abs(grid) < half_width, 0.5 + 0.5 * np.cos(np.pi * grid / half_width), 0)
    row_fill = rng.uniform(0.7, 0.9)
    row = np.clip((row_fill / 2 - np.abs(grid)) * 8.0 + 0.5, 0.0, 1.0)
    freq = np.arange(9) / pitch  # Harmonics 0..8.
    mtf = np.exp(-2 * np.pi**2 * optics**2 * freq**2) * np.sinc(_APERTURE * freq)
    across, along = (ys, xs) if rng.random() < 0.25 else (xs, ys)  # Portrait: stripes turn.
    order = (2, 1, 0) if rng.random() < 0.3 else (0, 1, 2)  # BGR panels exist too.
    stripes = [_filtered_profile(stripe, across, (order[c] + 0.5) / 3, mtf) for c in range(3)]
    img = pix * np.stack(stripes, axis=-1) * _filtered_profile(row, along, 0.5, mtf)[..., None]
    return _display_look(img, rng, reflection)


# Print attack.
# Reflectance (R, G, B) of cyan, magenta, yellow and black ink: impure inks shrink the gamut.
_INKS = np.array(
    [[0.12, 0.62, 0.90], [0.88, 0.16, 0.55], [0.95, 0.90, 0.12], [0.14, 0.13, 0.13]], np.float32
)
_INK_ANGLES = np.deg2rad([15.0, 75.0, 0.0, 45.0])


def _dot_screen(n: int, period: float, angle: float, phase: tuple[float, float]) -> np.ndarray:
    """A halftone spot function in [0, 1] (1 at dot centres) on an n x n grid."""
    # cos(a·x + b·y) = cos(ax)cos(by) - sin(ax)sin(by): separable, so no 2-D cosines.
    t = np.arange(n, dtype=np.float32)
    f = 2 * np.pi / period
    ca, sa = np.cos(angle) * f, np.sin(angle) * f
    total = np.zeros((n, n), np.float32)
    for ax, ay, ph in ((ca, sa, phase[0]), (-sa, ca, phase[1])):
        gx, gy = ax * t + ph, ay * t
        total += np.cos(gx)[None, :] * np.cos(gy)[:, None]
        total -= np.sin(gx)[None, :] * np.sin(gy)[:, None]
    return 0.5 + 0.25 * total


def simulate_print(view: np.ndarray, rng: np.random.Generator, supersample: int = 2) -> np.ndarray:
    """Print ``view`` in CMYK halftone and photograph it at an angle; float RGB in [0, 1]."""
    n, k = view.shape[0], supersample
    big = _to_float(_resize(view, n * k, Image.Resampling.BICUBIC))
    # Separate inks: CMY from RGB, a share of their common part (grey) printed in black.
    cmy = [1.0 - np.clip(big[..., c], 0.0, 1.0) for c in range(3)]
    key = np.minimum(np.minimum(cmy[0], cmy[1]), cmy[2]) * np.float32(rng.uniform(0.5, 0.9))
    density = np.float32(rng.uniform(0.75, 0.92))  # Inks never reach full density.
    scale = density / np.maximum(1.0 - key, np.float32(1e-3))
    cover = [(x - key) * scale for x in cmy] + [key * density]
    period = rng.uniform(1.8, 4.0) * k
    base = np.deg2rad(rng.uniform(0.0, 90.0))
    paper = [rng.uniform(0.90, 0.97), rng.uniform(0.88, 0.95), rng.uniform(0.76, 0.87)]
    planes = [np.full((n * k, n * k), p, np.float32) for p in paper]
    inv_edge = np.float32(1 / 0.12)  # Soft dot edges, against aliasing of the sub-samples.
    for i in range(4):
        spot = _dot_screen(n * k, period, base + _INK_ANGLES[i], tuple(rng.uniform(0, 6.3, 2)))
        ink = np.clip((cover[i] - 1.0 + spot) * inv_edge + 0.5, 0.0, 1.0)
        for c in range(3):
            planes[c] *= 1.0 - ink * np.float32(1.0 - _INKS[i, c])
    # The camera sees the sheet turned and tilted (zoomed in to stay on it), integrating the
    # dots over its pixels; ink spread and optics blur them a little.
    xs, ys = _pose(n * k, rng, 1.0, 8.0, 0.08)
    fit = (n * k / 2 - 1) / max(float(np.abs(xs).max()), float(np.abs(ys).max()), n * k / 2 - 1)
    iy, ix = (np.rint(c * fit + (n * k - 1) / 2).astype(np.intp) for c in (ys, xs))
    planes = [p[iy, ix] for p in planes]  # Sub-pixel samples: nearest is fine.
    sigma = rng.uniform(0.4, 0.75) * k
    blocks = [_blur(p, sigma).reshape(n, k, n, k).swapaxes(1, 2).reshape(n, n, -1) for p in planes]
    img = np.stack([b.sum(axis=-1) * np.float32(1.0 / k**2) for b in blocks], axis=-1)
    if rng.random() < 0.5:
        sheen = _blob(n, rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.2, 0.5) * n)
        img = _screen_blend(img, sheen * rng.uniform(0.05, 0.18))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# Camera (both classes).
def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode an RGB image (uint8 or float in [0, 1]) as baseline 4:2:0 JPEG, reproducibly."""
    pixels = (np.clip(_to_float(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=int(quality), subsampling=2, optimize=False)
    return buf.getvalue()


def camera(image: np.ndarray, rng: np.random.Generator, device: str | Device) -> np.ndarray:
    """Photograph ``image`` with ``device`` (same steps for reals and fakes); float RGB."""
    dev = DEVICES[device] if isinstance(device, str) else device
    img = _to_float(image)
    gains = np.asarray(dev.cast, np.float32) * np.exp(rng.normal(0.0, 0.03, 3)).astype(np.float32)
    img = img * (gains * np.float32(2.0 ** rng.uniform(-0.4, 0.3)))
    yy, xx = ((np.arange(k, dtype=np.float32) - (k - 1) / 2) / (k / 2) for k in img.shape[:2])
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2
    img = img * (1.0 - dev.vignette * rng.uniform(0.8, 1.2) * r2)[..., None]
    amount = rng.uniform(-1.0, 1.0)
    if amount < 0:
        img = _blur(img, -amount * 0.7)
    else:
        img = img + amount * 0.8 * (img - _blur(img, 1.0))
    img = np.clip(img, 0.0, 1.0)
    sigma = np.sqrt(dev.shot_noise * img + dev.read_noise**2)
    img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# Options, names and the plan.
_DEFAULTS = {
    "per_class": DEFAULT_PER_CLASS, "image_size": DEFAULT_IMAGE_SIZE, "fake_ratio": 0.5,
    "print_share": 0.3, "bias": None, "seed": 0,
}  # fmt: skip
_NAME_TAGS = {
    "per_class": "n{}", "image_size": "s{}", "fake_ratio": "fake{:g}",
    "print_share": "print{:g}", "bias": "bias-{}", "seed": "seed{}",
}  # fmt: skip


def _options(per_class, image_size, fake_ratio, print_share, bias, seed) -> dict:
    """Validate the options; return them as a plain dict (a ValueError names the culprit)."""

    def number(x: object, integer: bool = False) -> bool:
        kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        return isinstance(x, kinds) and not isinstance(x, bool)

    lo, hi = 32, 1024  # Image sizes.
    checks = (
        ("per_class", per_class, number(per_class, True) and per_class >= 1, "an integer >= 1"),
        ("image_size", image_size, number(image_size, True) and lo <= image_size <= hi,
         f"an integer from {lo} to {hi}"),
        ("fake_ratio", fake_ratio, number(fake_ratio) and 0 < fake_ratio < 1, "a number in (0, 1)"),
        ("print_share", print_share, number(print_share) and 0 <= print_share <= 1,
         "a number in [0, 1]"),
        ("bias", bias, bias is None or bias in BIASES, "None, 'device' or 'date'"),
        ("seed", seed, number(seed, True) and seed >= 0, "an integer >= 0"),
    )  # fmt: skip
    for name, value, ok, what in checks:
        if not ok:
            raise ValueError(f"{name} must be {what}, got {value!r}.")
    opts = {
        "per_class": int(per_class), "image_size": int(image_size),
        "fake_ratio": float(fake_ratio), "print_share": float(print_share),
        "bias": bias, "seed": int(seed),
    }  # fmt: skip
    n_fake = _counts(opts)["fake"]
    if not 1 <= n_fake <= 2 * opts["per_class"] - 1:
        raise ValueError(
            f"fake_ratio={fake_ratio!r} gives {n_fake} fakes out of {2 * per_class} images; "
            "fake_ratio must leave at least one real and one fake (raise per_class)."
        )
    return opts


def _counts(opts: dict) -> dict[str, int]:
    """Number of reals, fakes, screen and print attacks (rounded half up)."""
    total = 2 * opts["per_class"]
    n_fake = int(np.floor(total * opts["fake_ratio"] + 0.5))
    n_print = int(np.floor(n_fake * opts["print_share"] + 0.5))
    return {"real": total - n_fake, "fake": n_fake, "screen": n_fake - n_print, "print": n_print}


def dataset_name(**options) -> str:
    """``demo``, or ``demo-`` plus the options that differ from their defaults: ``demo-n48``."""
    for key in ("out_root", "progress", "workers"):
        options.pop(key, None)
    opts = _options(**{**_DEFAULTS, **options})
    tags = [fmt.format(opts[k]) for k, fmt in _NAME_TAGS.items() if opts[k] != _DEFAULTS[k]]
    return "-".join(["demo", *tags])


def _plan(opts: dict) -> list[dict]:
    """Every image's label, attack, source, device, date and JPEG quality, in file order."""
    counts, groups = _counts(opts), list(source_images())
    rng = np.random.default_rng([opts["seed"], 7_777_777])
    attacks = ["print"] * counts["print"] + ["screen"] * counts["screen"]
    attacks = [attacks[i] for i in rng.permutation(len(attacks))]
    plan: list[dict] = []
    # With bias="device", reals never come from the fakes' device.
    devices = [d for d in DEVICES if opts["bias"] != "device" or d != BIASED_DEVICE.name]
    for label in ("real", "fake"):
        n = counts[label]
        # Each class cycles through all groups in shuffled rounds, so groups are balanced.
        order = np.concatenate([rng.permutation(len(groups)) for _ in range(0, n, len(groups))])
        for i in range(n):
            on_tablet = opts["bias"] == "device" and label == "fake"  # Every fake, when biased.
            device = "tablet" if on_tablet else str(rng.choice(devices))
            if opts["bias"] == "date":
                span, (q_lo, q_hi) = DATE_BIAS[label]
            else:
                span, (q_lo, q_hi) = DATE_RANGE, DEVICES[device].quality
            day = int(rng.integers(0, (span[1] - span[0]).days + 1))
            plan.append({
                "path": f"{label}/{label}_{i:05d}.jpg", "label": label,
                "attack_type": attacks[i] if label == "fake" else "none",
                "source": groups[int(order[i])], "device": device,
                "capture_date": (span[0] + dt.timedelta(days=day)).isoformat(),
                "jpeg_quality": int(rng.integers(q_lo, q_hi + 1)), "index": i,
            })  # fmt: skip
    return plan


# Rendering and writing.
def render(record: dict, opts: dict) -> bytes:
    """Render one planned image to JPEG bytes (deterministic in the seed and the record)."""
    code = 0 if record["label"] == "real" else 1
    rng = np.random.default_rng([opts["seed"], code, record["index"]])
    source, size = record["source"], opts["image_size"]
    view = make_view(source_images()[source], rng, size, not source.startswith(_NO_FLIP))
    attack = {"screen": simulate_screen, "print": simulate_print}.get(record["attack_type"])
    image = attack(view, rng) if attack else view
    device = BIASED_DEVICE if opts["bias"] == "device" and code == 1 else record["device"]
    return encode_jpeg(camera(image, rng, device), record["jpeg_quality"])


def _render_all(plan: list[dict], opts: dict, workers: int):
    """Render the plan in order, in this process or in ``workers`` processes."""
    if workers <= 1:
        yield from map(render, plan, [opts] * len(plan))
        return
    fork = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        yield from pool.map(render, plan, [opts] * len(plan), chunksize=16)


def _options_record(opts: dict) -> dict:
    """What options.json holds: the options, the counts and the generator version."""
    return {**opts, "counts": _counts(opts), "generator_version": GENERATOR_VERSION}


def is_complete(folder: Path, opts: dict) -> bool:
    """Whether ``folder`` holds the dataset of ``opts``: same options.json, no file missing."""
    try:
        same = json.loads((folder / "options.json").read_text()) == _options_record(opts)
        with open(folder / "metadata.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    files_there = all(r.get("path") and (folder / r["path"]).is_file() for r in rows)
    return same and len(rows) == 2 * opts["per_class"] and files_there


def _write(tmp: Path, opts: dict, workers: int | None, progress: bool) -> None:
    """Write the images, metadata.csv and options.json into ``tmp`` (forking only when safe)."""
    plan = _plan(opts)
    if workers is None:  # Counted before tqdm starts its monitor thread.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        safe = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
        workers = 2 if len(plan) >= 200 and cores >= 2 and safe else 1
    (tmp / "real").mkdir(parents=True)
    (tmp / "fake").mkdir()
    rendered = tqdm(_render_all(plan, opts, workers), "demo data", len(plan), disable=not progress)
    for rec, data in zip(plan, rendered, strict=True):
        (tmp / rec["path"]).write_bytes(data)
    with open(tmp / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, METADATA_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(plan)
    text = json.dumps(_options_record(opts), indent=2, sort_keys=True) + "\n"
    (tmp / "options.json").write_text(text)


def generate(
    per_class: int = DEFAULT_PER_CLASS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    fake_ratio: float = 0.5,
    print_share: float = 0.3,
    bias: str | None = None,
    seed: int = 0,
    out_root: str | os.PathLike | None = DATA_DIR,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Generate the dataset into ``out_root / dataset_name(...)`` (or find it done); its folder.
    Written into a hidden sibling, then renamed; a folder with other content is kept."""
    opts = _options(per_class, image_size, fake_ratio, print_share, bias, seed)
    root = project_path(out_root, DATA_DIR)
    folder = root / dataset_name(**opts)
    if folder.exists():
        if is_complete(folder, opts):
            return folder
        if not folder.is_dir() or any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} is not the demo dataset of these options (other options.json or "
                "missing files); it is left untouched. Move it away or pass another out_root."
            )
        folder.rmdir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write(tmp, opts, workers, progress)
        try:
            tmp.rename(folder)
        except OSError:
            if not is_complete(folder, opts):  # Another run may have finished it meanwhile.
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a demo dataset and print its folder."""
    doc = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser("python -m helpers.demo_data", description=doc)
    add = parser.add_argument
    add("--profile", choices=sorted(PROFILES), help=f"sizes' profile (default: ${PROFILE_ENV})")
    for key, default in _DEFAULTS.items():
        kind, choices = (str, BIASES) if key == "bias" else (type(default), None)
        hint = "from --profile" if key in ("per_class", "image_size") else default
        add(f"--{key.replace('_', '-')}", type=kind, choices=choices, help=f"default: {hint}")
    add("--out-root", help="parent folder of the dataset (default: data/)")
    add("--workers", type=int, help="processes (default: auto)")
    add("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    profile = PROFILES[resolve_profile(args.pop("profile"))]
    sizes = {"per_class": profile["demo_per_class"], "image_size": profile["demo_image_size"]}
    options = {k: v for k, v in args.items() if k in _DEFAULTS and v is not None}
    options = {**_DEFAULTS, **sizes, **options}
    try:
        folder = project_path(args["out_root"], DATA_DIR) / dataset_name(**options)
        done = is_complete(folder, _options(**options))
        where = {"out_root": folder.parent, "workers": args["workers"]}
        folder = generate(**options, **where, progress=not args["quiet"])
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"already up to date: {folder}" if done else folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

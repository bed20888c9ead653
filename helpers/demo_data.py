"""A deterministic, offline demo dataset for binary anti-spoofing (real versus fake).

"Real" images are random views (crops, flips) of the real photographs that scikit-image
and scikit-learn ship in their wheels; nothing is downloaded. "Fake" images are views of
the same photographs passed through a simulated recapture:

- ``screen``: the view is shown on a display with an RGB sub-pixel stripe grid and
  re-photographed with a slight rotation, scale and perspective, which produces moiré;
  glare, a faint reflection of another scene, a gamma and bluish white-balance shift;
- ``print``: the view is printed with rotated CMYK halftone dot screens on yellowish
  paper with a reduced ink gamut, slightly blurred, sometimes with a paper sheen.

Both classes then pass through the same :func:`camera` (exposure, white-balance error,
vignetting, blur or sharpening, sensor noise, JPEG at a quality from the same range), with
a capture device and a capture date drawn independently of the class, unless a capture
bias is injected on purpose (``bias="device"`` or ``bias="date"``) for the pitfalls lesson.

Class counts: the dataset has ``2 * per_class`` images in all; ``fake_ratio`` of them are
fakes (rounded), the rest are reals, so ``fake_ratio=0.5`` gives ``per_class`` of each.
Of the fakes, ``print_share`` (rounded) are print attacks, the rest screen attacks.

Layout of ``out_root/<name>/`` (see :func:`dataset_name`)::

    real/real_00000.jpg ...   fake/fake_00000.jpg ...
    metadata.csv   path,label,attack_type,source,device,capture_date,jpeg_quality
    options.json   every option and the generator version

Same options give byte-identical files; a rerun with the same options returns at once.

CLI: ``python -m helpers.demo_data --per-class 48 --image-size 160 --bias device``.
"""

from __future__ import annotations

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from helpers.config import DATA_DIR, PROFILE_ENV, PROFILES, project_path, resolve_profile

GENERATOR_VERSION = "1"

DEFAULT_PER_CLASS: int = PROFILES["full"]["demo_per_class"]
DEFAULT_IMAGE_SIZE: int = PROFILES["full"]["demo_image_size"]
BIASES = ("device", "date")
METADATA_COLUMNS = (
    "path",
    "label",
    "attack_type",
    "source",
    "device",
    "capture_date",
    "jpeg_quality",
)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024

# Capture dates are drawn uniformly from this range when there is no date bias.
DATE_RANGE = (dt.date(2022, 1, 1), dt.date(2024, 12, 31))
# With bias="date": reals are recent and of high JPEG quality, fakes old and of low quality.
DATE_BIAS = {
    "real": ((dt.date(2024, 7, 1), dt.date(2024, 12, 31)), (90, 95)),
    "fake": ((dt.date(2022, 1, 1), dt.date(2022, 6, 30)), (70, 80)),
}


@dataclass(frozen=True)
class Device:
    """A simulated capture device: its signature on every image it takes."""

    name: str
    read_noise: float  # Gaussian read noise, in units of full scale.
    shot_noise: float  # Signal-dependent noise variance per unit of signal.
    cast: tuple[float, float, float]  # Per-channel colour gains (R, G, B).
    vignette: float  # Darkening at the corners, as a fraction.
    quality: tuple[int, int]  # JPEG quality range, inclusive.


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("phone_a", 0.006, 0.0004, (1.02, 1.00, 0.97), 0.10, (86, 95)),
        Device("phone_b", 0.009, 0.0006, (0.98, 1.00, 1.03), 0.16, (82, 93)),
        Device("webcam", 0.014, 0.0010, (1.01, 1.02, 0.98), 0.24, (80, 90)),
        Device("tablet", 0.010, 0.0007, (1.04, 1.00, 0.95), 0.20, (84, 94)),
    )
}
# With bias="device" every fake comes from this device, whose signature is exaggerated.
BIASED_DEVICE = Device("tablet", 0.022, 0.0016, (1.10, 1.00, 0.86), 0.42, (84, 94))

# Groups showing text are never mirrored.
_NO_FLIP = frozenset({"page", "text"})

# Gray photographs become RGB with these light tints (R, G, B gains).
_TINTS = {
    "camera": (1.00, 0.98, 0.94),
    "moon": (0.95, 0.97, 1.00),
    "coins": (1.00, 0.96, 0.88),
    "page": (1.00, 0.98, 0.93),
    "text": (0.97, 0.98, 1.00),
    "brick": (1.00, 0.93, 0.86),
    "grass": (0.92, 1.00, 0.90),
    "gravel": (0.98, 0.98, 0.96),
    "cell": (0.96, 0.94, 1.00),
}


# --------------------------------------------------------------------------------------
# Sources and views
# --------------------------------------------------------------------------------------


def _rgb(gray: np.ndarray, tint: tuple[float, float, float]) -> np.ndarray:
    """A grayscale uint8 image as a lightly tinted RGB uint8 image."""
    out = gray.astype(np.float32)[..., None] * np.asarray(tint, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _halves(name: str, img: np.ndarray, axis: int, labels: tuple[str, str]) -> dict:
    """Two non-overlapping halves of an image, each its own source group."""
    mid = img.shape[axis] // 2
    first, second = np.split(img, [mid], axis=axis)
    return {f"{name}-{labels[0]}": first, f"{name}-{labels[1]}": second}


@functools.lru_cache(maxsize=1)
def _load_sources() -> tuple[tuple[str, np.ndarray], ...]:
    """Load, convert and split every shipped photograph once per process."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    groups: dict[str, np.ndarray] = {}
    lr = ("left", "right")
    for name in (
        "astronaut",
        "chelsea",
        "coffee",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "rocket",
    ):
        groups.update(_halves(name.replace("_", "-"), getattr(skd, name)()[..., :3], 1, lr))
    samples = load_sample_images()
    for path, img in zip(samples.filenames, samples.images, strict=True):
        groups.update(_halves(Path(path).stem, img[..., :3], 1, lr))
    # The stereo pair shows one scene: the top of one view and the bottom of the other are
    # disjoint parts of it, so they make two groups without shared content.
    left, right, _ = skd.stereo_motorcycle()
    mid = left.shape[0] // 2
    groups["motorcycle-top"] = left[:mid]
    groups["motorcycle-bottom"] = right[mid:]
    for name in ("camera", "moon"):
        groups.update(_halves(name, _rgb(getattr(skd, name)(), _TINTS[name]), 1, lr))
    for name in ("coins", "page", "text", "brick", "grass", "gravel", "cell"):
        groups[name] = _rgb(getattr(skd, name)(), _TINTS[name])
    out = []
    for name in sorted(groups):
        arr = np.ascontiguousarray(groups[name], dtype=np.uint8)
        arr.flags.writeable = False
        out.append((name, arr))
    return tuple(out)


def source_images() -> dict[str, np.ndarray]:
    """Source group name → RGB uint8 photograph (read-only), sorted by name."""
    return dict(_load_sources())


def make_view(
    image: np.ndarray, rng: np.random.Generator, size: int, flip: bool = True
) -> np.ndarray:
    """A random square crop (60–100 % of the short side), maybe mirrored, at ``size`` px."""
    h, w = image.shape[:2]
    side = max(8, int(round(min(h, w) * rng.uniform(0.6, 1.0))))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = image[y : y + side, x : x + side]
    if rng.random() < 0.5 and flip:
        crop = crop[:, ::-1]
    pil = Image.fromarray(np.ascontiguousarray(crop[..., :3]))
    return np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS))


# --------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------


def _to_float(image: np.ndarray) -> np.ndarray:
    """An image as float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8, rounded and clipped."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(image: np.ndarray, size: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Resize an RGB image (uint8 or float in [0, 1]) to ``size`` x ``size`` with PIL."""
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((size, size), resample))
    chans = [
        np.asarray(Image.fromarray(image[..., c]).resize((size, size), resample))
        for c in range(image.shape[2])
    ]
    return np.stack(chans, axis=-1)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the two spatial axes."""
    if sigma <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)


def _blur2d(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one image plane."""
    return ndimage.gaussian_filter(plane, sigma=sigma, mode="reflect", truncate=3.0)


def _area_down(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample the first two axes by an integer factor, averaging factor x factor blocks."""
    out = sum(image[i::factor, j::factor] for i in range(factor) for j in range(factor))
    return out * np.float32(1.0 / factor**2)


def _soft_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A strong blur, cheaply: Gaussian at a quarter resolution, then bicubic upsampling."""
    n = image.shape[0]
    small = _resize(image.astype(np.float32), max(4, n // 4), Image.Resampling.BOX)
    return _resize(_blur(small, sigma / 4), n, Image.Resampling.BICUBIC)


def _blob(n: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    """A soft Gaussian blob (peak 1) on an n x n grid, as an (n, n, 1) array."""
    t = np.arange(n, dtype=np.float32)
    gy = np.exp(-0.5 * ((t - cy) / sigma) ** 2)
    gx = np.exp(-0.5 * ((t - cx) / sigma) ** 2)
    return (gy[:, None] * gx[None, :])[..., None]


def _screen_blend(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Add light the way a reflection does: 1 - (1 - a)(1 - b)."""
    return 1.0 - (1.0 - base) * (1.0 - np.clip(light, 0.0, 1.0))


# --------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------


def _periodic_coefficients(profile: np.ndarray, harmonics: int) -> np.ndarray:
    """Cosine Fourier coefficients a_0..a_H of an even, period-1 profile sampled on [-0.5, 0.5)."""
    d = np.arange(profile.size) / profile.size - 0.5
    h = np.arange(harmonics + 1)[:, None]
    coeffs = 2.0 * (profile[None, :] * np.cos(2 * np.pi * h * d[None, :])).mean(axis=1)
    coeffs[0] /= 2.0
    return coeffs


def _filtered_grid(
    coords: np.ndarray, centre: float, coeffs: np.ndarray, mtf: np.ndarray
) -> np.ndarray:
    """A period-1 profile, low-passed by ``mtf`` per harmonic, evaluated at ``coords``."""
    weights = (coeffs * mtf).astype(np.float32)
    last = int(np.nonzero(np.abs(weights) > 1e-4)[0].max(initial=0))
    c1 = np.cos(np.float32(2 * np.pi) * (coords - np.float32(centre)))
    out = np.full(coords.shape, weights[0], np.float32)
    # Chebyshev recurrence cos(h x) = 2 cos(x) cos((h-1) x) - cos((h-2) x): one cosine only.
    prev, cur = np.ones_like(c1), c1
    for h in range(1, last + 1):
        out += weights[h] * cur
        prev, cur = cur, 2 * c1 * cur - prev
    return out


# Range of the lens blur (Gaussian sigma, camera pixels) when re-photographing a screen.
_SCREEN_OPTICS = (0.15, 0.5)
# Width of a camera pixel's light-sensitive area, as a fraction of the pixel pitch.
_APERTURE = 0.75


def simulate_screen(
    view: np.ndarray,
    rng: np.random.Generator,
    reflection: np.ndarray | None = None,
) -> np.ndarray:
    """Show ``view`` on an RGB-stripe display and re-photograph it; float RGB in [0, 1].

    The display has a random pixel pitch (in camera pixels); the camera sees it with a
    slight rotation and perspective. The sub-pixel stripes and the black matrix between
    rows are low-passed analytically (Fourier series times the camera's optical blur and
    pixel-aperture transfer functions) and sampled at the camera's pixel centres, so that
    their frequencies above Nyquist alias into moiré exactly as in a real recapture.
    ``reflection`` (an RGB image of the same size) is faintly overlaid; without one, a
    view of a random source photograph is used.
    """
    n = view.shape[0]
    pitch = rng.uniform(0.85, 1.7)  # Camera pixels per display pixel.
    theta = np.deg2rad(rng.uniform(-7.0, 7.0))
    persp = rng.uniform(-0.12, 0.12, size=2) / n
    optics = rng.uniform(*_SCREEN_OPTICS)  # Gaussian blur of the lens, in camera pixels.
    # Camera pixel centres, centred, mapped onto the display (in display pixels).
    t = (np.arange(n, dtype=np.float32) + 0.5 - n / 2).astype(np.float32)
    u, v = t[None, :], t[:, None]
    w = 1.0 + persp[0] * u + persp[1] * v
    uu, vv = u / w, v / w
    cos, sin = np.cos(theta) / pitch, np.sin(theta) / pitch
    xs = cos * uu - sin * vv
    ys = sin * uu + cos * vv
    # The display shows the whole view; the camera frames its central part.
    half = float(max(np.abs(xs).max(), np.abs(ys).max())) + 1.0
    m = int(np.ceil(2 * half))
    content = _to_float(_resize(view, m))
    xs += m / 2
    ys += m / 2
    # Each camera pixel sees the display pixel under its centre (displays are pixelated).
    ix = np.clip(xs.astype(np.int32), 0, m - 1)
    iy = np.clip(ys.astype(np.int32), 0, m - 1)
    pix = content[iy, ix]
    pix = _blur(pix, optics)
    # Stripe and row profiles (period 1 display pixel), and the camera's transfer function
    # at each harmonic h (h / pitch cycles per camera pixel): Gaussian optics, box aperture.
    harmonics = 8
    grid = np.arange(2048) / 2048 - 0.5
    half_width = rng.uniform(0.12, 1 / 6)
    stripe = np.where(np.abs(grid) < half_width, 0.5 + 0.5 * np.cos(np.pi * grid / half_width), 0)
    row_fill = rng.uniform(0.7, 0.9)
    row = np.clip((row_fill / 2 - np.abs(grid)) * 8.0 + 0.5, 0.0, 1.0)
    freq = np.arange(harmonics + 1) / pitch
    mtf = np.exp(-2 * np.pi**2 * optics**2 * freq**2) * np.sinc(_APERTURE * freq)
    stripe_c, row_c = (
        _periodic_coefficients(stripe, harmonics),
        _periodic_coefficients(row, harmonics),
    )
    rows = _filtered_grid(ys, 0.5, row_c, mtf) / np.float32(row_c[0])
    img = np.empty_like(pix)
    for c in range(3):
        cols = _filtered_grid(xs, (c + 0.5) / 3, stripe_c, mtf) / np.float32(stripe_c[0])
        img[..., c] = pix[..., c] * cols * rows
    # Display tone: raised black level, gamma, bluish white point.
    black = rng.uniform(0.02, 0.07)
    img = black + (1 - black) * np.clip(img, 0, 1) ** rng.uniform(0.8, 1.2)
    img = img * np.array(
        [rng.uniform(0.86, 0.97), rng.uniform(0.96, 1.02), rng.uniform(1.03, 1.14)],
        np.float32,
    )
    # Glare: a soft bright blob; reflection: another scene, blurred, at low alpha.
    glare = _blob(n, rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.15, 0.45) * n)
    img = _screen_blend(img, glare * rng.uniform(0.04, 0.25))
    if reflection is None:
        sources = _load_sources()
        other = sources[int(rng.integers(len(sources)))][1]
        reflection = make_view(other, rng, n)
    refl = _soft_blur(_to_float(reflection), rng.uniform(0.02, 0.05) * n)
    img = _screen_blend(img, refl * rng.uniform(0.04, 0.12))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


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


# Reflectance of each ink at full coverage (R, G, B): impure inks shrink the gamut.
_INKS = np.array(
    [
        [0.12, 0.62, 0.90],  # Cyan.
        [0.88, 0.16, 0.55],  # Magenta.
        [0.95, 0.90, 0.12],  # Yellow.
        [0.14, 0.13, 0.13],  # Black.
    ],
    np.float32,
)
_INK_ANGLES = np.deg2rad([15.0, 75.0, 0.0, 45.0])


def simulate_print(view: np.ndarray, rng: np.random.Generator, supersample: int = 2) -> np.ndarray:
    """Print ``view`` with rotated CMYK dot screens on yellowish paper; float RGB in [0, 1].

    The dot period (2.0–3.4 camera pixels) and the screen angle are random; ink spread
    and the camera's optics blur the dots slightly; half of the prints get a paper sheen.
    """
    n = view.shape[0]
    k = supersample
    big = _to_float(_resize(view, n * k, Image.Resampling.BICUBIC))
    # Separate inks: CMY from RGB, a share of their common part (grey) printed in black.
    cmy = [1.0 - np.clip(big[..., c], 0.0, 1.0) for c in range(3)]
    key = np.minimum(np.minimum(cmy[0], cmy[1]), cmy[2]) * np.float32(rng.uniform(0.5, 0.9))
    density = np.float32(rng.uniform(0.75, 0.92))  # Inks never reach full density.
    scale = density / np.maximum(1.0 - key, np.float32(1e-3))
    cover = [(x - key) * scale for x in cmy] + [key * density]
    period = rng.uniform(2.0, 3.4) * k
    base = np.deg2rad(rng.uniform(0.0, 90.0))
    paper = [rng.uniform(0.90, 0.97), rng.uniform(0.88, 0.95), rng.uniform(0.76, 0.87)]
    planes = [np.full((n * k, n * k), p, np.float32) for p in paper]
    inv_edge = np.float32(1 / 0.12)  # Soft dot edges, against aliasing of the sub-samples.
    for i in range(4):
        spot = _dot_screen(n * k, period, base + _INK_ANGLES[i], tuple(rng.uniform(0, 6.3, 2)))
        ink = np.clip((cover[i] - 1.0 + spot) * inv_edge + 0.5, 0.0, 1.0)
        for c in range(3):
            planes[c] *= 1.0 - ink * np.float32(1.0 - _INKS[i, c])
    # The camera pixel integrates the dots; ink spread and optics blur them a little.
    sigma = rng.uniform(0.4, 0.75) * k
    img = np.stack([_area_down(_blur2d(p, sigma), k) for p in planes], axis=-1)
    if rng.random() < 0.5:
        sheen = _blob(n, rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.2, 0.5) * n)
        img = _screen_blend(img, sheen * rng.uniform(0.05, 0.18))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------
# Camera (both classes)
# --------------------------------------------------------------------------------------


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode an RGB image as baseline JPEG (4:2:0) with fixed, reproducible settings."""
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(_to_float(image))).save(
        buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False
    )
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an RGB uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def camera(
    image: np.ndarray,
    rng: np.random.Generator,
    device: str | Device,
    quality: int,
    encode: bool = True,
) -> bytes | np.ndarray:
    """Photograph ``image`` with ``device``: the same steps for reals and fakes.

    Exposure and white-balance error, the device's colour cast and vignetting, a mild
    blur or sharpening, shot and read noise, then JPEG at ``quality``. Returns the JPEG
    bytes, or with ``encode=False`` the float RGB image before compression.
    """
    dev = DEVICES[device] if isinstance(device, str) else device
    img = _to_float(image)
    n_h, n_w = img.shape[:2]
    gains = np.asarray(dev.cast, np.float32) * np.exp(rng.normal(0.0, 0.03, 3)).astype(np.float32)
    img = img * (gains * np.float32(2.0 ** rng.uniform(-0.4, 0.3)))
    yy = (np.arange(n_h, dtype=np.float32) - (n_h - 1) / 2) / (n_h / 2)
    xx = (np.arange(n_w, dtype=np.float32) - (n_w - 1) / 2) / (n_w / 2)
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
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return encode_jpeg(img, quality) if encode else img


def spectral_peakiness(image: np.ndarray) -> float:
    """How peaked an image's fine-detail spectrum is: high for moiré and halftone dots.

    For the gray image and the colour differences R - G and B - G, the ratio of the 99.9th
    percentile to the median Fourier magnitude at 0.08–0.5 cycles per pixel, leaving out
    the JPEG block frequencies (multiples of 1/8); the largest of the three. Photographs
    have smooth spectra; periodic patterns (sub-pixel grids, dot screens) give sharp peaks.
    """
    img = _to_float(np.asarray(image))
    n_h, n_w = img.shape[:2]
    win = (np.hanning(n_h)[:, None] * np.hanning(n_w)[None, :]).astype(np.float32)
    fy = np.abs(np.fft.fftfreq(n_h))[:, None]
    fx = np.abs(np.fft.fftfreq(n_w))[None, :]
    radius = np.sqrt(fx**2 + fy**2)

    def near_block(f: np.ndarray) -> np.ndarray:
        return np.abs(f * 8 - np.round(f * 8)) < 12 / min(n_h, n_w)

    keep = (radius >= 0.08) & (radius <= 0.5) & ~(near_block(fx) | near_block(fy))
    channels = (img.mean(axis=-1), img[..., 0] - img[..., 1], img[..., 2] - img[..., 1])
    scores = []
    for ch in channels:
        values = np.abs(np.fft.fft2((ch - ch.mean()) * win))[keep]
        scores.append(np.percentile(values, 99.9) / (np.median(values) + 1e-12))
    return float(max(scores))


# --------------------------------------------------------------------------------------
# Options, names and the plan
# --------------------------------------------------------------------------------------


def _options(
    per_class: int,
    image_size: int,
    fake_ratio: float,
    print_share: float,
    bias: str | None,
    seed: int,
) -> dict:
    """Validate the options; return them as a plain dict (ValueError names the culprit)."""

    def is_int(x: object) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    def is_num(x: object) -> bool:
        return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)

    if not is_int(per_class) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}.")
    if not is_int(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, "
            f"got {image_size!r}."
        )
    if not is_num(fake_ratio) or not 0.0 < fake_ratio < 1.0:
        raise ValueError(f"fake_ratio must be a number in (0, 1), got {fake_ratio!r}.")
    if not is_num(print_share) or not 0.0 <= print_share <= 1.0:
        raise ValueError(f"print_share must be a number in [0, 1], got {print_share!r}.")
    if bias is not None and bias not in BIASES:
        raise ValueError(f"bias must be None, 'device' or 'date', got {bias!r}.")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
    opts = {
        "per_class": int(per_class),
        "image_size": int(image_size),
        "fake_ratio": float(fake_ratio),
        "print_share": float(print_share),
        "bias": bias,
        "seed": int(seed),
    }
    n_fake = _counts(opts)["fake"]
    if not 1 <= n_fake <= 2 * opts["per_class"] - 1:
        raise ValueError(
            f"fake_ratio={fake_ratio!r} gives {n_fake} fakes out of {2 * per_class} images; "
            "fake_ratio must leave at least one real and one fake (raise per_class)."
        )
    return opts


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(np.floor(x + 0.5))


def _counts(opts: dict) -> dict[str, int]:
    """Number of reals, fakes, screen and print attacks of an option set."""
    total = 2 * opts["per_class"]
    n_fake = _round(total * opts["fake_ratio"])
    n_print = _round(n_fake * opts["print_share"])
    return {"real": total - n_fake, "fake": n_fake, "screen": n_fake - n_print, "print": n_print}


_DEFAULTS = {
    "per_class": DEFAULT_PER_CLASS,
    "image_size": DEFAULT_IMAGE_SIZE,
    "fake_ratio": 0.5,
    "print_share": 0.3,
    "bias": None,
    "seed": 0,
}


def dataset_name(
    per_class: int = DEFAULT_PER_CLASS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    fake_ratio: float = 0.5,
    print_share: float = 0.3,
    bias: str | None = None,
    seed: int = 0,
    out_root: object = None,
    progress: object = None,
    workers: object = None,
) -> str:
    """The folder name of an option set: ``demo``, or ``demo-`` plus what differs.

    For example ``demo-n48-s160``, ``demo-bias-device``, ``demo-fake0.05-seed3``.
    ``out_root``, ``progress`` and ``workers`` are accepted (so that ``generate``'s keyword
    arguments can be passed on) and do not change the name.
    """
    opts = _options(per_class, image_size, fake_ratio, print_share, bias, seed)
    parts = ["demo"]
    tags = {
        "per_class": "n{}",
        "image_size": "s{}",
        "fake_ratio": "fake{:g}",
        "print_share": "print{:g}",
        "bias": "bias-{}",
        "seed": "seed{}",
    }
    for key, fmt in tags.items():
        if opts[key] != _DEFAULTS[key]:
            parts.append(fmt.format(opts[key]))
    return "-".join(parts)


def _random_date(rng: np.random.Generator, span: tuple[dt.date, dt.date]) -> str:
    """A uniform random ISO date within ``span`` (inclusive)."""
    days = (span[1] - span[0]).days
    return (span[0] + dt.timedelta(days=int(rng.integers(0, days + 1)))).isoformat()


def _plan(opts: dict) -> list[dict]:
    """Every image's label, attack, source, device, date and JPEG quality, in file order."""
    counts = _counts(opts)
    groups = [name for name, _ in _load_sources()]
    rng = np.random.default_rng([opts["seed"], 7_777_777])
    attacks = ["print"] * counts["print"] + ["screen"] * counts["screen"]
    attacks = [attacks[i] for i in rng.permutation(len(attacks))]
    plan: list[dict] = []
    for label in ("real", "fake"):
        n = counts[label]
        # Each class cycles through all groups in shuffled rounds, so groups are balanced.
        rounds = -(-n // len(groups))
        order = np.concatenate([rng.permutation(len(groups)) for _ in range(rounds)])[:n]
        for i in range(n):
            if opts["bias"] == "device":
                device = (
                    "tablet"
                    if label == "fake"
                    else str(rng.choice(["phone_a", "phone_b", "webcam"]))
                )
            else:
                device = str(rng.choice(list(DEVICES)))
            if opts["bias"] == "date":
                span, (q_lo, q_hi) = DATE_BIAS[label]
            else:
                span, (q_lo, q_hi) = DATE_RANGE, DEVICES[device].quality
            plan.append(
                {
                    "path": f"{label}/{label}_{i:05d}.jpg",
                    "label": label,
                    "attack_type": attacks[i] if label == "fake" else "none",
                    "source": groups[int(order[i])],
                    "device": device,
                    "capture_date": _random_date(rng, span),
                    "jpeg_quality": int(rng.integers(q_lo, q_hi + 1)),
                    "index": i,
                }
            )
    return plan


def render(record: dict, opts: dict) -> bytes:
    """Render one planned image to JPEG bytes (deterministic in the seed and the record)."""
    code = 0 if record["label"] == "real" else 1
    rng = np.random.default_rng([opts["seed"], code, record["index"]])
    size = opts["image_size"]
    source = record["source"]
    view = make_view(source_images()[source], rng, size, flip=source not in _NO_FLIP)
    if record["attack_type"] == "screen":
        image = simulate_screen(view, rng)
    elif record["attack_type"] == "print":
        image = simulate_print(view, rng)
    else:
        image = view
    device = BIASED_DEVICE if opts["bias"] == "device" and code == 1 else record["device"]
    return camera(image, rng, device, record["jpeg_quality"])


def _render_task(args: tuple[dict, dict]) -> bytes:
    """Picklable wrapper of :func:`render` for worker processes."""
    return render(*args)


def _render_all(plan: list[dict], opts: dict, workers: int) -> Iterator[bytes]:
    """Render the plan in order, in this process or in ``workers`` forked processes."""
    tasks = [(rec, opts) for rec in plan]
    if workers <= 1:
        yield from map(_render_task, tasks)
        return
    # Fork starts at once and needs no `if __name__ == "__main__"` guard in the caller's
    # script; spawn is the fallback where there is no fork.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        yield from pool.map(_render_task, tasks, chunksize=16)


def _progress(items: Iterable, total: int, enabled: bool) -> Iterable:
    """Wrap ``items`` in a progress bar when enabled (tqdm if installed)."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with Jupyter.
        return items
    return tqdm(items, total=total, desc="demo data", unit="img")


# --------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------


def _options_record(opts: dict) -> dict:
    """What options.json holds: the options, the counts and the generator version."""
    return {**opts, "counts": _counts(opts), "generator_version": GENERATOR_VERSION}


def _options_text(opts: dict) -> str:
    return json.dumps(_options_record(opts), indent=2, sort_keys=True) + "\n"


def is_complete(folder: Path, opts: dict) -> bool:
    """Whether ``folder`` holds the dataset of ``opts``: same options.json, no file missing."""
    try:
        if json.loads((folder / "options.json").read_text()) != _options_record(opts):
            return False
        with open(folder / "metadata.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    counts = _counts(opts)
    if len(rows) != counts["real"] + counts["fake"]:
        return False
    return all("path" in r and (folder / r["path"]).is_file() for r in rows)


def _default_workers(n_images: int) -> int:
    """Two processes for 200 images or more, if two cores are free and forking is safe.

    Forking is safe only while this process runs a single thread (a Jupyter kernel or a
    loaded TensorFlow runs several, and a forked child could deadlock on their locks).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if n_images < 200 or (cores or 1) < 2 or not can_fork or threading.active_count() > 1:
        return 1
    return 2


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
    """Generate the demo dataset (or find it up to date) and return its folder.

    The folder is ``out_root / dataset_name(...)``; a relative ``out_root`` is taken from
    the project root. It is written into a hidden temporary sibling and renamed at the
    end, so an interrupted run leaves no half dataset. An existing folder with other
    content raises ``FileExistsError`` and is never overwritten. ``workers`` is the number
    of processes (default: 2 for 200 images or more where that is safe, see
    :func:`_default_workers`); it does not change a byte of the output.
    """
    opts = _options(per_class, image_size, fake_ratio, print_share, bias, seed)
    root = project_path(out_root, DATA_DIR)
    folder = root / dataset_name(**opts)
    if folder.exists():
        if is_complete(folder, opts):
            return folder
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        else:
            raise FileExistsError(
                f"{folder} exists but is not the demo dataset of these options (different "
                "options.json, or files missing); it is left untouched. Move or delete it, or "
                "pass another out_root."
            )
    plan = _plan(opts)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "real").mkdir(parents=True)
        (tmp / "fake").mkdir()
        n_workers = _default_workers(len(plan)) if workers is None else max(1, int(workers))
        rendered = _render_all(plan, opts, n_workers)
        for rec, data in _progress(zip(plan, rendered, strict=True), len(plan), progress):
            (tmp / rec["path"]).write_bytes(data)
        with open(tmp / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=METADATA_COLUMNS, extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(plan)
        (tmp / "options.json").write_text(_options_text(opts))
        try:
            tmp.rename(folder)
        except OSError:
            # Another run may have finished the same dataset meanwhile.
            if not is_complete(folder, opts):
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a demo dataset and print its folder."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.demo_data", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help=f"take --per-class and --image-size from this profile (default: ${PROFILE_ENV}, "
        "else full)",
    )
    parser.add_argument("--per-class", type=int, help="images per class (total: twice this)")
    parser.add_argument("--image-size", type=int, help="side of the square images, in pixels")
    parser.add_argument("--fake-ratio", type=float, default=0.5, help="fraction of fakes")
    parser.add_argument(
        "--print-share",
        type=float,
        default=0.3,
        help="share of the fakes that are print attacks (rest: screen)",
    )
    parser.add_argument(
        "--bias",
        choices=["none", *BIASES],
        default="none",
        help="inject a capture bias for the pitfalls lesson",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out-root",
        default=None,
        help="parent folder of the dataset (default: data/ of the project)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    profile = PROFILES[resolve_profile(args.profile)]
    kwargs = {
        "per_class": args.per_class if args.per_class is not None else profile["demo_per_class"],
        "image_size": (
            args.image_size if args.image_size is not None else profile["demo_image_size"]
        ),
        "fake_ratio": args.fake_ratio,
        "print_share": args.print_share,
        "bias": None if args.bias == "none" else args.bias,
        "seed": args.seed,
    }
    try:
        opts = _options(**kwargs)
        root = project_path(args.out_root, DATA_DIR)
        folder = root / dataset_name(**opts)
        if is_complete(folder, opts):
            print(f"already up to date: {folder}")
            return 0
        folder = generate(**opts, out_root=root, progress=not args.quiet, workers=args.workers)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The page of `make app` in headless Chromium, against the Python LiteRT interpreter.

The run is ``APP_RUN_DIR`` (default ``runs/nbval``, what `make nbval` leaves). From its
``export/`` the test serves three folders beside the built page (app/dist): the INT8 model
(model_qt.tflite) and the float32 one (model.tflite), each with the metadata that
``helpers.verification.write_metadata`` writes for it, and the shipped folder as it is. It feeds
the page test images of the run's manifest and compares its scores with
``helpers.verification.LiteModel``'s:

- inference alone (``window.runOnPixels`` on the pixels Python resized): INT8 within one step of
  the output's quantization (scale 1/256), float32 within 1e-5;
- the whole page (the image file decoded and resized in the browser): the same tolerances, and
  the page's pixels within 0.01 of TensorFlow's (decoders and float rounding may differ).

It also checks the messages for a file that is not an image, a model missing from the folder
and a metadata.json that does not match its model. The figures (largest score differences,
median in-browser latency) are printed and written to ``APP_REPORT`` (default
``<run>/app_check.json``); ``APP_SCREENSHOT=docs/app.png`` also saves the README's screenshot.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
RUN_DIR = Path(os.environ.get("APP_RUN_DIR", "runs/nbval"))
RUN_DIR = RUN_DIR if RUN_DIR.is_absolute() else ROOT / RUN_DIR
EXPORT = RUN_DIR / "export"
CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium")) if p and Path(p).is_file()),
    None,
)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PER_CLASS = 5  # test images per class: 10 for two classes
PIXEL_TOLERANCE = 0.01
FLOAT_TOLERANCE = 1e-5

# `make browser` (so `make test` and CI) sets APP_REQUIRED=1: there a missing piece fails.


def _unavailable(reason: str) -> None:
    if os.environ.get("APP_REQUIRED"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if os.environ.get("APP_REQUIRED"):
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements.txt")
if CHROMIUM is None:
    _unavailable(
        "no chromium: install Debian's package (sudo apt-get install chromium) or set CHROMIUM"
    )
if not (EXPORT / "metadata.json").is_file() or not (RUN_DIR / "manifest.csv").is_file():
    _unavailable(
        f"{EXPORT} has no metadata.json (or the run no manifest.csv): run `make nbval` first, "
        "or set APP_RUN_DIR to a run folder with an export/"
    )

FIGURES: dict = {"run": str(RUN_DIR)}


def _build_app() -> Path:
    """app/dist, built with npm ci + build.mjs when it is missing (`make browser` builds it)."""
    if not (APP / "dist" / "index.html").is_file():
        if shutil.which("node") is None or shutil.which("npm") is None:
            _unavailable("no node/npm to build app/dist: sudo apt-get install nodejs npm")
        if not (APP / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=APP, check=True)
        subprocess.run(["node", "build.mjs"], cwd=APP, check=True)
    return APP / "dist"


def _export_variant(folder: Path, model_file: str, meta: dict) -> Path:
    """A copy of the export folder for ``model_file``, with the metadata written for it."""
    from helpers.verification import write_metadata

    folder.mkdir()
    shutil.copy(EXPORT / "labels.txt", folder)
    (folder / model_file).symlink_to(EXPORT / model_file)
    info = {k: meta[k] for k in ("bona_fide_class", "bona_fide_threshold") if k in meta}
    threshold = meta.get("decision_threshold") or 0.5
    write_metadata(
        folder / "metadata.json", meta["classes"], folder / model_file, threshold, **info
    )
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The served folder: app/ (the built page) and the export folders the tests load."""
    root = tmp_path_factory.mktemp("site")
    (root / "app").symlink_to(_build_app(), target_is_directory=True)
    (root / "export").symlink_to(EXPORT, target_is_directory=True)
    meta = json.loads((EXPORT / "metadata.json").read_text())
    for name, model_file in (("int8", "model_qt.tflite"), ("float32", "model.tflite")):
        if not (EXPORT / model_file).is_file():
            pytest.fail(f"{EXPORT / model_file} is missing: the export should hold both models")
        _export_variant(root / name, model_file, meta)
    missing = _export_variant(root / "missing", "model_qt.tflite", meta)
    (missing / "model_qt.tflite").unlink()
    mismatch = _export_variant(root / "mismatch", "model_qt.tflite", meta)
    (mismatch / "model.tflite").symlink_to(EXPORT / "model.tflite")
    changed = json.loads((mismatch / "metadata.json").read_text()) | {"model_file": "model.tflite"}
    (mismatch / "metadata.json").write_text(json.dumps(changed))
    return root


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1000, "height": 800},
        )
        yield context
        context.close()


def _open(browser, server, folder: str):
    """A page loaded with ``folder``'s export; its load error message, or None."""
    page = browser.new_page()
    page.goto(f"{server}/app/index.html?export=../{folder}/")
    problem = page.evaluate("window.appReady.then(() => null, e => e.message)")
    return page, problem


def _images(tmp_path_factory) -> pd.DataFrame:
    """PER_CLASS test images per class from the run's manifest, plus one PNG of another size
    made from the first (lossless, so that it checks the page's resizing on its own)."""
    from PIL import Image

    df = pd.read_csv(RUN_DIR / "manifest.csv")
    test = df[df["split"] == "test"].sort_values("relpath")
    rows = test.groupby("label", group_keys=False).head(PER_CLASS).reset_index(drop=True)
    first = Image.open(rows.loc[0, "decode_path"]).convert("RGB")
    path = tmp_path_factory.mktemp("resize") / "resized_301x263.png"
    first.resize((301, 263), Image.Resampling.BICUBIC).save(path)
    extra = {"relpath": path.name, "label": rows.loc[0, "label"], "decode_path": str(path)}
    return pd.concat([rows, pd.DataFrame([extra])], ignore_index=True)


def _browser_like(path: str, size: tuple[int, int]) -> np.ndarray:
    """TensorFlow's pixels as the browser decodes a JPEG: the accurate integer IDCT (Chromium's
    libjpeg-turbo; TF's decode_image uses the fast one), then the same resize as training."""
    import tensorflow as tf

    data = tf.io.read_file(path)
    if path.lower().endswith((".jpg", ".jpeg")):
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    else:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0).numpy()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The rows, their pixels as training reads them (helpers.dataset.make_dataset), and as
    TensorFlow reads them with the browser's JPEG decoding."""
    from helpers.dataset import make_dataset

    rows = _images(tmp_path_factory)
    meta = json.loads((EXPORT / "metadata.json").read_text())
    size = (meta["input"]["height"], meta["input"]["width"])
    batches = make_dataset(rows, meta["classes"], size, batch_size=len(rows), cache=False)
    training = np.concatenate([x.numpy() for x, _ in batches])
    browser_like = np.stack([_browser_like(p, size) for p in rows["decode_path"]])
    return rows, training, browser_like


def _run_on_pixels(page, image: np.ndarray) -> dict:
    """window.runOnPixels on float32 pixels, sent as base64 (a JSON list is slow)."""
    data = base64.b64encode(np.ascontiguousarray(image, np.float32).tobytes()).decode()
    script = "b => window.runOnPixels(new Float32Array(Uint8Array.from(atob(b), c => c.charCodeAt(0)).buffer))"
    return page.evaluate(script, data)


LAST_PIXELS = """() => {
  const bytes = new Uint8Array(window.lastPixels.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 32768) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 32768));
  }
  return btoa(text);
}"""


def _tolerance(meta: dict) -> float:
    """One step of the output's quantization for an integer model, else FLOAT_TOLERANCE."""
    q = meta["output"]["quantization"]
    return q["scale"] * 1.0001 if q else FLOAT_TOLERANCE


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_inference_matches_python(browser, server, site, images, variant):
    """The model alone: the page's runtime on Python's pixels vs the Python interpreter."""
    from helpers.verification import LiteModel

    _, pixels, _ = images
    meta = json.loads((site / variant / "metadata.json").read_text())
    expected = LiteModel(site / variant / meta["model_file"], num_threads=1).predict(pixels)
    page, problem = _open(browser, server, variant)
    assert problem is None, problem
    got, times = [], []
    for image in pixels:
        for _ in range(3):  # three runs per image for the latency; the scores must not vary
            result = _run_on_pixels(page, image)
            got.append(result["score"])
            times.append(result["ms"])
    got = np.array(got).reshape(len(pixels), 3)
    assert np.ptp(got, axis=1).max() == 0, "the page's scores vary between runs"
    diff = float(np.abs(got[:, 0] - expected).max())
    FIGURES[variant] = {
        "model_file": meta["model_file"],
        "images": len(pixels),
        "inference_max_abs_diff": diff,
        "tolerance": _tolerance(meta),
        "latency_median_ms": float(np.median(times)),
    }
    assert diff <= _tolerance(meta), f"{variant}: browser vs Python scores differ by {diff}"
    page.close()


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_page_on_image_files_matches_python(browser, server, site, images, variant):
    """The whole page on the files: its decoding and resizing vs TensorFlow's, its scores vs
    the interpreter's on those pixels (same tolerance), and vs training's pixels (measured)."""
    from helpers.verification import LiteModel

    rows, training, browser_like = images
    meta = json.loads((site / variant / "metadata.json").read_text())
    model = LiteModel(site / variant / meta["model_file"], num_threads=1)
    page, problem = _open(browser, server, variant)
    assert problem is None, problem
    scores, pixel_diffs = [], []
    for path, reference in zip(rows["decode_path"], browser_like):  # one at a time: its pixels
        done = page.evaluate("window.appResults.length") + 1
        page.set_input_files("#file-input", path)
        page.wait_for_function(f"window.appResults.length >= {done}")
        result = page.evaluate("window.appResults[window.appResults.length - 1]")
        assert "error" not in result, result.get("error")
        scores.append(result["score"])
        shown = np.frombuffer(base64.b64decode(page.evaluate(LAST_PIXELS)), np.float32)
        pixel_diffs.append(float(np.abs(shown - reference.ravel()).max()))
    assert page.locator(".result").count() == len(rows)
    page.close()
    scores = np.array(scores)
    diff = float(np.abs(scores - model.predict(browser_like)).max())
    FIGURES[variant] |= {
        "page_pixels_max_abs_diff": max(pixel_diffs),
        "page_max_abs_diff": diff,
        "page_vs_training_decoder_max_abs_diff": float(
            np.abs(scores - model.predict(training)).max()
        ),
        "training_vs_browser_decoder_pixels_max_abs_diff": float(
            np.abs(training - browser_like).max()
        ),
    }
    assert max(pixel_diffs) <= PIXEL_TOLERANCE, f"page vs TensorFlow pixels: {max(pixel_diffs)}"
    assert diff <= _tolerance(meta), f"{variant}: page vs Python scores differ by {diff}"


def test_bad_inputs_get_clear_messages(browser, server, site, tmp_path):
    page, problem = _open(browser, server, "int8")
    assert problem is None, problem
    text = tmp_path / "notes.jpg"
    text.write_text("not a photograph, only text\n")
    page.set_input_files("#file-input", str(text))
    page.wait_for_function("window.appResults.some(r => r.error)")
    message = page.inner_text("#error")
    assert "notes.jpg is not an image" in message, message
    assert page.locator(".result").count() == 0
    page.close()

    page, problem = _open(browser, server, "missing")
    assert "model_qt.tflite" in problem and "missing (HTTP 404)" in problem, problem
    assert page.inner_text("#error") == problem
    page.close()

    page, problem = _open(browser, server, "mismatch")
    assert "metadata.json does not match model.tflite" in problem, problem
    assert "input is int8 [1, " in problem and "input is float32 [1, " in problem, problem
    page.close()


def test_shipped_export_and_figures(browser, server, images, capsys):
    """The shipped export folder as `make app` serves it, with a real and a fake image; then
    the figures of the tests above, printed and written to APP_REPORT."""
    rows = images[0]
    page, problem = _open(browser, server, "export")
    assert problem is None, problem
    FIGURES["browser"] = page.evaluate("navigator.userAgent")
    classes = json.loads((EXPORT / "metadata.json").read_text())["classes"]
    picks = [rows[rows["label"] == c]["decode_path"].iloc[0] for c in classes[::-1]]
    page.set_input_files("#file-input", picks)
    page.wait_for_function(f"window.appResults.length >= {len(picks)}")
    assert page.locator(".result").count() == len(picks)
    assert page.locator("#error").is_hidden()
    shot = os.environ.get("APP_SCREENSHOT")
    if shot:
        page.locator("#results").scroll_into_view_if_needed()
        page.screenshot(path=str(ROOT / shot), full_page=True)
    page.close()
    report = Path(os.environ.get("APP_REPORT") or RUN_DIR / "app_check.json")
    report.write_text(json.dumps(FIGURES, indent=2))
    with capsys.disabled():
        print(f"\nbrowser vs Python ({report}):\n{json.dumps(FIGURES, indent=2)}")

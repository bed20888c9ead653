"""Tests of the offline demo anti-spoofing dataset generator (helpers.demo_data)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import demo_data as dd

# Small and fast: 24 images of 64 px, about a second to generate.
SMALL = {"per_class": 12, "image_size": 64}


def read_metadata(folder: Path) -> list[dict]:
    """The rows of a dataset's metadata.csv."""
    with open(folder / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative posix path, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small dataset, shared by the read-only tests."""
    return dd.generate(**SMALL, out_root=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def small_rows(small: Path) -> list[dict]:
    return read_metadata(small)


# --------------------------------------------------------------------------------------
# Sources and single steps
# --------------------------------------------------------------------------------------


def test_source_images_are_distinct_rgb_groups() -> None:
    sources = dd.source_images()
    assert len(sources) >= 80
    for name, img in sources.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 150, name
        assert dd._detail(img) >= dd._DETAIL, name  # A scene, not a patch of sky.
    # Photographs are cut into tiles, one group each, and no two groups hold the same pixels.
    expected = {"chelsea-r0c0", "chelsea-r1c2", "grace-hopper-r1c1", "motorcycle-top-r0c0"}
    assert expected <= set(sources)
    photos = {name.rsplit("-", 1)[0] for name in sources}
    assert len(photos) >= 20 and {"motorcycle-bottom", "grace-hopper", "retina"} <= photos
    digests = {hashlib.sha256(img.tobytes()).hexdigest() for img in sources.values()}
    assert len(digests) == len(sources)


def test_views_vary_and_stay_inside_the_source() -> None:
    flat = np.full((150, 400, 3), 200, np.uint8)  # A rotated crop must show no black corner.
    views = [dd.make_view(flat, np.random.default_rng(i), 96) for i in range(40)]
    assert min(int(v.min()) for v in views) > 60
    assert np.ptp([v.mean() for v in views]) > 40  # Exposure varies from view to view.
    source = dd.source_images()["astronaut-r1c1"]
    first, second = (dd.make_view(source, np.random.default_rng(i), 64) for i in (0, 1))
    assert first.shape == (64, 64, 3) and not np.array_equal(first, second)


def test_full_plan_shares_groups_and_devices_between_classes() -> None:
    from scipy.stats import chi2_contingency

    plan = dd._plan(dd._options(**dd._DEFAULTS))
    assert dd.DEFAULT_PER_CLASS == 1500 and len(plan) == 3000
    frame = pd.DataFrame(plan)
    for column, n_values in (("source", len(dd.source_images())), ("device", 6)):
        table = pd.crosstab(frame["label"], frame[column]).to_numpy()
        assert table.shape == (2, n_values), column
        assert table.min() >= 10, column  # Every group and device in both classes...
        assert chi2_contingency(table)[1] > 0.05, column  # ...with the same shares.


def test_steps_keep_shape_and_range() -> None:
    rng = np.random.default_rng(0)
    view = dd.make_view(dd.source_images()["astronaut-r0c0"], rng, 80)
    assert view.shape == (80, 80, 3) and view.dtype == np.uint8
    for attack in (dd.simulate_screen, dd.simulate_print):
        out = attack(view, np.random.default_rng(1))
        assert out.shape == (80, 80, 3) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
    raw = dd.camera(view, np.random.default_rng(2), "webcam")
    assert raw.shape == (80, 80, 3) and raw.dtype == np.float32
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    data = dd.encode_jpeg(raw, 85)
    assert isinstance(data, bytes) and data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (80, 80) and img.mode == "RGB"


# --------------------------------------------------------------------------------------
# Names and options
# --------------------------------------------------------------------------------------


def test_dataset_names() -> None:
    assert dd.dataset_name() == "demo"
    assert dd.dataset_name(per_class=48, image_size=160) == "demo-n48-s160"
    assert dd.dataset_name(bias="device") == "demo-bias-device"
    assert dd.dataset_name(fake_ratio=0.05) == "demo-fake0.05"
    assert dd.dataset_name(print_share=0.5, seed=3) == "demo-print0.5-seed3"
    # generate's other keyword arguments may be passed on and do not change the name.
    assert dd.dataset_name(**SMALL, out_root="x", progress=True) == "demo-n12-s64"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"per_class": 0}, "per_class"),
        ({"per_class": 2.5}, "per_class"),
        ({"per_class": True}, "per_class"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"fake_ratio": 0.0}, "fake_ratio"),
        ({"fake_ratio": 1.5}, "fake_ratio"),
        ({"per_class": 8, "fake_ratio": 0.01}, "fake_ratio"),
        ({"print_share": -0.1}, "print_share"),
        ({"bias": "lighting"}, "bias"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_options_name_the_parameter(kwargs: dict, name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=name):
        dd.generate(**{**SMALL, **kwargs}, out_root=tmp_path)
    with pytest.raises(ValueError, match=name):
        dd.dataset_name(**{**SMALL, **kwargs})
    assert not any(tmp_path.iterdir())


def test_bias_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match="'device' or 'date'"):
        dd.dataset_name(bias="jpeg")


# --------------------------------------------------------------------------------------
# Determinism, reruns, folders
# --------------------------------------------------------------------------------------


def test_same_options_give_identical_bytes(small: Path, tmp_path: Path) -> None:
    again = dd.generate(**SMALL, out_root=tmp_path)
    assert again.name == small.name
    assert tree_bytes(again) == tree_bytes(small)


def test_worker_processes_do_not_change_bytes(small: Path, tmp_path: Path) -> None:
    parallel = dd.generate(**SMALL, out_root=tmp_path, workers=2)
    assert tree_bytes(parallel) == tree_bytes(small)


def test_different_seed_gives_different_images(small: Path, tmp_path: Path) -> None:
    other = dd.generate(**SMALL, seed=1, out_root=tmp_path)
    assert other.name == "demo-n12-s64-seed1"
    a, b = tree_bytes(small), tree_bytes(other)
    images = [p for p in a if p.endswith(".jpg")]
    assert images and all(a[p] != b[p] for p in images)


def test_rerun_is_a_quick_no_op(small: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    assert dd.generate(**SMALL, out_root=small.parent) == small
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == before
    assert dd.main([*_cli(SMALL), "--out-root", str(small.parent)]) == 0


def _cli(opts: dict) -> list[str]:
    return ["--per-class", str(opts["per_class"]), "--image-size", str(opts["image_size"])]


def test_cli_writes_then_reports_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        *_cli({"per_class": 4, "image_size": 48}),
        "--bias",
        "date",
        "--out-root",
        str(tmp_path),
    ]
    assert dd.main([*args, "--quiet"]) == 0
    folder = tmp_path / "demo-n4-s48-bias-date"
    assert capsys.readouterr().out.strip() == str(folder)
    assert dd.main(args) == 0
    assert capsys.readouterr().out.strip() == f"already up to date: {folder}"


def test_cli_rejects_bad_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert dd.main(["--fake-ratio", "2", "--out-root", str(tmp_path)]) == 2
    assert "fake_ratio" in capsys.readouterr().err


def test_different_options_use_their_own_folder(small: Path) -> None:
    other = dd.generate(**SMALL, fake_ratio=0.25, out_root=small.parent)
    assert other != small and other.name == "demo-n12-s64-fake0.25"
    assert small.exists() and dd.is_complete(small, dd._options(**{**dd._DEFAULTS, **SMALL}))


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / dd.dataset_name(**SMALL)
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="left untouched"):
        dd.generate(**SMALL, out_root=tmp_path)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_refuses_a_dataset_with_other_options_or_missing_files(tmp_path: Path) -> None:
    opts = {"per_class": 4, "image_size": 48}
    folder = dd.generate(**opts, out_root=tmp_path)
    record = json.loads((folder / "options.json").read_text())
    (folder / "options.json").write_text(json.dumps({**record, "seed": 99}))
    with pytest.raises(FileExistsError):
        dd.generate(**opts, out_root=tmp_path)
    (folder / "options.json").write_text(json.dumps(record))
    assert dd.generate(**opts, out_root=tmp_path) == folder
    (folder / "fake" / "fake_00000.jpg").unlink()
    with pytest.raises(FileExistsError):
        dd.generate(**opts, out_root=tmp_path)
    assert (folder / "real" / "real_00000.jpg").exists()


def test_an_empty_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "demo-n4-s48").mkdir()
    folder = dd.generate(per_class=4, image_size=48, out_root=tmp_path)
    assert len(read_metadata(folder)) == 8


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(record: dict, opts: dict) -> bytes:
        calls.append(record)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return b"\xff\xd8"

    monkeypatch.setattr(dd, "render", failing)
    with pytest.raises(KeyboardInterrupt):
        dd.generate(per_class=4, image_size=48, out_root=tmp_path, workers=1)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Content: metadata, counts, biases, no JPEG shortcut, artefacts
# --------------------------------------------------------------------------------------


def test_metadata_columns_and_values(small: Path, small_rows: list[dict]) -> None:
    with open(small / "metadata.csv", newline="") as f:
        assert next(csv.reader(f)) == list(dd.METADATA_COLUMNS)
    sources = set(dd.source_images())
    lo, hi = dd.DATE_RANGE
    for row in small_rows:
        label = row["label"]
        assert label in {"real", "fake"}
        assert row["path"].startswith(f"{label}/{label}_") and row["path"].endswith(".jpg")
        assert "\\" not in row["path"] and (small / row["path"]).is_file()
        assert (row["attack_type"] == "none") == (label == "real")
        assert row["attack_type"] in {"none", "screen", "print"}
        assert row["source"] in sources
        assert row["device"] in dd.DEVICES
        assert lo <= dt.date.fromisoformat(row["capture_date"]) <= hi
        assert 80 <= int(row["jpeg_quality"]) <= 95
    files = {p.relative_to(small).as_posix() for p in small.rglob("*.jpg")}
    assert files == {r["path"] for r in small_rows}
    options = json.loads((small / "options.json").read_text())
    assert options["generator_version"] == dd.GENERATOR_VERSION
    assert {k: options[k] for k in dd._DEFAULTS} == {**dd._DEFAULTS, **SMALL}


def test_class_counts_follow_fake_ratio_and_print_share(tmp_path: Path) -> None:
    folder = dd.generate(
        per_class=10, image_size=48, fake_ratio=0.25, print_share=0.4, out_root=tmp_path
    )
    rows = read_metadata(folder)
    kinds = [r["attack_type"] for r in rows]
    assert len(rows) == 20
    assert kinds.count("none") == 15 and kinds.count("print") == 2 and kinds.count("screen") == 3
    assert json.loads((folder / "options.json").read_text())["counts"] == {
        "real": 15,
        "fake": 5,
        "screen": 3,
        "print": 2,
    }


def test_sources_are_shared_by_both_classes(small_rows: list[dict]) -> None:
    real = [r["source"] for r in small_rows if r["label"] == "real"]
    fake = [r["source"] for r in small_rows if r["label"] == "fake"]
    # Each class cycles through the groups, so no group repeats within 12 images of a class.
    assert len(set(real)) == len(real) and len(set(fake)) == len(fake)


def test_no_bias_mixes_devices_and_dates(small_rows: list[dict]) -> None:
    for label in ("real", "fake"):
        rows = [r for r in small_rows if r["label"] == label]
        assert len({r["device"] for r in rows}) >= 3
        assert len({r["capture_date"][:4] for r in rows}) >= 2


def test_device_bias_puts_all_fakes_on_one_device(tmp_path: Path) -> None:
    folder = dd.generate(**SMALL, bias="device", out_root=tmp_path)
    rows = read_metadata(folder)
    assert {r["device"] for r in rows if r["label"] == "fake"} == {"tablet"}
    assert "tablet" not in {r["device"] for r in rows if r["label"] == "real"}


def test_date_bias_separates_dates_and_jpeg_quality(tmp_path: Path) -> None:
    folder = dd.generate(**SMALL, bias="date", out_root=tmp_path)
    rows = read_metadata(folder)
    real = [r for r in rows if r["label"] == "real"]
    fake = [r for r in rows if r["label"] == "fake"]
    assert max(r["capture_date"] for r in fake) < min(r["capture_date"] for r in real)
    assert max(int(r["jpeg_quality"]) for r in fake) < min(int(r["jpeg_quality"]) for r in real)


def _quantization(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as img:
        return img.quantization


def test_both_classes_are_same_size_jpegs_with_overlapping_quality(
    small: Path, small_rows: list[dict]
) -> None:
    quality = {"real": [], "fake": []}
    for row in small_rows:
        data = (small / row["path"]).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == (SMALL["image_size"], SMALL["image_size"])
        # The file's quantization tables are those of the quality in the metadata.
        reference = dd.encode_jpeg(np.zeros((8, 8, 3), np.uint8), int(row["jpeg_quality"]))
        assert _quantization(data) == _quantization(reference)
        quality[row["label"]].append(int(row["jpeg_quality"]))
    real, fake = quality["real"], quality["fake"]
    assert max(min(real), min(fake)) < min(max(real), max(fake))


def spectral_peakiness(image: np.ndarray) -> float:
    """How peaked an image's fine-detail spectrum is: high for moiré and halftone dots.

    For gray, R - G and B - G: the 99.9th percentile over the median Fourier magnitude at
    0.08-0.5 cycles per pixel, JPEG block frequencies (multiples of 1/8) left out; the max.
    Photographs have smooth spectra; sub-pixel grids and dot screens give sharp peaks.
    """
    img = np.asarray(image, np.float32) / 255.0
    n_h, n_w = img.shape[:2]
    win = (np.hanning(n_h)[:, None] * np.hanning(n_w)[None, :]).astype(np.float32)
    fy, fx = np.abs(np.fft.fftfreq(n_h))[:, None], np.abs(np.fft.fftfreq(n_w))[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    block = [np.abs(f * 8 - np.round(f * 8)) < 12 / min(n_h, n_w) for f in (fx, fy)]
    keep = (radius >= 0.08) & (radius <= 0.5) & ~(block[0] | block[1])
    scores = []
    for ch in (img.mean(axis=-1), img[..., 0] - img[..., 1], img[..., 2] - img[..., 1]):
        values = np.abs(np.fft.fft2((ch - ch.mean()) * win))[keep]
        scores.append(np.percentile(values, 99.9) / (np.median(values) + 1e-12))
    return float(max(scores))


def test_fakes_carry_periodic_high_frequency_energy(tmp_path: Path) -> None:
    from scipy.stats import mannwhitneyu

    # Angles, tilts and distances vary, so moiré peaks smear: 40 per class, not a handful.
    folder = dd.generate(per_class=40, image_size=96, out_root=tmp_path)
    scores: dict[str, list[float]] = {"none": [], "screen": [], "print": []}
    for row in read_metadata(folder):
        image = np.asarray(Image.open(folder / row["path"]).convert("RGB"))
        scores[row["attack_type"]].append(spectral_peakiness(image))
    assert mannwhitneyu(scores["screen"], scores["none"], alternative="greater").pvalue < 0.01
    real, screen, prints = (np.mean(scores[k]) for k in ("none", "screen", "print"))
    assert screen > 1.5 * real
    assert prints > real

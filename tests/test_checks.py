"""Tests of helpers.checks: every kind of bad file, named with its reason; metadata."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.images import encode, make_dup_tree, pattern
from PIL import Image

from helpers import checks
from helpers import dataset as D

UNICODE_REL = "réel/été_📷.jpg"
MAX_PIXELS = 500_000
MAX_SIDE = 200


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (hidden ones included): kind, size, mtime, content hash."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            state[p.relative_to(root).as_posix()] = ("dir", p.stat().st_mtime_ns)
        for name in filenames:
            p = Path(dirpath) / name
            st = p.stat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            state[p.relative_to(root).as_posix()] = ("file", st.st_size, st.st_mtime_ns, digest)
    return state


# ---------------------------------------------------------------------------------------
# The folder of every kind of bad input, scanned once
# ---------------------------------------------------------------------------------------

# relpath -> (status, text expected in reason or notes, normalised copy?)
EXPECTED = {
    "chat/ok_0.jpg": ("ok", "", False),
    "chat/ok_1.jpg": ("ok", "", False),
    "chat/nested/deeper/ok_nested.png": ("ok", "", False),
    "chat/truncated.jpg": ("bad", "truncated JPEG: image file is truncated", None),
    "chat/truncated.png": ("bad", "truncated PNG", None),
    "chat/zero.jpg": ("bad", "empty file (0 bytes)", None),
    "chat/fake.jpg": ("bad", "not an image: text file named .jpg", None),
    "chat/notes.txt": ("bad", "not an image: text file named .txt", None),
    "chat/page.jpg": ("bad", "not an image: HTML page named .jpg", None),
    "chat/huge.jpg": ("bad", "too large: 0.6 MP (1000×600) > 0.5 MP limit", None),
    "chat/photo.webp": ("ok", "", True),
    "chat/rgba.png": ("ok", "RGBA → RGB (composited on white)", True),
    "chat/gray.jpg": ("ok", "grayscale → RGB", False),
    "chat/deep16.png": ("ok", "16-bit → 8-bit", True),
    "chat/cmyk.jpg": ("ok", "CMYK → RGB", True),
    "chat/anim.gif": ("ok", "animated GIF: first frame of 3", True),
    "chat/still.gif": ("ok", "", False),
    "chat/image.bmp": ("ok", "", False),
    "chat/palette.bmp": ("ok", "TensorFlow decodes it differently", True),
    "chat/rotated.jpg": ("ok", "EXIF rotated 90° clockwise", True),
    "chat/big.jpg": ("ok", "downscaled to fit 200 px: 400×300 → 200×150", True),
    "chat/png_named.jpg": ("ok", "content does not match extension: PNG named .jpg", False),
    "chat/conflict.jpg": ("bad", "label conflict: identical to réel/conflict_copy.jpg", None),
    "réel/conflict_copy.jpg": ("bad", "label conflict: identical to chat/conflict.jpg", None),
    UNICODE_REL: ("ok", "", False),
    "réel/ok_r0.jpg": ("ok", "", False),
    "réel/ok_r1.png": ("ok", "", False),
}
SYSTEM_ENTRIES = [
    ".DS_Store",
    "__MACOSX/chat/._ok_0.jpg",
    ".ipynb_checkpoints/x.jpg",
    "chat/.DS_Store",
    "chat/._ok_0.jpg",
    "chat/Thumbs.db",
    "chat/desktop.ini",
    "chat/.ipynb_checkpoints/ok_0-checkpoint.jpg",
    "chat/nested/.hidden/x.jpg",
]


def build_bad_tree(root: Path) -> None:
    """Write the folder of EXPECTED plus system entries, root files and an empty class."""

    def put(rel: str, data: bytes | str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data, encoding="utf-8")
        else:
            p.write_bytes(data)

    put("chat/ok_0.jpg", encode(pattern(0), "JPEG", quality=92))
    put("chat/ok_1.jpg", encode(pattern(1), "JPEG", quality=92))
    put("chat/nested/deeper/ok_nested.png", encode(pattern(2), "PNG"))
    jpg = encode(pattern(3, (128, 128)), "JPEG", quality=92)
    put("chat/truncated.jpg", jpg[: len(jpg) // 2])
    png = encode(pattern(4, (128, 128)), "PNG")
    put("chat/truncated.png", png[: len(png) // 2])
    put("chat/zero.jpg", b"")
    put("chat/fake.jpg", "This is not a picture.\n")
    put("chat/notes.txt", "labelling notes\n")
    put("chat/page.jpg", "<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    put("chat/huge.jpg", encode(pattern(5, (1000, 600)), "JPEG"))
    put("chat/photo.webp", encode(pattern(6), "WEBP", quality=90))
    rgba = np.dstack([np.asarray(pattern(7)), np.full((64, 64), 255, np.uint8)])
    rgba[:, :32, 3] = 0  # Left half fully transparent.
    put("chat/rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    put("chat/gray.jpg", encode(pattern(8).convert("L"), "JPEG", quality=92))
    deep = np.full((64, 64), 32896, np.uint16)  # 32896 / 257 = 128.
    deep[:, :32] = 65535
    put("chat/deep16.png", encode(Image.fromarray(deep), "PNG"))
    put("chat/cmyk.jpg", encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95))
    frames = [pattern(20 + i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    put("chat/anim.gif", buf.getvalue())
    put("chat/still.gif", encode(pattern(9), "GIF"))
    put("chat/image.bmp", encode(pattern(10), "BMP"))
    put("chat/palette.bmp", encode(pattern(11).convert("P"), "BMP"))
    # Stored 64 wide × 32 high, left half red, right half blue; orientation 6 means
    # "rotate 90° clockwise to display", so the upright image is 32 × 64 with red on top.
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, :32] = (255, 0, 0)
    arr[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    put("chat/rotated.jpg", encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes()))
    put("chat/big.jpg", encode(pattern(12, (400, 300)), "JPEG"))
    put("chat/png_named.jpg", encode(pattern(13), "PNG"))
    conflict = encode(pattern(14), "JPEG")
    put("chat/conflict.jpg", conflict)
    put("réel/conflict_copy.jpg", conflict)
    put(UNICODE_REL, encode(pattern(15), "JPEG"))
    put("réel/ok_r0.jpg", encode(pattern(16), "JPEG"))
    put("réel/ok_r1.png", encode(pattern(17), "PNG"))
    (root / "vide").mkdir()
    put("metadata.csv", "path,label\nchat/ok_0.jpg,chat\n")
    put("options.json", "{}")
    for rel in SYSTEM_ENTRIES:
        put(rel, b"\x00system")


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """The bad-files folder, its scan, and its state before the scan."""
    base = tmp_path_factory.mktemp("bad")
    root = base / "data"
    build_bad_tree(root)
    before = tree_state(root)
    result = checks.scan(
        root, max_pixels=MAX_PIXELS, max_side=MAX_SIDE, cache_dir=base / "cache", workers=3
    )
    return root, result, before


def row(result: checks.ScanResult, rel: str) -> pd.Series:
    hit = result.files[result.files["relpath"] == rel]
    assert len(hit) == 1, f"{rel} not found exactly once"
    return hit.iloc[0]


def test_scan_classes_and_files(bad):
    root, result, _ = bad
    assert result.classes == ["chat", "réel", "vide"]
    assert sorted(result.files["relpath"]) == sorted(EXPECTED)
    assert result.skipped_system == 9  # 3 at the root, 6 in chat/ (a folder counts once).
    assert sorted(result.ignored_root_files) == ["metadata.csv", "options.json"]
    assert all(Path(p).is_absolute() for p in result.files["path"])
    assert set(result.files["label"]) == {"chat", "réel"}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_scan_each_file(bad, rel):
    _, result, _ = bad
    status, text, normalised = EXPECTED[rel]
    r = row(result, rel)
    assert r["status"] == status, r["reason"]
    assert len(r["sha256"]) == 64
    if status == "bad":
        assert text in r["reason"]
        assert pd.isna(r["decode_path"])
    else:
        assert r["reason"] == ""
        assert text in r["notes"]
        assert bool(r["normalised"]) is normalised
        assert len(r["dhash"]) == 16
        if normalised:
            assert Path(r["decode_path"]).parent == result.cache_dir
            assert Path(r["decode_path"]).name.startswith(r["sha256"])
        else:
            assert r["decode_path"] == r["path"]


def test_formats_identified_from_content(bad):
    _, result, _ = bad
    assert row(result, "chat/png_named.jpg")["format"] == "PNG"
    assert row(result, "chat/photo.webp")["format"] == "WEBP"
    assert row(result, "chat/cmyk.jpg")["mode"] == "CMYK"
    assert row(result, "chat/deep16.png")["mode"].startswith("I")


def test_exif_rotation_applied(bad):
    _, result, _ = bad
    r = row(result, "chat/rotated.jpg")
    assert (r["width"], r["height"]) == (32, 64)
    arr = np.asarray(Image.open(r["decode_path"]))
    assert arr.shape == (64, 32, 3)
    top, bottom = arr[:24].reshape(-1, 3).mean(0), arr[40:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60, top  # Red on top.
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # Blue below.


def test_pixels_of_converted_images(bad):
    _, result, _ = bad
    rgba = np.asarray(Image.open(row(result, "chat/rgba.png")["decode_path"]))
    assert (rgba[:, :30] == 255).all()  # Transparent half composited on white.
    assert np.abs(rgba[:, 34:].astype(int) - np.asarray(pattern(7))[:, 34:]).max() <= 1
    deep = np.asarray(Image.open(row(result, "chat/deep16.png")["decode_path"]))
    assert deep.shape == (64, 64, 3) and deep.dtype == np.uint8
    assert (deep[:, :32] == 255).all() and (deep[:, 32:] == 128).all()
    cmyk = np.asarray(Image.open(row(result, "chat/cmyk.jpg")["decode_path"]))
    assert cmyk.reshape(-1, 3).mean(0)[0] > 200 and cmyk.reshape(-1, 3).mean(0)[1:].max() < 60
    big = Image.open(row(result, "chat/big.jpg")["decode_path"])
    assert big.size == (200, 150)
    assert (row(result, "chat/big.jpg")["width"], row(result, "chat/big.jpg")["height"]) == (
        400,
        300,
    )
    assert Image.open(row(result, "chat/anim.gif")["decode_path"]).mode == "RGB"


def test_user_files_untouched(bad):
    root, result, before = bad
    ds = D.make_dataset(result.good, result.classes, 32, batch_size=8, label_mode="int")
    for _ in ds:
        pass
    assert tree_state(root) == before
    assert not result.cache_dir.is_relative_to(root)


def test_report_names_every_bad_file(bad):
    _, result, _ = bad
    report = result.report()
    for rel, (status, text, _) in EXPECTED.items():
        if status == "bad":
            assert rel in report and text in report, rel
    assert "label conflict" in report.lower()
    assert "'vide' is empty" in report
    assert "EXIF rotated 90° clockwise" in report and "composited on white" in report
    assert set(result.bad.columns) >= {"relpath", "reason"}
    assert len(result.bad) == sum(s == "bad" for s, _, _ in EXPECTED.values())
    assert result.elapsed_s > 0
    counts = result.counts().set_index("label")
    assert counts.loc["vide", "usable"] == 0


def test_label_conflicts_and_problems(bad):
    _, result, _ = bad
    assert result.label_conflicts == [("chat/conflict.jpg", "réel/conflict_copy.jpg")]
    assert any("label conflict" in p for p in result.problems)
    assert any("'vide'" in p for p in result.problems)
    assert "chat/conflict.jpg" not in set(result.good["relpath"])
    clustered = set(result.files.loc[result.files["dup_size"] > 1, "relpath"])
    assert clustered == {"chat/conflict.jpg", "réel/conflict_copy.jpg"}  # Flat ones are not.


def test_check_trainable_names_empty_class(bad):
    _, result, _ = bad
    with pytest.raises(ValueError, match="class 'vide' has 0 usable") as err:
        checks.check_trainable(result)
    assert "truncated.jpg" in str(err.value)  # The report lists the unusable files too.


def test_single_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(3):
        pattern(i).save(tmp_path / "only" / f"{i}.png")
    result = checks.scan(tmp_path, cache_dir=tmp_path.parent / f"{tmp_path.name}-cache")
    assert any("only one class" in p and "'only'" in p for p in result.problems)
    with pytest.raises(ValueError, match="'only'"):
        checks.check_trainable(result)
    checks.check_trainable(result, min_classes=1)


def test_no_class_folder_and_bad_arguments(tmp_path):
    pattern(0).save(tmp_path / "loose.jpg")
    result = checks.scan(tmp_path, cache_dir=tmp_path.parent / f"{tmp_path.name}-cache")
    assert result.classes == [] and "loose.jpg" in result.problems[0]
    with pytest.raises(ValueError, match="no class folder"):
        checks.check_trainable(result)
    with pytest.raises(ValueError, match="inside data_dir"):
        checks.scan(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="does not exist"):
        checks.scan(tmp_path / "missing")


def test_tf_failure_falls_back_to_a_normalised_copy(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        pattern(ord(label)).save(root / label / "x.jpg")
    reason = checks._tf_mismatch(b"not an image", pattern(0), lossy=True)
    assert reason.startswith("TensorFlow cannot decode it natively: ")
    assert "{{" not in reason and "[Op:" not in reason
    real = checks._tf_mismatch
    monkeypatch.setattr(
        checks,
        "_tf_mismatch",
        lambda data, rgb, lossy: real(b"x" if b"JFIF" in data else data, rgb, lossy),
    )
    result = checks.scan(root, cache_dir=tmp_path / "cache")
    assert result.good["normalised"].all()
    assert result.good["notes"].str.contains("TensorFlow cannot decode it natively").all()
    x, _ = D.dataset_arrays(D.make_dataset(result.good, result.classes, 16))
    assert x.shape == (2, 16, 16, 3)


def test_pipeline_on_bad_folder_never_crashes(bad):
    _, result, _ = bad
    good = result.good
    ds = D.make_dataset(
        good, result.classes, (48, 40), batch_size=5, label_mode="int", shuffle=True, cache=False
    )
    x, y = D.dataset_arrays(ds)
    assert x.shape == (len(good), 48, 40, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0 and x.max() > 1.0
    assert sorted(y.tolist()) == sorted(result.classes.index(v) for v in good["label"])


def test_attach_metadata_groups(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root, n_per_class=6)
    result = checks.scan(root, cache_dir=tmp_path / "cache")
    rels = sorted(result.files["relpath"])
    meta = pd.DataFrame(
        {
            "path": ["./" + r for r in rels[:-1]] + ["gone/missing.jpg"],
            "label": [r.split("/")[0] for r in rels[:-1]] + ["a"],
            "source": [f"src{i % 4}" for i in range(len(rels))],
            "device": ["phone"] * len(rels),
        }
    )
    csv = root / "metadata.csv"
    meta.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="1 file\\(s\\) have no row"):
        df = checks.attach_metadata(result, csv)
    by = df.set_index("relpath")
    assert by.loc[rels[0], "group"] == "src0" and by.loc[rels[-1], "group"] == ""
    assert by.loc[rels[0], "device"] == "phone" and "label_meta" in df.columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = checks.attach_metadata(result.files, csv, group_col="device")
    assert set(dev["group"]) == {"phone", ""}
    with pytest.raises(ValueError, match="not a column"):
        checks.attach_metadata(result, csv, group_col="nope")
    bad_csv = tmp_path / "other.csv"
    pd.DataFrame({"path": ["x/y.jpg"], "source": ["s"]}).to_csv(bad_csv, index=False)
    with pytest.raises(ValueError, match="matches a scanned file"):
        checks.attach_metadata(result, bad_csv)

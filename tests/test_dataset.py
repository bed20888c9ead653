"""Tests of helpers.dataset: scan, duplicates, splits, manifests, size rules, pipeline.

Every image is generated in a temporary folder with PIL and numpy; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import dataset as D

UNICODE_REL = "réel/été_📷.jpg"
MAX_PIXELS = 500_000
MAX_SIDE = 200


def pattern(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A smooth random RGB image: distinct seeds give far-apart dHashes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


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
    result = D.scan(
        root, max_pixels=MAX_PIXELS, max_side=MAX_SIDE, cache_dir=base / "cache", workers=3
    )
    return root, result, before


def row(result: D.ScanResult, rel: str) -> pd.Series:
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
    assert result.throughput > 0
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
        D.check_trainable(result)
    assert "truncated.jpg" in str(err.value)  # The report lists the unusable files too.


def test_single_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(3):
        pattern(i).save(tmp_path / "only" / f"{i}.png")
    result = D.scan(tmp_path, cache_dir=tmp_path.parent / f"{tmp_path.name}-cache")
    assert any("only one class" in p and "'only'" in p for p in result.problems)
    with pytest.raises(ValueError, match="'only'"):
        D.check_trainable(result)
    D.check_trainable(result, min_classes=1)


def test_no_class_folder_and_bad_arguments(tmp_path):
    pattern(0).save(tmp_path / "loose.jpg")
    result = D.scan(tmp_path, cache_dir=tmp_path.parent / f"{tmp_path.name}-cache")
    assert result.classes == [] and "loose.jpg" in result.problems[0]
    with pytest.raises(ValueError, match="no class folder"):
        D.check_trainable(result)
    with pytest.raises(ValueError, match="inside data_dir"):
        D.scan(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="does not exist"):
        D.scan(tmp_path / "missing")


def test_tf_failure_falls_back_to_a_normalised_copy(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        pattern(ord(label)).save(root / label / "x.jpg")
    reason = D._tf_mismatch(b"not an image", pattern(0), lossy=True)
    assert reason.startswith("TensorFlow cannot decode it natively: ")
    assert "{{" not in reason and "[Op:" not in reason
    real = D._tf_mismatch
    monkeypatch.setattr(
        D,
        "_tf_mismatch",
        lambda data, rgb, lossy: real(b"x" if b"JFIF" in data else data, rgb, lossy),
    )
    result = D.scan(root, cache_dir=tmp_path / "cache")
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


# ---------------------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------------------


def test_dhash_near_and_far():
    im = pattern(40, (128, 128))
    copy = Image.open(io.BytesIO(encode(im.resize((100, 100)), "JPEG", quality=70)))
    assert D.hamming(D.dhash(im), D.dhash(copy)) <= 4
    assert D.hamming(D.dhash(im), D.dhash(pattern(41, (128, 128)))) > 10
    assert 0 <= D.dhash(im) < 2**64


def test_find_duplicates_exact_near_and_transitive():
    base = 0x0F0F_0F0F_0F0F_0F0F
    hashes = [base, base ^ 0b111, base ^ 0b111_1000_0000, base ^ (0xFF << 40), None, base]
    df = pd.DataFrame(
        {
            "relpath": [f"c/{i}.png" for i in range(6)],
            "sha256": ["a", "b", "c", "d", "e", "a"],
            "dhash": [None if h is None else f"{h:016x}" for h in hashes],
            "label": ["c"] * 6,
        }
    )
    out = D.find_duplicates(df, max_distance=4)
    c = out["dup_cluster"].tolist()
    # 0~1 (3 bits), 1~2 (4 bits) so 0, 1, 2 and the exact copy 5 are one cluster;
    # 3 is 8 bits away; 4 has no hash.
    assert c[0] == c[1] == c[2] == c[5] and c[3] != c[0] and c[4] == -1
    assert out.loc[0, "dup_kind"] == "exact+near" and out.loc[0, "dup_size"] == 4
    assert out.loc[3, "dup_kind"] == "" and out.loc[3, "dup_size"] == 1
    strict = D.find_duplicates(df, max_distance=3)["dup_cluster"].tolist()
    assert strict[0] == strict[1] == strict[5] and strict[2] != strict[0]
    flat = pd.DataFrame(
        {
            "relpath": ["x", "y", "z"],
            "sha256": ["1", "2", "3"],
            "dhash": ["0000000000000000", "0000000000000001", "ffffffffffffffff"],
            "label": ["c"] * 3,
        }
    )
    assert D.find_duplicates(flat)["dup_size"].tolist() == [1, 1, 1]  # Flat: no near match.


def make_dup_tree(root: Path, n_per_class: int = 12, start: int = 100, copies: bool = True) -> None:
    """Two classes of distinct images, plus a near copy and an exact copy in class a."""
    for label, offset in (("a", 0), ("b", 500)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pattern(start + offset + i).save(root / label / f"{label}_{start + i}.jpg", quality=92)
    if not copies:
        return
    im = pattern(start, (64, 64))
    im.resize((52, 52)).save(root / "a" / "near_copy.jpg", quality=70)
    shutil.copy(root / "a" / f"a_{start}.jpg", root / "a" / "exact_copy.jpg")


def test_near_duplicates_land_in_same_split(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root)
    result = D.scan(root, cache_dir=tmp_path / "cache")
    good = result.good
    ids = good.set_index("relpath")["dup_cluster"]
    assert ids["a/a_100.jpg"] == ids["a/near_copy.jpg"] == ids["a/exact_copy.jpg"]
    assert good.set_index("relpath").loc["a/near_copy.jpg", "dup_kind"] == "exact+near"
    assert (good["dup_size"] > 1).sum() == 3
    for seed in range(6):
        split = D.make_split(good, seed=seed).set_index("relpath")["split"]
        assert split["a/a_100.jpg"] == split["a/near_copy.jpg"] == split["a/exact_copy.jpg"]
        assert D.check_no_leakage(D.make_split(good, seed=seed)) == []


# ---------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------


def test_attach_metadata_groups(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root, n_per_class=6)
    result = D.scan(root, cache_dir=tmp_path / "cache")
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
        df = D.attach_metadata(result, csv)
    by = df.set_index("relpath")
    assert by.loc[rels[0], "group"] == "src0" and by.loc[rels[-1], "group"] == ""
    assert by.loc[rels[0], "device"] == "phone" and "label_meta" in df.columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = D.attach_metadata(result.files, csv, group_col="device")
    assert set(dev["group"]) == {"phone", ""}
    with pytest.raises(ValueError, match="not a column"):
        D.attach_metadata(result, csv, group_col="nope")
    bad_csv = tmp_path / "other.csv"
    pd.DataFrame({"path": ["x/y.jpg"], "source": ["s"]}).to_csv(bad_csv, index=False)
    with pytest.raises(ValueError, match="matches a scanned file"):
        D.attach_metadata(result, bad_csv)


# ---------------------------------------------------------------------------------------
# Splits and manifests (synthetic tables: no images needed)
# ---------------------------------------------------------------------------------------


def synthetic(n_a: int = 120, n_b: int = 80, group_size: int = 0, prefix: str = "") -> pd.DataFrame:
    rows = []
    for label, n in (("a", n_a), ("b", n_b)):
        for i in range(n):
            rel = f"{label}/{prefix}{i:04d}.jpg"
            rows.append(
                {
                    "relpath": rel,
                    "label": label,
                    "sha256": hashlib.sha256(rel.encode()).hexdigest(),
                    "group": f"{label}-g{i // group_size}" if group_size else "",
                    "status": "ok",
                }
            )
    return pd.DataFrame(rows)


def test_split_ratios_and_stratification():
    out = D.make_split(synthetic(), ratios=(0.7, 0.15, 0.15), seed=0)
    table = pd.crosstab(out["label"], out["split"])
    for label, n in (("a", 120), ("b", 80)):
        for s, r in zip(D.SPLITS, (0.7, 0.15, 0.15), strict=True):
            assert abs(table.loc[label, s] - r * n) <= 1, (label, s, table)
    assert set(out["split_origin"]) == {"greedy"}


def test_split_groups_never_cross():
    df = synthetic(group_size=5)
    df.loc[df["relpath"] == "b/0000.jpg", "group"] = "a-g0"  # One group spans both classes.
    out = D.make_split(df, seed=3)
    assert D.check_no_leakage(out) == []
    assert (out.groupby("group")["split"].nunique() == 1).all()
    share = out["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.06 and abs(share["test"] - 0.15) < 0.06


def test_split_deterministic_and_seeded():
    df = synthetic()
    a = D.make_split(df, seed=7)["split"].tolist()
    assert a == D.make_split(df, seed=7)["split"].tolist()
    assert (
        a
        == D.make_split(df.sample(frac=1, random_state=1), seed=7)
        .set_index("relpath")
        .loc[df["relpath"], "split"]
        .tolist()
    )
    assert a != D.make_split(df, seed=8)["split"].tolist()


def test_split_drops_bad_rows_and_validates_ratios():
    df = synthetic(10, 10)
    df.loc[0, "status"] = "bad"
    assert len(D.make_split(df)) == 19
    with pytest.raises(ValueError, match="sum to 1"):
        D.make_split(df, ratios=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="> 0"):
        D.make_split(df, ratios=(0.85, 0.15, 0.0))
    with pytest.warns(UserWarning) as caught:
        D.make_split(synthetic(), ratios=(0.65, 0.25, 0.10))
    texts = " | ".join(str(w.message) for w in caught)
    assert "train ratio 0.65" in texts and "val ratio 0.25" in texts and "test" not in texts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.make_split(synthetic(), ratios=(0.8, 0.1, 0.1))


def test_manifest_reuse_keeps_old_splits(tmp_path):
    manifest = tmp_path / "runs" / "split.csv"
    old = D.make_split(synthetic(group_size=4), seed=0, manifest_path=manifest)
    assert manifest.is_file()
    back = D.read_manifest(manifest)
    assert list(back.columns[:5]) == ["relpath", "sha256", "label", "group", "split"]
    assert len(back) == len(old)

    new = pd.concat([synthetic(group_size=4), synthetic(30, 20, prefix="new")])
    new = new.reset_index(drop=True)
    gone = "a/0001.jpg"
    changed = "b/0002.jpg"
    new = new[new["relpath"] != gone].copy()
    new.loc[new["relpath"] == changed, "sha256"] = "f" * 64
    test_file = old[old["split"] == "test"].iloc[0]
    # A new file of an old test file's group must join test.
    joiner = {
        "relpath": "a/joins.jpg",
        "label": test_file["label"],
        "sha256": "e" * 64,
        "group": test_file["group"],
        "status": "ok",
    }
    new = pd.concat([new, pd.DataFrame([joiner])], ignore_index=True)
    with pytest.warns(UserWarning, match="gone and dropped"):
        again = D.make_split(new, seed=123, manifest_path=manifest)
    by_old = old.set_index("relpath")["split"]
    by_new = again.set_index("relpath")
    kept = [r for r in by_old.index if r not in (gone, changed)]
    assert (by_new.loc[kept, "split"] == by_old[kept]).all()
    assert set(old.loc[old["split"] == "test", "relpath"]) - {gone, changed} <= set(
        again.loc[again["split"] == "test", "relpath"]
    )
    assert by_new.loc[changed, "split_origin"] != "manifest"
    assert by_new.loc["a/joins.jpg", "split"] == "test"
    assert by_new.loc["a/joins.jpg", "split_origin"] == "unit"
    assert gone not in by_new.index
    assert any("changed" in n for n in again.attrs["split_notes"])
    assert D.check_no_leakage(again) == []
    assert len(D.read_manifest(manifest)) == len(again)


def test_manifest_with_real_scan(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root, n_per_class=20)
    manifest = tmp_path / "manifest.csv"
    first = D.make_split(D.scan(root, cache_dir=tmp_path / "c").good, manifest_path=manifest)
    old_test = set(first.loc[first["split"] == "test", "relpath"])
    make_dup_tree(root, n_per_class=8, start=300, copies=False)  # Adds 16 files.
    (root / "a" / "near_copy.jpg").unlink()
    pattern(999).save(root / "a" / "near_copy.jpg")  # Same name, new content.
    second = D.make_split(D.scan(root, cache_dir=tmp_path / "c").good, manifest_path=manifest)
    assert old_test - {"a/near_copy.jpg"} <= set(second.loc[second["split"] == "test", "relpath"])
    by = second.set_index("relpath")
    assert by.loc["a/near_copy.jpg", "split_origin"] != "manifest"
    assert (by["split_origin"] == "manifest").sum() == len(first) - 1


def test_check_no_leakage_reports():
    df = synthetic(4, 4, group_size=2)
    df["split"] = ["train", "test"] * 4
    df["dup_cluster"] = list(range(8))
    problems = D.check_no_leakage(df)
    assert problems and all(p.startswith("group") for p in problems)
    df["group"] = ""
    df.loc[1, "sha256"] = df.loc[0, "sha256"]
    assert D.check_no_leakage(df)[0].startswith("sha256")


# ---------------------------------------------------------------------------------------
# Size rules and rebalancing
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "status", "augmentation"),
    [
        (499, "below minimum", "indispensable"),
        (500, "minimum met", "indispensable"),
        (1000, "minimum met", "indispensable"),
        (1999, "minimum met", "indispensable"),
        (2000, "ideal met", "recommended"),
        (10000, "ideal met", "recommended"),
        (10001, "ideal met", "useful but less critical"),
    ],
)
def test_size_rules_binary(count, status, augmentation):
    rules = D.size_rules({"fake": count, "real": 2000}).set_index("label")
    assert rules.loc["fake", "status"] == status
    assert rules.loc["fake", "augmentation"] == augmentation
    assert rules.loc["fake", "task"] == "binary" and rules.loc["fake", "min_required"] == 500
    assert rules.loc["fake", "ideal"] == "2,000–5,000"


@pytest.mark.parametrize(
    ("count", "status"),
    [
        (199, "below minimum"),
        (200, "minimum met"),
        (499, "minimum met"),
        (500, "minimum met"),
        (999, "minimum met"),
        (1000, "ideal met"),
    ],
)
def test_size_rules_multiclass(count, status):
    rules = D.size_rules({"a": count, "b": 1000, "c": 1000}).set_index("label")
    assert rules.loc["a", "status"] == status and rules.loc["a", "task"] == "3 classes"


def test_size_rules_checklist_and_scratch():
    rules = D.size_rules({"a": 4999, "b": 5000, "c": 10_000, "d": 50_000}, n_classes=2)
    assert rules["checklist_augment"].tolist() == [True, False, False, False]
    assert rules["from_scratch"].str.startswith("too few").tolist() == [True, True, False, False]
    assert D.CHECKLIST_AUGMENT_BELOW == 5000 and D.BINARY_TL_GOOD_MINIMUM == 1000


def test_imbalance_and_class_weights():
    assert D.imbalance_ratio({"a": 30, "b": 10}) == 3.0
    assert D.imbalance_ratio({"a": 3, "b": 0}) == float("inf")
    labels = ["a"] * 30 + ["b"] * 10
    w = D.class_weights(labels, ["a", "b"])
    assert w == pytest.approx({0: 40 / (2 * 30), 1: 40 / (2 * 10)})
    assert D.class_weights([0] * 30 + [1] * 10, ["a", "b"]) == pytest.approx(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.class_weights(["a"] * 100 + ["b"] * 10, ["a", "b"])  # 10:1 is not above 10:1.
    with pytest.warns(UserWarning, match="insufficient"):
        D.class_weights(["a"] * 110 + ["b"] * 10, ["a", "b"])
    with pytest.raises(ValueError, match="no training label"):
        D.class_weights(["a"] * 3, ["a", "b"])
    with pytest.raises(ValueError, match="not in classes"):
        D.class_weights(["a", "z"], ["a", "b"])


def test_undersample_oversample():
    df = synthetic(30, 7)
    under = D.undersample(df, seed=0)
    assert D.class_counts(under) == {"a": 7, "b": 7}
    over = D.oversample(df, seed=0)
    assert D.class_counts(over) == {"a": 30, "b": 30}
    b = over[over["label"] == "b"]["relpath"].value_counts()
    assert b.max() - b.min() <= 1 and over["oversampled"].sum() == 23
    assert D.undersample(df, seed=0).equals(under)
    split = D.make_split(synthetic(60, 20))
    over = D.oversample(split)
    assert D.class_counts(over, split="train") == {"a": 42, "b": 42}
    assert D.class_counts(over, split="test") == D.class_counts(split, split="test")
    under = D.undersample(split)
    assert D.class_counts(under, split="train") == {"a": 14, "b": 14}
    assert len(under[under["split"] != "train"]) == len(split[split["split"] != "train"])


# ---------------------------------------------------------------------------------------
# tf.data pipeline
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dark_bright(tmp_path_factory):
    """Class 'dark' images have values <= 60, class 'light' >= 190; a scan of them."""
    base = tmp_path_factory.mktemp("db")
    root = base / "data"
    for label, lo in (("light", 190), ("dark", 0)):
        (root / label).mkdir(parents=True)
        for i in range(6 if label == "dark" else 5):
            arr = np.asarray(pattern(i + lo)) * (60 / 255) + lo
            Image.fromarray(arr.astype(np.uint8)).save(root / label / f"{i}.png")
    return D.scan(root, cache_dir=base / "cache")


@pytest.mark.parametrize("label_mode", ["binary", "categorical", "int"])
def test_make_dataset_shapes_and_label_order(dark_bright, label_mode):
    result = dark_bright
    assert result.classes == ["dark", "light"]
    ds = D.make_dataset(
        result.good, result.classes, 24, batch_size=4, shuffle=True, seed=1, label_mode=label_mode
    )
    x, y = D.dataset_arrays(ds)
    assert x.shape == (11, 24, 24, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0 and x.max() > 150.0
    index = {
        "binary": y[:, 0] if y.ndim == 2 else y,
        "int": y,
        "categorical": y.argmax(-1) if y.ndim == 2 else y,
    }[label_mode]
    if label_mode == "binary":
        assert y.shape == (11, 1) and y.dtype == np.float32
    elif label_mode == "categorical":
        assert y.shape == (11, 2) and y.dtype == np.float32
    else:
        assert y.shape == (11,) and y.dtype == np.int32
    bright = x.mean(axis=(1, 2, 3)) > 127
    assert (bright == (index == 1)).all()  # "light" is index 1: alphabetical order.
    assert index.sum() == 5


def test_make_dataset_options(dark_bright, tmp_path):
    result = dark_bright
    ds = D.make_dataset(
        result.good,
        result.classes,
        (16, 20),
        batch_size=3,
        cache=str(tmp_path / "tfcache" / "train"),
        augment=lambda x: 255.0 - x,
    )
    x, _ = D.dataset_arrays(ds)
    assert x.shape == (11, 16, 20, 3)
    assert (x.mean(axis=(1, 2, 3)) > 127).sum() == 6  # Inverted: the dark ones are bright.
    for batch, _ in ds.take(1):
        assert tuple(batch.shape) == (3, 16, 20, 3)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        D.make_dataset(result.good, ["a", "b", "c"], 16)
    with pytest.raises(ValueError, match="not in classes"):
        D.make_dataset(result.good, ["dark", "other"], 16)
    with pytest.raises(ValueError, match="label_mode"):
        D.make_dataset(result.good, result.classes, 16, label_mode="sparse")


def test_make_dataset_runs_keras_layers_in_training_mode(dark_bright):
    import keras

    # Dropout is the identity unless called with training=True.
    ds = D.make_dataset(
        dark_bright.good,
        dark_bright.classes,
        16,
        batch_size=4,
        augment=keras.layers.Dropout(0.5, seed=0),
    )
    x, _ = D.dataset_arrays(ds)
    assert 0.3 < (x == 0).mean() < 0.7


def test_split_datasets(dark_bright):
    split = D.make_split(dark_bright.good, seed=0)
    sets = D.split_datasets(split, dark_bright.classes, 16, batch_size=4)
    sizes = {k: len(D.dataset_arrays(v)[0]) for k, v in sets.items()}
    assert sizes == split["split"].value_counts().to_dict()

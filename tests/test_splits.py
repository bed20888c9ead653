"""Tests of helpers.splits on synthetic tables: ratios, groups, seeds, manifests, leaks."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.images import make_dup_tree, pattern, synthetic

from helpers import checks, config, demo_data, splits
from helpers import dataset as D


def test_split_ratios_and_stratification():
    out = splits.make_split(synthetic(), ratios=(0.7, 0.15, 0.15), seed=0)
    table = pd.crosstab(out["label"], out["split"])
    for label, n in (("a", 120), ("b", 80)):
        for s, r in zip(D.SPLITS, (0.7, 0.15, 0.15), strict=True):
            assert abs(table.loc[label, s] - r * n) <= 1, (label, s, table)
    assert set(out["split_origin"]) == {"new"}


def test_split_groups_never_cross():
    df = synthetic(group_size=5)
    df.loc[df["relpath"] == "b/0000.jpg", "group"] = "a-g0"  # One group spans both classes.
    out = splits.make_split(df, seed=3)
    assert splits.check_no_leakage(out) == []
    assert (out.groupby("group")["split"].nunique() == 1).all()
    share = out["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.72) < 0.06 and abs(share["test"] - 0.14) < 0.06


def _frame(relpaths, labels, groups) -> pd.DataFrame:
    """A table make_split reads: one usable file per row, content hashes all distinct."""
    sha = [hashlib.sha256(r.encode()).hexdigest() for r in relpaths]
    return pd.DataFrame({"relpath": relpaths, "label": labels, "group": groups, "sha256": sha})


def _assert_inside_sheet(out: pd.DataFrame) -> None:
    """Every share strictly inside the sheet's range, val and test of 400+ images, no leak."""
    counts = out["split"].value_counts()
    for name, (lo, hi) in splits.RECOMMENDED_RATIOS.items():
        assert lo < counts[name] / len(out) < hi, (name, counts.to_dict())
    assert counts["val"] >= 400 and counts["test"] >= 400, counts.to_dict()
    assert splits.check_no_leakage(out) == [] and out.attrs["split_notes"] == []


@pytest.mark.parametrize("seed", range(5))
def test_full_demo_split_is_inside_the_sheet(seed):
    # The full profile's demo plan (its metadata, without rendering): groups are the sources.
    settings = config.PROFILES["full"]
    opts = {**demo_data._DEFAULTS, "per_class": settings["demo_per_class"]}
    plan = demo_data._plan(demo_data._options(**{**opts, "seed": seed}))
    assert len(plan) >= 3000
    df = _frame([r["path"] for r in plan], [r["label"] for r in plan], [r["source"] for r in plan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_inside_sheet(splits.make_split(df, seed=seed))


@pytest.mark.parametrize("seed", range(5))
def test_uneven_groups_land_inside_the_sheet(seed):
    # 80 groups of 12-25 images per label (both labels in each group), about 3,000 images.
    rng = np.random.default_rng(seed)
    rows = [
        (f"{label}/g{g:02d}_{i:02d}.jpg", label, f"g{g}")
        for g in range(80)
        for label in ("fake", "real")
        for i in range(int(rng.integers(12, 26)))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_inside_sheet(splits.make_split(_frame(*zip(*rows)), seed=seed))


def test_split_warns_when_units_are_too_large():
    # Five groups of 40 images: val and test can only hold one group, 20 % each.
    df = _frame([f"a/{i:03d}.jpg" for i in range(200)], ["a"] * 200, [i // 40 for i in range(200)])
    with pytest.warns(UserWarning, match="more/smaller groups or other ratios") as caught:
        out = splits.make_split(df, seed=0)
    assert out["split"].value_counts().to_dict() == {"train": 120, "val": 40, "test": 40}
    texts = " | ".join(str(w.message) for w in caught)
    for part in ("train split holds 60.0%", "val split holds 20.0%", "test split holds 20.0%"):
        assert part in texts
    assert len(out.attrs["split_notes"]) == 3 and "10%-15%" in out.attrs["split_notes"][1]


def test_split_deterministic_and_seeded():
    df = synthetic()
    a = splits.make_split(df, seed=7)["split"].tolist()
    assert a == splits.make_split(df, seed=7)["split"].tolist()
    assert (
        a
        == splits.make_split(df.sample(frac=1, random_state=1), seed=7)
        .set_index("relpath")
        .loc[df["relpath"], "split"]
        .tolist()
    )
    assert a != splits.make_split(df, seed=8)["split"].tolist()


def test_split_drops_bad_rows_and_validates_ratios():
    df = synthetic(10, 10)
    df.loc[0, "status"] = "bad"
    assert len(splits.make_split(df)) == 19
    with pytest.raises(ValueError, match="sum to 1"):
        splits.make_split(df, ratios=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="> 0"):
        splits.make_split(df, ratios=(0.85, 0.15, 0.0))
    with pytest.warns(UserWarning) as caught:
        splits.make_split(synthetic(), ratios=(0.65, 0.25, 0.10))
    texts = " | ".join(str(w.message) for w in caught)
    assert "train ratio 0.65" in texts and "val ratio 0.25" in texts and "test" not in texts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splits.make_split(synthetic(), ratios=(0.8, 0.1, 0.1))


def test_manifest_reuse_keeps_old_splits(tmp_path):
    manifest = tmp_path / "runs" / "split.csv"
    old = splits.make_split(synthetic(group_size=4), seed=0, manifest_path=manifest)
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
        again = splits.make_split(new, seed=123, manifest_path=manifest)
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
    assert splits.check_no_leakage(again) == []
    assert len(D.read_manifest(manifest)) == len(again)


def test_manifest_with_real_scan(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root, n_per_class=20)
    manifest = tmp_path / "manifest.csv"
    first = splits.make_split(
        checks.scan(root, cache_dir=tmp_path / "c").good, manifest_path=manifest
    )
    old_test = set(first.loc[first["split"] == "test", "relpath"])
    make_dup_tree(root, n_per_class=8, start=300, copies=False)  # Adds 16 files.
    (root / "a" / "near_copy.jpg").unlink()
    pattern(999).save(root / "a" / "near_copy.jpg")  # Same name, new content.
    second = splits.make_split(
        checks.scan(root, cache_dir=tmp_path / "c").good, manifest_path=manifest
    )
    assert old_test - {"a/near_copy.jpg"} <= set(second.loc[second["split"] == "test", "relpath"])
    by = second.set_index("relpath")
    assert by.loc["a/near_copy.jpg", "split_origin"] != "manifest"
    assert (by["split_origin"] == "manifest").sum() == len(first) - 1


def test_check_no_leakage_reports():
    df = synthetic(4, 4, group_size=2)
    df["split"] = ["train", "test"] * 4
    df["dup_cluster"] = list(range(8))
    problems = splits.check_no_leakage(df)
    assert problems and all(p.startswith("group") for p in problems)
    df["group"] = ""
    df.loc[1, "sha256"] = df.loc[0, "sha256"]
    assert splits.check_no_leakage(df)[0].startswith("sha256")

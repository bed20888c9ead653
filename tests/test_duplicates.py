"""Tests of helpers.duplicates: exact and near copies, clustered, kept in one split."""

from __future__ import annotations

import io

import imagehash
import pandas as pd
from fixtures.images import encode, make_dup_tree, pattern
from PIL import Image

from helpers import checks, duplicates, splits


def test_dhash_near_and_far():
    im = pattern(40, (128, 128))
    copy = Image.open(io.BytesIO(encode(im.resize((100, 100)), "JPEG", quality=70)))
    far = pattern(41, (128, 128))
    distance = imagehash.hex_to_hash(duplicates.perceptual_hash(im)) - imagehash.dhash(copy)
    assert distance <= 4
    assert imagehash.dhash(im) - imagehash.dhash(far) > 10
    assert 0 <= int(duplicates.perceptual_hash(im), 16) < 2**64


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
    out = duplicates.find_duplicates(df, max_distance=4)
    c = out["dup_cluster"].tolist()
    # 0~1 (3 bits), 1~2 (4 bits) so 0, 1, 2 and the exact copy 5 are one cluster;
    # 3 is 8 bits away; 4 has no hash.
    assert c[0] == c[1] == c[2] == c[5] and c[3] != c[0] and c[4] == -1
    assert out.loc[0, "dup_kind"] == "exact+near" and out.loc[0, "dup_size"] == 4
    assert out.loc[3, "dup_kind"] == "" and out.loc[3, "dup_size"] == 1
    strict = duplicates.find_duplicates(df, max_distance=3)["dup_cluster"].tolist()
    assert strict[0] == strict[1] == strict[5] and strict[2] != strict[0]
    flat = pd.DataFrame(
        {
            "relpath": ["x", "y", "z"],
            "sha256": ["1", "2", "3"],
            "dhash": ["0000000000000000", "0000000000000001", "ffffffffffffffff"],
            "label": ["c"] * 3,
        }
    )
    assert duplicates.find_duplicates(flat)["dup_size"].tolist() == [
        1,
        1,
        1,
    ]  # Flat: no near match.


def test_near_duplicates_land_in_same_split(tmp_path):
    root = tmp_path / "data"
    make_dup_tree(root)
    result = checks.scan(root, cache_dir=tmp_path / "cache")
    good = result.good
    ids = good.set_index("relpath")["dup_cluster"]
    assert ids["a/a_100.jpg"] == ids["a/near_copy.jpg"] == ids["a/exact_copy.jpg"]
    assert good.set_index("relpath").loc["a/near_copy.jpg", "dup_kind"] == "exact+near"
    assert (good["dup_size"] > 1).sum() == 3
    for seed in range(6):
        split = splits.make_split(good, seed=seed).set_index("relpath")["split"]
        assert split["a/a_100.jpg"] == split["a/near_copy.jpg"] == split["a/exact_copy.jpg"]
        assert splits.check_no_leakage(splits.make_split(good, seed=seed)) == []

"""Sample folders for lessons: the problem files and the user-style three-class dataset."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import checks, demo_data, samples


def test_problem_files_are_each_reported(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    kinds = samples.write_problem_files(tmp_path / "bad", image)
    scan = checks.scan(tmp_path / "bad", cache_dir=tmp_path / "cache")
    bad = set(scan.bad["relpath"])
    assert bad == {"real/truncated.jpg", "real/empty.jpg", "real/notes.jpg"}
    assert len(scan.good) == len(kinds) - 3


def test_user_style_dataset_has_three_classes_and_bad_files(tmp_path):
    demo = demo_data.generate(per_class=12, image_size=64, out_root=tmp_path / "data")
    counts = samples.make_user_style_dataset(demo, tmp_path / "three")
    assert set(counts) == {"print", "real", "screen"}
    scan = checks.scan(tmp_path / "three", cache_dir=tmp_path / "cache")
    assert scan.classes == ["print", "real", "screen"]
    assert len(scan.bad) == 6 and scan.skipped_system >= 3
    assert {f.split(".")[-1] for f in scan.good["relpath"]} >= {"JPG", "png", "webp"}
    with pytest.raises(FileExistsError):
        samples.make_user_style_dataset(demo, tmp_path / "three")

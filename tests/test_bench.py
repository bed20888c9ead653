"""The benches' command line and the timing helpers of ``bench phases`` (no model is built)."""

from __future__ import annotations

import time

import pytest

from helpers.batch import bench


def test_phases_defaults_are_the_course_full_setting():
    args = bench.parse(["phases"])
    assert (args.per_class, args.image_size, args.calibration, args.predict) == (
        1500,
        224,
        200,
        420,
    )
    assert args.backbone == "EfficientNetLite0" and args.steps >= 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["phases", "--per-class", "0"], "--per-class must be >= 1"),
        (["phases", "--backbone", "ResNet50"], "invalid choice: 'ResNet50'"),
        (["phases", "--image-size", "big"], "invalid int value: 'big'"),
    ],
)
def test_bad_options_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_timed_records_wall_time_and_rate():
    rows: list[dict] = []
    out = bench._timed(rows, "sleep", lambda: time.sleep(0.05) or "done", images=10, note="n")
    assert out == "done"
    (row,) = rows
    assert row["phase"] == "sleep" and row["note"] == "n" and 0.05 <= row["s"] < 1.0
    assert row["images/s"] == pytest.approx(10 / row["s"])
    bench._timed(rows, "no images", lambda: None)
    assert rows[-1]["images/s"] is None and rows[-1]["images"] is None

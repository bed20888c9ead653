"""The claims scoreboard: one row per claim, replaced when measured again, verdicts checked."""

from __future__ import annotations

import math

import pytest

from helpers import claims, stats


def test_rows_are_recorded_replaced_and_summarised(tmp_path):
    rows = claims.record(tmp_path, "05", "INT8 ~4x smaller", "~4x", 3.4, "held", 3.3, 3.5, 1)
    assert list(rows.columns) == claims.COLUMNS and len(rows) == 1
    claims.record(
        tmp_path,
        "06",
        "INT8 loses < 1 point",
        "< 1 %",
        -0.02,
        "inconclusive at this sample size (~900 would resolve it)",
        -0.05,
        0.01,
        94,
    )
    claims.record(tmp_path, "05", "INT8 ~4x smaller", "~4x", 3.9, "held", 3.8, 4.0, 1)
    board = claims.scoreboard(tmp_path)
    assert (
        len(board) == 2 and board.loc[board.claim == "INT8 ~4x smaller", "measured"].item() == 3.9
    )
    summary = claims.summary(board)
    assert summary["claims"] == 2 and summary["held"] == 1 and summary["inconclusive"] == 1
    assert summary["conclusive_share"] == 0.5


def test_a_verdict_must_be_one_of_three(tmp_path):
    with pytest.raises(ValueError, match="must start with"):
        claims.record(tmp_path, "03", "fine-tuning helps", "+2 points", 0.01, "improved")
    assert claims.scoreboard(tmp_path).empty


def test_a_paired_difference_inside_its_noise_is_inconclusive(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random(94) < 0.78
    b = a.copy()
    b[:2] = ~b[:2]  # two images change: far inside the noise of 94 images
    out = stats.paired(a, b)
    verdict = stats.verdict(out["ci_low"], out["ci_high"], (0.0, math.inf), out["difference"], 94)
    assert verdict.startswith("inconclusive")
    rows = claims.record(
        tmp_path,
        "04",
        "fine-tuning improves accuracy",
        "+2 points",
        out["difference"],
        verdict,
        out["ci_low"],
        out["ci_high"],
        out["n"],
    )
    assert rows.loc[0, "verdict"].startswith("inconclusive")


def test_a_notebook_run_again_starts_its_rows_afresh(tmp_path):
    claims.record(tmp_path, "02_augmentation", "old claim", "-", 1.0, "held")
    claims.record(tmp_path, "05_quantization", "kept", "-", 1.0, "held")
    claims.reset(tmp_path, "02_augmentation")
    assert claims.scoreboard(tmp_path)["claim"].tolist() == ["kept"]


def test_compare_is_paired_verdict_and_record_in_one_call(tmp_path):
    import numpy as np

    a = np.array([True] * 80 + [False] * 20)
    b = a.copy()
    b[80:95], b[:5] = True, False  # B right on 15 images A misses, wrong on 5 A gets right
    row = claims.compare(tmp_path, "04_phase2", "phase 2 beats phase 1", "+2 points", a, b, (0, 1))
    assert row["difference"] == pytest.approx(0.10) and row["n"] == 100
    assert (row["accuracy_a"], row["accuracy_b"]) == (0.80, 0.90)
    assert row["McNemar p"] == pytest.approx(0.0414, abs=1e-3) == row["p_value"]
    assert row["verdict"] == "held" and 0 < row["ci_low"] < 0.10 < row["ci_high"]
    assert row["95 % interval"] == f"{row['ci_low']:+.3f} to {row['ci_high']:+.3f}"
    assert set(claims.SHOWN) <= set(row)
    saved = claims.scoreboard(tmp_path).iloc[0]
    assert (saved["claim"], saved["sheet"], saved["verdict"]) == (row["claim"], "+2 points", "held")
    assert saved["measured"] == pytest.approx(0.10) and saved["ci_low"] == pytest.approx(
        row["ci_low"]
    )
    assert (saved["n"], saved["notebook"]) == (100, "04_phase2")
    # Not recorded: the same figures, the scoreboard unchanged; the verdict follows the claim.
    worse = claims.compare(None, "03", "A beats B", "better", b, a, (0, 1), False)
    assert worse["verdict"] == "not held" and len(claims.scoreboard(tmp_path)) == 1
    # Identical answers: the hint scales like 1/n (stats.verdict's "1/n").
    same = claims.compare(None, "05", "same", "-", a, a, (-0.01, 1), record=False)
    assert same["verdict"] == "inconclusive at this sample size (~368 would resolve it)"


def test_compare_refuses_predictions_in_place_of_correctness(tmp_path):
    import numpy as np

    with pytest.raises(ValueError, match="True/False per image"):
        claims.compare(tmp_path, "05", "c", "-", np.array([0, 1]), np.array([1, 1]), (0, 1))
    with pytest.raises(ValueError, match="run folder"):
        claims.compare(None, "05", "c", "-", np.array([True]), np.array([True]), (0, 1))
    assert claims.scoreboard(tmp_path).empty


def test_record_rules_records_checks_and_skips_advice(tmp_path):
    claims.record_rules(
        tmp_path,
        "01_x",
        "pre-training checklist",
        [("split without leakage", True), ("pixels 0-255", False), ("augmentation on", None)],
    )
    board = claims.scoreboard(tmp_path).set_index("claim")
    assert list(board.index) == [
        "pre-training checklist: split without leakage",
        "pre-training checklist: pixels 0-255",
    ]
    assert list(board["verdict"]) == ["held", "not held"] and list(board["measured"]) == [1.0, 0.0]

"""Rates with exact (Clopper-Pearson) intervals and their formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import stats


def test_clopper_pearson_and_rule_of_three():
    zero = stats.rate_with_ci(0, 30)
    assert zero["rate"] == 0 and zero["n"] == 30 and zero["ci_low"] == 0
    assert zero["rule_of_three"] == pytest.approx(0.1)
    # With no errors the upper bound is 1 - (alpha / 2) ** (1 / n).
    assert zero["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 30))
    assert zero["ci_high"] == pytest.approx(0.116, abs=5e-4)
    assert "rule of three" in zero["note"]
    some = stats.rate_with_ci(2, 10)
    assert some["rate"] == 0.2 and math.isnan(some["rule_of_three"])
    # Reference values of the exact binomial interval for 2/10.
    assert some["ci_low"] == pytest.approx(0.0252, abs=1e-4)
    assert some["ci_high"] == pytest.approx(0.5561, abs=1e-4)
    assert stats.rate_with_ci(5, 5)["ci_high"] == 1.0
    assert stats.rate_with_ci(2, 10, confidence=0.99)["ci_high"] > some["ci_high"]


def test_rate_without_samples_is_nan_with_a_note():
    empty = stats.rate_with_ci(0, 0)
    assert math.isnan(empty["rate"]) and math.isnan(empty["ci_high"])
    assert "no samples" in empty["note"]
    with pytest.raises(ValueError, match="errors <= n"):
        stats.rate_with_ci(3, 2)


def test_format_rate():
    assert stats.format_rate(stats.rate_with_ci(2, 10)) == "20.0 % (2/10, 95 % CI 2.5-55.6 %)"
    assert stats.format_rate(stats.rate_with_ci(0, 0)).startswith("n/a (no samples")


def test_paired_comparison_on_known_predictions():
    import numpy as np

    a = np.array([1] * 80 + [0] * 20, bool)  # A right on 80 of 100 images
    b = a.copy()
    b[80:95] = True  # B also right on 15 images A misses...
    b[:5] = False  # ...and wrong on 5 that A gets right.
    out = stats.paired(a, b)
    assert out["n"] == 100 and (out["a_only"], out["b_only"]) == (5, 15)
    assert out["difference"] == pytest.approx(0.10)
    # McNemar's exact test: 15 of 20 discordant pairs, two-sided binomial p = 0.0414.
    assert out["p_value"] == pytest.approx(0.0414, abs=1e-3)
    assert 0 < out["ci_low"] < 0.10 < out["ci_high"] < 0.25
    assert stats.paired(b, a)["difference"] == pytest.approx(-0.10)


def test_identical_answers_leave_an_interval():
    import numpy as np

    same = np.array([True, False] * 50)
    out = stats.paired(same, same)
    assert out["difference"] == 0 and out["p_value"] == 1.0
    assert out["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 100)) and out["ci_low"] < 0
    with pytest.raises(ValueError, match="same images"):
        stats.paired(same, same[:10])


def test_verdicts_follow_the_interval():
    better = (0.0, math.inf)  # the claim: B is better than A
    assert stats.verdict(0.02, 0.15, better, 0.08, 100) == "held"
    assert stats.verdict(-0.15, -0.02, better, -0.08, 100) == "not held"
    text = stats.verdict(-0.02, 0.10, better, 0.04, 100)
    # Half-width 0.06 against a distance of 0.04 to the edge: (0.06 / 0.04) ** 2 * 100 = 225.
    assert text == "inconclusive at this sample size (~225 would resolve it)"
    assert "improved" not in text and "held" not in text
    small_loss = (-0.01, math.inf)  # the sheet: INT8 loses under 1 point
    assert stats.verdict(-0.005, 0.004, small_loss, 0.0, 400) == "held"


def test_a_few_discordant_images_settle_nothing():
    import numpy as np

    better = (0.0, math.inf)
    for n, a_only, b_only in [(15, 0, 1), (8, 0, 2), (8, 3, 0)]:
        a, b = np.zeros(n, bool), np.zeros(n, bool)
        a[:a_only] = True
        b[a_only : a_only + b_only] = True
        out = stats.paired(a, b)
        assert out["ci_low"] < 0 < out["ci_high"]
        text = stats.verdict(out["ci_low"], out["ci_high"], better, out["difference"], n)
        assert text.startswith("inconclusive")
    assert stats.verdict(0.0, 0.2, better, 0.1, 15).startswith("inconclusive")
    assert stats.verdict(0.70, 0.70, (0.70, 0.80), 0.70, 96) == "held"


# Notebook 07's bias demonstration compares two test splits: different images.


def _correct(right: int, n: int) -> np.ndarray:
    return np.arange(n) < right


@pytest.mark.parametrize(
    "b, a, low, high",  # Newcombe (1998), Stat. Med. 17:873, table II, method 10.
    [
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
        ((10, 10), (0, 20), 0.6791, 1.0),
    ],
)
def test_unpaired_gives_newcombes_published_intervals(b, a, low, high):
    out = stats.unpaired(_correct(*a), _correct(*b))
    assert out["difference"] == pytest.approx(b[0] / b[1] - a[0] / a[1])
    assert (round(out["ci_low"], 4), round(out["ci_high"], 4)) == (low, high)
    assert (out["n"], out["n_a"], out["n_b"]) == (a[1] + b[1], a[1], b[1])


def test_unpaired_p_value_is_fishers_and_empty_sides_are_refused():
    same = stats.unpaired(_correct(3, 10), _correct(6, 20))
    assert same["difference"] == 0 and same["p_value"] == 1.0
    far = stats.unpaired(_correct(0, 20), _correct(10, 10))
    assert far["p_value"] == pytest.approx(1 / math.comb(30, 10))  # The only table as extreme.
    with pytest.raises(ValueError, match="both sides"):
        stats.unpaired([], [True])


def test_without_discordant_images_the_needed_size_scales_like_one_over_n():
    # Identical answers on 100 images: the interval is +-(1 - 0.025 ** (1 / 100)) = +-0.0362,
    # which shrinks like 1/n. "Within 1 point" holds once 1 - 0.025 ** (1 / N) < 0.01, that is
    # N > ln(0.025) / ln(0.99) = 367.04: 368 images (1/sqrt(n) would have said ~1,312).
    within_a_point = (-0.01, math.inf)
    same = np.array([True, False, True, True] * 25)
    out = stats.paired(same, same)
    assert out["scaling"] == "1/n" and stats.paired(same, ~same)["scaling"] == "1/sqrt(n)"
    said = stats.verdict(out["ci_low"], out["ci_high"], within_a_point, 0.0, 100, out["scaling"])
    assert said == "inconclusive at this sample size (~368 would resolve it)"
    for n, expected in [(367, "inconclusive"), (368, "held")]:
        more = stats.paired(np.ones(n, bool), np.ones(n, bool))
        got = stats.verdict(more["ci_low"], more["ci_high"], within_a_point, 0.0, n, "1/n")
        assert got.startswith(expected)
    # The same bound on a rate with no errors (Keras = float32 on >= 99 %: no flips in 100).
    flips = stats.rate_with_ci(0, 100)
    said = stats.verdict(1 - flips["ci_high"], 1.0, (0.99, math.inf), 1.0, 100, "1/n")
    assert said == "inconclusive at this sample size (~368 would resolve it)"
    with pytest.raises(ValueError, match="scaling"):
        stats.verdict(-0.1, 0.1, within_a_point, 0.0, 100, "1/n^2")


def test_the_needed_size_follows_the_edge_the_interval_straddles():
    # Claim 2-4x; estimate 3.1 is nearer 4, but the interval 1.5-3.3 straddles 2: its reach
    # below the estimate (1.6) must shrink to the distance to 2 (1.1): 100 (1.6 / 1.1)^2 = 211.6.
    said = stats.verdict(1.5, 3.3, (2, 4), 3.1, 100)
    assert said == "inconclusive at this sample size (~212 would resolve it)"
    # An estimate outside the claim: the interval's reach back across the edge decides.
    said = stats.verdict(-0.05, 0.01, (0.0, math.inf), -0.02, 100)
    assert said == "inconclusive at this sample size (~225 would resolve it)"
    assert stats.verdict(-0.1, 0.1, (0.0, math.inf), 0.0, 100) == "inconclusive at this sample size"

"""Rates with exact (Clopper-Pearson) intervals and their formatting."""

from __future__ import annotations

import math

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

"""Rates (proportions) with exact Clopper-Pearson intervals, and how to print them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy.stats import binomtest

CONFIDENCE = 0.95


def rate_with_ci(errors: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``errors / n`` with its counts and an exact (Clopper-Pearson) interval.

    Returns ``{"rate", "errors", "n", "ci_low", "ci_high", "confidence", "rule_of_three",
    "note"}``; ``rule_of_three`` is 3/n when there are no errors (else NaN). With ``n == 0``
    every figure is NaN and ``note`` says why: a rate without samples is not 0.
    """
    errors, n = int(errors), int(n)
    if n < 0 or not 0 <= errors <= n:
        raise ValueError(f"errors={errors}, n={n}: need 0 <= errors <= n.")
    nan = float("nan")
    out = {"rate": nan, "errors": errors, "n": n, "ci_low": nan, "ci_high": nan}
    out.update(confidence=confidence, rule_of_three=nan, note="")
    if n == 0:
        return {**out, "note": "no samples: the rate is undefined (NaN), not 0"}
    ci = binomtest(errors, n).proportion_ci(confidence_level=confidence, method="exact")
    out.update(rate=errors / n, ci_low=float(ci.low), ci_high=float(ci.high))
    if errors == 0:
        out["rule_of_three"] = 3.0 / n
        out["note"] = f"0 errors in {n} is not 0 %: up to {ci.high:.1%} (rule of three {3 / n:.1%})"
    return out


def format_rate(rate: Mapping) -> str:
    """One readable cell: ``"20.0 % (2/10, 95 % CI 2.5-55.6 %)"``, or ``"n/a (why)"``."""
    if rate["n"] == 0 or not math.isfinite(rate["rate"]):
        return f"n/a ({rate.get('note') or 'no samples'})"
    level = round(100 * rate.get("confidence", CONFIDENCE))
    return (
        f"{100 * rate['rate']:.1f} % ({rate['errors']}/{rate['n']}, {level} % CI "
        f"{100 * rate['ci_low']:.1f}-{100 * rate['ci_high']:.1f} %)"
    )

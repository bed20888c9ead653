"""Rates with exact Clopper-Pearson intervals, paired comparisons, and the verdicts they allow."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap

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


def paired(correct_a, correct_b, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """B minus A on the same images: accuracies, their difference with a paired bootstrap
    interval, and McNemar's exact test (a binomial test on the images where they disagree).

    With no disagreement at all the interval is +-(exact upper bound of the disagreement rate):
    identical answers on n images do not prove a zero difference.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"need two 1-D arrays of the same images, got {a.shape} and {b.shape}")
    b_only, a_only = int((b & ~a).sum()), int((a & ~b).sum())
    n, discordant = a.size, a_only + b_only
    out = {
        "n": n,
        "accuracy_a": a.mean(),
        "accuracy_b": b.mean(),
        "difference": b.mean() - a.mean(),
    }
    out.update(a_only=a_only, b_only=b_only, confidence=confidence)
    if discordant == 0:
        bound = binomtest(0, n).proportion_ci(confidence_level=confidence).high
        return {**out, "ci_low": -bound, "ci_high": bound, "p_value": 1.0}
    result = bootstrap(
        (a.astype(float), b.astype(float)),
        lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis),
        paired=True,
        confidence_level=confidence,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    # The exact interval given the discordant images (consistent with McNemar's test); the
    # wider of the two, as a percentile bootstrap is too narrow on a few discordant images.
    share = binomtest(b_only, discordant).proportion_ci(confidence_level=confidence)
    low = min(low, discordant / n * (2 * share.low - 1))
    high = max(high, discordant / n * (2 * share.high - 1))
    return {
        **out,
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(binomtest(b_only, discordant).pvalue),
    }


def verdict(low: float, high: float, claimed: tuple[float, float], estimate: float, n: int) -> str:
    """Whether an interval [low, high] supports a claim that the true value lies in ``claimed``.

    "held" (the interval strictly inside the claim: touching its edge is not enough), "not
    held" (the interval outside it), else
    "inconclusive at this sample size (~N would resolve it)", N scaled from the interval's width.
    """
    lo, hi = claimed
    point = low == high  # A count or a size: it may sit on the claim's edge.
    if (lo <= low if point else lo < low) and (high <= hi if point else high < hi):
        return "held"
    if high < lo or low > hi:
        return "not held"
    edge = min((abs(estimate - e) for e in (lo, hi) if math.isfinite(e)), default=0.0)
    half = (high - low) / 2
    if edge <= 0 or not math.isfinite(half):
        return "inconclusive at this sample size"
    needed = math.ceil(n * (half / edge) ** 2)
    return f"inconclusive at this sample size (~{needed:,} would resolve it)"

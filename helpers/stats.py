"""Rates with exact Clopper-Pearson intervals, paired comparisons, and the verdicts they allow."""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap, fisher_exact

CONFIDENCE = 0.95


def rate_with_ci(errors: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``errors / n`` with its counts, an exact (Clopper-Pearson) interval, ``rule_of_three``
    (3/n when there is no error) and a ``note``; all NaN for ``n == 0``: no samples is not 0."""
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
    ci = f"{level} % CI {100 * rate['ci_low']:.1f}-{100 * rate['ci_high']:.1f} %"
    return f"{100 * rate['rate']:.1f} % ({rate['errors']}/{rate['n']}, {ci})"


def paired(correct_a, correct_b, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """B minus A on the same images: accuracies, their difference with a paired bootstrap
    interval, and McNemar's exact test (a binomial test on the images where they disagree).
    With no disagreement the interval is +-(exact upper bound of the disagreement rate), which
    shrinks like 1/n (``scaling``, for :func:`verdict`): equal answers do not prove equality."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"need two 1-D arrays of the same images, got {a.shape} and {b.shape}")
    b_only, a_only = int((b & ~a).sum()), int((a & ~b).sum())
    n, discordant = a.size, a_only + b_only
    pa, pb = a.mean(), b.mean()
    out = {"n": n, "accuracy_a": pa, "accuracy_b": pb, "difference": pb - pa}
    out.update(a_only=a_only, b_only=b_only, confidence=confidence, scaling="1/sqrt(n)")
    if discordant == 0:
        bound = binomtest(0, n).proportion_ci(confidence_level=confidence).high
        return {**out, "ci_low": -bound, "ci_high": bound, "p_value": 1.0, "scaling": "1/n"}
    difference = lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis)  # noqa: E731
    options = dict(paired=True, confidence_level=confidence, n_resamples=4000, method="percentile")
    samples, rng = (a.astype(float), b.astype(float)), np.random.default_rng(seed)
    low, high = bootstrap(samples, difference, rng=rng, **options).confidence_interval
    # The exact interval given the discordant images (consistent with McNemar's test); the
    # wider of the two, as a percentile bootstrap is too narrow on a few discordant images.
    share = binomtest(b_only, discordant).proportion_ci(confidence_level=confidence)
    low = min(low, discordant / n * (2 * share.low - 1))
    high = max(high, discordant / n * (2 * share.high - 1))
    p_value = float(binomtest(b_only, discordant).pvalue)
    return {**out, "ci_low": float(low), "ci_high": float(high), "p_value": p_value}


def unpaired(correct_a, correct_b, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """B minus A on DIFFERENT images (:func:`paired`'s keys): Newcombe's interval, Fisher's test."""
    a, b = (np.asarray(c, bool).reshape(-1) for c in (correct_a, correct_b))
    if not (a.size and b.size):
        raise ValueError(f"need images on both sides, got {a.size} and {b.size}")
    wilson = [binomtest(int(c.sum()), c.size).proportion_ci(confidence, "wilson") for c in (a, b)]
    (la, ua), (lb, ub), pa, pb = *wilson, a.mean(), b.mean()
    d = pb - pa
    low, high = d - math.hypot(pb - lb, ua - pa), d + math.hypot(ub - pb, pa - la)
    table = [[b.sum(), b.size - b.sum()], [a.sum(), a.size - a.sum()]]
    out = {"n": a.size + b.size, "n_a": a.size, "n_b": b.size, "accuracy_a": pa, "accuracy_b": pb}
    out.update(difference=d, ci_low=low, ci_high=high, confidence=confidence)
    return {**out, "p_value": float(fisher_exact(table).pvalue), "scaling": "1/sqrt(n)"}


def verdict(low, high, claimed: tuple, estimate, n: int, scaling: str = "1/sqrt(n)") -> str:
    """Whether [low, high] supports the claim that the true value lies in ``claimed``: "held"
    (strictly inside), "not held" (outside), else "inconclusive at this sample size (~N would
    resolve it)": N shrinks the interval's reach from ``estimate`` across each claim edge it
    straddles to the estimate's distance from that edge, as 1/sqrt(n) or (``scaling="1/n"``,
    :func:`paired` with no discordant image) as the exact bound of 0 events in n."""
    if scaling not in ("1/sqrt(n)", "1/n"):
        raise ValueError(f"scaling={scaling!r}: use '1/sqrt(n)' or '1/n' (0 events in n).")
    lo, hi = claimed
    point = low == high  # A count or a size: it may sit on the claim's edge.
    if (lo <= low if point else lo < low) and (high <= hi if point else high < hi):
        return "held"
    if high < lo or low > hi:
        return "not held"
    needed = 0
    for edge in (e for e in (lo, hi) if low <= e <= high):  # The edges the interval straddles.
        gap, reach = abs(estimate - edge), estimate - low if edge <= estimate else high - estimate
        if gap <= 0 or not 0 < reach < math.inf:
            return "inconclusive at this sample size"
        if scaling == "1/n" and max(reach, gap) < 1:  # 1 - (alpha/2)^(1/n) = gap, for n.
            needed = max(needed, math.ceil(n * math.log1p(-reach) / math.log1p(-gap)))
        else:
            needed = max(needed, math.ceil(n * (reach / gap) ** (1 if scaling == "1/n" else 2)))
    return f"inconclusive at this sample size (~{needed:,} would resolve it)"

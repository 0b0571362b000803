"""Intervals for timing ratios from interleaved rounds (pure Python: no torch import).

Variants are timed in interleaved rounds (``evaluate.efficiency.compare_efficiency``):
round k of every variant runs within moments of round k of the baseline, so the ratio
of their round-k figures cancels slow drift of the machine. The spread of those per-round
ratios is what this machine can tell apart; a ratio interval that includes 1 is a tie.
"""

from __future__ import annotations

import math
import statistics
from typing import Any


def order_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median of ``values`` (the sign-test interval:
    order statistics x_(k), x_(n+1-k) with the largest k whose coverage is still >= ``level``,
    else the min and max) and its exact coverage, 1 - 2 P(Binomial(n, 1/2) < k)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0.0

    def coverage(k: int) -> float:  # in log space: comb(n, i) / 2**n overflows a float past n ~ 1,000
        return 1.0 - 2.0 * sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                                        - n * math.log(2)) for i in range(k))

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= level:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


def round_ratio(variant: list[float], baseline: list[float], level: float = 0.95) -> dict[str, Any]:
    """A timing ratio from interleaved rounds: round k's figure of the variant over round k's of
    the baseline (timed moments apart); ``value`` is the median of those per-round ratios and
    ``ci_low``/``ci_high`` its ``order_interval``, so the point always lies inside its interval.
    ``tie``: the interval includes 1, so the two are not told apart by this machine."""
    ratios = [v / b for v, b in zip(variant, baseline) if b > 0]
    if not ratios:
        return {"ci_low": None, "ci_high": None, "coverage": None, "rounds": 0, "tie": None}
    lo, hi, cov = order_interval(ratios, level)
    return {"value": statistics.median(ratios), "ci_low": lo, "ci_high": hi, "coverage": cov, "rounds": len(ratios),
            "tie": bool(lo <= 1.0 <= hi), "interval": "sign-test interval of the per-round ratios"}


def ratio_delta(variant: float, baseline: float, variant_rounds: list[float] | None = None,
                baseline_rounds: list[float] | None = None) -> dict[str, Any]:
    """A variant's figure ÷ the baseline's, as recorded under ``deltas`` (``*_ratio``).
    ``pooled``: the ratio of the two pooled figures. With per-round figures on both sides,
    ``value`` is the median per-round ratio with its ``round_ratio`` interval (the pooled ratio
    can fall outside that interval when rounds differ in length); without, ``value`` is the
    pooled ratio and there is no interval."""
    pooled = variant / baseline if baseline else None
    out: dict[str, Any] = {"value": pooled, "pooled": pooled, "ci_low": None, "ci_high": None}
    if variant_rounds and baseline_rounds:
        out.update(round_ratio(variant_rounds, baseline_rounds))
    return out


# timing metrics whose per-round figures are in a variant's ``timing_rounds``
ROUNDS_KEY = {"latency_p50_ms": "latency_p50_ms_by_round", "throughput_sps": "throughput_sps_by_round"}


def timing_ratio(summary: dict, a: str, b: str, metric: str) -> dict[str, Any] | None:
    """``metric`` of variant ``a`` over variant ``b`` with its round interval, from summary.json;
    None when ``metric`` is not a timing with rounds or either variant lacks them."""
    key = ROUNDS_KEY.get(metric)
    ra = (summary["variants"][a].get("timing_rounds") or {}).get(key) if key else None
    rb = (summary["variants"][b].get("timing_rounds") or {}).get(key) if key else None
    if not ra or not rb:
        return None
    return round_ratio(ra, rb)

"""The decision in words: the figures that decided it (each with its interval), the runner-up
and why it lost, the variant that was better on the objective but failed, and the closest
call (the requirement the chosen variant meets with the least to spare), all with units.

Read from summary.json only, so the console, the report and other tools say the same thing.
"""

from __future__ import annotations

import math
from typing import Any

from mlbench.analysis.timing import timing_ratio

# metrics that are proportions: their differences and margins read as percentage points
PROPORTIONS = ("accuracy", "f1_macro", "worst_class_recall", "ece", "mce", "disagreement",
               "mean_corruption_accuracy", "worst_group_accuracy")


def amount(metric: str, v: float | None, delta: bool = False) -> str:
    """A figure with its unit: ms, KB/MB, points (for differences of proportions), or plain."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if metric.endswith("_ms"):
        return f"{v:+.3g} ms" if delta else f"{v:.3g} ms"
    if metric == "size_bytes":
        sign = "+" if delta and v > 0 else ("-" if delta and v < 0 else "")
        a = abs(v) if delta else v
        return f"{sign}{a / 2**20:.2f} MB" if a >= 2**20 else f"{sign}{a / 1024:.1f} KB"  # binary, as the tables
    if metric == "throughput_sps":
        return f"{v:+,.0f} samples/s" if delta else f"{v:,.0f} samples/s"
    if metric in PROPORTIONS or metric.startswith("stress/"):
        return f"{100 * v:+.2f} points" if delta else f"{v:.4f}"
    return f"{v:+.4g}" if delta else f"{v:.4g}"


def _margin_text(check: dict) -> str:
    """How much room a check leaves (or how far it misses), in the requirement's own unit."""
    m = check.get("margin")
    if m is None:
        return "not measured"
    metric = check["metric"]
    if "degradation" in check and "%" in check["requirement"]:
        return f"{100 * abs(m):.1f}%"
    if metric in PROPORTIONS or metric.startswith("stress/"):
        return f"{100 * abs(m):.2f} points"
    return amount(metric, abs(m))


def _interval(d: dict | None, metric: str) -> str:
    if not d or d.get("ci_low") is None:
        return ""
    lo, hi = amount(metric, d["ci_low"], True), amount(metric, d["ci_high"], True)
    unit = hi.split(" ", 1)[1] if " " in hi else ""
    return f", 95% CI {lo.split(' ')[0] if unit and lo.endswith(unit) else lo} to {hi}"


def figures(summary: dict, name: str, objective: str) -> list[str]:
    """The chosen variant's deciding figures: accuracy and its change with the interval,
    the objective with its interval, and the size against the baseline's."""
    v = summary["variants"][name]
    m, d = v.get("metrics") or {}, v.get("deltas") or {}
    base = summary["variants"][summary["baseline"]].get("metrics") or {}
    out = []
    acc = d.get("accuracy")
    out.append(f"accuracy {amount('accuracy', m.get('accuracy'))}" +
               (f" ({amount('accuracy', acc['value'], True)} vs the baseline{_interval(acc, 'accuracy')})"
                if acc and name != summary["baseline"] else ""))
    if objective.startswith("latency_p50"):
        lo, hi = m.get("latency_p50_ci_low_ms"), m.get("latency_p50_ci_high_ms")
        ratio = d.get("latency_p50_ms_ratio")
        out.append(f"p50 latency {amount('latency_p50_ms', m.get('latency_p50_ms'))}"
                   + (f" (95% CI {lo:.3g}-{hi:.3g} ms)" if lo is not None and hi is not None else "")
                   + (f", {ratio['value']:.2f}x the baseline's ({ratio['ci_low']:.2f}-{ratio['ci_high']:.2f}x)"
                      if ratio and ratio.get("ci_low") is not None else ""))
    elif objective in m and objective != "size_bytes":
        out.append(f"{objective} {amount(objective, m.get(objective))}")
    if m.get("size_bytes") is not None:
        out.append(f"size {amount('size_bytes', m['size_bytes'])}"
                   + (f" ({m['size_bytes'] / base['size_bytes']:.2f}x the baseline's)"
                      if base.get("size_bytes") and name != summary["baseline"] else ""))
    return out


def _lost(summary: dict, rec: dict, other: str) -> str:
    """Why ``other`` (a passing variant) was not chosen."""
    best, objective = rec["variant"], rec["objective"]
    mv = summary["variants"][other].get("metrics") or {}
    mb = summary["variants"][best].get("metrics") or {}
    if other in (rec.get("tied") or []):
        r = timing_ratio(summary, other, best, objective)
        tie = f"tied on {objective} (ratio {r['ci_low']:.2f}-{r['ci_high']:.2f}x)" if r else f"tied on {objective}"
        for metric in rec.get("tie_breakers") or []:
            if mv.get(metric) != mb.get(metric):
                return f"{tie}, lost on {metric}: {amount(metric, mv.get(metric))} vs {amount(metric, mb.get(metric))}"
        return tie
    r = timing_ratio(summary, other, best, objective)
    span = f" (ratio {r['ci_low']:.2f}-{r['ci_high']:.2f}x over the timing rounds)" if r else ""
    return f"{objective} {amount(objective, mv.get(objective))} vs {amount(objective, mb.get(objective))}{span}"


def explain(summary: dict, results: dict[str, dict], rec: dict) -> dict[str, Any]:
    """Structured reasons for ``rec`` (from :func:`recommend`): ``figures``, ``runner_up_reason``,
    ``better_but_failed`` (the variant ahead on the objective that misses a requirement, with
    the first requirement it misses), ``closest_call`` and ``text`` (one paragraph)."""
    objective, best = rec["objective"], rec.get("variant")
    mode = rec.get("mode", "min")
    out: dict[str, Any] = {}
    if best is None:
        unmet = rec.get("unmet") or []
        parts = []
        for u in unmet:
            check = next((c for c in results.get(u["closest_variant"], {}).get("checks", [])
                          if c["requirement"] == u["requirement"]), None) if u["closest_variant"] else None
            if check and check.get("margin") is not None:
                parts.append(f"'{u['requirement']}' (closest: {u['closest_variant']}, short by {_margin_text(check)})")
            else:
                parts.append(f"'{u['requirement']}' (not measured for any variant)")
        out["text"] = ("No variant recommended: " + ("no variant meets " + "; ".join(parts) if parts
                                                    else rec["reason"]) + ".")
        return out
    out["figures"] = figures(summary, best, objective)
    which = ("is the only variant that does" if len(rec["passing"]) == 1 else
             f"has the {'lowest' if mode == 'min' else 'highest'} {objective} of the {len(rec['passing'])} that do")
    text = [f"Ship {best}: it meets all {len(results[best]['checks'])} requirements and {which}"
            f" — {'; '.join(out['figures'])}."]
    ru = rec.get("runner_up")
    if ru:
        out["runner_up_reason"] = _lost(summary, rec, ru)
        text.append(f"Runner-up {ru}: {out['runner_up_reason']}.")
    value = (summary["variants"][best].get("metrics") or {}).get(objective)
    ahead = []
    for n, r in results.items():
        v = (summary["variants"][n].get("metrics") or {}).get(objective)
        if r["passed"] or v is None or value is None or summary["variants"][n].get("status") != "ok":
            continue
        if (v < value) if mode == "min" else (v > value):
            ahead.append((v if mode == "min" else -v, n))
    if ahead:
        n = min(ahead)[1]
        miss = next(c for c in results[n]["checks"] if not c["passed"])
        out["better_but_failed"] = {"variant": n, "requirement": miss["requirement"],
                                    "shortfall": None if miss.get("margin") is None else -miss["margin"]}
        text.append(f"{n} has a better {objective} ({amount(objective, -min(ahead)[0] if mode == 'max' else min(ahead)[0])})"
                    f" but misses '{miss['requirement']}' by {_margin_text(miss)}.")
    scored = [c for c in results[best]["checks"] if c.get("margin") is not None and c.get("threshold")]
    if scored:
        tight = min(scored, key=lambda c: c["margin"] / abs(c["threshold"]))
        out["closest_call"] = {"requirement": tight["requirement"], "margin": tight["margin"]}
        text.append(f"Closest call: '{tight['requirement']}' holds with {_margin_text(tight)} to spare; "
                    f"tightened by more than that, {best} no longer qualifies.")
    out["text"] = " ".join(text)
    return out

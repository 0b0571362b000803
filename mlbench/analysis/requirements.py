"""Operational requirements as data, checked in one place.

A requirement is either a threshold (``metric op value``), a degradation limit
against the baseline (``max_degradation``, absolute or ``relative``) or a gain the variant
must show over the baseline (``min_gain``: strictly more than it), judged on the
point estimate or, with ``use_bound``, on the pessimistic end of the paired
bootstrap interval. Every variant (the baseline too) gets pass/fail per requirement
with its margin (positive = slack, negative = shortfall).
"""

from __future__ import annotations

import math
import operator
from typing import Any

from mlbench.analysis.timing import ROUNDS_KEY, timing_ratio
from mlbench.errors import MlbenchError
from mlbench.evaluate.registry import HIGHER_IS_BETTER, metric_key

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _get(req: Any, key: str, default=None):
    v = req.get(key, default) if isinstance(req, dict) else getattr(req, key, default)
    return getattr(v, "value", v)


def describe(req: Any, reference: str = "the baseline") -> str:
    """The requirement in words; ``reference``: what degradations and gains are measured against."""
    if _get(req, "data") is not None:
        return f"data: {_get(req, 'data')} {_get(req, 'op')} {_get(req, 'value'):g}"
    key = metric_key(_get(req, "metric"), _get(req, "stress"), _get(req, "condition"))
    if _get(req, "min_gain") is not None:
        bound = " on the CI bound" if _get(req, "use_bound") else ""
        return f"{key} better than {reference}'s by more than {_get(req, 'min_gain'):g}{bound}"
    if _get(req, "max_degradation") is not None:
        bound = " (on the CI bound)" if _get(req, "use_bound") else ""
        limit = _get(req, "max_degradation")
        if limit == 0:
            return f"{key} no worse than {reference}'s{bound}"
        if _get(req, "relative", False):
            return f"{key} at most {100 * limit:g}% worse than {reference}{bound}"
        return f"{key} at most {limit:g} worse than {reference}{bound}"
    if _get(req, "of_baseline", False):
        return f"{key} {_get(req, 'op')} {_get(req, 'value'):g} x {reference}'s"
    return f"{key} {_get(req, 'op')} {_get(req, 'value'):g}"


def validate(req: Any) -> None:
    if (_get(req, "metric") is None) == (_get(req, "data") is None):
        raise MlbenchError("a requirement names either a metric or a data figure (data: ...), not both or neither")
    if _get(req, "data") is not None:
        if _get(req, "op") not in OPS or _get(req, "value") is None or _get(req, "max_degradation") is not None:
            raise MlbenchError(f"data requirement {_get(req, 'data')}: give op (one of {list(OPS)}) and value")
        return
    from mlbench.evaluate.registry import check_names
    check_names([str(getattr(_get(req, "metric"), "value", _get(req, "metric")))], what="requirement")
    has_threshold = _get(req, "op") is not None or _get(req, "value") is not None
    kinds = [has_threshold, _get(req, "max_degradation") is not None, _get(req, "min_gain") is not None]
    if sum(kinds) != 1:
        raise MlbenchError(f"requirement on {_get(req, 'metric')}: give one of op and value, max_degradation or "
                           "min_gain")
    if has_threshold and (_get(req, "op") not in OPS or _get(req, "value") is None):
        raise MlbenchError(f"requirement on {_get(req, 'metric')}: op must be one of {list(OPS)} with a value")
    if _get(req, "of_baseline", False) and not has_threshold:
        raise MlbenchError(f"requirement on {_get(req, 'metric')}: of_baseline goes with op and value "
                           "(value x the baseline's figure)")
    if _get(req, "metric") == "stress_accuracy" and (_get(req, "stress") is None or _get(req, "condition") is None):
        raise MlbenchError("a stress_accuracy requirement needs stress (a stressor name) and condition")


def _delta(variant: dict, req: Any) -> dict | None:
    metric = _get(req, "metric")
    if metric == "stress_accuracy":
        sec = (variant.get("stress") or {}).get(_get(req, "stress"), {})
        cond = str(_get(req, "condition"))
        # a stressor's per-condition table is whichever entry of its section is keyed by conditions
        for table in sec.values():
            if isinstance(table, dict) and isinstance(table.get(cond), dict):
                return table[cond].get("delta_accuracy")
        return None
    return (variant.get("deltas") or {}).get(metric)


def check_data(req: Any, datacheck: dict | None) -> dict:
    """A condition on the data (``datacheck.figures``): the same verdict for every variant."""
    name = _get(req, "data")
    out = {"requirement": describe(req), "metric": f"data/{name}", "passed": False, "value": None,
           "threshold": float(_get(req, "value")), "margin": None, "basis": "data check"}
    value = ((datacheck or {}).get("figures") or {}).get(name)
    if value is None:
        out["reason"] = (f"not measured: no data check computed {name} (see datacheck=full)" if datacheck
                         else "not measured: data checks did not run (datacheck=none)")
        return out
    op = _get(req, "op")
    out.update(value=value, margin=(value - out["threshold"]) if op in (">=", ">") else out["threshold"] - value,
               passed=bool(OPS[op](value, out["threshold"])))
    return out


def check_one(req: Any, variant: dict, baseline: dict, is_baseline: bool, use_bound: bool) -> dict:
    metric = _get(req, "metric")
    key = metric_key(metric, _get(req, "stress"), _get(req, "condition"))
    out = {"requirement": describe(req), "metric": key, "passed": False, "value": None, "threshold": None,
           "margin": None, "basis": "point"}
    value = (variant.get("metrics") or {}).get(key) if variant.get("status") == "ok" else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        out["reason"] = "not measured" if variant.get("status") == "ok" else "variant failed"
        return out
    out["value"] = value
    if _get(req, "min_gain") is not None:
        return _check_gain(req, out, metric, key, variant, baseline, is_baseline, use_bound)
    if _get(req, "max_degradation") is None:
        threshold = float(_get(req, "value"))
        if _get(req, "of_baseline", False):
            base_value = (baseline.get("metrics") or {}).get(key)
            if base_value is None:
                out["reason"] = "baseline value not measured"
                return out
            threshold *= float(base_value)
        op = _get(req, "op")
        margin = value - threshold if op in (">=", ">") else threshold - value
        out.update(threshold=threshold, margin=margin, passed=bool(OPS[op](value, threshold)))
        return out
    hib = HIGHER_IS_BETTER[metric]
    base_value = (baseline.get("metrics") or {}).get(key)
    if base_value is None:
        out["reason"] = "baseline value not measured"
        return out
    degradation = 0.0 if is_baseline else (base_value - value if hib else value - base_value)
    bound = _get(req, "use_bound")
    bound = use_bound if bound is None else bound
    d = None if is_baseline else _delta(variant, req)
    if bound and d is not None and d.get("ci_low") is not None:
        degradation = -d["ci_low"] if hib else d["ci_high"]
        out["basis"] = "95% CI bound"
    ratio = None if is_baseline or metric not in ROUNDS_KEY else (variant.get("deltas") or {}).get(metric + "_ratio")
    if ratio is not None and ratio.get("tie"):
        degradation = 0.0  # this machine cannot tell the two apart
        out["basis"] = (f"tie: ratio interval [{ratio['ci_low']:.3g}, {ratio['ci_high']:.3g}] "
                        f"over {ratio['rounds']} timing rounds includes 1")
    if _get(req, "relative", False):
        degradation = degradation / abs(base_value) if base_value else math.inf
    limit = float(_get(req, "max_degradation"))
    out.update(threshold=limit, degradation=degradation, margin=limit - degradation,
               passed=bool(degradation <= limit))
    return out


def _check_gain(req: Any, out: dict, metric: str, key: str, variant: dict, baseline: dict, is_baseline: bool,
                use_bound: bool) -> dict:
    """``min_gain``: the variant's improvement over the baseline (higher-is-better metrics:
    variant − baseline; else baseline − variant), on the pessimistic end of the paired interval
    with ``use_bound``, must exceed ``min_gain``. The baseline never beats itself."""
    base_value = (baseline.get("metrics") or {}).get(key)
    if base_value is None:
        out["reason"] = "baseline value not measured"
        return out
    hib = HIGHER_IS_BETTER[metric]
    gain = 0.0 if is_baseline else (out["value"] - base_value if hib else base_value - out["value"])
    bound = _get(req, "use_bound")
    d = None if is_baseline else _delta(variant, req)
    if (use_bound if bound is None else bound) and d is not None and d.get("ci_low") is not None:
        gain = d["ci_low"] if hib else -d["ci_high"]
        out["basis"] = "95% CI bound"
    limit = float(_get(req, "min_gain"))
    out.update(threshold=limit, gain=gain, margin=gain - limit, passed=bool(gain > limit))
    return out


def check_requirements(summary: dict, reqs: list, use_bound: bool = False) -> dict[str, dict]:
    """Pass/fail per variant: {variant: {"passed": bool, "checks": [...]}}."""
    for r in reqs:
        validate(r)
    base_name = summary["baseline"]
    base = summary["variants"][base_name]
    out = {}
    for name, v in summary["variants"].items():
        checks = [check_data(r, summary.get("datacheck")) if _get(r, "data") is not None
                  else check_one(r, v, base, name == base_name, use_bound) for r in reqs]
        out[name] = {"passed": v.get("status") == "ok" and all(c["passed"] for c in checks), "checks": checks}
    return out


def _rank_key(summary: dict, name: str, axes: list[tuple[str, str]]) -> tuple:
    m = summary["variants"][name].get("metrics") or {}
    key = []
    for metric, mode in axes:
        v = m.get(metric)
        key.append(math.inf if v is None else (-v if mode == "max" else v))
    return tuple(key)


def recommend(summary: dict, results: dict[str, dict], objective: str, mode: str = "min",
              tie_breakers: list[tuple[str, str]] | None = None) -> dict:
    """The variant that meets every requirement and is best on ``objective``; or None, with
    the reason and, for each requirement no variant meets, the closest miss.

    When the objective is a timing (latency p50, throughput), variants whose ratio to the
    best one has an interval (from the interleaved timing rounds) that includes 1 tie with
    it: this machine cannot tell them apart, and ``tie_breakers`` decide among them, in order."""
    if mode not in ("min", "max"):
        raise MlbenchError(f"requirements.objective_mode must be min or max, got {mode!r}")
    objective = getattr(objective, "value", objective)
    breakers = [(getattr(m, "value", m), md) for m, md in (tie_breakers or [])]
    passing = [n for n, r in results.items() if r["passed"]]
    values = {n: (summary["variants"][n].get("metrics") or {}).get(objective) for n in passing}
    ranked = sorted((n for n in passing if values[n] is not None), key=lambda n: values[n],
                    reverse=mode == "max")
    if ranked:
        first = ranked[0]
        ties = {n: r for n in ranked[1:] if (r := timing_ratio(summary, n, first, objective)) and r["tie"]}
        order = [first, *ties]
        if ties and breakers:
            order.sort(key=lambda n: _rank_key(summary, n, breakers))
        best = order[0]
        word = "lowest" if mode == "min" else "highest"
        reason = f"meets all requirements; {word} {objective} among {len(passing)} that do"
        if ties:
            spans = ", ".join(f"{n} {r['ci_low']:.3g}-{r['ci_high']:.3g}x" for n, r in ties.items())
            reason = (f"meets all requirements; {objective} tied between {', '.join(order)} "
                      f"(ratio intervals to {first} include 1: {spans})"
                      + (f"; decided by {', '.join(m for m, _ in breakers)}" if breakers else ""))
        rest = [n for n in order[1:]] + [n for n in ranked if n not in order]
        return {"variant": best, "objective": objective, "mode": mode, "value": values[best],
                "passing": passing, "tied": order if ties else [], "tie_breakers": [m for m, _ in breakers],
                "runner_up": rest[0] if rest else None, "reason": reason}
    unmet = []
    n_req = len(next(iter(results.values()))["checks"]) if results else 0
    for i in range(n_req):
        checks = [(n, r["checks"][i]) for n, r in results.items()]
        if any(c["passed"] for _, c in checks):
            continue
        scored = [(n, c) for n, c in checks if c["margin"] is not None]
        best = max(scored, key=lambda nc: nc[1]["margin"]) if scored else (None, checks[0][1])
        unmet.append({"requirement": checks[0][1]["requirement"], "closest_variant": best[0],
                      "shortfall": None if best[1]["margin"] is None else -best[1]["margin"]})
    reason = ("no variant meets every requirement" if passing == [] else
              f"no passing variant has {objective}")
    if unmet:
        reason += "; unmet by all: " + "; ".join(
            f"{u['requirement']} (closest: {u['closest_variant']}, short by {u['shortfall']:.4g})"
            if u["shortfall"] is not None else f"{u['requirement']} (not measured)" for u in unmet)
    return {"variant": None, "objective": objective, "mode": mode, "passing": passing, "reason": reason,
            "unmet": unmet}

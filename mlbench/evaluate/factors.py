"""Every variant's accuracy per operating-condition factor value, with Wilson 95 % intervals.

The factors are the coverage check's (``datacheck.coverage.factors`` and the group column; see
:mod:`mlbench.datacheck.coverage`): the stage runs when that check ran. Per variant,
``min_factor_accuracy`` (the lowest accuracy over every factor value with at least
``min_items`` test items) joins its metrics, so a requirement can say "no factor value below
accuracy a": ``{metric: min_factor_accuracy, op: ">=", value: a}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlbench.datacheck.common import wilson
from mlbench.datacheck.coverage import Coverage, build_factors
from mlbench.text import Doc, fmt


def factor_accuracy(pred: np.ndarray, labels: np.ndarray, factors: list, min_items: int) -> dict[str, Any]:
    """Per factor value: test items, accuracy and its Wilson interval; the lowest accuracy over
    the values with at least ``min_items`` items (and which value it is)."""
    rows, worst = [], None
    right = pred == labels
    for f in factors:
        codes = f.codes["test"]
        for v, name in enumerate(f.values):
            m = codes == v
            n = int(m.sum())
            if not n:
                continue
            k = int(right[m].sum())
            acc, lo, hi = wilson(k, n)
            rows.append({"factor": f.name, "value": name, "n": n, "accuracy": k / n, "ci_low": lo, "ci_high": hi})
            if n >= min_items and (worst is None or k / n < worst["accuracy"]):
                worst = {"factor": f.name, "value": name, "accuracy": k / n, "n": n}
    return {"values": rows, "worst": worst}


def factors(ctx: Any) -> None:  # ctx: a pipeline RunContext
    """The stage: per variant, accuracy per factor value (after the variants were measured)."""
    cov = next((c for c in ctx.checks if isinstance(c, Coverage)), None)
    if cov is None or not ctx.live:
        return
    facs = build_factors(ctx.data, cov.declared, cov.bins)
    if not facs:
        return
    out = {}
    for name, lv in ctx.live.items():
        ev = lv.evaluation
        res = factor_accuracy(ev.probs.argmax(1).numpy(), ev.labels.numpy(), facs, cov.min_items)
        out[name] = res
        if res["worst"] is not None:
            ctx.records[name].metrics["min_factor_accuracy"] = res["worst"]["accuracy"]
    ctx.run.factors = {"factors": [f.name for f in facs], "min_items": cov.min_items, "variants": out}


def report_section(doc: Doc, summary: dict[str, Any]) -> None:
    """Accuracy per factor value, one column per variant, with intervals."""
    sec = summary.get("factors")
    if not sec or not sec["variants"]:
        return
    names = list(sec["variants"])
    doc.h2("Accuracy per operating condition")
    first = sec["variants"][names[0]]["values"]
    cells = {n: {(r["factor"], r["value"]): r for r in sec["variants"][n]["values"]} for n in names}
    doc.table(["factor", "value", "test items", *names],
              [[r["factor"], r["value"], str(r["n"]),
                *[f"{fmt(c['accuracy'], 3)} [{fmt(c['ci_low'], 3)}, {fmt(c['ci_high'], 3)}]"
                  if (c := cells[n].get((r["factor"], r["value"]))) else "—" for n in names]] for r in first])
    worst = [f"{n}: {w['factor']} = {w['value']} ({fmt(w['accuracy'], 3)}, n = {w['n']})"
             for n in names if (w := sec["variants"][n]["worst"])]
    doc.p(f"Wilson 95 % intervals. Lowest accuracy over the values with at least {sec['min_items']} test items "
          "(`min_factor_accuracy`): " + "; ".join(worst) + ".")

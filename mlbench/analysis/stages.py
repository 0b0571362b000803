"""The report's "Where the run's time went": wall seconds per stage beside the plan's estimate,
what a budget sized, and the variant builds (summary.json ``stages``, ``plan``, ``budget``)."""

from __future__ import annotations

from mlbench.records import STAGE_LABELS
from mlbench.text import Doc


def stages_section(doc: Doc, summary: dict) -> None:
    """Wall seconds per stage (``stages`` in summary.json); the write stage's own time is known
    only after the report is written, so it shows in summary.json, not here."""
    st = {k: v for k, v in (summary.get("stages") or {}).items() if isinstance(v, (int, float))}
    if not st:
        return
    total = sum(st.values())
    est = ((summary.get("plan") or {}).get("estimate_s")) or {}
    doc.h2("Where the run's time went")
    doc.table(["stage", "seconds", "share", "planned (s)"],
              [[STAGE_LABELS.get(k, k), f"{v:.2f}", f"{100 * v / total:.0f} %",
                f"{est[k]:.1f}" if k in est else ""] for k, v in st.items()])
    budget = summary.get("budget") or {}
    if budget.get("sized"):
        doc.p(f"Budget {budget['minutes']:g} min: the estimate of {budget['estimate_before_s']:.0f} s was sized to "
              f"{budget['estimate_after_s']:.0f} s by " + ", ".join(f"{k} {v:.4g}" for k, v in budget["sized"].items())
              + ("." if budget["fits"] else " (the stages that cannot be sized still take longer)."))
    builds = (summary.get("stages") or {}).get("variant_builds") or {}
    if builds:
        doc.p("Variant builds (s): " + ", ".join(f"{n} {v:.2f}" for n, v in builds.items()))

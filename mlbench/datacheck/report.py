"""The data checks in the report: the findings, the figures requirements can name, and each
check's own details (``Check.report``, found through the class recorded in its section)."""

from __future__ import annotations

from mlbench.datacheck.base import check_class
from mlbench.text import Doc, fmt


def datacheck_section(doc: Doc, summary: dict) -> None:
    """Findings, the figures requirements can name, and the per-check details."""
    dc = summary.get("datacheck")
    if not dc:
        return
    c = dc["counts"]
    doc.h2(f"Data checks ({c['fail']} fail, {c['warn']} warn, {c['info']} info)")
    doc.p(f"Features for distance-based checks: {dc['space']}. Items are dataset indices.")
    doc.table(["severity", "check", "finding", "count", "items"],
              [[f"**{f['severity']}**" if f["severity"] != "info" else "info", f["check"], f["message"],
                str(f["count"]), ", ".join(map(str, f["items"][:10])) + (" …" if len(f["items"]) > 10 else "")]
               for f in dc["findings"]])
    if dc["figures"]:
        doc.table(["figure", "value"], [[k, fmt(v)] for k, v in dc["figures"].items()])
    for s in dc["skipped"]:
        doc.p(f"skipped **{s['check']}**: {s['reason']}")
    for name, sec in dc["checks"].items():  # each check renders its own details
        check_class(sec).report(doc, name, sec)

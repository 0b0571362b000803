"""The terminal: the variants table, one line per result the table has no column for, the
decision paragraph, and what ``--json`` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from mlbench.progress import console
from mlbench.text import delta_text, fmt, kb_text, points_text


def _verdict(v: dict) -> str:
    req = v.get("requirements")
    return "" if req is None else ("[green]pass[/]" if req["passed"] else "[red]fail[/]")


def print_table(summary: dict, run_dir: Path, full: bool | None = None) -> None:
    """Variants × key metrics. Compact (fits 80 columns: accuracy, its change in points with
    the interval, p50 latency, size, mean corruption accuracy, requirements) unless ``full``
    (every column; the default when the terminal is at least 120 columns wide)."""
    full = console.width >= 120 if full is None else full
    title = (f"mlbench · {summary['data']['name']} · {summary['run']['env']['device']}"
             f" · calibration: {summary.get('calibration_view')}")
    if full:
        t = Table(title=title, show_lines=False)
        cols = [("variant", "left"), ("backend", "left"), ("acc", "right"), ("Δacc [95% CI]", "right"),
                ("ece", "right"), ("nll", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
                ("samples/s", "right"), ("size KB", "right"), ("nonzero/params", "right"), ("mCA", "right"),
                ("req", "left")]
    else:
        t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        cols = [("variant", "left"), ("acc", "right"), ("Δacc pts [95% CI]", "right"), ("p50 ms", "right"),
                ("size KB", "right"), ("mCA", "right"), ("req", "left")]
    longest = max((len(n) for n in summary["variants"]), default=8)
    for col, just in cols:
        t.add_column(col, justify=just, no_wrap=col != "variant", overflow="fold",
                     min_width=min(longest, 24) if col == "variant" else None)
    for name, v in summary["variants"].items():
        if v["status"] != "ok":
            t.add_row(name, *([v.get("backend", "")] if full else []),
                      "[dim]n/a[/]" if v["status"] == "not_applicable" else "[red]failed[/]",
                      (v.get("error") or "")[:60 if full else 30], *[""] * (len(cols) - (4 if full else 3)))
            continue
        m = v["metrics"]
        if full:
            t.add_row(name, v["backend"], fmt(m.get("accuracy")), delta_text(v["deltas"].get("accuracy"), 3),
                      fmt(m.get("ece")), fmt(m.get("nll")), fmt(m.get("latency_p50_ms"), 3),
                      fmt(m.get("latency_p99_ms"), 3), fmt(m.get("throughput_sps"), 0),
                      kb_text(m.get("size_bytes")), f"{m.get('nonzero_params', 0):,}/{m.get('params', 0):,}",
                      fmt(m.get("mean_corruption_accuracy"), 3), _verdict(v))
        else:
            t.add_row(name, fmt(m.get("accuracy")), points_text(v["deltas"].get("accuracy")),
                      fmt(m.get("latency_p50_ms"), 3), kb_text(m.get("size_bytes")),
                      fmt(m.get("mean_corruption_accuracy"), 3), _verdict(v))
    console.print(t)
    console.print("[dim]* interval excludes 0 (paired bootstrap); latency at batch 1"
                  + (f", throughput at batch {summary['run']['config']['eval']['batch_size']}" if full else "")
                  + "; mCA: mean accuracy under the corruptions run"
                  + ("" if full else "; all columns: a terminal >= 120 wide or report.html") + "[/]")
    for line in result_lines(summary):
        console.print(line, soft_wrap=False)
    t = summary.get("timing")
    if t and not t["reliable"]:
        console.print("[yellow]timings unreliable:[/] " + "; ".join(t["reasons"]))


def result_lines(summary: dict) -> list[str]:
    """One line per requested result the table has no column for: each stressor's worst case,
    the seed spread, data-check and monitoring verdicts."""
    out = []
    base = summary["baseline"]
    stress: dict[tuple[str, str], list[tuple[float, str, str]]] = {}
    for name, v in summary["variants"].items():
        for key, value in (v.get("metrics") or {}).items():
            parts = key.split("/")  # stress/<stressor>/<condition>/<headline: accuracy, spearman, ...>
            if len(parts) == 4 and parts[0] == "stress" and isinstance(value, (int, float)):
                stress.setdefault((parts[1], parts[3]), []).append((value, name, parts[2]))
    for (stressor, metric), rows in sorted(stress.items()):
        worst = min(rows)  # every headline is higher-is-better (accuracy, attribution agreement)
        base_rows = [r for r in rows if r[1] == base and r[2] == worst[2]]
        versus = f"; baseline {base_rows[0][0]:.3f}" if base_rows and worst[1] != base else ""
        out.append(f"stress {stressor} {worst[2]}: worst {metric} {worst[0]:.3f} ({worst[1]}){versus}")
    sp = summary.get("seed_spread")
    if sp and "accuracy" in sp.get("metrics", {}):
        a = sp["metrics"]["accuracy"]
        out.append(f"seed spread ({len(sp['seeds'])} seeds): baseline accuracy {a['mean']:.4f} ± {a['std']:.4f} "
                   f"({a['min']:.4f}-{a['max']:.4f})")
    dc = summary.get("datacheck")
    if dc and dc.get("counts") is not None:
        fails = [f for f in dc.get("findings") or [] if f.get("severity") == "fail"]
        c = dc["counts"]
        out.append(f"data checks ({', '.join(dc.get('checks') or {})}): {c.get('fail', 0)} failing, "
                   f"{c.get('warn', 0)} warnings"
                   + (f" (first: {fails[0]['message']})" if fails else ""))
    mon = summary.get("monitor")
    if mon and mon.get("power"):
        false_alarm = [p for p in mon["power"] if p.get("kind") == "none"]
        caught = [p for p in mon["power"] if p.get("kind") != "none"]
        best = max(caught, key=lambda p: p["rate"]) if caught else None
        out.append(f"monitoring: {len(mon.get('scenarios') or [])} scenarios × {', '.join(mon.get('detectors') or [])}; "
                   "false alarms <= "
                   f"{max((p['rate'] for p in false_alarm), default=0):.2f}"
                   + (f", best detection {best['rate']:.2f} ({best['detector']})" if best else ""))
    return out


def key_figures(summary: dict, run_dir: Path) -> dict[str, Any]:
    """What ``--json`` prints for scripts: the decision, and per variant its status, the
    requirements verdict and the figures a deployment choice turns on (with intervals)."""
    rec = summary.get("recommended") or {}
    out = {"run_dir": str(run_dir), "data": summary["data"]["name"], "baseline": summary["baseline"],
           "recommended": rec.get("variant"), "decision": (rec.get("explanation") or {}).get("text"),
           "timing_reliable": (summary.get("timing") or {}).get("reliable"), "variants": {}}
    for name, v in summary["variants"].items():
        m = v.get("metrics") or {}
        row = {"status": v["status"], "passed": (v.get("requirements") or {}).get("passed")}
        if v["status"] == "ok":
            row.update({k: m.get(k) for k in ("accuracy", "ece", "nll", "latency_p50_ms", "latency_p50_ci_low_ms",
                                              "latency_p50_ci_high_ms", "latency_p99_ms", "throughput_sps",
                                              "size_bytes", "mean_corruption_accuracy")})
            row["delta_accuracy"] = (v.get("deltas") or {}).get("accuracy")
        else:
            row["error"] = v.get("error")
        out["variants"][name] = row
    return out


def print_decision(summary: dict) -> None:
    """The decision as one paragraph (from summary.json's ``recommended.explanation``)."""
    rec = summary.get("recommended") or {}
    text = (rec.get("explanation") or {}).get("text") or (
        f"recommended: {rec.get('variant')} ({rec.get('reason')})" if rec.get("variant")
        else f"no variant recommended: {rec.get('reason')}")
    console.print(("[bold]" if rec.get("variant") else "[yellow]") + escape(text) + "[/]")

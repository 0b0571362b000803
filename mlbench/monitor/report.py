"""The monitoring stage in the report (``monitor_section``) and in the terminal (``print_monitor``)."""

from __future__ import annotations

from rich.table import Table

from mlbench.monitor.detectors import Detector
from mlbench.named import recorded_class
from mlbench.progress import console
from mlbench.text import Doc, fmt


def monitor_section(doc: Doc, summary: dict) -> None:
    """Detector power per scenario and window, estimates against truth, streams, and per
    variant the false alarms of compression alone and the power with the variant deployed."""
    mon = summary.get("monitor")
    if not mon:
        return
    doc.h2(f"Monitoring (α = {mon['alpha']}, {mon['repetitions']} windows per cell)")
    doc.p(f"Reference: {mon['reference']}; windows drawn from the {mon['pool']}. Cells: detection rate "
          f"[{mon['interval']}]; the `none` scenario's rates are false-positive rates.")
    windows = mon["windows"]
    rows = []
    for sc in mon["scenarios"]:
        for det in mon["detectors"]:
            cells = {r["window"]: r for r in mon["power"] if r["scenario"] == sc and r["detector"] == det}
            rows.append([sc, det, *[f"{cells[w]['rate']:.2f} [{cells[w]['ci_low']:.2f}, {cells[w]['ci_high']:.2f}]"
                                    if w in cells else "–" for w in windows]])
    doc.table(["scenario", "detector", *[f"n = {w}" for w in windows]], rows)
    targets = mon.get("detector_targets") or {}
    doc.items([recorded_class({"target": targets.get(n)}, Detector, "name", Detector).report_line(n, text, mon)
               for n, text in (mon.get("detector_notes") or {}).items()])
    if mon.get("estimates"):
        doc.h3("Label-free estimates against the truth (mean absolute error over windows)")
        doc.table(["scenario", "window", "true accuracy", "ATC MAE", "BBSE accuracy MAE", "BBSE prior MAE"],
                  [[sc, w, f"{e['true_accuracy_mean']:.3f}", f"{e['atc_accuracy_mae']:.3f}",
                    f"{e['bbse_accuracy_mae']:.3f}", f"{e['bbse_prior_mae']:.4f}"]
                   for sc, per in mon["estimates"].items() for w, e in per.items()])
    st = mon.get("streams")
    if st:
        doc.h3(f"Streaming detectors on the error stream ({st['scenario']} from item {st['change_at']}, "
               f"{st['repetitions']} streams; {st['library']})")
        doc.table(["detector", "detected", "mean delay (items)", "false alarms before the change (mean)"],
                  [[n, f"{s['detected']:.2f}", fmt(s["delay_mean"], 1), f"{s['false_alarms_mean']:.2f}"]
                   for n, s in st["detectors"].items()])
    fl = mon.get("failing_loudly")
    if fl:
        doc.h3("Failing Loudly (Rabanser et al. 2019) on this data")
        doc.items([f"**{k.replace('_', ' ')}**: {'holds' if v['holds'] else 'does not hold'} — {v['evidence']}"
                   for k, v in fl["findings"].items()])
    dep = mon.get("deployment")
    if dep:
        doc.h3(f"Monitoring × deployment (windows of {dep['window']})")
        doc.p(dep["note"] + ".")
        dets = sorted({d for v in dep["variants"].values() for d in v["false_alarms"]})
        doc.table(["variant", *[f"false alarms · {d}" for d in dets]],
                  [[n, *[f"{v['false_alarms'][d]['rate']:.2f} [{v['false_alarms'][d]['ci_low']:.2f}, "
                         f"{v['false_alarms'][d]['ci_high']:.2f}]" if d in v["false_alarms"] else "–" for d in dets]]
                   for n, v in dep["variants"].items()])
        keys = sorted({k for v in dep["variants"].values() for k in v["power"]})
        doc.table(["scenario/detector", *dep["variants"]],
                  [[k, *[fmt((v["power"].get(k) or {}).get("variant"), 2) for v in dep["variants"].values()]]
                   for k in keys])
    for s in mon.get("skipped", []):
        doc.p("skipped " + ", ".join(f"{k} {v}" for k, v in s.items()))


def print_monitor(summary: dict) -> None:
    """The monitoring figures in the console: power at the largest window, false alarms per variant."""
    mon = summary.get("monitor")
    if not mon:
        return
    w = max(mon["windows"])
    t = Table(title=f"mlbench monitor · detection rate at n = {w} (none: false-positive rate)")
    t.add_column("scenario")
    for d in mon["detectors"]:
        t.add_column(d, justify="right")
    for sc in mon["scenarios"]:
        cells = {r["detector"]: r["rate"] for r in mon["power"] if r["scenario"] == sc and r["window"] == w}
        t.add_row(sc, *[fmt(cells.get(d), 2) for d in mon["detectors"]])
    console.print(t)
    dep = mon["deployment"]
    console.print("false alarms of compression alone (baseline monitor, no shift, n = "
                  f"{dep['window']}): " + ", ".join(f"{n} {max((x['rate'] for x in v['false_alarms'].values()), default=0):.2f}"
                                                    for n, v in dep["variants"].items()))

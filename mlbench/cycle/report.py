"""The cycle's plots, console tables and report (report.md and report.html)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from mlbench.analysis.render import Doc, to_html, to_markdown  # noqa: E402
from mlbench.cycle.loop import STAGES  # noqa: E402
from mlbench.cycle.policies import Policy  # noqa: E402
from mlbench.named import recorded_class  # noqa: E402
from mlbench.plotting import save_figure  # noqa: E402
from mlbench.progress import console  # noqa: E402
from mlbench.results import atomic_write  # noqa: E402
from mlbench.text import fmt  # noqa: E402


def timeline_plot(section: dict[str, Any], path: Path) -> Path:
    """Accuracy per period per policy; alarms (▲ above the line), deployments (●), refused or
    failed updates (✕); shifted periods shaded; the accuracy target dashed."""
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    kinds = section["schedule"]
    for t, k in enumerate(kinds):
        if k["kind"] != "none":
            ax.axvspan(t - 0.5, t + 0.5, color="orange", alpha=0.06 + 0.04 * min(4, (k.get("param") or 1)))
    for name, rows in section["timeline"].items():
        t = [r["period"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        line, = ax.plot(t, acc, marker=".", lw=1.4, label=name)
        c = line.get_color()
        al = [(r["period"], r["accuracy"]) for r in rows if r["alarm"] or r["error_alarm"]]
        if al:
            ax.scatter(*zip(*al, strict=True), marker="^", s=28, facecolors="none", edgecolors=c, zorder=3)
        dep = [(r["period"] + 0.5, r["accuracy"]) for r in rows if (r["update"] or {}).get("status") == "deployed"]
        if dep:
            ax.scatter(*zip(*dep, strict=True), marker="o", s=30, color=c, zorder=3)
        bad = [(r["period"] + 0.5, r["accuracy"]) for r in rows
               if (r["update"] or {}).get("status") in ("refused", "failed")]
        if bad:
            ax.scatter(*zip(*bad, strict=True), marker="x", s=34, color=c, zorder=3)
    if section.get("accuracy_target") is not None:
        ax.axhline(section["accuracy_target"], ls="--", color="grey", lw=1, label="target")
    ax.set_xlabel("period (shaded: shifted; ▲ alarm, ● deployed after the period, ✕ refused/failed)", fontsize=8)
    ax.set_ylabel("accuracy of the deployed model")
    ax.legend(fontsize=7, ncol=len(section["timeline"]) + 1, loc="lower left")
    ax.set_xticks(range(len(kinds)))
    return save_figure(fig, path)


def stages_plot(section: dict[str, Any], path: Path) -> Path | None:
    """Median seconds per stage of an update, and update time against the training-window size."""
    st = {s: v["median"] for s, v in section["stages"].items() if v}
    if not st:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.2))
    a.barh(list(st), list(st.values()), color="tab:blue")
    a.set_xlabel("median seconds")
    a.invert_yaxis()
    a.set_title("cycle time per stage", fontsize=9)
    for dev in dict.fromkeys(r["device"] for r in section["scaling"]):
        rs = [r for r in section["scaling"] if r["device"] == dev]
        b.plot([r["train_items"] for r in rs], [r["update_s"] for r in rs], marker="o", label=dev)
    b.set_xlabel("training-window items")
    b.set_ylabel("update seconds")
    b.set_ylim(bottom=0)
    if section["scaling"]:
        b.legend(fontsize=7)
    b.set_title("update time against window size", fontsize=9)
    return save_figure(fig, path)


def _f(v: Any, digits: int = 3) -> str:
    return fmt(v, digits)


def _interval_line(section: dict[str, Any]) -> str:
    iv = section.get("interval")
    if not iv:
        return "no update completed, so no update interval was measured"
    env = section["env"]
    return (f"shortest sustainable update interval ≈ {iv['interval_s']:.1f} s on {env['device']} "
            f"({env['threads']} threads): update median {iv['update_s_median']:.2f} s "
            f"(range {iv['update_s_min']:.2f}–{iv['update_s_max']:.2f} over {iv['updates']} updates, "
            f"median {iv['train_items_median']:.0f} training items) + {iv['score_and_monitor_s']:.3f} s "
            f"to score and monitor a period of {section['period_size']} items")


POLICY_COLUMNS = [("mean acc", "mean_accuracy"), ("min acc", "min_accuracy"), ("final", "final_accuracy"),
                  ("below", "periods_below_target"), ("unrecovered", "unrecovered"), ("alarms", "alarms"), ("retrains", "retrains"),
                  ("deployed", "deployments"), ("refused", "refused"), ("failed", "failed"),
                  ("labels", "labelled_items_used"), ("compute s", "compute_s")]


def _ci(d: dict | None, digits: int = 3) -> str:
    """A paired difference with its interval: ``+0.048 [+0.030, +0.068]``."""
    if not d or d.get("value") is None:
        return "—"
    if d.get("ci_low") is None:
        return f"{d['value']:+.{digits}f}"
    return f"{d['value']:+.{digits}f} [{d['ci_low']:+.{digits}f}, {d['ci_high']:+.{digits}f}]"


def _versus_header(c: dict[str, Any]) -> str:
    return f"vs {c.get('reference_policy')} [95% CI]" if c.get("reference_policy") else "vs reference"


def _recovered(x: dict[str, Any]) -> str:
    if x.get("status") == "unaffected":
        return "unaffected"
    if x["periods_to_recover"] is None:
        return "not recovered"
    return f"after {x['periods_to_recover']} periods"


def _train_data(c: dict[str, Any]) -> str:
    td = c.get("train_data", "window")
    if td == "cumulative":
        return "every labelled period so far"
    own = f"the newest {c['window']} labelled periods"
    return own + (f" + {_f(c.get('replay'), 2)} × as many replayed original training items" if td == "replay" else "")


def _items(u: dict[str, Any]) -> str:
    return "" if "n_train" not in u else f"{u['n_train']} ({u.get('n_replayed', 0)})"


def _bought(b: dict | None) -> str:
    if not b or not b.get("bought"):
        return ""
    p = b["served_periods"]
    return f"{_ci(b['bought'])} over periods {p[0]}–{p[-1]}"


def print_cycle(summary: dict[str, Any]) -> None:
    c = summary["cycle"]
    t = Table(title=f"mlbench cycle · {summary['data']['name']} · {c['periods']} periods · recipe {c['recipe']}")
    t.add_column("policy")
    t.add_column(_versus_header(c), justify="right")
    for h, _ in POLICY_COLUMNS:
        t.add_column(h, justify="right")
    for name, row in c["table"].items():
        t.add_row(name, _ci(row.get("versus")), *[_f(row[k], 1 if k == "compute_s" else 3) for _, k in POLICY_COLUMNS])
    console.print(t)
    st = ", ".join(f"{s} {v['median']:.3f}" for s, v in c["stages"].items() if v)
    console.print(f"median seconds per stage: {st}", soft_wrap=True)
    console.print(_interval_line(c), soft_wrap=True)


def write_cycle_report(summary: dict[str, Any], run_dir: Path) -> tuple[Path, Path]:
    c, d = summary["cycle"], summary["data"]
    doc = Doc()
    doc.h1(f"mlbench cycle · {d['name']}")
    doc.items([f"run `{summary['run']['id']}`, started {summary['run']['started']}",
               f"stream: {c['periods']} periods of {c['period_size']} items from the calib and test splits, "
               f"labels {c['label_delay']} period(s) late; schedule: "
               + ", ".join(f"{e['from']}: {e['scenario']}" for e in c["changes"]),
               f"update: trains on {_train_data(c)}, "
               f"{'warm start' if c['warm_start'] else 'from scratch'}, {c['epochs']} epochs, recipe "
               f"`{c['recipe']}`; gate: " + "; ".join(c["requirements"]) + f", judged on the "
               f"{_f(100 * c.get('gate_holdout', 0), 0)} % of each period no update trains on, over the newest "
               f"{c.get('gate_periods')} labelled periods",
               f"monitor: {', '.join(c['detectors'])} (α = {c['alpha']}) on each period's outputs; "
               f"{c['error_detector'] or 'no'} detector on the delayed-label error stream; ATC estimate",
               _interval_line(c)] + ([f"resumed after period {c['resumed_from'] - 1}"] if c.get("resumed_from") else []))
    targets, timelines, notes = c.get("policy_targets") or {}, c.get("timeline") or {}, c.get("policy_notes") or {}
    tracks = c.get("tracks") or {n: {"policy": n, "strategy": None} for n in notes}
    doc.items([recorded_class({"target": targets.get(t["policy"])}, Policy, "name", Policy).report_line(
        n, notes.get(t["policy"], "") + (f"; labels bought by {t['strategy']}" if t.get("strategy") else ""),
        timelines.get(n, [])) for n, t in tracks.items()])
    doc.h2("Accuracy over time")
    for p in summary.get("plots", []):
        if p.endswith("cycle_timeline.png"):
            doc.image(p, "accuracy per period and policy")
    doc.h2("Policies")
    doc.table(["policy", _versus_header(c)] + [h for h, _ in POLICY_COLUMNS],
              [[n, _ci(r.get("versus"))] + [_f(r[k], 1 if k == "compute_s" else 3) for _, k in POLICY_COLUMNS]
               for n, r in c["table"].items()])
    doc.p(f"{_versus_header(c)}: the policy's accuracy over the whole stream minus the reference's, paired over the "
          f"same items (bootstrap interval); below: periods under the accuracy target ({_f(c['accuracy_target'])}); "
          "labels: distinct labelled items read by updates (training data and the gate's evidence); compute: seconds "
          "spent scoring, monitoring and updating.")
    doc.h2("Time to recover after a drift")
    rec = [[n, str(x["period"]), f"{x['from']} → {x['to']}", _f(x["accuracy_before"]), _f(x["lowest_after"]),
            str(x["periods_below"]), _recovered(x)]
           for n, r in c["table"].items() for x in r["recovery"]]
    if rec:
        doc.table(["policy", "period", "change", "accuracy before", "lowest after", "periods below", "recovered"], rec)
        doc.p(f"Below: periods under the accuracy before the change minus {c['recovery_tolerance']:g}, up to the next "
              "change or the end. Recovered: accuracy back above that and staying there to the end of the span; "
              "periods counted from the change.")
    else:
        doc.p("The schedule has no change of shift.")
    doc.h2("Cycle time per stage")
    doc.table(["stage", "median s", "min s", "max s", "n"],
              [[s, _f(v["median"], 4), _f(v["min"], 4), _f(v["max"], 4), str(v["n"])]
               for s in STAGES if (v := c["stages"].get(s))])
    if c["scaling"]:
        doc.h3("Update time against the training-window size")
        doc.table(["device", "train items", "held-out items", "data check s", "train s", "compress s", "evaluate s",
                   "gate s", "update s"],
                  [[r["device"], str(r["train_items"]), str(r["holdout_items"]), _f(r["datacheck_s"]), _f(r["train_s"]),
                    _f(r["compress_s"]), _f(r["evaluate_s"]), _f(r["gate_s"]), _f(r["update_s"])] for r in c["scaling"]])
    for p in summary.get("plots", []):
        if p.endswith("cycle_stages.png"):
            doc.image(p, "seconds per stage")
    doc.h2("Updates")
    bought = {(n, b["period"]): b for n, t in c["table"].items() for b in t.get("updates") or []}
    ups = [[n, str(r["period"]), r["decision"] or "", u["status"], _items(u), str(u.get("n_holdout", "")),
            _f((u.get("candidate") or {}).get("accuracy")), _f((u.get("deployed_now") or {}).get("accuracy")),
            _ci(u.get("delta_accuracy")), _bought(bought.get((n, r["period"]))), u.get("reason") or ""]
           for n, rows in c["timeline"].items() for r in rows if (u := r["update"])]
    if ups:
        doc.table(["policy", "period", "why", "outcome", "train items (replayed)", "gate items", "candidate acc",
                   "deployed acc", "gate Δ acc [95% CI]", "bought after", "reason"], ups)
        doc.p("Gate Δ: the candidate's accuracy minus the deployed model's on the gate's held-out items (paired). "
              "Bought after: once deployed, its accuracy minus the replaced model's on the periods it served "
              "(the replaced model keeps scoring beside it), paired over those items.")
    else:
        doc.p("No policy asked for an update.")
    md, htm = run_dir / "report.md", run_dir / "report.html"
    atomic_write(md, to_markdown(doc))
    atomic_write(htm, to_html(doc, run_dir, f"mlbench cycle · {d['name']}"))
    return md, htm


# --------------------------------------------------------------------------- mlbench compare

CYCLE_COLUMNS = ["mean_accuracy", "min_accuracy", "final_accuracy", "periods_below_target", "unrecovered",
                 "retrains", "deployments", "refused", "failed", "labelled_items_used", "compute_s"]


def cycle_rows(runs: list[tuple[Path, dict]], labels: dict[Path, str]) -> list[dict]:
    """``mlbench compare``: one row per policy of every ``mlbench cycle`` run (its ``cycle``
    section); ``labels``: each run folder's name in the table."""
    out = []
    for d, s in runs:
        c = s.get("cycle")
        if not c:
            continue
        sched = ", ".join(f"{e['from']}: {e['scenario']}" for e in c["changes"])
        for policy, row in c["table"].items():
            out.append({"run": labels[d], "run_dir": str(d), "data": s["data"]["name"], "schedule": sched,
                        "recipe": c["recipe"], "policy": policy, **{k: row.get(k) for k in CYCLE_COLUMNS},
                        "versus": c.get("reference_policy") if row.get("versus") else None,
                        "versus_accuracy": (row.get("versus") or {}).get("value"),
                        "versus_ci_low": (row.get("versus") or {}).get("ci_low"),
                        "versus_ci_high": (row.get("versus") or {}).get("ci_high"),
                        "interval_s": (c.get("interval") or {}).get("interval_s")})
    return out


def print_cycle_rows(rows: list[dict]) -> None:
    """The compare table of update cycles in the terminal."""
    t = Table(title="mlbench compare · update cycles")
    for c in ["run", "policy", "vs reference [95% CI]", "mean acc", "min acc", "final", "below", "unrecovered",
              "retrains", "deployed", "labels", "compute s", "interval s"]:
        t.add_column(c, justify="left" if c in ("run", "policy") else "right", overflow="fold")
    for r in rows:
        vs = None if r.get("versus") is None else {"value": r["versus_accuracy"], "ci_low": r["versus_ci_low"],
                                                    "ci_high": r["versus_ci_high"]}
        t.add_row(r["run"], r["policy"], "—" if vs is None else f"{_ci(vs)} vs {r['versus']}",
                  fmt(r["mean_accuracy"], 3), fmt(r["min_accuracy"], 3),
                  fmt(r["final_accuracy"], 3), fmt(r["periods_below_target"]), fmt(r["unrecovered"]), fmt(r["retrains"]),
                  fmt(r["deployments"]), fmt(r["labelled_items_used"]), fmt(r["compute_s"], 1), fmt(r["interval_s"], 2))
    console.print(t)


def write_cycle_rows(rows: list[dict], out: Path) -> list[Path]:
    """cycle.csv, cycle.md and cycle.html of ``mlbench compare``."""
    out.mkdir(parents=True, exist_ok=True)
    cols = ["run", "data", "schedule", "recipe", "policy", *CYCLE_COLUMNS, "versus", "versus_accuracy",
            "versus_ci_low", "versus_ci_high", "interval_s", "run_dir"]
    with open(out / "cycle.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    doc = Doc()
    doc.h1("Update cycles")
    doc.table(["run", "data", "schedule", "recipe", "policy", *CYCLE_COLUMNS, "interval_s"],
              [[r["run"], r["data"], r["schedule"], str(r["recipe"]), r["policy"],
                *[fmt(r[k], 3) for k in CYCLE_COLUMNS], fmt(r["interval_s"], 2)] for r in rows])
    (out / "cycle.md").write_text(to_markdown(doc))
    (out / "cycle.html").write_text(to_html(doc, out, "mlbench compare · update cycles"))
    return [out / "cycle.csv", out / "cycle.md", out / "cycle.html"]


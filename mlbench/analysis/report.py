"""Human-readable output: the terminal table and report.md (with plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.markup import escape
from rich.table import Table

from mlbench.analysis.plots import reliability_diagram, throughput_plot, training_curve
from mlbench.analysis.render import Doc, to_html, to_markdown
from mlbench.evaluate import registry
from mlbench.progress import console
from mlbench.results import atomic_write, read_predictions


def threads_text(env: dict) -> str:
    """How many threads the run used and why ("2 threads (auto: 2 physical cores, 0.1 busy)")."""
    how = env.get("threads_choice") or {}
    why = ""
    if how.get("setting") == "auto":
        why = f" (auto: {how['physical']} physical cores, {how['busy_cores']} busy at start-up)"
    train = env.get("train_threads")
    return f"{env['threads']} threads{why}" + (f", training on {train}" if train else "")


def fmt(v: Any, digits: int = 4) -> str:
    """A figure for a table: "–" when missing, floats to ``digits`` decimals."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _delta(d: dict | None, digits: int = 4, scale: float = 1.0) -> str:
    if not d or d.get("value") is None:
        return ""
    mark = "*" if d.get("significant") else ""
    if d.get("ci_low") is None:
        return f"{d['value'] * scale:+.{digits}f}"
    return (f"{d['value'] * scale:+.{digits}f} [{d['ci_low'] * scale:+.{digits}f}, "
            f"{d['ci_high'] * scale:+.{digits}f}]{mark}")


def _kb(v: Any) -> str:
    return "–" if v is None else f"{v / 1024:.1f}"


def _points(d: dict | None) -> str:
    """An accuracy change in points with its interval, compact: "-0.4 [-1.1, +0.0]*"."""
    if not d or d.get("value") is None:
        return ""
    mark = "*" if d.get("significant") else ""
    if d.get("ci_low") is None:
        return f"{100 * d['value']:+.1f}"
    return f"{100 * d['value']:+.1f} [{100 * d['ci_low']:+.1f},{100 * d['ci_high']:+.1f}]{mark}"


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
            t.add_row(name, *([v.get("backend", "")] if full else []), "[red]failed[/]",
                      (v.get("error") or "")[:60 if full else 30], *[""] * (len(cols) - (4 if full else 3)))
            continue
        m = v["metrics"]
        if full:
            t.add_row(name, v["backend"], fmt(m.get("accuracy")), _delta(v["deltas"].get("accuracy"), 3),
                      fmt(m.get("ece")), fmt(m.get("nll")), fmt(m.get("latency_p50_ms"), 3),
                      fmt(m.get("latency_p99_ms"), 3), fmt(m.get("throughput_sps"), 0),
                      _kb(m.get("size_bytes")), f"{m.get('nonzero_params', 0):,}/{m.get('params', 0):,}",
                      fmt(m.get("mean_corruption_accuracy"), 3), _verdict(v))
        else:
            t.add_row(name, fmt(m.get("accuracy")), _points(v["deltas"].get("accuracy")),
                      fmt(m.get("latency_p50_ms"), 3), _kb(m.get("size_bytes")),
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
        out.append(f"data checks: {c.get('fail', 0)} failing, {c.get('warn', 0)} warnings"
                   + (f" (first: {fails[0]['message']})" if fails else ""))
    mon = summary.get("monitor")
    if mon and mon.get("power"):
        false_alarm = [p for p in mon["power"] if p.get("kind") == "none"]
        caught = [p for p in mon["power"] if p.get("kind") != "none"]
        best = max(caught, key=lambda p: p["rate"]) if caught else None
        out.append(f"monitoring: {len(mon.get('scenarios') or [])} scenarios, false alarms <= "
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


def write_report(summary: dict, run_dir: Path) -> tuple[Path, Path]:
    """report.md and a self-contained report.html (plots embedded), from summary.json and the
    files beside it (predictions/*.npz, plots/): metrics, deltas with intervals, calibration
    views, fairness, agreement, robustness, requirements, Pareto front, and the plots. The
    reliability diagrams and the throughput plot are drawn here from those files."""
    base = summary["baseline"]
    ok = {n: v for n, v in summary["variants"].items() if v["status"] == "ok"}
    preds = {}
    for n, v in ok.items():
        f = read_predictions(run_dir / v["predictions"])
        preds[n] = (torch.from_numpy(f["probs"]), torch.from_numpy(f["labels"]).long())
    plots: list[str] = []
    for name, p in preds.items():  # one diagram per variant (its bin counts below), over the baseline's curve
        curves = {name: p} if name == base or base not in preds else {name: p, "baseline": preds[base]}
        out = reliability_diagram(curves, run_dir / "plots" / f"reliability_{name}.png",
                                  f"reliability · {' vs '.join(curves)}")
        plots.append(str(out.relative_to(run_dir)))
    bt = summary.get("baseline_training") or {}
    curve = training_curve(bt.get("history") or [], run_dir / "plots" / "training_curve.png", bt.get("best_epoch"))
    if curve is not None:
        plots.append(str(curve.relative_to(run_dir)))
    out = throughput_plot({n: v["throughput_sps_by_batch"] for n, v in ok.items()},
                          run_dir / "plots" / "throughput_vs_batch_size.png")
    if out is not None:
        plots.append(str(out.relative_to(run_dir)))
    plots += [p for p in summary.get("plots", []) if p not in plots]
    doc = build_report(summary, plots)
    md, htm = run_dir / "report.md", run_dir / "report.html"
    atomic_write(md, to_markdown(doc))
    atomic_write(htm, to_html(doc, run_dir, f"mlbench report · {summary['data']['name']}"))
    return md, htm


def build_report(summary: dict, plots: list[str]) -> Doc:
    doc = Doc()
    env = summary["run"]["env"]
    boot = summary.get("bootstrap", {})
    doc.h1(f"mlbench report · {summary['data']['name']}")
    rec = summary.get("recommended")
    if rec is not None:  # the decision first, with the figures that decided it, then the trade-off plot
        doc.h2("Decision")
        text = (rec.get("explanation") or {}).get("text") or (
            f"**{rec['variant']}**: {rec['reason']}." if rec["variant"] else f"No variant recommended: {rec['reason']}.")
        if rec["variant"]:
            text = text.replace(f"Ship {rec['variant']}:", f"Ship **{rec['variant']}**:", 1)
        doc.note(text, ok=bool(rec["variant"]))
        if "plots/pareto.png" in plots:
            doc.image("plots/pareto.png", "accuracy against batch-1 latency (95% CI bars); marker area: size; "
                                          "outlined: the Pareto front; ✓: meets every requirement")
    doc.h2("Run")
    overrides = summary["run"].get("overrides") or []
    doc.items([
        f"run `{summary['run']['id']}`, started {summary['run']['started']}, config hash "
        f"`{summary['run']['config_hash']}`",
        "overrides: " + (" ".join(f"`{o}`" for o in overrides) if overrides else "none (the defaults)"),
        f"device {env['device']} ({env['gpu'] or env['cpu']}), {threads_text(env)}, torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, git {env['git_sha'] or 'n/a'}",
        f"data: {summary['data']['n_train']} train / {summary['data']['n_val']} val / {summary['data']['n_calib']} "
        f"calib / {summary['data']['n_test']} test, {summary['data']['num_classes']} classes",
        f"metrics use the **{summary['calibration_view']}** calibration view; "
        + (f"intervals: {boot.get('resamples')} paired bootstrap resamples, {int(100 * boot.get('level', 0.95))} %; "
           "`*` = interval excludes 0" if boot.get("resamples") else
           "**no confidence intervals** (eval.bootstrap.resamples=0): deltas are point estimates only"),
        *[f"**warning**: {w}" for w in summary.get("warnings", [])],
        *_serving_line(summary),
    ])
    _timing_section(doc, summary)
    rows = []
    for name, v in summary["variants"].items():
        if v["status"] != "ok":
            rows.append([name, "**failed**", v["error"] or "", *[""] * 7])
            continue
        m = v["metrics"]
        req = v.get("requirements")
        rows.append([name, v["backend"], recipe_text(v), fmt(m.get("accuracy")),
                     fmt(m.get("ece")), latency_text(m), fmt(m.get("latency_p99_ms"), 3),
                     fmt(m.get("throughput_sps"), 0), _kb(m.get("size_bytes")),
                     "" if req is None else ("pass" if req["passed"] else "fail")])
    doc.h2("Variants")
    doc.table(["variant", "backend", "recipe (effective parameters)", "accuracy", "ece", "p50 ms [95% CI]",
               "p99 ms", "samples/s", "size KB", "requirements"], rows)
    names = [n for n, v in summary["variants"].items() if v["status"] == "ok" and v["deltas"]]
    if names:
        keys = [k for k in registry.names(tag=registry.DELTAS)
                if any(k in summary["variants"][n]["deltas"] for n in names)]
        doc.h2("Deltas against the baseline (variant − baseline, 95 % CI)")
        doc.table(["variant", *keys, "McNemar p"],
                  [[n, *[_delta(summary["variants"][n]["deltas"].get(k)) for k in keys],
                    fmt(summary["variants"][n]["deltas"]["accuracy"].get("p_value"), 4)] for n in names])
        doc.h2("Calibration views (ECE / NLL)")
        doc.p("uncalibrated: softmax of the logits; carried: the baseline's calibrator applied to the variant; "
              "refit: a calibrator fitted to the variant on the calib split.")
        crows = []
        for n in ["baseline", *names]:
            cal = summary["variants"][n].get("calibration") or {}
            crows.append([n, *[f"{fmt(cal.get(view, {}).get('ece'))} / {fmt(cal.get(view, {}).get('nll'))}"
                               for view in ("uncalibrated", "carried", "refit")]])
        doc.table(["variant", "uncalibrated", "carried", "refit"], crows)
        classes = summary["data"]["class_names"]
        prow = []
        for n in names:
            d = summary["variants"][n]["per_class"]["recall_delta"]
            worst = sorted([(x, i) for i, x in enumerate(d) if x is not None])[:3]
            prow.append([n, ", ".join(f"{classes[i]} {x:+.3f}" for x, i in worst)])
        doc.h2("Classes that pay most (recall change)")
        doc.table(["variant", "largest drops"], prow)
    groups = {n: v.get("groups") for n, v in summary["variants"].items() if v.get("groups")}
    if groups:
        doc.h2("Groups")
        doc.table(["variant", "per-group accuracy", "worst group", "demographic parity diff", "equalized odds diff"],
                  [[n, ", ".join(f"{k}: {a:.3f}" for k, a in g.get("per_group_accuracy", {}).items()),
                    fmt(g.get("worst_group_accuracy")), fmt(g.get("demographic_parity_difference")),
                    fmt(g.get("equalized_odds_difference"))] if "error" not in g else [n, g["error"], "", "", ""]
                   for n, g in groups.items()])
    ex = summary.get("exemplars") or []
    if ex:
        doc.h2("Compression-identified exemplars")
        doc.p("Test items the baseline gets right and at least two variants get wrong.")
        doc.table(["index", "label", "variants wrong"],
                  [[str(e["index"]), str(e["label"]), ", ".join(e["variants"])] for e in ex[:20]])
    _stress_sections(doc, summary)
    _requirement_sections(doc, summary)
    flags = [(n, f) for n, v in summary["variants"].items() for f in v.get("flags", [])]
    if flags:
        doc.h2("Flags")
        doc.items([f"**{n}**: {f}" for n, f in flags])
    if "seed_spread" in summary:
        sp = summary["seed_spread"]
        doc.h2(f"Seed-to-seed spread of the baseline (seeds {sp['seeds']})")
        doc.table(["metric", "mean", "std", "min", "max"],
                  [[k, fmt(v["mean"]), fmt(v["std"]), fmt(v["min"]), fmt(v["max"])] for k, v in sp["metrics"].items()])
    datacheck_section(doc, summary)
    monitor_section(doc, summary)
    stages_section(doc, summary)
    doc.h2("Plots")
    for p in plots:
        if p != "plots/pareto.png":
            doc.image(p, p)
    return doc


def recipe_text(v: dict) -> str:
    """The passes with the parameters they ran with (after overrides), e.g.
    "prune_unstructured(sparsity=0.7) → finetune(epochs=5)"; "(trained)" for the baseline."""
    passes = (v.get("lineage") or {}).get("passes") or []
    if not passes:
        return " → ".join(v.get("recipe") or []) or "(trained)"
    shown = []
    for p in passes:
        params = {k: x for k, x in (p.get("params") or {}).items() if not isinstance(x, (list, dict))}
        shown.append(p["pass"] + (f"({', '.join(f'{k}={x}' for k, x in params.items())})" if params else ""))
    return " → ".join(shown)


def latency_text(m: dict) -> str:
    """p50 with its interval: "0.046 [0.046, 0.046]"."""
    p50, lo, hi = m.get("latency_p50_ms"), m.get("latency_p50_ci_low_ms"), m.get("latency_p50_ci_high_ms")
    if p50 is None:
        return "–"
    return f"{p50:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


STAGE_WORDS = {"startup": "start-up (interpreter, imports, config)", "setup": "set-up", "load_data": "data",
               "baseline": "baseline (train or cache)", "datacheck": "data checks",
               "variants": "variants (build and evaluate)", "efficiency": "timing (latency, throughput)",
               "compare": "paired deltas", "stress": "stress", "monitor": "monitoring",
               "seeds": "seed spread", "write": "summary, plots, report"}


def stages_section(doc: Doc, summary: dict) -> None:
    """Wall seconds per stage (``stages`` in summary.json); the write stage's own time is known
    only after the report is written, so it shows in summary.json, not here."""
    st = {k: v for k, v in (summary.get("stages") or {}).items() if isinstance(v, (int, float))}
    if not st:
        return
    total = sum(st.values())
    doc.h2("Where the run's time went")
    doc.table(["stage", "seconds", "share"],
              [[STAGE_WORDS.get(k, k), f"{v:.2f}", f"{100 * v / total:.0f} %"] for k, v in st.items()])
    builds = (summary.get("stages") or {}).get("variant_builds") or {}
    if builds:
        doc.p("Variant builds (s): " + ", ".join(f"{n} {v:.2f}" for n, v in builds.items()))


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
    checks = dc["checks"]
    for name, sec in checks.items():
        if "ber_mst" in sec:
            doc.h3(f"Complexity ({name}, {sec['items']} train items)")
            doc.table(["figure", "value", "convention"], [
                ["Bayes error, MST", f"[{sec['ber_mst']['lower']:.4f}, {sec['ber_mst']['upper']:.4f}]",
                 sec["conventions"]["ber_mst"]],
                ["Bayes error, 1-NN", f"[{sec['ber_1nn']['lower']:.4f}, {sec['ber_1nn']['upper']:.4f}]",
                 sec["conventions"]["ber_1nn"]],
                *([["Bayes error (verdict)", f"[{sec['ber']['lower']:.4f}, {sec['ber']['upper']:.4f}]",
                    sec["conventions"]["ber"]]] if "ber" in sec else []),
                ["F1", fmt(sec["f1"]), sec["conventions"]["f1"]], ["N1", fmt(sec["n1"]), sec["conventions"]["n1"]],
                ["intrinsic dimension (TwoNN)", fmt(sec["intrinsic_dimension"], 2), ""]])
        if "issues" in sec and "noise_matrix" in sec:
            total = sec.get("issues_total", len(sec["issues"]))
            doc.h3(f"Label issues ({name}): {total} flagged, estimated noise rate {sec['noise_rate']:.3f}")
            doc.p(f"{sec['model']}; {sec['method']}.")
            if "label_issues" in sec.get("files", {}):
                doc.p(f"Every flagged item (index, given, suggested, self-confidence, rank): "
                      f"`{sec['files']['label_issues']}`; the first {min(total, 20)} by rank below.")
            if "planted" in sec:
                pl = sec["planted"]
                doc.p(f"Against the {pl['flipped']} planted flips: precision {pl['precision']:.3f}, "
                      f"recall {pl['recall']:.3f}.")
            doc.table(["rank", "index", "given", "suggested", "self-confidence"],
                      [[str(r["rank"]), str(r["index"]), str(r["given"]), str(r["suggested"]),
                        f"{r['self_confidence']:.3f}"] for r in sec["issues"][:20]])
        if "ks" in sec and "mmd" in sec:
            k, m, dcl = sec["ks"], sec["mmd"], sec["domain_classifier"]
            doc.h3(f"Train/test shift ({name}, {sec['space']})")
            doc.items([f"KS per feature (BH): {len(k['features_shifted'])} shifted, smallest corrected p {k['p_value']:.3g}",
                       f"MMD² {m['statistic']:.4g}, permutation p {m['p_value']:.3g} ({m['permutations']} permutations)",
                       f"domain classifier AUC {dcl['auc']:.3f} [{dcl['ci_low']:.3f}, {dcl['ci_high']:.3f}]"])
        if "needed_train_items" in sec or "sizes" in sec and "form" in sec:
            doc.h3(f"Sufficiency ({name})")
            doc.table(["train items", *map(str, sec["sizes"])], [["proxy test error", *[f"{e:.4f}" for e in sec["error"]]]])
            if sec.get("fit"):
                f = sec["fit"]
                doc.p(f"{sec['form']}: a = {f['a']:.3g}, b = {f['b']:.3g}, c = {f['c']:.3g}"
                      + (f"; accuracy {sec['target_accuracy']:g} needs about {sec['needed_train_items']:,.0f} items"
                         if sec.get("needed_train_items") else ""))


def write_datacheck_report(summary: dict, run_dir: Path) -> tuple[Path, Path]:
    """report.md and report.html of a ``mlbench datacheck`` run."""
    doc = Doc()
    d = summary["data"]
    doc.h1(f"mlbench datacheck · {d['name']}")
    doc.items([f"run `{summary['run']['id']}`, started {summary['run']['started']}",
               f"data: {d['n_train']} train / {d['n_val']} val / {d['n_calib']} calib / {d['n_test']} test, "
               f"{d['num_classes']} classes"])
    datacheck_section(doc, summary)
    doc.h2("Plots")
    for p in summary.get("plots", []):
        doc.image(p, p)
    md, htm = run_dir / "report.md", run_dir / "report.html"
    atomic_write(md, to_markdown(doc))
    atomic_write(htm, to_html(doc, run_dir, f"mlbench datacheck · {d['name']}"))
    return md, htm


def _serving_line(summary: dict) -> list[str]:
    sv = summary.get("serving")
    if not sv:
        return []
    mode = "online (batch 1)" if sv["mode"] == "online" else f"in batches of {sv['batch_size']}"
    return [f"serving mode: quality metrics measured **{mode}**; the batch-invariance check compares "
            "predictions at batch 1 and in batches (see Flags)"]


def _timing_section(doc, summary: dict) -> None:
    """How the timings were taken, whether to trust them, and the ratios with their intervals."""
    t = summary.get("timing")
    if not t:
        return
    doc.h2("Timing conditions")
    ph = t["phases"]
    verdict = ("**reliable**" if t["reliable"] else
               "**UNRELIABLE**: " + "; ".join(t["reasons"]) + ". Compare latencies from this run with care.")
    doc.items([
        f"timings: {verdict}",
        f"batch-1 latency with {t['latency_threads']} intra-op thread(s), throughput with {t['throughput_threads']}; "
        f"{t['cpu_count']} CPUs; {t['rounds']} interleaved rounds",
        *[f"{name}: other processes kept {fmt(c.get('other_busy_cores'), 2)} cores busy; load average "
          f"{c['loadavg_before']:.2f} before, {c['loadavg_after']:.2f} after" for name, c in ph.items()],
        *([f"timing took {t['wall_s']:.1f} s, {t['outside_phases_s']:.1f} s of it outside the timed phases "
           "(runners rebuilt for other thread counts, warm-up calls)"] if t.get("wall_s") is not None else []),
        f"rules: unreliable when a runner's per-round p50 spans more than {1 + t['tolerance']:.2f}x, or other "
        "processes kept more cores busy than the timing left free (+0.25). Ratio intervals: sign-test interval "
        "of the per-round ratios; one that includes 1 is a tie (the recommendation then uses the tie-breakers).",
    ])
    rows = []
    for n, v in summary["variants"].items():
        d = v.get("deltas") or {}
        cells = []
        for k in ("latency_p50_ms_ratio", "throughput_sps_ratio"):
            r = d.get(k)
            if not r or r.get("value") is None:
                cells.append("")
            elif r.get("ci_low") is None:
                cells.append(f"{r['value']:.3f}")
            else:
                cells.append(f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" + (" tie" if r.get("tie") else ""))
        spread = t["round_spread"].get(n)
        if any(cells):
            rows.append([n, *cells, fmt(spread, 3)])
    if rows:
        doc.table(["variant", "p50 latency ÷ baseline", "throughput ÷ baseline", "round spread (max/min p50)"], rows)


def _requirement_sections(doc, summary: dict) -> None:
    reqs = {n: v["requirements"] for n, v in summary["variants"].items() if v.get("requirements")}
    if reqs and any(r["checks"] for r in reqs.values()):
        first = next(iter(reqs.values()))["checks"]
        doc.h2("Requirements (margin: positive = slack)")
        rows = []
        for n, r in reqs.items():
            cells = []
            for c in r["checks"]:
                if c["margin"] is None:
                    cells.append(f"fail ({c.get('reason', 'n/a')})")
                else:
                    cells.append(f"{'pass' if c['passed'] else '**fail**'} ({c['margin']:+.4g})")
            rows.append([n, "pass" if r["passed"] else "**fail**", *cells])
        doc.table(["variant", "all", *[c["requirement"] for c in first]], rows)
    pareto = summary.get("pareto")
    if pareto:
        doc.h2("Pareto front")
        doc.p("Axes: " + ", ".join(f"{a['metric']} ({a['mode']})" for a in pareto["axes"])
              + ". On the front: " + (", ".join(pareto["front"]) or "none") + ".")


def _stress_sections(doc, summary: dict) -> None:
    variants = {n: v for n, v in summary["variants"].items() if v["status"] == "ok" and v.get("stress")}
    if not variants:
        return
    doc.h2("Robustness")
    first = next(iter(variants.values()))["stress"]
    corr = [n for n, sec in first.items() if sec["kind"] == "corruption"]
    if corr:
        rows = []
        for n, v in variants.items():
            cells = []
            for c in corr:
                sec = v["stress"][c]
                accs = " / ".join(f"{r['accuracy']:.3f}" for _, r in sorted(sec["severities"].items(), key=lambda kv: int(kv[0])))
                cells.append(f"{accs} (CE {fmt(sec.get('corruption_error'), 2)})")
            rows.append([n, fmt(v["metrics"].get("mean_corruption_accuracy")), *cells])
        sev = ", ".join(sorted(first[corr[0]]["severities"], key=int))
        doc.p(f"Accuracy per corruption at severities {sev}; CE = Σ errors / Σ baseline errors.")
        doc.table(["variant", "mCA", *corr], rows)
    for kind, key, label in (("adversarial", "eps", "eps"), ("fault", "rates", "rate")):
        names = [n for n, sec in first.items() if sec["kind"] == kind]
        for name in names:
            rows = []
            for n, v in variants.items():
                sec = v["stress"].get(name, {})
                if sec.get("skipped"):
                    rows.append([n, f"skipped: {sec['skipped']}"])
                    continue
                cells = []
                for k, r in sorted(sec.get(key, {}).items(), key=lambda kv: float(kv[0])):
                    if kind == "adversarial":
                        d = r.get("delta_accuracy")
                        mode = "" if r["mode"] == "white-box" else " (transfer)"
                        cells.append(f"{k}: {r['accuracy']:.3f}{mode}" + (f" Δ {_delta(d, 3)}" if d else ""))
                    else:
                        cells.append(f"{k}: {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
                rows.append([n, "; ".join(cells)])
            desc = ""
            if kind == "adversarial":
                s0 = next(v["stress"][name] for v in variants.values())
                desc = (f" — {s0['method'].upper()} {s0['norm']}, {s0['steps']} step(s), step {s0['step_size']}, "
                        f"random start {s0['random_start']}, loss: {s0.get('loss', 'n/a')}")
            doc.h3(f"{name}{desc}")
            doc.table(["variant", f"accuracy by {label}"], rows)
    names = [n for n, sec in first.items() if sec["kind"] == "explanation"]
    for name in names:
        rows = []
        for n, v in variants.items():
            sec = v["stress"].get(name, {})
            if sec.get("skipped"):
                rows.append([n, f"skipped: {sec['skipped']}", "", "", ""])
                continue
            for meth, r in sec.get("methods", {}).items():
                rows.append([n + f" · {meth}", fmt(r["spearman_mean"], 3), fmt(r["topk_overlap_mean"], 3),
                             fmt(r["infidelity"], 4), fmt(r["sensitivity_max"], 4)])
        doc.h3(f"Explanation shift ({name}, against the baseline's attributions)")
        doc.table(["variant · method", "Spearman (mean)", "top-k overlap", "infidelity", "sensitivity max"], rows)

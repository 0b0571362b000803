"""Human-readable output: the terminal table and report.md (with plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from mlbench.progress import console

CORE = ("accuracy", "f1_macro", "ece", "nll", "brier")


def _fmt(v: Any, digits: int = 4) -> str:
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


def print_table(summary: dict, run_dir: Path) -> None:
    """Variants x core metrics, with accuracy deltas and their interval."""
    t = Table(title=f"mlbench · {summary['data']['name']} · {summary['run']['env']['device']}"
                    f" · calibration: {summary.get('calibration_view')}", show_lines=False)
    for col, just in [("variant", "left"), ("backend", "left"), ("acc", "right"),
                      ("Δacc [95% CI]", "right"), ("ece", "right"), ("nll", "right"),
                      ("p50 ms", "right"), ("p99 ms", "right"), ("samples/s", "right"),
                      ("size KB", "right"), ("nonzero/params", "right"), ("mCA", "right")]:
        t.add_column(col, justify=just)
    for name, v in summary["variants"].items():
        if v["status"] != "ok":
            t.add_row(name, v.get("backend", ""), "[red]failed[/]", (v.get("error") or "")[:60], *[""] * 8)
            continue
        m = v["metrics"]
        t.add_row(name, v["backend"], _fmt(m.get("accuracy")), _delta(v["deltas"].get("accuracy"), 3),
                  _fmt(m.get("ece")), _fmt(m.get("nll")), _fmt(m.get("latency_p50_ms"), 3),
                  _fmt(m.get("latency_p99_ms"), 3), _fmt(m.get("throughput_sps"), 0),
                  _kb(m.get("size_bytes")), f"{m.get('nonzero_params', 0):,}/{m.get('params', 0):,}",
                  _fmt(m.get("mean_corruption_accuracy"), 3))
    console.print(t)
    console.print("[dim]* interval excludes 0 (paired bootstrap); latency at batch 1, "
                  f"throughput at batch {summary['run']['config']['eval']['batch_size']}; "
                  "mCA: mean accuracy over the corruptions and severities run[/]")
    console.print(f"run directory: [bold]{run_dir}[/]")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(ctx, summary: dict) -> Path:
    """report.md: tables of metrics, deltas with intervals, calibration views, fairness,
    agreement and links to plots (written here too)."""
    from mlbench.analysis.plots import exemplar_grid, reliability_diagram
    run_dir = ctx.run_dir
    base = ctx.results[summary["baseline"]]
    plots: list[str] = []
    for name, res in ctx.ok.items():
        p = reliability_diagram({name: (res.evaluation.probs, res.evaluation.labels)},
                                run_dir / "plots" / f"reliability_{name}.png", f"reliability · {name}")
        plots.append(str(p.relative_to(run_dir)))
        if name != summary["baseline"]:
            p = reliability_diagram({"baseline": (base.evaluation.probs, base.evaluation.labels),
                                     name: (res.evaluation.probs, res.evaluation.labels)},
                                    run_dir / "plots" / f"reliability_overlay_{name}.png",
                                    f"reliability · baseline vs {name}")
            plots.append(str(p.relative_to(run_dir)))
    ex = summary.get("exemplars") or []
    if ex and ctx.data.meta.modality == "image":
        pos = [e["position"] for e in ex[:32]]
        p = exemplar_grid(ctx.data.x["test"][pos],
                          [f"#{e['index']} y={e['label']} ({e['n_variants_wrong']})" for e in ex[:32]],
                          run_dir / "plots" / "compression_identified_exemplars.png",
                          "baseline right, several variants wrong (count of variants wrong)")
        plots.append(str(p.relative_to(run_dir)))

    env = summary["run"]["env"]
    out = [f"# mlbench report · {summary['data']['name']}", "",
           f"- run `{summary['run']['id']}`, started {summary['run']['started']}, "
           f"config hash `{summary['run']['config_hash']}`",
           f"- device {env['device']} ({env['gpu'] or env['cpu']}), {env['threads']} threads, torch "
           f"{env['torch']}, onnxruntime {env['onnxruntime']}, git {env['git_sha'] or 'n/a'}",
           f"- data: {summary['data']['n_train']} train / {summary['data']['n_val']} val / "
           f"{summary['data']['n_calib']} calib / {summary['data']['n_test']} test, "
           f"{summary['data']['num_classes']} classes",
           f"- metrics use the **{summary['calibration_view']}** calibration view; "
           f"intervals: {summary.get('bootstrap', {}).get('resamples')} paired bootstrap resamples, "
           f"{int(100 * summary.get('bootstrap', {}).get('level', 0.95))} %; `*` = interval excludes 0", ""]
    rows = []
    for name, v in summary["variants"].items():
        if v["status"] != "ok":
            rows.append([name, "**failed**", v["error"] or "", *[""] * 6])
            continue
        m = v["metrics"]
        rows.append([name, v["backend"], " → ".join(v["recipe"]) or "(trained)", _fmt(m.get("accuracy")),
                     _fmt(m.get("ece")), _fmt(m.get("latency_p50_ms"), 3), _fmt(m.get("latency_p99_ms"), 3),
                     _fmt(m.get("throughput_sps"), 0), _kb(m.get("size_bytes"))])
    out += ["## Variants", "", _md_table(["variant", "backend", "recipe", "accuracy", "ece", "p50 ms",
                                          "p99 ms", "samples/s", "size KB"], rows), ""]
    names = [n for n, v in summary["variants"].items() if v["status"] == "ok" and v["deltas"]]
    if names:
        keys = ["accuracy", "f1_macro", "nll", "brier", "ece", "worst_class_recall", "disagreement"]
        if any("worst_group_accuracy" in summary["variants"][n]["deltas"] for n in names):
            keys += ["worst_group_accuracy", "demographic_parity_difference"]
        drows = [[n, *[_delta(summary["variants"][n]["deltas"].get(k)) for k in keys],
                  _fmt(summary["variants"][n]["deltas"]["accuracy"].get("p_value"), 4)] for n in names]
        out += ["## Deltas against the baseline (variant − baseline, 95 % CI)", "",
                _md_table(["variant", *keys, "McNemar p"], drows), ""]
        crows = []
        for n in ["baseline", *names]:
            cal = summary["variants"][n].get("calibration") or {}
            crows.append([n, *[f"{_fmt(cal.get(view, {}).get('ece'))} / {_fmt(cal.get(view, {}).get('nll'))}"
                               for view in ("uncalibrated", "carried", "refit")]])
        out += ["## Calibration views (ECE / NLL)", "",
                "uncalibrated: softmax of the logits; carried: the baseline's calibrator applied to the "
                "variant; refit: a calibrator fitted to the variant on the calib split.", "",
                _md_table(["variant", "uncalibrated", "carried", "refit"], crows), ""]
        prow = []
        classes = summary["data"]["class_names"]
        for n in names:
            d = summary["variants"][n]["per_class"]["recall_delta"]
            worst = sorted([(x, i) for i, x in enumerate(d) if x is not None])[:3]
            prow.append([n, ", ".join(f"{classes[i]} {x:+.3f}" for x, i in worst)])
        out += ["## Classes that pay most (recall change)", "", _md_table(["variant", "largest drops"], prow), ""]
    groups = {n: v.get("groups") for n, v in summary["variants"].items() if v.get("groups")}
    if groups:
        grows = [[n, ", ".join(f"{k}: {a:.3f}" for k, a in g.get("per_group_accuracy", {}).items()),
                  _fmt(g.get("worst_group_accuracy")), _fmt(g.get("demographic_parity_difference")),
                  _fmt(g.get("equalized_odds_difference"))] if "error" not in g else [n, g["error"], "", "", ""]
                 for n, g in groups.items()]
        out += ["## Groups", "", _md_table(["variant", "per-group accuracy", "worst group",
                                            "demographic parity diff", "equalized odds diff"], grows), ""]
    if ex:
        out += ["## Compression-identified exemplars", "",
                "Test items the baseline gets right and at least two variants get wrong.", "",
                _md_table(["index", "label", "variants wrong"],
                          [[str(e["index"]), str(e["label"]), ", ".join(e["variants"])] for e in ex[:20]]), ""]
    flags = [(n, f) for n, v in summary["variants"].items() for f in v.get("flags", [])]
    if flags:
        out += ["## Flags", "", *[f"- **{n}**: {f}" for n, f in flags], ""]
    out += _stress_sections(summary)
    plots += ctx.extra.get("plots", [])
    out += ["## Plots", "", *[f"- [{p}]({p})" for p in plots], ""]
    path = run_dir / "report.md"
    from mlbench.results import atomic_write
    atomic_write(path, "\n".join(out))
    return path


def _stress_sections(summary: dict) -> list[str]:
    variants = {n: v for n, v in summary["variants"].items() if v["status"] == "ok" and v.get("stress")}
    if not variants:
        return []
    out = ["## Robustness", ""]
    first = next(iter(variants.values()))["stress"]
    corr = [n for n, sec in first.items() if sec["kind"] == "corruption"]
    if corr:
        rows = []
        for n, v in variants.items():
            cells = []
            for c in corr:
                sec = v["stress"][c]
                accs = " / ".join(f"{r['accuracy']:.3f}" for _, r in sorted(sec["severities"].items(), key=lambda kv: int(kv[0])))
                cells.append(f"{accs} (CE {_fmt(sec.get('corruption_error'), 2)})")
            rows.append([n, _fmt(v["metrics"].get("mean_corruption_accuracy")), *cells])
        sev = ", ".join(sorted(first[corr[0]]["severities"], key=int))
        out += [f"Accuracy per corruption at severities {sev}; CE = Σ errors / Σ baseline errors.", "",
                _md_table(["variant", "mCA", *corr], rows), ""]
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
                        f"random start {s0['random_start']}")
            out += [f"### {name}{desc}", "", _md_table(["variant", f"accuracy by {label}"], rows), ""]
    names = [n for n, sec in first.items() if sec["kind"] == "explanation"]
    for name in names:
        rows = []
        for n, v in variants.items():
            sec = v["stress"].get(name, {})
            if sec.get("skipped"):
                rows.append([n, f"skipped: {sec['skipped']}", "", "", ""])
                continue
            for meth, r in sec.get("methods", {}).items():
                rows.append([n + f" · {meth}", _fmt(r["spearman_mean"], 3), _fmt(r["topk_overlap_mean"], 3),
                             _fmt(r["infidelity"], 4), _fmt(r["sensitivity_max"], 4)])
        out += [f"### Explanation shift ({name}, against the baseline's attributions)", "",
                _md_table(["variant · method", "Spearman (mean)", "top-k overlap", "infidelity", "sensitivity max"],
                          rows), ""]
    return out

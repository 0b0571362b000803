"""report.md and report.html: the page layout, the tables the metric table drives, and the
sections each stage or component renders itself (stressors, data checks, monitoring)."""

from __future__ import annotations

from pathlib import Path

import torch

from mlbench.analysis.plots import reliability_diagram, throughput_plot, training_curve
from mlbench.analysis.render import Doc, to_html, to_markdown
from mlbench.analysis.sections import SECTIONS
from mlbench.choices import CalibrationView
from mlbench.datacheck.report import datacheck_section
from mlbench.evaluate import registry
from mlbench.results import atomic_write, read_predictions
from mlbench.stress.base import family
from mlbench.text import delta_text, fmt, kb_text


def threads_text(env: dict) -> str:
    """How many threads the run used and why ("2 threads (auto: 2 physical cores, 0.1 busy)")."""
    how = env.get("threads_choice") or {}
    why = ""
    if how.get("setting") == "auto":
        why = f" (auto: {how['physical']} physical cores, {how['busy_cores']} busy at start-up)"
    train = env.get("train_threads")
    return f"{env['threads']} threads{why}" + (f", training on {train}" if train else "")


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
            word = "not applicable" if v["status"] == "not_applicable" else "**failed**"
            rows.append([name, word, v["error"] or "", *[""] * 7])
            continue
        m = v["metrics"]
        req = v.get("requirements")
        rows.append([name, v["backend"], recipe_text(v), fmt(m.get("accuracy")),
                     fmt(m.get("ece")), latency_text(m), fmt(m.get("latency_p99_ms"), 3),
                     fmt(m.get("throughput_sps"), 0), kb_text(m.get("size_bytes")),
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
                  [[n, *[delta_text(summary["variants"][n]["deltas"].get(k)) for k in keys],
                    fmt(summary["variants"][n]["deltas"]["accuracy"].get("p_value"), 4)] for n in names])
        doc.h2("Calibration views (ECE / NLL)")
        doc.p("uncalibrated: softmax of the logits; carried: the baseline's calibrator applied to the variant; "
              "refit: a calibrator fitted to the variant on the calib split.")
        crows = []
        for n in ["baseline", *names]:
            cal = summary["variants"][n].get("calibration") or {}
            crows.append([n, *[f"{fmt(cal.get(view, {}).get('ece'))} / {fmt(cal.get(view, {}).get('nll'))}"
                               for view in CalibrationView]])
        doc.table(["variant", *CalibrationView], crows)
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
    for section in SECTIONS:
        section(doc, summary)
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
    """Robustness: each stressor family renders its own section (``Stressor.report``), in the
    order the run ran them."""
    variants = {n: v for n, v in summary["variants"].items() if v["status"] == "ok" and v.get("stress")}
    if not variants:
        return
    doc.h2("Robustness")
    items = (summary.get("stress") or {}).get("items") or {}
    if items.get("n", 0) < items.get("of", 0):
        doc.p(f"On {items['n']} of the {items['of']} test items ({items['how']}): intervals are wider accordingly.")
    first = next(iter(variants.values()))["stress"]
    families: dict[type, dict[str, dict[str, dict]]] = {}
    for name, sec in first.items():
        families.setdefault(family(sec), {})[name] = {n: v["stress"].get(name, {}) for n, v in variants.items()}
    for cls, sections in families.items():
        cls.report(doc, sections, variants)


# the stage sections after the variants, in order: each renders its own part of summary.json

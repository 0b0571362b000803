"""The decision of ``mlbench select``, its plot, report, console table and ``mlbench compare`` rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlbench.analysis.render import Doc, to_html, to_markdown
from mlbench.errors import MlbenchError
from mlbench.results import atomic_write, write_json, write_rows
from mlbench.select.candidates import Candidate, candidates_of, measure_candidates
from mlbench.text import delta_text, fmt


def _requirements(sel: Any) -> list[dict]:
    from mlbench.analysis.requirements import validate
    reqs = OmegaConf.to_container(sel.requirements, resolve=True, enum_to_str=True) if sel.get("requirements") else []
    for r in reqs:
        validate(r)
    return reqs


def diagnose(c: Candidate, ber: dict[str, float] | None, best_error: float, overfit_gap: float) -> str:
    """What limits the candidate, in words: capacity (it cannot fit its own training data: its
    train error lies more than 2 points above the error this data allows, the lower of the
    Bayes-error upper bound and the best candidate's test error), overfitting (train − validation
    accuracy gap above ``overfit_gap``), data (its fitted learning curve still falls by more than
    a point at 4× the items), or nothing visible."""
    reachable, reached_by = best_error, "the best candidate's test error"
    if ber is not None and ber["upper"] < best_error:
        reachable, reached_by = ber["upper"], "the Bayes-error upper bound"
    train_error = 1 - c.metrics["train_accuracy"]
    if train_error > reachable + 0.02:
        return (f"too simple for this data: it cannot fit its own training data (train error {train_error:.3f}, "
                f"against {reachable:.3f}, {reached_by})")
    gap = c.metrics["train_val_gap"]
    if gap > overfit_gap:
        return f"overfits: train − validation accuracy gap {gap:+.3f}"
    fit = c.curve.get("fit")
    if fit:
        n = c.curve["sizes"][-1]
        now, later = fit["a"] * n ** -fit["b"] + fit["c"], fit["a"] * (4 * n) ** -fit["b"] + fit["c"]
        if now - later > 0.01:
            return f"data-limited: its fitted curve falls from {now:.3f} to {later:.3f} error at 4× the items"
    return "matched to the data: no capacity, overfitting or data limit visible"


def decide(cands: list[Candidate], labels: Any, sel: Any, boot: Any, seed: int,
           ber: dict[str, float] | None) -> dict[str, Any]:
    """Requirements per candidate (relative ones against the most accurate candidate, with paired
    bootstrap intervals over the same test items), the recommendation, the runner-up and why."""
    from mlbench.analysis.requirements import check_requirements, recommend
    from mlbench.evaluate.stats import paired_deltas
    ref = max(cands, key=lambda c: c.metrics["accuracy"])
    pseudo = {"baseline": ref.name, "variants": {}}
    for c in cands:
        deltas = {} if c is ref else paired_deltas(ref.probs, c.probs, labels, n_resamples=boot.resamples,
                                                   seed=seed, level=boot.level)
        pseudo["variants"][c.name] = {"status": "ok", "metrics": c.metrics, "deltas": deltas}
    reqs = _requirements(sel)
    results = check_requirements(pseudo, reqs, bool(sel.get("use_bound", False)))
    breakers = [(str(t["metric"]), str(t["mode"])) for t in OmegaConf.to_container(sel.tie_breakers, resolve=True)]
    rec = recommend(pseudo, results, str(sel.objective), str(sel.objective_mode), breakers)
    named = f"the most accurate candidate ({ref.name})"
    for res in results.values():  # the reference is a candidate, not a baseline
        for k in res["checks"]:
            k["requirement"] = k["requirement"].replace("the baseline's", f"{named}'s").replace("the baseline", named)
    rec["reason"] = rec["reason"].replace("the baseline's", f"{named}'s").replace("the baseline", named)
    rows = []
    for c in cands:
        failed = [k["requirement"] + ("" if k.get("margin") is None else f" (short by {-k['margin']:.4g})")
                  for k in results[c.name]["checks"] if not k["passed"]]
        acc = pseudo["variants"][c.name]["deltas"].get("accuracy") or {}
        rows.append({"name": c.name, "model": c.model, **{k: c.metrics.get(k) for k in (
            "accuracy", "nll", "ece", "train_accuracy", "val_accuracy", "train_val_gap", "params", "flops", "size_bytes")},
            "delta_accuracy": acc.get("value"), "delta_ci": [acc.get("ci_low"), acc.get("ci_high")] if acc else None,
            "passed": results[c.name]["passed"], "failed": failed, "curve": c.curve,
            "diagnosis": diagnose(c, ber, 1 - ref.metrics["accuracy"], float(sel.overfit_gap)), "key": c.key,
            "train_s": c.train_s})
    return {"reference": ref.name, "requirements": [r["requirement"] for r in next(iter(results.values()))["checks"]]
            if reqs else [], "objective": str(sel.objective), "objective_mode": str(sel.objective_mode),
            "tie_breakers": [m for m, _ in breakers], "candidates": rows, "recommended": rec.get("variant"),
            "runner_up": rec.get("runner_up"), "reason": rec["reason"], "decision": _paragraph(rows, rec, ref.name, ber)}


def _paragraph(rows: list[dict], rec: dict, ref: str, ber: dict[str, float] | None) -> str:
    by = {r["name"]: r for r in rows}
    best = rec.get("variant")
    text = []
    if best is None:
        text.append(f"No candidate is recommended: {rec['reason']}.")
    else:
        b = by[best]
        text.append(f"Recommended: **{best}** ({b['params']:,} parameters, {b['flops']:,} FLOPs per item, test accuracy "
                    f"{b['accuracy']:.4f}): {rec['reason']}.")
        if best != ref:
            d = b["delta_ci"]
            text.append(f"Against the most accurate candidate, {ref} ({by[ref]['accuracy']:.4f}), it gives up "
                        f"{-b['delta_accuracy']:.4f} accuracy" + (f" (paired 95 % interval of the difference "
                                                                 f"[{d[0]:+.4f}, {d[1]:+.4f}])" if d and d[0] is not None else "")
                        + f" for {by[ref]['flops'] / max(b['flops'], 1):.1f}× fewer FLOPs.")
        up = rec.get("runner_up")
        if up:
            u = by[up]
            text.append(f"Runner-up: {up}, which also meets every requirement but costs {u['flops'] / max(b['flops'], 1):.2f}× "
                        f"the FLOPs (accuracy {u['accuracy']:.4f}).")
        cheaper = [r for r in rows if not r["passed"] and r["flops"] < b["flops"]]
        for r in cheaper:
            text.append(f"{r['name']} is cheaper but fails: {'; '.join(r['failed'])}.")
        text.append(f"Why {best}: {b['diagnosis']}.")
    if ber is not None:
        err = 1 - by[ref]["accuracy"]
        where = ("below" if err < ber["lower"] else "above" if err > ber["upper"] else "within")
        text.append(f"The data's Bayes-error estimates (complexity check: 1-NN and MST bounds, asymptotic, which finite "
                    f"samples in many dimensions overstate) lie in [{ber['lower']:.4f}, {ber['upper']:.4f}]; the best "
                    f"candidate's test error {err:.4f} is {where} that range"
                    + (": the estimates overstate the difficulty here." if where == "below" else
                       ": more capacity is unlikely to buy much." if where == "within" else
                       ": the candidates may lack capacity, or the data more items." ))
    return " ".join(text)


def _plot(rows: list[dict], path: Path, data_name: str, ber: dict[str, float] | None) -> bool:
    """Learning curves of every candidate on one plot: measured errors, fitted power law, 95 % band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, r in enumerate(rows):
        col = f"C{i % 10}"
        cv = r["curve"]
        ax.plot(cv["sizes"], cv["error"], "o", color=col, label=f"{r['name']} ({r['params']:,} params)")
        if cv.get("band"):
            grid, lo, hi = (np.asarray(a) for a in cv["band"])
            ax.fill_between(grid, lo, hi, color=col, alpha=0.15)
        if cv.get("fit"):
            f = cv["fit"]
            grid = np.geomspace(min(cv["sizes"]), max(cv["sizes"]) * 4, 60)
            ax.plot(grid, f["a"] * grid ** -f["b"] + f["c"], "-", color=col, lw=1.2)
    if ber is not None:
        ax.axhspan(ber["lower"], ber["upper"], color="black", alpha=0.08, label="Bayes error (bounds)")
    ax.set_xscale("log")
    ax.set_xlabel("training items")
    ax.set_ylabel("test error")
    ax.set_title(f"Learning curves · {data_name}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report_section(doc: Doc, summary: dict[str, Any]) -> None:
    """The candidates table, the learning curves and the decision paragraph."""
    s = summary.get("select")
    if not s:
        return
    doc.h2("Model selection")
    doc.p(s["decision"])
    doc.table(["candidate", "params", "FLOPs/item", "accuracy", f"Δ vs {s['reference']} [95 % CI]", "train − val",
               "curve floor c", "requirements", "diagnosis"],
              [[r["name"], f"{r['params']:,}", f"{r['flops']:,}", fmt(r["accuracy"], 4), _delta(r), fmt(r["train_val_gap"], 3),
                fmt((r["curve"].get("fit") or {}).get("c"), 3), "pass" if r["passed"] else "fail: " + "; ".join(r["failed"]),
                r["diagnosis"]] for r in s["candidates"]])
    cx = s.get("complexity")
    if cx:
        doc.p(f"Data complexity ({cx['items']} train items, {cx['space']}): Bayes error in [{cx['ber']['lower']:.4f}, "
              f"{cx['ber']['upper']:.4f}], F1 {fmt(cx['f1'], 3)}, N1 {fmt(cx['n1'], 3)}, intrinsic dimension "
              f"{fmt(cx['intrinsic_dimension'], 1)}.")
    doc.p(f"Requirements: {'; '.join(s['requirements']) or 'none'} (relative ones against the most accurate candidate). "
          f"Objective: {s['objective_mode']} {s['objective']}; tie-breakers: {', '.join(s['tie_breakers']) or 'none'}.")
    if "plots/select_learning_curves.png" in summary.get("plots", []):
        doc.image("plots/select_learning_curves.png", "learning curves of every candidate, with 95 % bands")


def _delta(r: dict) -> str:
    if r["delta_accuracy"] is None:
        return "reference"
    lo, hi = r["delta_ci"] or (None, None)
    return delta_text({"value": r["delta_accuracy"], "ci_low": lo, "ci_high": hi})


def print_select(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from mlbench.progress import console
    s = summary["select"]
    t = Table(title=f"mlbench select · {summary['data']['name']} · {len(s['candidates'])} candidates")
    for c in ["candidate", "params", "FLOPs/item", "accuracy", f"Δ vs {s['reference']}", "train−val", "req", "diagnosis"]:
        t.add_column(c, justify="left" if c in ("candidate", "req", "diagnosis") else "right", overflow="fold")
    for r in s["candidates"]:
        mark = "[bold green]★[/] " if r["name"] == s["recommended"] else ""
        t.add_row(mark + r["name"], f"{r['params']:,}", f"{r['flops']:,}", fmt(r["accuracy"], 4), _delta(r),
                  fmt(r["train_val_gap"], 3), "pass" if r["passed"] else "fail", r["diagnosis"])
    console.print(t)
    console.print(s["decision"].replace("**", ""), soft_wrap=True)


def run_select_command(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``mlbench select``: set-up and data as in a run, then the candidates, the complexity
    figures and the decision; writes summary.json (``select``), the plot and the report."""
    from mlbench.datacheck import CheckContext
    from mlbench.datacheck.complexity import Complexity
    from mlbench.datacheck.stage import feature_source
    from mlbench.pipeline import RunContext, load_data, setup
    from mlbench.pipeline.write import summary as run_summary
    from mlbench.progress import console
    from mlbench.results import save_splits
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    setup(ctx)
    ctx.stressors, ctx.specs, ctx.checks, ctx.monitor = [], [], [], None
    if getattr(ctx.model_factory, "onnx_only", False) or str(cfg.train.start) == "none":
        raise MlbenchError("mlbench select trains every candidate; model=onnx and train=none train nothing")
    sel = cfg.select
    fractions = [float(f) for f in sel.fractions]
    if len(fractions) < 3 or any(not 0 < f <= 1 for f in fractions) or 1.0 not in fractions:
        raise MlbenchError(f"select.fractions needs at least 3 fractions in (0, 1], 1.0 among them; got {fractions}")
    _requirements(sel)  # a malformed requirement: one line now
    candidates_of(cfg, None)  # an empty or malformed list: one line before the data is read
    load_data(ctx)
    cands = candidates_of(cfg, ctx.data.meta.modality)
    console.print(f"[bold]select[/] {len(cands)} candidates: {', '.join(c.name for c in cands)}")
    measure_candidates(ctx, cands, fractions, int(sel.resamples))
    features, space = feature_source(ctx.data, None, ctx.device)
    cx = Complexity().run(CheckContext(ctx.data, features, space, cfg.seed, ctx.device, run_dir / "plots")).section
    ber = cx.get("ber")
    section = decide(cands, ctx.data.y["test"].long(), sel, cfg.eval.bootstrap, cfg.seed, ber)
    section["complexity"] = {"space": space, **{k: cx[k] for k in ("items", "ber", "ber_mst", "ber_1nn", "f1", "n1",
                                                                  "intrinsic_dimension")}}
    section["fractions"] = fractions
    if _plot(section["candidates"], run_dir / "plots" / "select_learning_curves.png", ctx.data.meta.name, ber):
        ctx.run.plots.append("plots/select_learning_curves.png")
    save_splits(run_dir / "splits.npz", ctx.data.index)
    s = run_summary(ctx)
    s["variants"], s["baseline_training"] = {}, {}
    s["select"] = section
    doc = Doc()
    doc.h1(f"mlbench select · {s['data']['name']}")
    doc.items([f"run `{s['run']['id']}`, started {s['run']['started']}",
               f"data: {s['data']['n_train']} train / {s['data']['n_val']} val / {s['data']['n_test']} test, "
               f"{s['data']['num_classes']} classes; learning-curve fractions {fractions}; seed {cfg.seed}"])
    report_section(doc, s)
    atomic_write(run_dir / "report.md", to_markdown(doc))
    atomic_write(run_dir / "report.html", to_html(doc, run_dir, f"mlbench select · {s['data']['name']}"))
    s["run"]["wall_s"] = time.perf_counter() - ctx.t0
    write_json(run_dir / "summary.json", s)
    return s


# --------------------------------------------------------------------------- mlbench compare

def select_rows(runs: list[tuple[Any, dict]], labels: dict) -> list[dict[str, Any]]:
    """``mlbench compare``: one row per candidate of every ``mlbench select`` run."""
    return [{"run": labels[d], "data": s["data"]["name"], "candidate": r["name"],
             "recommended": r["name"] == s["select"]["recommended"],
             **{k: r[k] for k in ("params", "flops", "accuracy", "train_val_gap", "passed", "diagnosis")}}
            for d, s in runs if s.get("select") for r in s["select"]["candidates"]]


def print_select_rows(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from mlbench.progress import console
    t = Table(title="mlbench compare · model selection")
    for c in ["run", "candidate", "params", "FLOPs/item", "accuracy", "train−val", "req", "chosen"]:
        t.add_column(c, justify="left" if c in ("run", "candidate", "req", "chosen") else "right", overflow="fold")
    for r in rows:
        t.add_row(r["run"], r["candidate"], f"{r['params']:,}", f"{r['flops']:,}", fmt(r["accuracy"], 4),
                  fmt(r["train_val_gap"], 3), "pass" if r["passed"] else "fail", "★" if r["recommended"] else "")
    console.print(t)


def write_select_rows(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """select.csv of ``mlbench compare``."""
    return write_rows(rows, out, "select")

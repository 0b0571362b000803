"""What ``mlbench compare`` writes and prints: comparison.csv/md/html with the changes between
runs, the sweep plot over a swept parameter, and the terminal tables."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from rich.table import Table

from mlbench.analysis.pareto import pareto_front, pareto_plot
from mlbench.analysis.render import Doc, to_html, to_markdown
from mlbench.progress import console
from mlbench.schema import AnalysisConf


def run_overrides(d: Path) -> list[str]:
    """The command-line overrides a run folder records (Hydra's and paths aside)."""
    ov = d / ".hydra" / "overrides.yaml"
    if not ov.is_file():
        return []
    return [o for o in (yaml.safe_load(ov.read_text()) or []) if not o.startswith(("hydra.", "paths."))]


def cell(v, digits=4) -> str:
    """A compare-table cell: "–" missing, "yes" for true, 4 decimals (4 significant digits from 1000)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"
    return str(v)


def _delta_cell(r: dict) -> str:
    if r["delta_accuracy"] is None:
        return ""
    if r["delta_accuracy_ci_low"] is None:
        return f"{r['delta_accuracy']:+.3f}"
    return f"{r['delta_accuracy']:+.3f} [{r['delta_accuracy_ci_low']:+.3f}, {r['delta_accuracy_ci_high']:+.3f}]"


def write_outputs(rows: list[dict], changes: list[dict], metrics: list[str], out: Path, title: str) -> list[Path]:
    """CSV, Markdown and self-contained HTML (with a Pareto plot of accuracy against latency)."""
    out.mkdir(parents=True, exist_ok=True)
    cols = ["run", "data", "variant", "status", *metrics, "delta_accuracy", "delta_accuracy_ci_low",
            "delta_accuracy_ci_high", "requirements", "recommended", "run_dir"]
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    axes = [(a.metric.value, a.mode) for a in AnalysisConf().pareto_axes]  # the run's default axes
    groups = sorted({r["group"] for r in rows})
    doc = Doc()
    doc.h1(title)
    doc.p(f"{len({r['run'] for r in rows})} runs, {len(rows)} variants. Δacc: variant − its run's baseline, "
          "95 % paired bootstrap interval.")
    chosen: dict[str, str | None] = {}
    for r in rows:
        chosen.setdefault(r["run"], None)
        if r["recommended"]:
            chosen[r["run"]] = r["variant"]
    doc.note("Recommended: " + "; ".join(f"{run} → **{v}**" if v else f"{run} → none (no variant met every requirement)"
                                         for run, v in chosen.items()), ok=any(chosen.values()))
    doc.table(["run", "variant", "status", *metrics, "Δacc [95% CI]", "requirements", "recommended"],
              [[r["run"], r["variant"], r["status"], *[cell(r[m]) for m in metrics], _delta_cell(r),
                cell(r["requirements"]), cell(r["recommended"])] for r in rows])
    if changes:
        doc.h2("Changes against each group's reference run (same dataset and model)")
        doc.table(["run", "reference", "variant", "Δ accuracy [95% CI]", "Δ ece [95% CI]", "Δ p50 ms", "basis"],
                  [[c["run"], c["reference"], c["variant"], change_cell(c, "accuracy"), change_cell(c, "ece"),
                    cell(c["latency_p50_ms"]), c["basis"]] for c in changes])
    param = swept_parameter(rows)
    if param is not None and sweep_plot(rows, param, out / "sweep.png"):
        doc.h2(f"Key metrics against {param}")
        doc.image("sweep.png", f"each variant's accuracy change (95% CI), p50 latency (95% CI) and size against {param}")
    for i, g in enumerate(groups):
        points = {f"{r['run']} · {r['variant']}": r for r in rows if r["status"] == "ok" and r["group"] == g}
        front = pareto_front(points, axes)
        doc.h2(f"Pareto front · {g} (accuracy up, p50 latency and size down)")
        doc.items(front)
        if len(points) >= 2:
            name = "pareto.png" if len(groups) == 1 else f"pareto_{i}.png"
            pareto_plot(points, axes, front, out / name)
            doc.image(name, f"{g}: accuracy against batch-1 p50 latency; marker area ~ size")
    (out / "compare.md").write_text(to_markdown(doc))
    (out / "compare.html").write_text(to_html(doc, out, title))
    return [out / "compare.csv", out / "compare.md", out / "compare.html"]


def change_cell(c: dict, metric: str) -> str:
    ci = c.get(f"{metric}_ci")
    return cell(c[metric]) + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def swept_parameter(rows: list[dict]) -> str | None:
    """The one override whose value differs between the runs and is numeric (a sweep), else None."""
    values: dict[str, set] = {}
    for r in rows:
        for o in run_overrides(Path(r["run_dir"])):
            key, _, v = o.lstrip("+~").partition("=")
            values.setdefault(key, set()).add(v)
    varying = [k for k, v in values.items() if len(v) > 1]
    if len(varying) != 1:
        return None
    try:
        [float(v) for v in values[varying[0]]]
    except ValueError:
        return None
    return varying[0]


def sweep_plot(rows: list[dict], param: str, path: Path) -> bool:
    """Accuracy change (with its paired interval), p50 latency (with its interval) and size of
    each variant against the swept parameter, one line per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series: dict[str, list[tuple[float, dict]]] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        ov = dict(o.lstrip("+~").split("=", 1) for o in run_overrides(Path(r["run_dir"])) if "=" in o)
        if param in ov:
            series.setdefault(r["variant"], []).append((float(ov[param]), r))
    if not series or max(len(v) for v in series.values()) < 2:
        return False
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = f"C{i % 10}"  # one colour per variant in every panel
        pts.sort(key=lambda p: p[0])
        xs = [p[0] for p in pts]
        d = [p[1].get("delta_accuracy") for p in pts]
        if all(v is not None for v in d):
            lo = [p[1].get("delta_accuracy_ci_low") for p in pts]
            hi = [p[1].get("delta_accuracy_ci_high") for p in pts]
            err = None if None in lo else [[100 * (v - a) for v, a in zip(d, lo)], [100 * (b - v) for v, b in zip(d, hi)]]
            axs[0].errorbar(xs, [100 * v for v in d], yerr=err, marker="o", ms=3, capsize=3, color=color)
        lat = [p[1].get("latency_p50_ms") for p in pts]
        if all(v is not None for v in lat):
            lo = [p[1].get("latency_p50_ci_low_ms") for p in pts]
            hi = [p[1].get("latency_p50_ci_high_ms") for p in pts]
            err = None if None in lo or None in hi else [[v - a for v, a in zip(lat, lo)], [b - v for v, b in zip(lat, hi)]]
            axs[1].errorbar(xs, lat, yerr=err, marker="o", ms=3, capsize=3, color=color)
        size = [p[1].get("size_bytes") for p in pts]
        if all(v is not None for v in size):
            axs[2].plot(xs, [v / 1024 for v in size], marker="o", ms=3, color=color)
        axs[2].plot([], [], color=color, marker="o", ms=3, label=name)  # the legend: every variant, once
    for ax, title in zip(axs, ("accuracy change vs its baseline (points, 95% CI)", "p50 latency (ms, 95% CI)",
                              "size (KB)")):
        ax.set_xlabel(param)
        ax.set_title(title, fontsize=9)
    axs[0].axhline(0, color="grey", lw=0.8, ls=":")
    axs[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def print_changes(changes: list[dict]) -> None:
    """The cross-run changes in the console (the same rows as compare.html)."""
    if not changes:
        return
    t = Table(title="changes against each group's reference run (paired 95% CI where the items match)")
    for c in ["run", "variant", "Δ accuracy [95% CI]", "Δ ece", "Δ p50 ms"]:
        t.add_column(c, justify="left" if c in ("run", "variant") else "right", overflow="fold")
    for c in changes:
        t.add_row(c["run"], c["variant"], change_cell(c, "accuracy"), cell(c["ece"]), cell(c["latency_p50_ms"]))
    console.print(t)


def print_rows(rows: list[dict], metrics: list[str], title: str) -> None:
    t = Table(title=title)
    for c in ["run", "variant", "status", *metrics, "Δacc [95% CI]", "req"]:
        t.add_column(c, justify="left" if c in ("run", "variant", "status") else "right", overflow="fold")
    for r in rows:
        t.add_row(r["run"], r["variant"] + (" ★" if r["recommended"] else ""), r["status"],
                  *[cell(r[m]) for m in metrics], _delta_cell(r), cell(r["requirements"]))
    console.print(t)

"""``mlbench compare PATH...``: one table over run directories, sweep directories or a mix.

Reads only the results contract (summary.json, predictions/*.npz). Runs are compared
within their group — the same dataset and model (``--across`` compares every run with the
first) — and the first run of a group is its reference: each later run's variants are
compared with the reference's same-named variant, paired over test items (bootstrap
interval) when both scored the same items, otherwise as a plain difference. The Pareto front
is per group. When the runs differ in one numeric override (a sweep), each key metric is
plotted against it with its interval.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import logging
import os
import sys
from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from mlbench.analysis.history import history
from mlbench.analysis.pareto import pareto_front, pareto_plot
from mlbench.analysis.render import Doc, to_html, to_markdown
from mlbench.cycle.report import cycle_rows, print_cycle_rows, write_cycle_rows
from mlbench.errors import MlbenchError
from mlbench.evaluate.registry import COMPARE, check_names, names
from mlbench.progress import console, err_console
from mlbench.results import read_predictions, read_summary
from mlbench.schema import AnalysisConf
from mlbench.version import SCHEMA_VERSION

log = logging.getLogger(__name__)
DEFAULT_METRICS = list(names(tag=COMPARE))
PAIRED_RUN_LIMIT = 10  # above this many runs, cross-run deltas are plain differences (fast)


def find_runs(paths: list[Path]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Every run directory under ``paths`` with a readable summary.json; warnings for the rest."""
    runs, warnings, seen = [], [], set()
    for root in paths:
        if not root.exists():
            raise MlbenchError(f"no such folder: {root}")
        candidates = [root] if (root / "summary.json").is_file() else sorted(
            {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")})
        for d in candidates:
            if d in seen:
                continue
            seen.add(d)
            f = d / "summary.json"
            if not f.is_file():
                warnings.append(f"{d}: no summary.json (unfinished or failed run), skipped")
                continue
            try:
                s = read_summary(f)
            except MlbenchError as e:
                if getattr(e, "schema_version", None) not in (None, SCHEMA_VERSION):
                    raise  # another version of the contract: never compared silently
                warnings.append(f"{e}; skipped")
                continue
            runs.append((d, s))
    if not runs:
        why = ("; ".join(warnings[:5]) + (f" (and {len(warnings) - 5} more)" if len(warnings) > 5 else "")) \
            if warnings else "no summary.json found"
        raise MlbenchError("no runs found under " + ", ".join(map(str, paths)) + ": " + why)
    return runs, warnings


def _overrides(d: Path) -> list[str]:
    ov = d / ".hydra" / "overrides.yaml"
    if not ov.is_file():
        return []
    return [o for o in (yaml.safe_load(ov.read_text()) or []) if not o.startswith(("hydra.", "paths."))]


def _labels(runs: list[tuple[Path, dict]], roots: list[Path]) -> dict[Path, str]:
    """Each run's folder (relative to the root given) plus the overrides that differ between runs."""
    ovs = {d: _overrides(d) for d, _ in runs}
    common = set.intersection(*(set(o) for o in ovs.values())) if len(ovs) > 1 else set()
    out = {}
    for d, _ in runs:
        label = _label(d, roots)
        own = [o for o in ovs[d] if o not in common]
        out[d] = label + (" [" + " ".join(own) + "]" if own else "")
    return out


def _label(d: Path, roots: list[Path]) -> str:
    for r in roots:
        try:
            rel = d.relative_to(r)
            label = str(Path(r.name) / rel) if str(rel) != "." else r.name
            break
        except ValueError:
            continue
    else:
        label = d.name
    return label


def rows_of(runs: list[tuple[Path, dict]], roots: list[Path], metrics: list[str]) -> list[dict]:
    check_names(metrics, {k for _, s in runs for v in s["variants"].values() for k in (v.get("metrics") or {})},
                "--metrics")
    rows = []
    labels = _labels(runs, roots)
    for d, s in runs:
        label = labels[d]
        for name, v in s["variants"].items():
            m = v.get("metrics") or {}
            acc = (v.get("deltas") or {}).get("accuracy")
            req = v.get("requirements")
            rows.append({"run": label, "run_dir": str(d), "data": s["data"]["name"], "group": group_of(s),
                         "variant": name,
                         "status": v.get("status"), **{k: m.get(k) for k in metrics},
                         "latency_p50_ci_low_ms": m.get("latency_p50_ci_low_ms"),
                         "latency_p50_ci_high_ms": m.get("latency_p50_ci_high_ms"),
                         "delta_accuracy": None if not acc else acc["value"],
                         "delta_accuracy_ci_low": None if not acc else acc["ci_low"],
                         "delta_accuracy_ci_high": None if not acc else acc["ci_high"],
                         "requirements": None if req is None else ("pass" if req["passed"] else "fail"),
                         "recommended": (s.get("recommended") or {}).get("variant") == name})
    return rows


def group_of(s: dict) -> str:
    """What makes two runs comparable: the same dataset and model."""
    model = ((s.get("run") or {}).get("config") or {}).get("model") or {}
    return f"{s['data']['name']} · {str(model.get('_target_', '?')).rsplit('.', 1)[-1]}"


def cross_run(runs: list[tuple[Path, dict]], roots: list[Path], paired: bool, across: bool = False) -> list[dict]:
    """Changes of each later run's variants against its group's first run's same-named variant
    (``across``: against the very first run, whatever its dataset and model)."""
    out = []
    labels = _labels(runs, roots)
    refs: dict[str, tuple[Path, dict]] = {}
    for d, s in runs:
        key = "all" if across else group_of(s)
        if key not in refs:
            refs[key] = (d, s)
            continue
        ref_dir, ref = refs[key]
        for name, v in s["variants"].items():
            rv = ref["variants"].get(name)
            if rv is None or v.get("status") != "ok" or rv.get("status") != "ok":
                continue
            row = {"run": labels[d], "reference": labels[ref_dir], "variant": name, "group": group_of(s)}
            a, b = rv["metrics"], v["metrics"]
            for k in ("accuracy", "ece", "latency_p50_ms"):
                row[k] = None if a.get(k) is None or b.get(k) is None else b[k] - a[k]
            row["basis"] = "difference"
            if paired:
                fa, fb = ref_dir / rv["predictions"], d / v["predictions"]
                try:
                    pa, pb = read_predictions(fa), read_predictions(fb)
                except MlbenchError as e:
                    log.warning("%s; compared by difference only", e)
                    pa = pb = None
                if pa is not None:
                    if np.array_equal(pa["index"], pb["index"]) and np.array_equal(pa["labels"], pb["labels"]):
                        import torch  # torch only for paired cross-run intervals: compare starts fast

                        from mlbench.evaluate.stats import paired_deltas
                        dl = paired_deltas(torch.from_numpy(pa["probs"]), torch.from_numpy(pb["probs"]),
                                           torch.from_numpy(pa["labels"]), n_resamples=1000)
                        row["accuracy_ci"] = [dl["accuracy"]["ci_low"], dl["accuracy"]["ci_high"]]
                        row["accuracy"] = dl["accuracy"]["value"]
                        row["ece_ci"] = [dl["ece"]["ci_low"], dl["ece"]["ci_high"]]
                        row["basis"] = "paired over the same test items"
            out.append(row)
    return out


def _f(v, digits=4) -> str:
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
              [[r["run"], r["variant"], r["status"], *[_f(r[m]) for m in metrics], _delta_cell(r),
                _f(r["requirements"]), _f(r["recommended"])] for r in rows])
    if changes:
        doc.h2("Changes against each group's reference run (same dataset and model)")
        doc.table(["run", "reference", "variant", "Δ accuracy [95% CI]", "Δ ece [95% CI]", "Δ p50 ms", "basis"],
                  [[c["run"], c["reference"], c["variant"], change_cell(c, "accuracy"), change_cell(c, "ece"),
                    _f(c["latency_p50_ms"]), c["basis"]] for c in changes])
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
    return _f(c[metric]) + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def swept_parameter(rows: list[dict]) -> str | None:
    """The one override whose value differs between the runs and is numeric (a sweep), else None."""
    values: dict[str, set] = {}
    for r in rows:
        for o in _overrides(Path(r["run_dir"])):
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
        ov = dict(o.lstrip("+~").split("=", 1) for o in _overrides(Path(r["run_dir"])) if "=" in o)
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
        t.add_row(c["run"], c["variant"], change_cell(c, "accuracy"), _f(c["ece"]), _f(c["latency_p50_ms"]))
    console.print(t)


def print_rows(rows: list[dict], metrics: list[str], title: str) -> None:
    t = Table(title=title)
    for c in ["run", "variant", "status", *metrics, "Δacc [95% CI]", "req"]:
        t.add_column(c, justify="left" if c in ("run", "variant", "status") else "right", overflow="fold")
    for r in rows:
        t.add_row(r["run"], r["variant"] + (" ★" if r["recommended"] else ""), r["status"],
                  *[_f(r[m]) for m in metrics], _delta_cell(r), _f(r["requirements"]))
    console.print(t)


def results_root() -> Path:
    """Where results go when no path is given: ``$MLBENCH_RESULTS``, else ``results`` (as in conf/paths)."""
    return Path(os.environ.get("MLBENCH_RESULTS") or "results")


def compare(paths: list[Path], out: Path | None = None, metrics: list[str] | None = None,
            paired: bool | None = None, quiet: bool = False, across: bool = False) -> list[Path]:
    metrics = metrics or DEFAULT_METRICS
    runs, warnings = find_runs(paths)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    rows = rows_of(runs, paths, metrics)
    paired = len(runs) <= PAIRED_RUN_LIMIT if paired is None else paired
    changes = cross_run(runs, paths, paired, across) if len(runs) > 1 else []
    title = "mlbench compare · " + ", ".join(p.name for p in paths)
    cycles = cycle_rows(runs, _labels(runs, paths))
    if not quiet:
        if rows or not cycles:
            print_rows(rows, metrics, title)
            print_changes(changes)
        if cycles:
            print_cycle_rows(cycles)
    out = out or results_root() / "compare" / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    files = write_outputs(rows, changes, metrics, out, title)
    if cycles:
        files += write_cycle_rows(cycles, out)
    if not quiet:
        console.print("wrote " + ", ".join(str(f) for f in files))
    return files


def show_history(db: Path, metrics: list[str], out: Path | None) -> None:
    rows = history(db, metrics)
    if not rows:
        raise MlbenchError(f"no run history in {db}")
    t = Table(title=f"mlbench history · {db}")
    for c in ["started", "data", "model", "variant", *metrics, "req"]:
        t.add_column(c, justify="left" if c in ("started", "data", "model", "variant") else "right")
    for r in rows:
        t.add_row(r["started"], r["data"], r["model"], r["variant"], *[_f(r[m]) for m in metrics],
                  {None: "", 1: "pass", 0: "fail"}[r["requirements"]])
    console.print(t)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "history.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        console.print(f"wrote {out / 'history.csv'}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="mlbench compare",
                                 description="Compare run and sweep directories (reads summary.json only).")
    ap.add_argument("paths", nargs="*", type=Path, help="run directories, sweep directories, or folders of them")
    ap.add_argument("--out", type=Path, help="where to write compare.csv/.md/.html (default results/compare/<time>)")
    ap.add_argument("--metrics", help="comma-separated metric names (default: %(default)s)",
                    default=",".join(DEFAULT_METRICS))
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=None,
                    help=f"paired cross-run intervals from predictions (default: when <= {PAIRED_RUN_LIMIT} runs)")
    ap.add_argument("--across", action="store_true",
                    help="compare every run with the first, across datasets and models (default: within each)")
    ap.add_argument("--history", action="store_true", help="show how key metrics moved over recorded runs")
    ap.add_argument("--db", type=Path, default=None,
                    help="history database (default: $MLBENCH_RESULTS/history.sqlite, or results/history.sqlite)")
    a = ap.parse_args(argv)
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    try:
        if a.history:
            show_history(a.db or results_root() / "history.sqlite", metrics, a.out)
            return 0
        if not a.paths:
            ap.error("give at least one run or sweep directory (or --history)")
        compare(a.paths, a.out, metrics, a.paired, across=a.across)
    except MlbenchError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        return 2
    except BrokenPipeError:  # the reader stopped early (`| head`): nothing went wrong here
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet too
        return 0
    except OSError as e:  # an output folder that is full or read-only
        err_console.print(f"[bold red]error:[/] cannot write {e.filename or 'the output'}: {e.strerror}")
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: compare wrote nothing more")
        return 130
    return 0

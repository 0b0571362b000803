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
from rich.table import Table

from mlbench.analysis.compare_out import (
    cell,
    print_changes,
    print_rows,
    run_overrides,
    write_outputs,
)
from mlbench.analysis.history import history
from mlbench.cycle.report import cycle_rows, print_cycle_rows, write_cycle_rows
from mlbench.errors import MlbenchError
from mlbench.evaluate.augmentation import (
    augment_rows,
    print_augment_rows,
    write_augment_rows,
)
from mlbench.evaluate.partition import (
    partition_rows,
    print_partition_rows,
    write_partition_rows,
)
from mlbench.evaluate.registry import COMPARE, check_names, names
from mlbench.progress import console, err_console
from mlbench.results import read_predictions, read_summary, results_root
from mlbench.select.report import print_select_rows, select_rows, write_select_rows
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


def _labels(runs: list[tuple[Path, dict]], roots: list[Path]) -> dict[Path, str]:
    """Each run's folder (relative to the root given) plus the overrides that differ between runs."""
    ovs = {d: run_overrides(d) for d, _ in runs}
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
    spreads = partition_rows(runs, _labels(runs, paths))
    augments = augment_rows(runs, _labels(runs, paths))
    selects = select_rows(runs, _labels(runs, paths))
    if not quiet:
        if rows or not (cycles or selects):
            print_rows(rows, metrics, title)
            print_changes(changes)
        if cycles:
            print_cycle_rows(cycles)
        if spreads:
            print_partition_rows(spreads)
        if augments:
            print_augment_rows(augments)
        if selects:
            print_select_rows(selects)
    out = out or results_root() / "compare" / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    files = write_outputs(rows, changes, metrics, out, title)
    if cycles:
        files += write_cycle_rows(cycles, out)
    if spreads:
        files += write_partition_rows(spreads, out)
    if augments:
        files += write_augment_rows(augments, out)
    if selects:
        files += write_select_rows(selects, out)
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
        t.add_row(r["started"], r["data"], r["model"], r["variant"], *[cell(r[m]) for m in metrics],
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

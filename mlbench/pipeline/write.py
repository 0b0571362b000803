"""The last stage: records turned into summary.json, predictions, the decision and the report."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from mlbench.analysis.decision import decide
from mlbench.analysis.history import record as record_history
from mlbench.analysis.report import write_report
from mlbench.components import BASELINE
from mlbench.errors import first_line
from mlbench.pipeline.context import RunContext
from mlbench.pipeline.plan import attach_measured
from mlbench.progress import console
from mlbench.records import summary
from mlbench.results import save_predictions, save_splits, write_json
from mlbench.tracking import track

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- write

def write(ctx: RunContext) -> dict[str, Any]:
    d = ctx.data
    console.print("[bold]writing[/] predictions, summary.json, plots and the report")
    save_splits(ctx.run_dir / "splits.npz", d.index)
    for name, lv in ctx.live.items():
        save_predictions(ctx.run_dir / "predictions" / f"{name}.npz", lv.evaluation.probs,
                         lv.evaluation.labels, d.index["test"], lv.evaluation.logits,
                         d.group["test"] if d.group is not None else None)
    t_write = time.perf_counter()
    s = summary(ctx)
    a = decide(s, ctx.cfg, ctx.run_dir)
    for name, res in a["requirements"].items():
        s["variants"][name]["requirements"] = res
    s["recommended"], s["pareto"] = a["recommended"], a["pareto"]
    if a["plots"]:
        s["plots"] = [*s.get("plots", []), *a["plots"]]
    s["stages"] = {**s.get("stages", {}), "write": None,  # filled in after the report is written
                   "variant_builds": {n: r.build_s for n, r in ctx.records.items() if n != BASELINE}}
    if s.get("plan"):  # the estimate against what each stage took (the write stage's own share added below)
        attach_measured(s["plan"], s["stages"])
    write_report(s, ctx.run_dir)
    s["stages"]["write"] = time.perf_counter() - t_write
    if s.get("plan"):
        attach_measured(s["plan"], s["stages"])
    s["run"]["wall_s"] = time.perf_counter() - ctx.t0
    write_json(ctx.run_dir / "summary.json", s)
    if ctx.cfg.analysis.history:
        db = Path(ctx.cfg.paths.history_db)
        try:
            record_history(db, s, ctx.run_dir)
        except (sqlite3.Error, OSError, RuntimeError) as e:  # history is secondary: the run stands
            log.warning("run history not recorded in %s (%s); the run's results are complete", db,
                        first_line(e))
    track(ctx.tracker, s, ctx.run_dir)
    return s


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, MB (``getrusage``; None where it is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round((kb / 1024 if sys.platform != "darwin" else kb / 2**20), 1)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc; None elsewhere): the start-up time
    (interpreter, imports, config composition) a run spends before its first stage."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))

"""The run: stages in order over one typed context.

setup -> data -> baseline (train or cache) -> plan -> datacheck -> variants (build, measure) ->
revised plan -> efficiency (interleaved timing) -> compare (paired deltas) -> stress -> monitor ->
seeds -> write (summary.json, predictions, requirements and recommendation, report).

Each stage is a function ``stage(ctx) -> None`` that reads the :class:`RunContext` and
appends typed records to it (``mlbench/records.py``); the work itself lives with its
subject (train/, evaluate/, compress/, stress/, analysis/). After ``write`` turns the
records into summary.json, everything reads summary.json only. The stages live in
``prepare.py`` (set-up, data, baseline, data checks), ``variants.py``, ``measurements.py``
(timing, deltas, stress, monitoring, seeds) and ``write.py``; their names and the words
the report and the console use for them in ``mlbench/records.py`` (``STAGE_LABELS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlbench.analysis.report import write_datacheck_report
from mlbench.components import instantiate_checked
from mlbench.data.base import ALLOW_NONFINITE
from mlbench.errors import MlbenchError
from mlbench.evaluate.augmentation import augmentation
from mlbench.evaluate.factors import factors
from mlbench.evaluate.partition import partition
from mlbench.monitor.unlabelled import unlabelled
from mlbench.pipeline.context import MIN_TEST_ITEMS, RunContext
from mlbench.pipeline.measurements import compare, efficiency, monitor, seeds, stress
from mlbench.pipeline.plan import plan, revise
from mlbench.pipeline.prepare import (
    accuracy_target,
    baseline,
    datacheck,
    load_data,
    setup,
)
from mlbench.pipeline.resume import Resume
from mlbench.pipeline.variants import build, variants
from mlbench.pipeline.write import peak_rss_mb, process_age_s, summary, write
from mlbench.process import release_memory
from mlbench.progress import console
from mlbench.records import STAGE_NOTES, command_line_overrides
from mlbench.results import save_splits, write_json

__all__ = ["RunContext", "MIN_TEST_ITEMS", "STAGES", "MONITOR_STAGES", "setup", "load_data", "baseline",
           "datacheck", "variants", "efficiency", "compare", "stress", "monitor", "seeds", "summary", "write",
           "build", "accuracy_target", "instantiate_checked", "command_line_overrides", "run",
           "run_monitor_command", "run_datacheck", "timed_stages"]

STAGES: list[Callable[[RunContext], None]] = [setup, load_data, baseline, plan, datacheck, variants, revise,
                                              efficiency, compare, factors, stress, augmentation, monitor, unlabelled,
                                              seeds, partition]
MONITOR_STAGES = [setup, load_data, baseline, variants, compare, monitor, unlabelled]  # `mlbench monitor`


def run_monitor_command(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``mlbench monitor``: the baseline and the variants, then the monitoring stage (no data
    checks, timing or stress); writes the run folder like a run."""
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    timed_stages(ctx, [setup])
    ctx.checks, ctx.stressors = [], []
    if ctx.monitor is None:
        raise MlbenchError("mlbench monitor needs a monitor config (monitor=light or monitor=full)")
    timed_stages(ctx, MONITOR_STAGES[1:])
    return write(ctx)


def run_datacheck(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``mlbench datacheck``: the data checks alone (the baseline is trained, or read from the
    cache, only when image checks need its embeddings); writes summary.json and the report."""
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    setup(ctx)
    ctx.stressors, ctx.specs = [], []
    token = ALLOW_NONFINITE.set(True)  # NaN/inf features are findings here, not errors
    try:
        load_data(ctx)
    finally:
        ALLOW_NONFINITE.reset(token)
    if ctx.data.meta.modality == "image" and ctx.checks:  # image checks use the baseline's embeddings
        baseline(ctx)
    datacheck(ctx)
    save_splits(run_dir / "splits.npz", ctx.data.index)
    s = summary(ctx)
    s["variants"] = {}
    write_datacheck_report(s, run_dir)
    s["run"]["wall_s"] = time.perf_counter() - ctx.t0
    write_json(run_dir / "summary.json", s)
    return s


def timed_stages(ctx: RunContext, stages: list[Callable[[RunContext], None]], book: Resume | None = None) -> None:
    """Run ``stages`` in order, recording each one's wall seconds in ``ctx.run.stages``
    (``startup``: process start to the first stage); with ``book``, each finished stage is
    saved, and the stages an interrupted run had finished are put back instead of run."""
    ctx.run.stages["startup"] = process_age_s()
    for stage in stages:
        name = stage.__name__
        if book is not None and book.skips(name):
            continue
        if book is not None:
            book.before(name, ctx)
        if name in STAGE_NOTES and ctx.live:
            console.print(f"[bold]{STAGE_NOTES[name]}[/] ({len(ctx.live)} variants)")
        t0 = time.perf_counter()
        stage(ctx)
        ctx.run.stages[name] = time.perf_counter() - t0
        ctx.run.peak_rss_mb[name] = peak_rss_mb()
        release_memory()
        if book is not None:
            book.save(name, ctx)
    if book is not None:
        book.restore(ctx)  # every stage had finished: only the write was left


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run every stage and write the run directory; returns the summary. Progress is saved
    after each stage: ``resume=true`` continues a run that was killed (``pipeline/resume.py``)."""
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    book = Resume(cfg)
    timed_stages(ctx, STAGES, book)
    summary = write(ctx)
    book.finish()
    return summary

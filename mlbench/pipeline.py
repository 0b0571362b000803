"""The run: stages in order over one typed context.

setup -> data -> baseline (train or cache) -> datacheck -> variants (build, measure) -> efficiency
(interleaved timing) -> compare (paired deltas) -> stress -> monitor -> seeds -> write (summary.json,
predictions, requirements and recommendation, report).

Each stage is a function ``stage(ctx) -> None`` that reads the :class:`RunContext` and
appends typed records to it (``mlbench/records.py``); the work itself lives with its
subject (train/, evaluate/, compress/, stress/, analysis/). After ``write`` turns the
records into summary.json, everything reads summary.json only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlbench.analysis.decision import decide
from mlbench.analysis.deltas import compare_variants
from mlbench.analysis.history import record as record_history
from mlbench.analysis.report import write_datacheck_report, write_report
from mlbench.analysis.requirements import validate as validate_requirement
from mlbench.backends import runner_for
from mlbench.calibrate import Calibrator
from mlbench.components import BASELINE, VariantSpec, components, instantiate_checked
from mlbench.compress import Artifact, Facts, PassContext
from mlbench.compress.cache import ArtifactCache
from mlbench.compress.formats import format_of
from mlbench.compress.recipe import build_recipe
from mlbench.data import DataBundle, Dataset
from mlbench.data.base import ALLOW_NONFINITE
from mlbench.datacheck import Check, CheckContext
from mlbench.datacheck.stage import feature_source, print_findings, run_checks
from mlbench.datacheck.stage import select as select_checks
from mlbench.deploy import onnx_metadata
from mlbench.env import (
    TORCH_DEFAULT_THREADS,
    environment,
    resolve_device,
    resolve_threads,
    seed_everything,
    set_threads,
)
from mlbench.errors import MlbenchError, environment_error, first_line
from mlbench.evaluate import registry
from mlbench.evaluate.efficiency import compare_efficiency
from mlbench.evaluate.loop import evaluate, robust_accuracy, serving_batch
from mlbench.evaluate.measure import measure
from mlbench.models import count_params
from mlbench.monitor import Monitor
from mlbench.monitor.stage import run_monitor
from mlbench.named import import_plugins
from mlbench.plotting import exemplar_grid
from mlbench.progress import console
from mlbench.records import Live, RunRecord, VariantRecord
from mlbench.results import save_predictions, save_splits, write_json
from mlbench.schema import check_values
from mlbench.stress.base import StressEnv, Stressor, StressVariant
from mlbench.stress.stage import run_stressors, scorer
from mlbench.tracking import track
from mlbench.train import content_hash, save_weights
from mlbench.train.baseline import fit_kwargs, train_baseline
from mlbench.version import SCHEMA_VERSION, __version__

log = logging.getLogger(__name__)
MIN_TEST_ITEMS = 200  # fewer test items than this: a warning in the console, summary and report


@dataclass
class RunContext:
    """The run's inputs (config, data, factories) and what the stages have produced so far:
    typed records (``records``, ``run``) and, for later stages of the same run, the live
    models and runners (``live``)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device = torch.device("cpu")
    started: str = ""
    t0: float = 0.0
    env: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None
    model_factory: Callable[..., torch.nn.Module] | None = None
    calibrator_factory: Callable[[], Calibrator] | None = None
    specs: list[VariantSpec] = field(default_factory=list)
    stressors: list[Stressor] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    check_skipped: list[dict[str, str]] = field(default_factory=list)
    monitor: Monitor | None = None
    tracker: Any = None  # tracking=mlflow
    data: DataBundle | None = None
    data_hash: str = ""
    baseline: Artifact | None = None
    baseline_info: dict[str, Any] = field(default_factory=dict)
    baseline_calibrator: Calibrator | None = None
    records: dict[str, VariantRecord] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)  # measured variants only
    built: dict[str, Artifact] = field(default_factory=dict)  # lineage id -> artifact built in this run
    artifacts: ArtifactCache | None = None  # ONNX artifacts kept across runs
    run: RunRecord = field(default_factory=RunRecord)


# --------------------------------------------------------------------------- setup

def setup(ctx: RunContext) -> None:
    """Everything that can fail on a config value fails here, before any work."""
    cfg = ctx.cfg
    check_values(cfg)
    for req in OmegaConf.to_container(cfg.requirements.checks, resolve=True, enum_to_str=True):
        validate_requirement(req)
    ctx.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx.t0 = time.perf_counter()
    ctx.device = resolve_device(cfg.device)
    ctx.artifacts = ArtifactCache(cfg.paths.cache_dir, ctx.device)
    threads, how = resolve_threads(cfg.backend.threads)
    set_threads(threads)
    seed_everything(cfg.seed, deterministic=ctx.device.type == "cpu")
    ctx.env = environment(ctx.device)
    ctx.env.update(threads_choice=how, train_threads=cfg.train.threads or TORCH_DEFAULT_THREADS)
    import_plugins(cfg.get("plugins"))
    ctx.dataset = instantiate_checked(cfg.data, "data")
    ctx.model_factory = instantiate_checked(cfg.model, "model")
    if cfg.calibrate and "_target_" in cfg.calibrate:
        ctx.calibrator_factory = lambda node=cfg.calibrate: instantiate(node)
        ctx.calibrator_factory()  # fail now on bad arguments
    ctx.specs, ctx.stressors, ctx.checks, ctx.monitor = components(cfg)
    if cfg.get("tracking") and "_target_" in cfg.tracking:  # fails here when MLflow is missing
        ctx.tracker = instantiate_checked(cfg.tracking, "tracking")


# --------------------------------------------------------------------------- data

def load_data(ctx: RunContext) -> None:
    ctx.data = ctx.dataset.load()
    ctx.data_hash = ctx.data.content_hash()
    sizes = ctx.data.sizes()
    for st in list(ctx.stressors):  # unfit stressors fail (or are skipped) now, not halfway
        if not st.check(ctx.data.meta):
            ctx.run.stress_skipped.append({"stressor": st.name, "reason": st.fits(ctx.data.meta)})
            ctx.stressors.remove(st)
    if ctx.checks:
        ctx.checks, ctx.check_skipped = select_checks(ctx.checks, ctx.data)
    if ctx.monitor is not None:
        ctx.monitor.prepare(sizes["test"], ctx.data.group is not None)
    if sizes["test"] < MIN_TEST_ITEMS:
        half = 1.96 * math.sqrt(0.9 * 0.1 / sizes["test"])
        msg = (f"the test split has {sizes['test']} items (< {MIN_TEST_ITEMS}): at accuracy 0.9 a 95 % interval "
               f"is about ±{100 * half:.0f} points wide, so small differences mean little")
        ctx.run.warnings.append(msg)
        log.warning(msg)
    console.print(f"[bold]data[/] {ctx.data.meta.name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                  + f" · {ctx.data.meta.num_classes} classes · device {ctx.device}")


# --------------------------------------------------------------------------- baseline

def baseline(ctx: RunContext) -> None:
    model, info, key = train_baseline(ctx.cfg, ctx.data, ctx.data_hash, ctx.model_factory, ctx.device, ctx.cfg.seed)
    ctx.baseline_info = info
    path = ctx.run_dir / "models" / BASELINE / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, path)
    ctx.baseline = Artifact(id=key, format="torch", model=model, files=[path], facts=Facts(*count_params(model)))
    verb = "loaded from cache" if info["cache_hit"] else f"trained in {info['train_s']:.1f} s"
    console.print(f"[bold]baseline[/] {type(model).__name__} {verb} (id {key}, best epoch {info['best_epoch']})")


# --------------------------------------------------------------------------- datacheck

def accuracy_target(cfg: DictConfig) -> float | None:
    """The strictest absolute accuracy requirement (``accuracy >= x``), if any."""
    values = [float(r.value) for r in cfg.requirements.checks
              if r.metric is not None and r.metric.value == "accuracy" and r.op in (">=", ">") and r.value is not None]
    return max(values) if values else None


def datacheck(ctx: RunContext) -> None:
    """The configured data checks on the loaded splits (features for images: the baseline's
    penultimate-layer embeddings)."""
    if not ctx.checks:
        return
    model = ctx.baseline.model if ctx.baseline is not None else None
    features, space = feature_source(ctx.data, model, ctx.device)
    cctx = CheckContext(ctx.data, features, space, ctx.cfg.seed, ctx.device, ctx.run_dir / "plots",
                        accuracy_target(ctx.cfg))
    section = run_checks(ctx.checks, cctx, ctx.check_skipped, ctx.run_dir)
    ctx.run.plots += section.pop("plots")
    ctx.run.datacheck = section
    print_findings(section, full=False)


# --------------------------------------------------------------------------- variants

def build(ctx: RunContext, spec: VariantSpec) -> tuple[Artifact, dict[str, list[str]]]:
    """The variant's recipe applied to the baseline (``compress.recipe.build_recipe``: lineage
    reuse within the run, the artifact cache across runs), in ``models/<variant>/``."""
    def context(step: int) -> PassContext:
        return PassContext(data=ctx.data, device=ctx.device, workdir=ctx.run_dir / "models" / spec.name,
                           seed=ctx.cfg.seed, fit_kwargs=fit_kwargs(ctx.cfg, ctx.device), step=step)
    return build_recipe(ctx.baseline, spec.passes, ctx.run_dir / "models" / spec.name, context,
                        built=ctx.built, cache=ctx.artifacts)


def _measure(ctx: RunContext, rec: VariantRecord, art: Artifact, overrides: dict | None = None) -> None:
    t0 = time.perf_counter()
    runner = runner_for(art, ctx.cfg.backend, ctx.device, overrides)
    load_s = time.perf_counter() - t0
    rec.runner = runner.describe()
    rec.backend = rec.runner["backend"]
    rec.flags += art.flags
    evaluation, fitted = measure(rec, art, runner, ctx.data, ctx.cfg, ctx.calibrator_factory, ctx.baseline_calibrator)
    rec.metrics["load_s"] = load_s
    if rec.name == BASELINE:
        ctx.baseline_calibrator = fitted
    ctx.live[rec.name] = Live(art, runner, evaluation)


def variants(ctx: RunContext) -> None:
    base = VariantRecord(BASELINE, "trained model, torch fp32", [],
                         artifact_path=f"models/{BASELINE}/model.safetensors",
                         lineage={"id": ctx.baseline.id, "parent": None, "passes": []})
    _measure(ctx, base, ctx.baseline)
    ctx.records[BASELINE] = base
    console.print(f"  [green]✓[/] {BASELINE}: accuracy {base.metrics['accuracy']:.4f}")
    for spec in ctx.specs:
        rec = VariantRecord(spec.name, spec.description, [p.name for p in spec.passes])
        t0 = time.perf_counter()
        try:
            art, skipped = build(ctx, spec)
            rec.lineage = {"id": art.id, "parent": art.parent, "passes": art.records, **skipped}
            rec.build_s = time.perf_counter() - t0
            rec.artifact_path = str(art.files[0].relative_to(ctx.run_dir))
            _measure(ctx, rec, art, spec.runner)
            drop = base.metrics["accuracy"] - rec.metrics["accuracy"]
            if drop > ctx.cfg.eval.accuracy_drop_flag:
                rec.flags.append(f"accuracy drops by {100 * drop:.1f} points against the baseline")
            shown = [f for f in rec.flags if not f.startswith("calibrator")]  # those are in the report
            console.print(f"  [green]✓[/] {spec.name}: accuracy {rec.metrics['accuracy']:.4f}"
                          + (f" [yellow]({'; '.join(shown)})[/]" if shown else ""))
        except Exception as e:  # one broken variant must not lose the others
            if environment_error(e) is not None:  # a full disk is the run's failure, not the variant's
                raise
            rec.status, rec.metrics = "failed", {}
            rec.backend = format_of(spec.passes[-1].produces).backend if spec.passes else ctx.baseline.kind.backend
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            rec.error = first if isinstance(e, MlbenchError) else f"{type(e).__name__}: {first}"
            log.debug("variant %s failed", spec.name, exc_info=True)
            console.print(f"  [red]✗[/] {spec.name}: {rec.error}")
        ctx.records[spec.name] = rec
    for name, lv in ctx.live.items():
        if lv.artifact.kind.exportable:
            rec = ctx.records[name]
            write_json(lv.artifact.path.with_suffix(".json"), onnx_metadata(
                lv.artifact, ctx.data.meta, ctx.baseline.id, rec.calibrator["refit"] if rec.calibrator else None,
                ctx.cfg))


# --------------------------------------------------------------------------- timing

def efficiency(ctx: RunContext) -> None:
    """Latency and throughput of every variant, timed in interleaved rounds (see
    ``compare_efficiency``) so that they are compared under the same machine conditions."""
    cfg = ctx.cfg
    if not cfg.eval.efficiency:
        return
    bs = cfg.eval.batch_size
    lat, tp = cfg.eval.latency, cfg.eval.throughput
    runners = {n: lv.runner for n, lv in ctx.live.items()}
    figures = compare_efficiency(runners, ctx.data.x["test"], sorted({*tp.batch_sizes, bs}), warmup=lat.warmup,
                                 min_calls=lat.min_calls, min_time_s=lat.min_time_s,
                                 target_ci=lat.target_ci, max_time_s=lat.max_time_s,
                                 throughput_time_s=tp.min_time_s, throughput_target_ci=tp.target_ci,
                                 rounds=cfg.eval.timing.rounds,
                                 latency_threads=lat.threads, throughput_threads=ctx.env["threads"],
                                 tolerance=cfg.eval.timing.tolerance, ratio_batch=bs)
    for name, f in figures["runners"].items():
        rec = ctx.records[name]
        rec.throughput = f.pop("throughput_sps_by_batch")
        rec.timing = {k: f.pop(k) for k in ("latency_p50_ms_by_round", "throughput_sps_by_round")}
        rec.metrics.update(f)
        rec.metrics["throughput_sps"] = rec.throughput[str(bs)]
        rec.metrics["throughput_batch_size"] = bs
    ctx.run.timing = figures["timing"]


# --------------------------------------------------------------------------- compare

def compare(ctx: RunContext) -> None:
    """Paired deltas against the baseline, per-class changes, agreement and exemplars."""
    bs = ctx.cfg.eval.bootstrap
    ctx.run.exemplars = compare_variants(ctx.records, ctx.live, BASELINE, ctx.data, bs.resamples, bs.level,
                                         ctx.cfg.seed, ctx.device)
    ctx.run.bootstrap = {"resamples": bs.resamples, "level": bs.level, "seed": ctx.cfg.seed,
                         "method": "paired percentile bootstrap over test items"}
    ex = ctx.run.exemplars
    if ex and ctx.data.meta.modality == "image":
        p = exemplar_grid(ctx.data.x["test"][[e["position"] for e in ex[:32]]],
                          [f"#{e['index']} y={e['label']} ({e['n_variants_wrong']})" for e in ex[:32]],
                          ctx.run_dir / "plots" / "compression_identified_exemplars.png",
                          "baseline right, several variants wrong (count of variants wrong)")
        ctx.run.plots.append(str(p.relative_to(ctx.run_dir)))


# --------------------------------------------------------------------------- stress

def stress(ctx: RunContext) -> None:
    """The configured stressors (unfit ones were skipped at set-up) against every variant."""
    if not ctx.stressors:
        return
    cfg, d = ctx.cfg, ctx.data
    boot = {"n_resamples": cfg.eval.bootstrap.resamples, "seed": cfg.seed,
            "level": cfg.eval.bootstrap.level, "device": ctx.device}
    x, y = d.x["test"], d.y["test"]

    def accuracy(runner) -> float:
        return robust_accuracy(evaluate(runner, x, y, batch_size=serving_batch(cfg), metrics=False).logits, y)

    def faulty_runner(art: Artifact):
        return runner_for(art, cfg.backend, ctx.device, art.kind.throwaway_options)

    env = StressEnv(x=x, y=y, meta=d.meta, device=ctx.device,
                    variants=[StressVariant(n, lv.artifact, lv.runner) for n, lv in ctx.live.items()],
                    score=scorer(serving_batch(cfg), boot, y), accuracy=accuracy, runner_for=faulty_runner,
                    workdir=ctx.run_dir / "models" / ".stress", plots_dir=ctx.run_dir / "plots")
    env.workdir.mkdir(parents=True, exist_ok=True)
    out = run_stressors(ctx.stressors, env)
    for name, rec in ctx.records.items():
        if name in out.sections:
            rec.stress = out.sections[name]
            rec.metrics.update(out.metrics[name])
    ctx.run.stress = {"stressors": {st.name: {"kind": st.kind, "class": type(st).__name__} for st in ctx.stressors},
                      "skipped": ctx.run.stress_skipped,
                      "corruption_error": "sum over severities of the variant's error / the same sum "
                                          "for this run's baseline (1.0 = as robust as the baseline)"}
    ctx.run.plots += [str(p.relative_to(ctx.run_dir)) for p in out.plots]


# --------------------------------------------------------------------------- monitor

def monitor(ctx: RunContext) -> None:
    """Shift detectors measured on scenarios built from the test split, for the baseline and
    per variant (false alarms caused by compression alone; power with the variant deployed)."""
    if ctx.monitor is None:
        return
    t0 = time.perf_counter()
    section, metrics, plots = run_monitor(ctx.monitor, ctx.data, ctx.live, BASELINE, serving_batch(ctx.cfg),
                                          ctx.device, ctx.run_dir / "plots", ctx.cfg.seed)
    section["seconds"] = time.perf_counter() - t0
    ctx.run.monitor = section
    for name, m in metrics.items():
        ctx.records[name].metrics.update(m)
    ctx.run.plots += [str(p.relative_to(ctx.run_dir)) for p in plots]


# --------------------------------------------------------------------------- seeds

def seeds(ctx: RunContext) -> None:
    """Optional: retrain the baseline under other seeds and report the spread of its metrics."""
    extra = list(ctx.cfg.get("seeds") or [])
    if not extra:
        return
    rows = {ctx.cfg.seed: ctx.records[BASELINE].metrics}
    for s in extra:
        if s in rows:
            continue
        model, _, _ = train_baseline(ctx.cfg, ctx.data, ctx.data_hash, ctx.model_factory, ctx.device, int(s))
        runner = runner_for(Artifact(id="", format="torch", model=model), ctx.cfg.backend, ctx.device)
        ev = evaluate(runner, ctx.data.x["test"], ctx.data.y["test"], batch_size=ctx.cfg.eval.batch_size)
        rows[s] = ev.metrics
    spread = {}
    for k in registry.names(tag=registry.SEED_SPREAD):
        vals = torch.tensor([r[k] for r in rows.values()], dtype=torch.float64)
        spread[k] = {"mean": float(vals.mean()), "std": float(vals.std()) if len(vals) > 1 else 0.0,
                     "min": float(vals.min()), "max": float(vals.max())}
    ctx.run.seed_spread = {"seeds": list(rows), "metrics": spread,
                           "note": "uncalibrated test metrics of baselines retrained under each seed"}


# --------------------------------------------------------------------------- write

def summary(ctx: RunContext) -> dict[str, Any]:
    """summary.json from the records (before the analysis sections are added)."""
    d = ctx.data
    sizes = d.sizes()
    config = OmegaConf.to_container(ctx.cfg, resolve=True)
    return {
        "schema_version": SCHEMA_VERSION,
        "mlbench_version": __version__,
        "run": {"id": ctx.run_dir.name, "started": ctx.started, "wall_s": time.perf_counter() - ctx.t0,
                "config": config, "env": ctx.env, "config_hash": content_hash(config),
                "overrides": command_line_overrides()},
        "data": {"name": d.meta.name, "num_classes": d.meta.num_classes, "n_train": sizes["train"],
                 "n_val": sizes["val"], "n_calib": sizes["calib"], "n_test": sizes["test"],
                 "input_shape": list(d.meta.input_shape), "modality": d.meta.modality,
                 "class_names": d.meta.class_names, "group": d.meta.group_name,
                 "content_hash": ctx.data_hash, "splits": "splits.npz"},
        "baseline": BASELINE,
        "baseline_training": dict(ctx.baseline_info),  # with its per-epoch history
        "calibration_view": ctx.cfg.eval.calibration,
        "serving": {"mode": ctx.cfg.deployment.serving, "batch_size": serving_batch(ctx.cfg),
                    "note": "quality metrics (test and calib splits, stress) are measured at this batch size; "
                            "train accuracy at eval.batch_size"},
        "variants": {name: rec.summary() for name, rec in ctx.records.items()},
        **ctx.run.sections(),
    }


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
    write_report(s, ctx.run_dir)
    s["stages"]["write"] = time.perf_counter() - t_write
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


STAGES: list[Callable[[RunContext], None]] = [setup, load_data, baseline, datacheck, variants, efficiency, compare,
                                              stress, monitor, seeds]
MONITOR_STAGES = [setup, load_data, baseline, variants, compare, monitor]  # `mlbench monitor`


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


def command_line_overrides() -> list[str]:
    """The overrides this run was started with (Hydra's task overrides; [] outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


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


# stages that print nothing of their own while they run for seconds: say what is happening
STAGE_NOTES = {"efficiency": "timing: batch-1 latency in interleaved rounds, then throughput",
               "compare": "paired bootstrap deltas against the baseline"}


def timed_stages(ctx: RunContext, stages: list[Callable[[RunContext], None]]) -> None:
    """Run ``stages`` in order, recording each one's wall seconds in ``ctx.run.stages``
    (``startup``: process start to the first stage)."""
    ctx.run.stages["startup"] = process_age_s()
    for stage in stages:
        if stage.__name__ in STAGE_NOTES and ctx.live:
            console.print(f"[bold]{STAGE_NOTES[stage.__name__]}[/] ({len(ctx.live)} variants)")
        t0 = time.perf_counter()
        stage(ctx)
        ctx.run.stages[stage.__name__] = time.perf_counter() - t0


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run every stage and write the run directory; returns the summary."""
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    timed_stages(ctx, STAGES)
    return write(ctx)

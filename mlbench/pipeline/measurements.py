"""The stages after the variants: timing, paired deltas, stress, monitoring, seed spread."""

from __future__ import annotations

import time

import torch

from mlbench.analysis.deltas import compare_variants
from mlbench.backends import runner_for
from mlbench.components import BASELINE
from mlbench.compress import Artifact
from mlbench.evaluate import registry
from mlbench.evaluate.efficiency import compare_efficiency
from mlbench.evaluate.loop import evaluate, robust_accuracy
from mlbench.evaluate.partition import retrained_metrics, spread
from mlbench.monitor.stage import run_monitor
from mlbench.pipeline.context import RunContext
from mlbench.plotting import exemplar_grid
from mlbench.stress.base import StressEnv, StressVariant
from mlbench.stress.stage import drop_unfit, run_stressors, scorer

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
    items = {"n": len(y), "of": len(y)}
    if ctx.sizing.get("stress_items", len(y)) < len(y):  # budget.minutes: a seeded subset, said with its n
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))[:ctx.sizing["stress_items"]]
        keep = keep.sort().values
        x, y = x[keep], y[keep]
        items = {"n": len(y), "of": items["of"], "how": "seeded random subset of the test split (budget.minutes)"}

    def accuracy(runner) -> float:
        return robust_accuracy(evaluate(runner, x, y, batch_size=ctx.settings.quality_batch, metrics=False).logits, y)

    def faulty_runner(art: Artifact):
        return runner_for(art, cfg.backend, ctx.device, art.kind.throwaway_options)

    env = StressEnv(x=x, y=y, meta=d.meta, device=ctx.device,
                    variants=[StressVariant(n, lv.artifact, lv.runner) for n, lv in ctx.live.items()],
                    score=scorer(ctx.settings.quality_batch, boot, y), accuracy=accuracy, runner_for=faulty_runner,
                    workdir=ctx.run_dir / "models" / ".stress", plots_dir=ctx.run_dir / "plots")
    env.workdir.mkdir(parents=True, exist_ok=True)
    ctx.run.stress_skipped += drop_unfit(ctx.stressors, ctx.baseline)
    out = run_stressors(ctx.stressors, env)
    for name, rec in ctx.records.items():
        if name in out.sections:
            rec.stress = out.sections[name]
            rec.metrics.update(out.metrics[name])
    ctx.run.stress = {"stressors": {st.name: {"kind": st.kind, "class": type(st).__name__} for st in ctx.stressors},
                      "skipped": ctx.run.stress_skipped, "items": items,
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
    section, metrics, plots = run_monitor(ctx.monitor, ctx.data, ctx.live, BASELINE, ctx.settings.quality_batch,
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
        if s not in rows:
            rows[s] = retrained_metrics(ctx, ctx.data, ctx.data_hash, int(s))
    stats = spread(list(rows.values()), {}, list(registry.names(tag=registry.SEED_SPREAD)))
    spread_ = {k: {q: v[q] for q in ("mean", "std", "min", "max")} for k, v in stats.items()}
    ctx.run.seed_spread = {"seeds": list(rows), "metrics": spread_,
                           "note": "uncalibrated test metrics of baselines retrained under each seed"}


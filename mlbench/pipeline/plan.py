"""The plan: before the work, an estimate of each remaining stage's seconds.

Right after the baseline is ready, the stage times what one item costs on this machine — a
forward pass of the baseline at the evaluation batch size, a forward and backward pass at the
training batch size, one batch-1 call, one paired bootstrap resample over the test split — and
multiplies those costs by the item evaluations each stage will make, counted from the config and
the components (each stressor declares its own work, ``Stressor.work``). Variants are assumed to
cost what the baseline costs per item (they are not built yet), scaled by what their passes
declare (``Pass.compute_scale``: a structured prune of ratio r keeps about 1 − r of the time).
Perturbed copies that every variant shares (a corruption's, the monitor's covariate scenario)
are timed once on one batch (``Corruption.input_cost``). The estimate is printed, and written to
summary.json beside the measured stage seconds, so its error is visible in every run. Once the
variants are built, ``revise`` times each one's forward pass on its own runner, estimates the
stages still to run again and, with ``budget.minutes``, sizes them again to the seconds left.
Costs with no item count behind them (data checks' statistics, plots) get a fixed allowance and
are marked as such.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from mlbench.env import TORCH_DEFAULT_THREADS, torch_threads
from mlbench.evaluate.loop import predict_all
from mlbench.progress import console

# allowances, seconds: what has no item count behind it (statistics of the data checks, the
# first ONNX export, one batched detector test, plots and the report)
FIXED_S = {"datacheck_per_check": 0.2, "onnx_export": 1.5, "monitor_test": 0.00015, "write": 1.5}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def unit_costs(ctx: Any) -> dict[str, float]:
    """Seconds per item: ``forward`` (evaluation batch), ``train`` (forward + backward, training
    batch, at the training thread count), ``gradient`` (the same at the run's thread count, as
    attacks run), ``call`` (one batch-1 call), ``resample`` (one bootstrap resample of the test split)."""
    from mlbench.backends import runner_for
    from mlbench.evaluate.stats import paired_deltas
    x, y = ctx.data.x["test"], ctx.data.y["test"]
    batch = min(ctx.settings.quality_batch, len(x))
    runner = runner_for(ctx.baseline, ctx.cfg.backend, ctx.device)
    predict_all(runner, x[:batch], batch)  # warm-up
    forward = _median_time(lambda: predict_all(runner, x[:batch], batch), 3) / batch
    with torch_threads(int(ctx.cfg.eval.latency.threads)):  # batch-1 latency runs at its own thread count
        call = _median_time(lambda: predict_all(runner, x[:1], 1), 20)
    train = gradient = forward * 3  # no gradients (an ONNX graph): forward + backward ~ 3 forwards
    model = ctx.baseline.model
    if model is not None and ctx.baseline.differentiable:
        m = copy.deepcopy(model).to(ctx.device).train()
        tb = min(int(ctx.cfg.train.batch_size), len(ctx.data.x["train"]))
        xb, yb = ctx.data.x["train"][:tb].to(ctx.device), ctx.data.y["train"][:tb].to(ctx.device)

        def step() -> None:
            m.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
        step()
        gradient = train = _median_time(step, 3) / tb  # attacks: the run's threads
        fit_threads = int(ctx.cfg.train.get("threads", 0) or TORCH_DEFAULT_THREADS)
        if ctx.device.type == "cpu" and fit_threads != torch.get_num_threads():
            with torch_threads(fit_threads):  # training and fine-tuning run at their own thread count
                step()
                train = _median_time(step, 3) / tb
    k = ctx.data.meta.num_classes
    p = torch.softmax(torch.randn(len(y), k, generator=torch.Generator().manual_seed(0)), 1)

    def boot(metrics: tuple[str, ...] | None) -> tuple[float, float]:
        """(seconds per resample, seconds per call) of a paired bootstrap over the test split."""
        small, large = (_median_time(lambda r=r: paired_deltas(p, p.roll(1, 0), y, n_resamples=r, metrics=metrics,
                                                                device=ctx.device), 2) for r in (20, 120))
        per = max(large - small, 0.0) / 100
        return per, max(small - 20 * per, 0.0)
    resample, boot_call = boot(None)
    resample_stress, boot_call_stress = boot(("accuracy", "ece"))  # what a stress row bootstraps
    xb, yb = x[:batch].to(ctx.device), y[:batch].to(ctx.device)  # perturbed copies: made once, for every variant
    inputs = {s.name: s.input_cost(xb, yb) for s in ctx.stressors}
    if ctx.monitor is not None:
        from mlbench.monitor.stage import input_cost
        inputs["monitor"] = input_cost(ctx.monitor, ctx.data, int(ctx.cfg.seed), xb, yb)
    return {"forward": forward, "train": train, "gradient": gradient, "call": call, "resample": resample,
            "boot_call": boot_call,
            "resample_stress": resample_stress, "boot_call_stress": boot_call_stress,
            "inputs": {k: v for k, v in inputs.items() if v > 0}, "threads": torch.get_num_threads()}


def variant_costs(ctx: Any) -> dict[str, float]:
    """Seconds per item of each measured variant's forward pass (its own runner, the evaluation
    batch), baseline first: what the stages after the variants multiply by their item counts."""
    x = ctx.data.x["test"]
    batch = min(ctx.settings.quality_batch, len(x))
    out = {}
    for name, lv in ctx.live.items():  # each runner is warm: it has just evaluated every split
        out[name] = _median_time(lambda r=lv.runner: predict_all(r, x[:batch], batch), 3) / batch
    return out


def estimate(ctx: Any, c: dict[str, float]) -> dict[str, float]:
    """Seconds per stage still to run, from the unit costs ``c`` and the counted work."""
    cfg, d = ctx.cfg, ctx.data
    n = {s: len(d.y[s]) for s in ("train", "val", "calib", "test")}
    specs = ctx.specs
    evaluate = (n["test"] + n["calib"] + n["train"]) * c["forward"]  # every variant: test, calib and train splits
    out: dict[str, float] = {}
    out["datacheck"] = len(ctx.checks) * FIXED_S["datacheck_per_check"] + (
        (n["train"] + n["test"]) * c["forward"] if ctx.checks and d.meta.modality == "image" else 0.0)
    build, onnx, scales = 0.0, False, [1.0]  # each variant's time per item, relative to the baseline's
    for spec in specs:
        scale = 1.0  # this variant's, after the passes so far (Pass.compute_scale)
        for p in spec.passes:
            epochs = int(getattr(p, "epochs", 0) or 0)
            build += epochs * scale * (n["train"] * c["train"] + n["val"] * c["forward"])
            if getattr(p, "produces", "") == "onnx":
                onnx = True
                build += scale * n["calib"] * c["forward"]  # parity checks and static calibration run the calib items
            scale *= p.compute_scale() if hasattr(p, "compute_scale") else 1.0
        scales.append(scale)
    grads = [True] + [bool(getattr(ctx.baseline, "differentiable", False))] * len(specs)  # crafted on itself
    measured = c.get("forward_by_variant")
    if measured:  # the variants are built: each one's own time per item, and whether it has gradients
        first = next(iter(measured.values())) or 1.0  # the baseline's (``c["forward"]`` is the same)
        scales = [v / first for v in measured.values()]
        grads = [i == 0 or ctx.live[name].artifact.differentiable for i, name in enumerate(measured)]
    variants = len(scales)
    # the batch-invariance check: the first test items again, one call each (in batches when serving online)
    online = str(cfg.deployment.serving) == "online"
    invariance = (min(int(cfg.deployment.invariance_items), n["test"]) * (c["forward"] if online else c["call"])
                  if int(cfg.eval.batch_size) > 1 else 0.0)
    out["variants"] = build + sum(scales) * (evaluate + invariance) + (FIXED_S["onnx_export"] if onnx else 0.0)
    if cfg.eval.get("efficiency", True):
        lat, thr = cfg.eval.latency, cfg.eval.throughput
        floor = max((lat.min_calls + lat.warmup) * c["call"], lat.min_time_s)  # then it stops at its interval
        # throughput, per batch size: a warm-up (two calls and a window) and at least one window of
        # at least one batch per round (compare_efficiency)
        rounds, window = int(cfg.eval.timing.rounds), thr.min_time_s / (2 * int(cfg.eval.timing.rounds))
        batches = sorted({*thr.batch_sizes, int(cfg.eval.batch_size)})
        out["efficiency"] = sum(floor + sum((3 + rounds) * max(b * sc * c["forward"], window) for b in batches)
                                for sc in scales)
    resamples = int(cfg.eval.bootstrap.resamples)
    out["compare"] = (variants - 1) * (resamples * c["resample"] + c["boot_call"])
    fwd = grad = rows = 0
    cost = 0.0
    n_stress = min(ctx.sizing.get("stress_items", n["test"]), n["test"])
    inputs = c.get("inputs") or {}
    for s in ctx.stressors:
        for i in range(variants):
            f, g = s.work(n_stress, grads[i])
            fwd, grad = fwd + f, grad + g
            cost += (f * c["forward"] + g * c.get("gradient", c["train"])) * scales[i]
        cost += n_stress * inputs.get(s.name, 0.0)  # its perturbed copies, made once for every variant
        rows += len(s.conditions()) * variants
    ctx.sizing["stress_evaluations"] = {"forward": fwd, "gradient": grad, "items": n_stress}
    scale = n_stress / max(n["test"], 1)  # a bootstrap resample costs in proportion to the items
    out["stress"] = cost + rows * scale * (resamples * c["resample_stress"]
                                                                             + c["boot_call_stress"])
    if ctx.monitor is not None:
        mon = ctx.monitor
        cov = len(list(mon.covariate()))
        tests = len(mon.scenarios) * len(mon.windows) * mon.repetitions * len(mon.detectors)
        deploy = variants * len(mon.scenarios) * int(mon.deployment_repetitions or 0) * len(mon.output_detectors)
        # with a detector that reads embeddings, the baseline's views take a second pass for them
        second = mon.reads_embeddings and getattr(ctx.baseline, "differentiable", False)
        cal, test = (min(n[s], int(mon.max_items)) for s in ("calib", "test"))  # Monitor.sample
        views = sum(scales) + (1 if second else 0)
        out["monitor"] = views * (cal + test * (1 + cov)) * c["forward"] + test * inputs.get("monitor", 0.0) \
            + (tests + deploy) * FIXED_S["monitor_test"]
    if d.unlabelled is not None:
        out["unlabelled"] = sum(scales) * (n["calib"] + len(d.unlabelled)) * c["forward"]
    seeds = [s for s in (cfg.get("seeds") or []) if s != cfg.seed]
    if seeds:
        epochs = int(cfg.train.epochs)
        out["seeds"] = len(seeds) * (epochs * (n["train"] * c["train"] + n["val"] * c["forward"]) + evaluate)
    part = cfg.get("partition") or {}
    if str(part.get("strategy", "none")) != "none":  # each fold trains and evaluates a baseline
        epochs, k = int(cfg.train.epochs), int(part.get("k", 5))
        folds = k * int(part.get("repeats", 2)) if part.get("strategy") == "repeated" else k
        pool = n["train"] + n["test"]
        out["partition"] = folds * (epochs * (pool * (k - 1) / k * c["train"] + n["val"] * c["forward"])
                                    + pool / k * c["forward"])
    out["write"] = FIXED_S["write"] + variants * n["test"] * 1e-5
    return {k: float(v) for k, v in out.items()}


SIZABLE = ("stress", "compare", "monitor", "efficiency")  # what budget.minutes shrinks
FLOORS = {"stress_items": 100, "resamples": 200, "repetitions": 10, "min_calls": 50}


def _configured(ctx: Any) -> dict[str, Any]:
    """The sizable quantities as configured, kept at the first fit: a second fit (after the
    variants) sizes from them again, not from what the first fit left."""
    if "configured" not in ctx.sizing:
        lat, thr, mon = ctx.cfg.eval.latency, ctx.cfg.eval.throughput, ctx.monitor
        ctx.sizing["configured"] = {
            "resamples": int(ctx.cfg.eval.bootstrap.resamples), "min_calls": int(lat.min_calls),
            "max_time_s": float(lat.max_time_s), "throughput_min_time_s": float(thr.min_time_s),
            "repetitions": mon.repetitions if mon is not None else None,
            "deployment_repetitions": mon.deployment_repetitions if mon is not None else None}
    return ctx.sizing["configured"]


def _restore(ctx: Any) -> None:
    """Every sizable quantity back to its configured value."""
    c = _configured(ctx)
    cfg, mon = ctx.cfg, ctx.monitor
    cfg.eval.bootstrap.resamples = c["resamples"]
    cfg.eval.latency.min_calls, cfg.eval.latency.max_time_s = c["min_calls"], c["max_time_s"]
    cfg.eval.throughput.min_time_s = c["throughput_min_time_s"]
    if mon is not None:
        mon.repetitions, mon.deployment_repetitions = c["repetitions"], c["deployment_repetitions"]
    ctx.sizing.pop("stress_items", None)


def fit_budget(ctx: Any, costs: dict[str, float], stages: dict[str, float]) -> dict[str, Any] | None:
    """``budget.minutes``: one factor f shrinks every sizable quantity (stress test items,
    bootstrap resamples, monitoring repetitions, timing calls and seconds), each to at most its
    floor, so the estimate of the stages in ``stages`` fits the minutes left (they are replaced
    by the sized estimate); returns what was sized (None: no budget). Sizes from the configured
    values, so it can run again later with a better estimate and fewer minutes left."""
    minutes = (ctx.cfg.get("budget") or {}).get("minutes")
    if minutes is None:  # its range is checked at set-up (values.RANGES)
        return None
    _restore(ctx)  # the estimate of what is configured
    stages.update({k: v for k, v in estimate(ctx, costs).items() if k in stages})
    left = float(minutes) * 60 - (time.perf_counter() - ctx.t0)
    before = sum(stages.values())
    section: dict[str, Any] = {"minutes": float(minutes), "seconds_left_at_plan": left, "estimate_before_s": before,
                               "sized": {}}
    if before <= left:
        return {**section, "estimate_after_s": before, "fits": True}
    fixed = sum(v for k, v in stages.items() if k not in SIZABLE)
    sizable = sum(v for k, v in stages.items() if k in SIZABLE)
    f = min(max((0.95 * left - fixed) / sizable, 0.0), 1.0) if sizable > 0 else 1.0  # 5 % margin
    cfg, sized = ctx.cfg, section["sized"]
    n_test = len(ctx.data.y["test"])
    if ctx.stressors and n_test > FLOORS["stress_items"]:
        ctx.sizing["stress_items"] = sized["stress_items"] = max(FLOORS["stress_items"], int(f * n_test))
    boot = cfg.eval.bootstrap
    if boot.resamples > FLOORS["resamples"]:
        boot.resamples = sized["bootstrap_resamples"] = max(FLOORS["resamples"], int(f * boot.resamples))
    if ctx.monitor is not None and ctx.monitor.repetitions > FLOORS["repetitions"]:
        mon = ctx.monitor
        mon.repetitions = sized["monitor_repetitions"] = max(FLOORS["repetitions"], int(f * mon.repetitions))
        mon.deployment_repetitions = sized["monitor_deployment_repetitions"] = max(
            FLOORS["repetitions"], int(f * mon.deployment_repetitions))
    lat, thr = cfg.eval.latency, cfg.eval.throughput
    if lat.min_calls > FLOORS["min_calls"]:
        lat.min_calls = sized["latency_min_calls"] = max(FLOORS["min_calls"], int(f * lat.min_calls))
        lat.max_time_s = sized["latency_max_time_s"] = lat.max_time_s * f
        thr.min_time_s = sized["throughput_min_time_s"] = thr.min_time_s * f
    after = {k: v for k, v in estimate(ctx, costs).items() if k in stages}
    stages.clear()
    stages.update(after)
    total = sum(after.values())
    return {**section, "factor": f, "estimate_after_s": total, "fits": total <= left,
            "note": "every figure computed on fewer items or resamples says so: the stress section's items, "
                    "the bootstrap's resamples, the monitoring section's repetitions"}


def plan(ctx: Any) -> None:
    """The run stage: unit costs, the estimate per remaining stage (sized to ``budget.minutes``
    when one is set), one console line."""
    if ctx.baseline is None or ctx.data is None:
        return
    costs = unit_costs(ctx)
    stages = estimate(ctx, costs)
    budget = fit_budget(ctx, costs, stages)
    if budget is not None:
        ctx.run.budget = budget
        if budget["sized"]:
            console.print(f"[bold]budget[/] {budget['minutes']:g} min: estimate {_minutes(budget['estimate_before_s'])}"
                          f" sized to {_minutes(budget['estimate_after_s'])} ({_sized_text(budget['sized'])})"
                          + ("" if budget["fits"] else "; still over: the unsizable stages alone take longer"))
    total = sum(stages.values())
    ctx.run.plan = {"unit_costs_s": costs, "estimate_s": stages, "estimate_total_s": total,
                    "stress_evaluations": ctx.sizing.get("stress_evaluations"),
                    "assumes": "every variant costs the baseline's per item, times its passes' compute_scale "
                               "(structured pruning: 1 - ratio); allowances for data-check statistics "
                               f"({FIXED_S['datacheck_per_check']} s per check) and the write stage "
                               f"({FIXED_S['write']} s)"}
    shown = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]) if v >= 0.5)
    console.print(f"[bold]plan[/] about {_minutes(total)} from here ({shown})")


BEFORE_REVISE = ("datacheck", "variants")  # the estimated stages that run before the revision


def revise(ctx: Any) -> None:
    """The run stage after the variants: each built variant's forward pass is timed on its own
    runner (an int8 onnxruntime graph or a pruned model is not the baseline), the stages still
    to run are estimated again, and with ``budget.minutes`` sized again to the minutes actually
    left (so the error of the estimate so far is not carried into the budget)."""
    if ctx.run.plan is None or not ctx.live:
        return
    by_variant = variant_costs(ctx)
    costs = {**ctx.run.plan["unit_costs_s"], "forward_by_variant": by_variant,
             "forward": next(iter(by_variant.values()))}
    remaining = {k: v for k, v in estimate(ctx, costs).items() if k not in BEFORE_REVISE}
    budget = fit_budget(ctx, costs, remaining)
    if budget is not None:
        first = {k: v for k, v in (ctx.run.budget or {}).items() if k != "at_plan"}
        ctx.run.budget = {**budget, "at": "after the variants", "at_plan": first}
        if budget["sized"]:
            console.print(f"[bold]budget[/] {_minutes(budget['seconds_left_at_plan'])} left after the variants: "
                          f"sized again ({_sized_text(budget['sized'])})"
                          + ("" if budget["fits"] else "; still over: the unsizable stages alone take longer"))
    total = sum(remaining.values())
    ctx.run.plan["revised"] = {"after": "variants", "forward_by_variant_s": by_variant, "estimate_s": remaining,
                               "estimate_total_s": total,
                               "stress_evaluations": ctx.sizing.get("stress_evaluations")}
    shown = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(remaining.items(), key=lambda kv: -kv[1]) if v >= 0.5)
    console.print(f"[bold]plan[/] revised with the variants' own timings: about {_minutes(total)} from here ({shown})")


def attach_measured(plan_section: dict[str, Any], stages: dict[str, Any]) -> None:
    """``measured`` beside the estimate made at set-up and beside the revised one (in place)."""
    measured = {k: v for k, v in stages.items() if isinstance(v, (int, float))}
    plan_section["measured"] = accuracy(plan_section, measured)
    if plan_section.get("revised"):
        plan_section["revised"]["measured"] = accuracy(plan_section["revised"], measured)


def _sized_text(sized: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in sized.items())


def _minutes(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def accuracy(plan_section: dict[str, Any], measured: dict[str, float]) -> dict[str, Any]:
    """Estimate against measurement per stage (ratio measured / estimated) and in all."""
    est = plan_section["estimate_s"]
    rows = {k: {"estimate_s": v, "measured_s": measured.get(k),
                "ratio": (measured[k] / v) if measured.get(k) is not None and v > 0 else None} for k, v in est.items()}
    total_m = sum(measured.get(k, 0.0) for k in est)
    return {"stages": rows, "estimate_total_s": plan_section["estimate_total_s"], "measured_total_s": total_m,
            "ratio": total_m / plan_section["estimate_total_s"] if plan_section["estimate_total_s"] > 0 else None}

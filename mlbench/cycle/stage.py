"""``mlbench cycle``: set-up (every impossible setting fails here, before any work), the
baseline, the stream, the cycle, the scaling table, summary.json and the report."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mlbench import pipeline
from mlbench.analysis.requirements import describe
from mlbench.components import settings_from
from mlbench.compress import Pass
from mlbench.cycle.figures import (
    interval,
    policy_table,
    reference_policy,
    stage_times,
    updates_bought,
    versus,
)
from mlbench.cycle.figures import scaling as update_scaling
from mlbench.cycle.loop import Cycle, Engine
from mlbench.cycle.report import stages_plot, timeline_plot, write_cycle_report
from mlbench.cycle.state import locked
from mlbench.cycle.stream import Stream
from mlbench.errors import MlbenchError
from mlbench.monitor.stage import corruption
from mlbench.named import target_of, what_it_does
from mlbench.progress import console
from mlbench.results import write_json
from mlbench.schema import CONF_DIR, group_options


def load_recipe(cfg: DictConfig, name: str | None) -> list[Pass]:
    """The passes of a variant: one defined in the run's ``variants``, else an option of
    ``conf/variants`` (None: deploy the trained torch model as it is)."""
    if name is None:
        return []
    node = (cfg.get("variants") or {}).get(name)
    if node is None:
        path = CONF_DIR / "variants" / f"{name}.yaml"
        if not path.is_file():
            options = list(group_options("variants"))
            raise MlbenchError(f"cycle.recipe: no variant {name!r}; one of {', '.join(options)}")
        node = OmegaConf.load(path)[name]
    passes = [pipeline.instantiate_checked(p, f"cycle.recipe {name}.passes[{i}]") for i, p in enumerate(node.passes)]
    for p in passes:
        if not isinstance(p, Pass):
            raise MlbenchError(f"cycle.recipe {name}: {type(p).__name__} is not a compression pass")
    return passes


def run_cycle_command(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    ctx = pipeline.RunContext(cfg=cfg, run_dir=run_dir)
    pipeline.setup(ctx)
    ctx.stressors, ctx.specs, ctx.monitor = [], [], None
    if getattr(ctx.model_factory, "onnx_only", False):
        raise MlbenchError("mlbench cycle retrains and compresses the model; model=onnx has no torch source to "
                           "train (mlbench, mlbench monitor and mlbench datacheck evaluate it as given)")
    if not cfg.get("cycle") or "_target_" not in cfg.cycle:
        raise MlbenchError("mlbench cycle needs a cycle config (cycle=default, or another option of conf/cycle)")
    cyc = pipeline.instantiate_checked(cfg.cycle, "cycle", recursive=False)
    if not isinstance(cyc, Cycle):
        raise MlbenchError(f"cycle: {type(cyc).__name__} is not a mlbench.cycle.Cycle")
    recipe = load_recipe(cfg, cyc.recipe)
    pipeline.load_data(ctx)
    data = ctx.data
    for i, sc in enumerate(cyc.scenarios):  # `auto` names the cycle's corruption for this modality
        if sc.perturbs_inputs and sc.corruption == "auto":
            cyc.scenarios[i] = type(sc)(sc.kind, sc.param, corruption("auto", data, cyc.seed,
                                                                         cyc.auto_corruption).name)
    corruptions = {sc.corruption: corruption(sc.corruption, data, cyc.seed, cyc.auto_corruption)
                   for sc in cyc.scenarios if sc.perturbs_inputs}  # unfit corruptions fail here

    def perturb(sc, x: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
        c = corruptions[sc.corruption]
        c.seed = cyc.seed * 1000 + t  # fresh noise per period
        return c.perturb(x, y, int(sc.param)).cpu()

    stream = Stream(data, cyc.scenarios, cyc.period_size, cyc.seed, perturb, cyc.gate_holdout)  # an impossible stream fails here
    pipeline.baseline(ctx)
    engine = Engine(cyc, cfg, data, ctx.data_hash, stream, ctx.model_factory, ctx.baseline.model, ctx.device,
                    ctx.checks, recipe, settings_from(cfg).quality_batch)
    console.print(f"[bold]cycle[/] {cyc.periods} periods × {cyc.period_size} items, labels {cyc.label_delay} late, "
                  f"policies {', '.join(n for n, _, _ in cyc.tracks)}, recipe {cyc.recipe}, labels {cyc.labels.access}"
                  + (f" ({cyc.labels.budget} per period)" if cyc.labels.access == "budgeted" else ""))
    with locked(engine.state_dir):
        t0 = time.perf_counter()
        out = engine.run()
        loop_s = time.perf_counter() - t0
        console.print("[bold]cycle[/] update time against the training-window size")
        scaling = update_scaling(engine, out["initial"])
    timelines = {n: ps.rows for n, ps in out["states"].items()}
    stages = stage_times(timelines)
    section = {
        "periods": cyc.periods, "period_size": cyc.period_size, "label_delay": cyc.label_delay, "window": cyc.window,
        "train_data": cyc.train_data, "replay": cyc.replay if cyc.train_data == "replay" else None,
        "gate_holdout": cyc.gate_holdout, "gate_periods": cyc.gate_periods,
        "schedule": [{"period": t, "scenario": p.scenario.label, "kind": p.scenario.kind, "param": p.scenario.param}
                     for t, p in enumerate(stream.periods)],
        "changes": [{"from": 0, "scenario": stream.periods[0].scenario.label}]
        + [{"from": t, "scenario": p.scenario.label} for t, p in enumerate(stream.periods)
           if t and p.scenario.label != stream.periods[t - 1].scenario.label],
        "policies": [p.name for p in cyc.policies], "policy_notes": {p.name: what_it_does(p) for p in cyc.policies},
        "policy_targets": {p.name: target_of(p) for p in cyc.policies}, "every": cyc.every, "recipe": cyc.recipe,
        "tracks": {name: {"policy": p.name, "strategy": strategy} for name, p, strategy in cyc.tracks},
        "labels": {"access": cyc.labels.access, "budget": cyc.labels.budget,
                   "strategies": [s for s in cyc.labels.strategies if s is not None]},
        "warm_start": cyc.warm_start, "epochs": cyc.epochs,
        "requirements": [describe(r, "the deployed model") for r in cyc.requirements], "use_bound": cyc.use_bound,
        "accuracy_target": cyc.accuracy_target, "recovery_tolerance": cyc.recovery_tolerance,
        "detectors": cyc.detector_names, "alpha": cyc.alpha, "error_detector": cyc.error_detector,
        "initial": {"format": out["initial"].artifact.format, **out["initial"].figures},
        "timeline": timelines,
        "table": {n: policy_table(rows, cyc.accuracy_target, cyc.recovery_tolerance) for n, rows in timelines.items()},
        "reference_policy": (ref := reference_policy(cyc.policies)),
        "stages": stages,
        "interval": interval(stages, timelines, cyc.window * (cyc.period_size - round(cyc.gate_holdout * cyc.period_size))),
        "scaling": scaling,
        "env": {"device": ctx.env.get("gpu") or ctx.env.get("cpu") or ctx.device.type, "device_type": ctx.device.type,
                "threads": torch.get_num_threads()},
        "loop_s": loop_s, "resumed_from": out["resumed_from"], "state": str(engine.state_dir),
    }
    for name, rows in timelines.items():  # paired figures: each policy against the reference, each update
        section["table"][name]["versus"] = None if ref in (None, name) else versus(rows, timelines[ref], cyc.seed)
        section["table"][name]["updates"] = updates_bought(rows, cyc.seed)
    for name, ps in out["states"].items():  # what each policy has deployed at the end, ready to ship
        dest = run_dir / "models" / f"cycle_{name}"
        dest.mkdir(parents=True, exist_ok=True)
        for f in ps.deployed.artifact.files:
            shutil.copy2(f, dest / f.name)
        section["table"][name]["deployed"] = {"version": ps.deployed.version, "trained_at": ps.deployed.trained_at,
                                              "format": ps.deployed.artifact.format,
                                              "files": [f"models/cycle_{name}/{f.name}" for f in ps.deployed.artifact.files]}
    plots_dir = run_dir / "plots"
    plots = [timeline_plot(section, plots_dir / "cycle_timeline.png"), stages_plot(section, plots_dir / "cycle_stages.png")]
    s = pipeline.summary(ctx)
    s["variants"] = {}
    s["cycle"] = section
    s["plots"] = [*s.get("plots", []), *(str(p.relative_to(run_dir)) for p in plots if p is not None)]
    write_cycle_report(s, run_dir)
    s["run"]["wall_s"] = time.perf_counter() - ctx.t0
    write_json(run_dir / "summary.json", s)
    return s

"""The decision, read from summary.json: requirements per variant, the recommended variant,
the Pareto front, and the number a sweeper optimises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlbench.analysis.explain import explain
from mlbench.analysis.pareto import pareto_front, pareto_plot
from mlbench.analysis.requirements import check_requirements, recommend
from mlbench.evaluate.registry import HIGHER_IS_BETTER


def decide(summary: dict, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Requirements pass/fail per variant, the recommended variant, and the Pareto front,
    read from ``summary``; returned as the sections to add to it."""
    r = cfg.requirements
    checks = OmegaConf.to_container(r.checks, resolve=True, enum_to_str=True)
    results = check_requirements(summary, checks, r.use_bound)
    breakers = [(a.metric.value, a.mode) for a in r.tie_breakers]
    axes = [(a.metric.value, a.mode) for a in cfg.analysis.pareto_axes]
    points = {n: v["metrics"] for n, v in summary["variants"].items() if v["status"] == "ok"}
    front = pareto_front(points, axes)
    rec = recommend(summary, results, r.objective.value, r.objective_mode, breakers)
    rec["explanation"] = explain(summary, results, rec)
    out = {"requirements": results,
           "recommended": rec,
           "pareto": {"axes": [{"metric": m, "mode": md} for m, md in axes], "front": front}, "plots": []}
    passed = {n for n, res in results.items() if res["passed"]}
    if len(axes) >= 2 and points and pareto_plot(points, axes, front, run_dir / "plots" / "pareto.png", passed):
        out["plots"].append("plots/pareto.png")
    return out


def objective(summary: dict, cfg: DictConfig) -> float | None:
    """The number a sweeper optimises (see ``analysis.objective``)."""
    o = cfg.analysis.objective
    v = summary["variants"].get(o.variant)
    if v is None or v["status"] != "ok":
        return float(o.penalty)
    value = v["metrics"].get(o.metric.value)
    if o.max_degradation is not None and o.variant != summary["baseline"]:
        key = o.constraint_metric.value
        b, x = summary["variants"][summary["baseline"]]["metrics"][key], v["metrics"][key]
        degradation = b - x if HIGHER_IS_BETTER[key] else x - b
        if degradation > o.max_degradation:
            return float(o.penalty)
    return None if value is None else float(value)

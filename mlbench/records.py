"""Typed run records: what the stages produce, as plain data.

Stages fill a :class:`VariantRecord` per variant and a :class:`RunRecord` for the run;
:func:`summary` turns them into summary.json. Everything after that
(requirements, recommendation, Pareto front, report, ``mlbench compare``) reads
summary.json, never the live run. Live objects (models, runners, test outputs) stay in
:class:`Live`, which the writer does not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VariantRecord:
    """Everything measured for one variant; ``summary()`` is its entry in summary.json."""

    name: str
    description: str = ""
    recipe: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    artifact_path: str | None = None
    lineage: dict[str, Any] | None = None
    backend: str = "torch"
    runner: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    calibrator: dict[str, Any] | None = None
    per_class_recall: list[float | None] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, dict] = field(default_factory=dict)
    per_class_recall_delta: list[float | None] = field(default_factory=list)
    groups: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None  # the batch-invariance check
    timing: dict[str, list[float]] = field(default_factory=dict)  # per-round timing figures
    flags: list[str] = field(default_factory=list)
    stress: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description, "recipe": self.recipe, "backend": self.backend,
            "status": self.status, "error": self.error, "artifact": self.artifact_path,
            "predictions": f"predictions/{self.name}.npz" if self.ok else None,
            "metrics": self.metrics, "deltas": self.deltas, "flags": self.flags,
        }
        if self.lineage is not None:
            out["lineage"] = self.lineage
        if self.ok:
            out.update({"runner": self.runner, "build_s": self.build_s,
                        "throughput_sps_by_batch": self.throughput,
                        "calibration": self.calibration, "calibrator": self.calibrator,
                        "per_class": {"recall": self.per_class_recall,
                                      "recall_delta": self.per_class_recall_delta},
                        "groups": self.groups, "agreement": self.agreement, "stress": self.stress,
                        "batch_invariance": self.serving, "timing_rounds": self.timing})
        return out


@dataclass
class Live:
    """The live objects of one measured variant, used by later stages of the same run:
    its artifact, the runner it was evaluated with, and its test-split outputs."""

    artifact: Any  # mlbench.compress.Artifact
    runner: Any  # mlbench.backends.Runner
    evaluation: Any  # mlbench.evaluate.loop.Evaluation (in the chosen calibration view)


# The run's stages by name (``summary.json`` ``stages``): the words the report's time table uses,
# and what the console says when a stage that prints nothing of its own starts.
STAGE_LABELS = {"startup": "start-up (interpreter, imports, config)", "setup": "set-up", "load_data": "data",
                "baseline": "baseline (train or cache)", "plan": "plan (unit costs, estimate)",
                "datacheck": "data checks",
                "variants": "variants (build and evaluate)",
                "revise": "plan revised (each variant's time per item)", "efficiency": "timing (latency, throughput)",
                "compare": "paired deltas", "stress": "stress", "monitor": "monitoring",
                "unlabelled": "unlabelled data (label-free figures)",
                "seeds": "seed spread", "factors": "accuracy per operating condition",
                "partition": "split spread (k folds)", "augmentation": "augmentation effect",
                "write": "summary, plots, report"}
STAGE_NOTES = {"efficiency": "timing: batch-1 latency in interleaved rounds, then throughput",
               "compare": "paired bootstrap deltas against the baseline"}


@dataclass
class RunRecord:
    """Run-level sections of summary.json, each filled by one stage."""

    inputs: dict[str, Any] = field(default_factory=dict)  # data, baseline: what was evaluated (mlbench.inputs)
    warnings: list[str] = field(default_factory=list)  # data: e.g. a small test split
    stress_skipped: list[dict[str, str]] = field(default_factory=list)  # data: stressors that do not fit
    timing: dict[str, Any] | None = None  # efficiency: machine state and reliability of the timings
    bootstrap: dict[str, Any] | None = None  # compare: how the intervals were computed
    exemplars: list[dict[str, Any]] = field(default_factory=list)  # compare
    stress: dict[str, Any] | None = None  # stress
    datacheck: dict[str, Any] | None = None  # datacheck
    monitor: dict[str, Any] | None = None  # monitor
    unlabelled: dict[str, Any] | None = None  # unlabelled: data.unlabelled's label-free figures
    plan: dict[str, Any] | None = None  # plan: unit costs and the estimate per stage, before the work
    budget: dict[str, Any] | None = None  # plan: what budget.minutes sized, and the estimate after
    seed_spread: dict[str, Any] | None = None  # seeds
    partition: dict[str, Any] | None = None  # partition: the spread of the metrics over k folds
    factors: dict[str, Any] | None = None  # factors: every variant's accuracy per factor value
    augment: dict[str, Any] | None = None  # augmentation: the paired effect of train-time augmentation
    plots: list[str] = field(default_factory=list)  # every stage: plots written, relative to the run
    stages: dict[str, Any] = field(default_factory=dict)  # run(): wall seconds per stage
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # run(): the process's peak RSS after each stage

    def sections(self) -> dict[str, Any]:
        """The sections as they appear in summary.json (absent when the stage did not run)."""
        out: dict[str, Any] = {"exemplars": self.exemplars}
        if self.inputs:
            out["inputs"] = self.inputs
        if self.warnings:
            out["warnings"] = self.warnings
        for k in ("plan", "budget", "timing", "bootstrap", "stress", "seed_spread", "partition", "factors", "augment",
                  "datacheck", "monitor", "unlabelled"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.plots:
            out["plots"] = self.plots
        if self.stages:
            out["stages"] = self.stages
        if self.peak_rss_mb:
            out["peak_rss_mb"] = self.peak_rss_mb
        return out


def summary(ctx: Any) -> dict[str, Any]:
    """summary.json from a run's records (``ctx``: the run context; before the analysis
    sections — requirements, recommendation, Pareto front — are added by the write stage)."""
    import time

    from omegaconf import OmegaConf

    from mlbench.train.cache import content_hash
    from mlbench.version import SCHEMA_VERSION, __version__
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
        "baseline": "baseline",
        "baseline_training": dict(ctx.baseline_info),  # with its per-epoch history
        "calibration_view": ctx.settings.calibration,
        "serving": {"mode": ctx.settings.serving, "batch_size": ctx.settings.quality_batch,
                    "note": "quality metrics (test and calib splits, stress) are measured at this batch size; "
                            "train accuracy at eval.batch_size"},
        "variants": {name: rec.summary() for name, rec in ctx.records.items()},
        **ctx.run.sections(),
    }


def command_line_overrides() -> list[str]:
    """The overrides this run was started with (Hydra's task overrides; [] outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []

"""The metric table: one entry per metric mlbench reports.

Everything that lists metrics is derived from :data:`METRICS`: the config
vocabulary (the ``Metric`` enum that requirements, objectives and Pareto axes
use), the paired bootstrap's metric list, the report's delta and calibration
tables, ``mlbench compare``'s default columns, the run history's key figures and
the seed-spread list. Adding a metric = its function + one entry here.

This module imports nothing heavy (the config schema reads it at start-up);
a metric's function is named as ``"module:function"`` and imported when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mlbench.errors import MlbenchError

# where a metric's value comes from
PREDICTIONS = "predictions"  # fn(probs, labels) on the test split's predictions
TRAIN = "train"              # from the train split's predictions
GROUPS = "groups"            # per-group figures (needs a group attribute)
FACTORS = "factors"          # per operating-condition factor value (the coverage check's factors)
COMPARISON = "comparison"    # variant against baseline on the same items
EFFICIENCY = "efficiency"    # timed (latency, throughput, memory)
MODEL = "model"              # facts of the artifact (size, parameters)
STRESS = "stress"            # summaries of the stress stage
MONITOR = "monitor"          # the monitoring stage
SELECT = "select"            # candidates of mlbench select only

# which tables show it ("tags")
CALIBRATION = "calibration"  # the calibration-view table (one row per view)
DELTAS = "deltas"            # the report's paired-delta table
COMPARE = "compare"          # mlbench compare's default columns
HISTORY = "history"          # the run history's key figures
SEED_SPREAD = "seed_spread"  # spread over baseline seeds


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (the key in ``metrics`` of summary.json), its direction, where
    it comes from, how it is shown, and whether the paired bootstrap computes its
    variant-minus-baseline interval from per-item sums (``bootstrap``)."""

    name: str
    higher_is_better: bool
    source: str
    doc: str
    fn: str | None = None  # "module:function" taking (probs, labels) -> float, for source=predictions
    unit: str = ""
    digits: int = 4
    bootstrap: bool = False
    tags: tuple[str, ...] = ()
    section: str = "quality"  # the report section that shows it
    bounds: tuple[float, float] = (0.0, float("inf"))  # every value a correct run can report
    user: bool = False  # added by metrics.extra (mlbench.evaluate.extra) ...
    hook: Callable[..., Any] | None = field(default=None, compare=False, repr=False)  # ... and its wrapped function

    @property
    def function(self) -> Callable[..., Any]:
        if self.fn is None:
            raise TypeError(f"metric {self.name} is measured by a stage ({self.source}), not computed by a function")
        if self.hook is not None:
            return self.hook
        module, attr = self.fn.split(":")
        return getattr(importlib.import_module(module), attr)

    def format(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{value:,.{self.digits}f}" + (f" {self.unit}" if self.unit else "")


_M = "mlbench.evaluate.metrics"
_ALL = (CALIBRATION, DELTAS, HISTORY, SEED_SPREAD)

METRICS: dict[str, MetricSpec] = {s.name: s for s in [
    MetricSpec("accuracy", True, PREDICTIONS, "fraction of test items whose top class is the label",
               f"{_M}:accuracy", bootstrap=True, tags=(*_ALL, COMPARE), bounds=(0.0, 1.0)),
    MetricSpec("f1_macro", True, PREDICTIONS, "unweighted mean over classes of per-class F1",
               f"{_M}:f1_macro", bootstrap=True, tags=(DELTAS, HISTORY, SEED_SPREAD), bounds=(0.0, 1.0)),
    MetricSpec("nll", False, PREDICTIONS, "mean negative log-likelihood of the label (nats), p clamped at 1e-12",
               f"{_M}:nll", unit="nats", bootstrap=True, tags=_ALL, section="calibration"),
    MetricSpec("brier", False, PREDICTIONS, "mean squared error of the probability vector, summed over classes",
               f"{_M}:brier", bootstrap=True, tags=_ALL, section="calibration", bounds=(0.0, 2.0)),
    MetricSpec("ece", False, PREDICTIONS, "top-label ECE, 15 equal-width bins, L1, mass-weighted",
               f"{_M}:ece", bootstrap=True, tags=(*_ALL, COMPARE), section="calibration", bounds=(0.0, 1.0)),
    MetricSpec("ece_adaptive", False, PREDICTIONS, "top-label ECE with 15 equal-mass bins",
               f"{_M}:ece_adaptive", tags=(CALIBRATION,), section="calibration", bounds=(0.0, 1.0)),
    MetricSpec("mce", False, PREDICTIONS, "largest |accuracy - confidence| over non-empty bins",
               f"{_M}:mce", bootstrap=True, tags=(CALIBRATION,), section="calibration", bounds=(0.0, 1.0)),
    MetricSpec("classwise_ece", False, PREDICTIONS, "class-wise ECE (Kull et al. 2019), mean over classes",
               f"{_M}:classwise_ece", tags=(CALIBRATION,), section="calibration", bounds=(0.0, 1.0)),
    MetricSpec("worst_class_recall", True, PREDICTIONS, "lowest recall over the classes present",
               f"{_M}:worst_class_recall", bootstrap=True, tags=(DELTAS,), section="fairness", bounds=(0.0, 1.0)),
    MetricSpec("train_accuracy", True, TRAIN, "accuracy on the train split (at eval.batch_size)", bounds=(0.0, 1.0)),
    MetricSpec("generalization_gap", False, TRAIN, "train accuracy minus test accuracy", bounds=(-1.0, 1.0)),
    MetricSpec("disagreement", False, COMPARISON, "fraction of test items whose prediction differs from the baseline's",
               bootstrap=True, tags=(DELTAS,), section="agreement", bounds=(0.0, 1.0)),
    MetricSpec("worst_group_accuracy", True, GROUPS, "lowest accuracy over the groups of the group attribute",
               bootstrap=True, tags=(DELTAS, HISTORY), section="fairness", bounds=(0.0, 1.0)),
    MetricSpec("demographic_parity_difference", False, GROUPS,
               "largest gap between groups in P(prediction = k), over classes k",
               bootstrap=True, tags=(DELTAS,), section="fairness", bounds=(0.0, 1.0)),
    MetricSpec("min_factor_accuracy", True, FACTORS,
               "lowest accuracy over the values of the coverage check's factors that have at least its min_items "
               "test items", section="fairness", bounds=(0.0, 1.0)),
    MetricSpec("equalized_odds_difference", False, GROUPS,
               "largest gap between groups in per-class recall or false-positive rate", section="fairness",
               bounds=(0.0, 1.0)),
    MetricSpec("latency_p50_ms", False, EFFICIENCY, "median batch-1 latency", unit="ms", digits=3,
               tags=(COMPARE, HISTORY), section="efficiency"),
    MetricSpec("latency_p90_ms", False, EFFICIENCY, "90th-percentile batch-1 latency", unit="ms", digits=3,
               section="efficiency"),
    MetricSpec("latency_p99_ms", False, EFFICIENCY, "99th-percentile batch-1 latency", unit="ms", digits=3,
               tags=(COMPARE, HISTORY), section="efficiency"),
    MetricSpec("latency_mean_ms", False, EFFICIENCY, "mean batch-1 latency", unit="ms", digits=3,
               section="efficiency"),
    MetricSpec("throughput_sps", True, EFFICIENCY, "samples per second at eval.batch_size", unit="samples/s",
               digits=0, tags=(COMPARE, HISTORY), section="efficiency"),
    MetricSpec("peak_mem_bytes", False, EFFICIENCY, "peak memory while predicting (RSS or CUDA allocator)",
               unit="B", digits=0, section="efficiency"),
    MetricSpec("load_s", False, EFFICIENCY, "seconds to build the runner (load the model)", unit="s", digits=3,
               section="efficiency"),
    MetricSpec("size_bytes", False, MODEL, "bytes of every file needed to load the model", unit="B", digits=0,
               tags=(COMPARE, HISTORY), section="efficiency"),
    MetricSpec("params", False, MODEL, "parameters of the model (of its torch source for ONNX)", digits=0,
               tags=(HISTORY,), section="efficiency"),
    MetricSpec("nonzero_params", False, MODEL, "parameters that are not zero", digits=0, section="efficiency"),
    MetricSpec("flops", False, SELECT, "FLOPs of one forward pass on one item (torch.utils.flop_counter; "
               "mlbench select's candidates)", digits=0, section="efficiency"),
    MetricSpec("val_accuracy", True, SELECT, "accuracy on the validation split (mlbench select's candidates)",
               bounds=(0.0, 1.0)),
    MetricSpec("train_val_gap", False, SELECT, "train accuracy minus validation accuracy (mlbench select's "
               "candidates)", bounds=(-1.0, 1.0)),
    MetricSpec("mean_corruption_accuracy", True, STRESS, "mean accuracy over the corruptions and severities run",
               tags=(HISTORY,), section="robustness", bounds=(0.0, 1.0)),
    MetricSpec("mean_corruption_error", False, STRESS,
               "mean over corruptions of the variant's summed error / the baseline's (1 = as robust)",
               section="robustness"),
    MetricSpec("monitor_false_alarm_rate", False, MONITOR,
               "largest false-alarm rate of the baseline's output-based shift detectors on this variant's "
               "outputs without shift (monitor.deployment_window items, alpha = monitor.alpha)",
               digits=3, tags=(COMPARE,), section="monitoring", bounds=(0.0, 1.0)),
    # accuracy under one named stressor at one condition (severity, eps or rate): a requirement
    # names ``stress`` and ``condition``; the value is metrics["stress/<stress>/<condition>/accuracy"]
    MetricSpec("stress_accuracy", True, STRESS, "accuracy under one stressor at one condition",
               section="robustness", bounds=(0.0, 1.0)),
]}

HIGHER_IS_BETTER: dict[str, bool] = {n: s.higher_is_better for n, s in METRICS.items()}

# the config vocabulary: every name a requirement, an objective or a Pareto axis may use
Metric = Enum("Metric", {name: name for name in METRICS}, type=str)  # type: ignore[misc]


def names(*, source: str | None = None, tag: str | None = None, bootstrap: bool | None = None) -> tuple[str, ...]:
    """Metric names in table order, filtered by source, tag and bootstrap flag."""
    return tuple(n for n, s in METRICS.items()
                 if (source is None or s.source == source) and (tag is None or tag in s.tags)
                 and (bootstrap is None or s.bootstrap == bootstrap))


def check_names(requested: list[str], also: set[str] = frozenset(), what: str = "metrics") -> None:
    """Every requested name is a metric of the table (or in ``also``: names a run reports, such
    as per-condition stress figures); otherwise one MlbenchError with the closest name."""
    import difflib

    known = set(METRICS) | set(also)
    for m in requested:
        if m not in known:
            near = difflib.get_close_matches(m, sorted(known), n=1)
            raise MlbenchError(f"{what}: no metric {m!r}" + (f" (did you mean {near[0]}?)" if near else "")
                               + "; see docs/metrics.md")


def metric_key(metric: str, stress: str | None = None, condition: str | None = None) -> str:
    """The key in a variant's ``metrics`` for a vocabulary name."""
    metric = getattr(metric, "value", metric)
    if metric == "stress_accuracy":
        return f"stress/{stress}/{condition}/accuracy"
    return metric

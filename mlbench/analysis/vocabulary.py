"""The metric vocabulary: every name a requirement, an objective or a Pareto axis may use,
with its direction (convention after Olive's ``higher_is_better``)."""

from __future__ import annotations

from enum import Enum

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "f1_macro": True, "nll": False, "brier": False, "ece": False,
    "ece_adaptive": False, "mce": False, "classwise_ece": False, "worst_class_recall": True,
    "train_accuracy": True, "generalization_gap": False, "disagreement": False,
    "worst_group_accuracy": True, "demographic_parity_difference": False,
    "equalized_odds_difference": False,
    "latency_p50_ms": False, "latency_p90_ms": False, "latency_p99_ms": False, "latency_mean_ms": False,
    "throughput_sps": True, "size_bytes": False, "params": False, "nonzero_params": False,
    "peak_mem_bytes": False, "load_s": False,
    "mean_corruption_accuracy": True, "mean_corruption_error": False,
    # accuracy under one named stressor at one condition (severity, eps or rate):
    # needs ``stress`` and ``condition``; reads metrics["stress/<stress>/<condition>/accuracy"]
    "stress_accuracy": True,
}

Metric = Enum("Metric", {name: name for name in HIGHER_IS_BETTER}, type=str)  # type: ignore[misc]


def metric_key(metric: str, stress: str | None = None, condition: str | None = None) -> str:
    """The key in a variant's ``metrics`` for a vocabulary name."""
    metric = getattr(metric, "value", metric)
    if metric == "stress_accuracy":
        return f"stress/{stress}/{condition}/accuracy"
    return metric

"""Evaluation: the one loop, the metric definitions, and efficiency measurement."""

from mlbench.evaluate.efficiency import compare_efficiency, latency, peak_memory, throughput
from mlbench.evaluate.loop import Evaluation, evaluate, predict_all
from mlbench.evaluate.metrics import classification_metrics

__all__ = ["evaluate", "predict_all", "Evaluation", "classification_metrics", "latency",
           "throughput", "peak_memory", "compare_efficiency"]

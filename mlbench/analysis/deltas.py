"""Paired comparisons of every variant with the baseline on the same test items:
metric deltas with bootstrap intervals, timing ratios with round intervals, per-class
recall changes, agreement, and compression-identified exemplars."""

from __future__ import annotations

from typing import Any

import torch

from mlbench.analysis.timing import ratio_delta
from mlbench.data import DataBundle
from mlbench.evaluate.extra import paired_delta, user_metrics
from mlbench.evaluate.fairness import exemplars, flips
from mlbench.evaluate.stats import paired_deltas
from mlbench.records import Live, VariantRecord

RATIO_METRICS = {"latency_p50_ms": "latency_p50_ms_by_round", "throughput_sps": "throughput_sps_by_round",
                 "size_bytes": None}  # metric -> its per-round figures (None: not timed)


def compare_variants(records: dict[str, VariantRecord], live: dict[str, Live], base_name: str,
                     data: DataBundle, resamples: int, level: float, seed: int,
                     device: torch.device) -> list[dict[str, Any]]:
    """Fill each measured record's deltas, per-class changes and agreement; returns the
    compression-identified exemplars."""
    base, base_live = records[base_name], live[base_name]
    group = data.group["test"] if data.group is not None else None
    use_group = group is not None and base.groups and "error" not in base.groups
    pb = base_live.evaluation.probs
    y = data.y["test"]
    preds = {}
    for name, lv in live.items():
        rec = records[name]
        pv = lv.evaluation.probs
        preds[name] = pv.argmax(1)
        rec.agreement = flips(pb.argmax(1), pv.argmax(1), y, data.index["test"])
        rec.metrics["disagreement"] = rec.agreement["disagreement"]
        rec.per_class_recall_delta = [None if a is None or b is None else a - b
                                      for a, b in zip(rec.per_class_recall, base.per_class_recall)]
        if name == base_name:
            continue
        rec.deltas = paired_deltas(pb, pv, y, group if use_group else None, n_resamples=resamples, seed=seed,
                                   level=level, device=device)
        for m in user_metrics():  # metrics.extra: opaque functions, resampled one call at a time
            rec.deltas[m] = paired_delta(m, pb, pv, y, resamples, seed, level)
        for k, rounds_key in RATIO_METRICS.items():
            if k in rec.metrics and k in base.metrics:
                rec.deltas[k + "_ratio"] = ratio_delta(rec.metrics[k], base.metrics[k],
                                                       rec.timing.get(rounds_key) if rounds_key else None,
                                                       base.timing.get(rounds_key) if rounds_key else None)
    return exemplars(preds, base_name, y, data.index["test"])

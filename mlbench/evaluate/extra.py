"""Your own metric: ``metrics.extra: ["pkg.module:function"]`` (or ``"path/to/file.py:function"``).

The function takes ``(probabilities, labels)`` as numpy arrays — probabilities (n, classes),
labels (n,) integer class indices — and returns one number. Its direction is higher-is-better
unless the function has an attribute ``higher_is_better = False``; its name in summary.json is
the function's name (or its ``metric_name`` attribute). Registered at set-up into the metric
table, it is computed for every variant on the test split beside the built-in metrics, gets a
paired bootstrap interval for its change against the baseline (:func:`paired_delta`), and can
be named by requirements, ``mlbench compare --metrics`` and MLflow. A hook that cannot be
imported or is not callable is one error line at set-up; one that raises or returns something
other than a finite number on a worked example with the data's class count, one error line
once the data is loaded (before any training).

Why the interval is computed here and not with the built-in metrics: those are functions of
per-item sums, so all of them come out of one resampled matrix product; a user's function is
opaque, so each resample calls it on the resampled items (the same percentile bootstrap over
items, paired: both models on the same resample).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlbench.errors import MlbenchError, first_line
from mlbench.evaluate import registry
from mlbench.named import import_object


def resolve(entry: str) -> Callable[..., Any]:
    module, sep, attr = str(entry).rpartition(":")
    if not sep or not module or not attr:
        raise MlbenchError(f"metrics.extra: {entry!r} must be 'package.module:function' or 'path/file.py:function'")
    try:
        obj = import_object(str(entry))
    except Exception as e:  # ImportError, AttributeError, whatever the module raises on import
        raise MlbenchError(f"metrics.extra: cannot import {entry!r} ({type(e).__name__}: {first_line(e)})") from None
    if not callable(obj):
        raise MlbenchError(f"metrics.extra: {entry!r} is a {type(obj).__name__}, not a function")
    return obj


def call(fn: Callable[..., Any], probs: Any, labels: Any, entry: str) -> float:
    """``fn(probabilities, labels)`` on numpy arrays, as a float; one error line otherwise."""
    p = probs.detach().cpu().double().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, float)
    y = labels.detach().cpu().long().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    try:
        value = fn(p, y)
    except Exception as e:
        raise MlbenchError(f"metrics.extra: {entry} raised {type(e).__name__}: {first_line(e)}") from None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MlbenchError(f"metrics.extra: {entry} returned a {type(value).__name__}, not a number") from None
    return value


def register(entries: list[str]) -> list[str]:
    """Add each hook to the metric table (imported now; tried by :func:`check` once the class
    count is known), replacing those an earlier run in this process added; returns their names."""
    for old in user_metrics():
        del registry.METRICS[old]
        registry.HIGHER_IS_BETTER.pop(old, None)
    out = []
    for entry in entries or []:
        fn = resolve(entry)
        name = str(getattr(fn, "metric_name", getattr(fn, "__name__", "")))
        if not name.isidentifier():
            raise MlbenchError(f"metrics.extra: {entry} needs a name (set the function's metric_name)")
        known = registry.METRICS.get(name)
        if known is not None and known.fn != entry:
            raise MlbenchError(f"metrics.extra: {entry} is named {name!r}, which is already a metric; set its "
                               "metric_name attribute to another name")
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ") or f"user metric {entry}"
        higher = bool(getattr(fn, "higher_is_better", True))
        registry.METRICS[name] = registry.MetricSpec(
            name, higher, registry.PREDICTIONS, doc, entry, tags=(registry.DELTAS, registry.COMPARE, registry.HISTORY),
            bounds=(-math.inf, math.inf), user=True,
            hook=lambda probs, labels, _fn=fn, _entry=entry: call(_fn, probs, labels, _entry))
        registry.HIGHER_IS_BETTER[name] = higher
        out.append(name)
    return out


def worked_example(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of ``4 * num_classes`` items, every class present, mostly right."""
    labels = np.arange(4 * num_classes) % num_classes
    logits = np.random.default_rng(0).normal(size=(len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += 2.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


def check(num_classes: int) -> None:
    """Try every registered hook on a worked example with the data's class count (once the data
    is loaded, before any training): it must return a finite number."""
    for name in user_metrics():
        entry = registry.METRICS[name].fn
        value = call(resolve(entry), *worked_example(num_classes), entry)
        if not math.isfinite(value):
            raise MlbenchError(f"metrics.extra: {entry} returned {value} on a worked example of {num_classes} "
                               "classes; it must be finite")


def user_metrics() -> list[str]:
    return [n for n, s in registry.METRICS.items() if s.user]


def paired_delta(name: str, probs_base: torch.Tensor, probs_var: torch.Tensor, labels: torch.Tensor,
                 n_resamples: int, seed: int, level: float) -> dict[str, Any]:
    """Variant minus baseline of a user metric with a paired percentile bootstrap interval
    (the same items resampled for both)."""
    spec = registry.METRICS[name]
    fn = resolve(spec.fn)
    pb, pv = probs_base.detach().cpu().double().numpy(), probs_var.detach().cpu().double().numpy()
    y = labels.detach().cpu().long().numpy()
    point = call(fn, pv, y, spec.fn) - call(fn, pb, y, spec.fn)
    rng = np.random.default_rng(seed)
    n = len(y)
    draws = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = rng.integers(0, n, n)
        draws[b] = call(fn, pv[idx], y[idx], spec.fn) - call(fn, pb[idx], y[idx], spec.fn)
    draws = draws[np.isfinite(draws)]
    lo, hi = (np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]) if len(draws) else (None, None))
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    return {"value": point, "ci_low": lo, "ci_high": hi, "resamples": int(len(draws)),
            "significant": None if lo is None else not (lo <= 0.0 <= hi), "method": "paired percentile bootstrap"}

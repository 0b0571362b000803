"""Your own metric: ``metrics.extra: ["pkg.module:function"]`` (or ``"path/to/file.py:function"``).

The function takes ``(probabilities, labels)`` as numpy arrays — probabilities (n, classes),
labels (n,) integer class indices — and returns one number. Its direction is higher-is-better
unless the function has an attribute ``higher_is_better = False``; its name in summary.json is
the function's name (or its ``metric_name`` attribute). Registered at set-up into the metric
table, it is computed for every variant on the test split beside the built-in metrics, gets a
paired bootstrap interval for its change against the baseline (:func:`paired_delta`), and can
be named by requirements, ``mlbench compare --metrics`` and MLflow. A hook that cannot be
imported, is not callable, raises or returns something other than a finite number on a worked
example is one error line at set-up.

Why the interval is computed here and not with the built-in metrics: those are functions of
per-item sums, so all of them come out of one resampled matrix product; a user's function is
opaque, so each resample calls it on the resampled items (the same percentile bootstrap over
items, paired: both models on the same resample).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlbench.errors import MlbenchError, first_line
from mlbench.evaluate import registry

WORKED = (np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]]), np.array([0, 1, 2, 1]))


def _load_file(path: str) -> Any:
    """A loose .py file as a module (cached by path, so each resample does not import it again)."""
    import importlib.util
    import sys
    from pathlib import Path
    p = Path(path).expanduser().resolve()
    name = f"mlbench_metric_{abs(hash(str(p))):x}"
    if name in sys.modules:
        return sys.modules[name]
    if not p.is_file():
        raise FileNotFoundError(f"no file {p}")
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def resolve(entry: str) -> Callable[..., Any]:
    module, sep, attr = str(entry).rpartition(":")
    if not sep or not module or not attr:
        raise MlbenchError(f"metrics.extra: {entry!r} must be 'package.module:function' or 'path/file.py:function'")
    try:
        obj = _load_file(module) if module.endswith(".py") else importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
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
    """Add each hook to the metric table (checked on a worked example), replacing those an
    earlier run in this process added; returns their names."""
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
        value = call(fn, *WORKED, entry)
        if not math.isfinite(value):
            raise MlbenchError(f"metrics.extra: {entry} returned {value} on a worked example; it must be finite")
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ") or f"user metric {entry}"
        higher = bool(getattr(fn, "higher_is_better", True))
        registry.METRICS[name] = registry.MetricSpec(
            name, higher, registry.PREDICTIONS, doc, entry, tags=(registry.DELTAS, registry.COMPARE, registry.HISTORY),
            bounds=(-math.inf, math.inf), user=True,
            hook=lambda probs, labels, _fn=fn, _entry=entry: call(_fn, probs, labels, _entry))
        registry.HIGHER_IS_BETTER[name] = higher
        out.append(name)
    return out


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

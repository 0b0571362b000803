"""Value ranges of the config, checked before any work: a type is Hydra's job (the schema in
``schema.py`` and its closed sets), a range is ours. One :class:`MlbenchError` names the
option, its value and what it must be."""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import OmegaConf

from mlbench.errors import MlbenchError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
MAX_SEED = 2**32 - 1

# (dotted key, test, what it must be); None values are left to the schema
RANGES: list[tuple[str, Any, str]] = [
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"in [0, {MAX_SEED}] (numpy and scikit-learn take 32-bit seeds)"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("budget.minutes", lambda v: v > 0, "> 0 (null: no budget)"),
    ("unlabelled.alpha", lambda v: 0 < v < 1, "in (0, 1)"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.patience", lambda v: v >= 0, ">= 0 (0: no early stopping)"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("eval.batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.bootstrap.resamples", lambda v: v == 0 or v >= 100, ">= 100, or 0 for no intervals"),
    ("eval.bootstrap.level", lambda v: 0 < v < 1, "in (0, 1)"),
    ("eval.latency.warmup", lambda v: v >= 0, ">= 0"),
    ("eval.latency.min_calls", lambda v: v >= 1, ">= 1"),
    ("eval.latency.min_time_s", lambda v: v >= 0, ">= 0"),
    ("eval.latency.target_ci", lambda v: v > 0, "> 0"),
    ("eval.latency.max_time_s", lambda v: v >= 0, ">= 0"),
    ("eval.latency.threads", lambda v: v >= 0, ">= 0 (0: the run's threads)"),
    ("eval.throughput.min_time_s", lambda v: v >= 0, ">= 0"),
    ("eval.throughput.target_ci", lambda v: v > 0, "> 0"),
    ("eval.throughput.batch_sizes", lambda v: len(v) > 0 and all(b >= 1 for b in v), "a non-empty list of sizes >= 1"),
    ("eval.timing.rounds", lambda v: v >= 1, ">= 1"),
    ("eval.timing.tolerance", lambda v: v > 0, "> 0"),
    ("eval.accuracy_drop_flag", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("deployment.invariance_items", lambda v: v >= 0, ">= 0 (0: off)"),
    ("backend.threads", lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
     "auto or an integer >= 0 (0: torch's default)"),
    ("train.threads", lambda v: v >= 0, ">= 0 (0: the physical cores)"),
    ("seeds", lambda v: all(0 <= s <= MAX_SEED for s in v), f"a list of seeds in [0, {MAX_SEED}]"),
]


def non_finite(node: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinite number in a config (None when all are
    finite): no option of mlbench means anything at NaN or infinity (an infinite timing budget
    never ends, a NaN split size or learning rate fails deep inside a library)."""
    if OmegaConf.is_dict(node) and not where:  # the root: Hydra's own node is not ours to check
        node = {k: OmegaConf.select(node, str(k), throw_on_missing=False) for k in node if k != "hydra"}
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return where if isinstance(node, float) and not math.isfinite(node) else None
    for k, v in items:
        if str(k) == "hydra":
            continue
        bad = non_finite(v, f"{where}.{k}" if where else str(k))
        if bad is not None:
            return bad
    return None


def check_values(cfg: Any) -> None:
    """Every numeric option's range and every name that becomes a file name, before any work:
    one :class:`MlbenchError` naming the option, its value and what it must be."""
    bad = non_finite(cfg)
    if bad is not None:
        raise MlbenchError(f"{bad} must be a finite number, got {OmegaConf.select(cfg, bad)!r}")
    for key, ok, must in RANGES:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            shown = OmegaConf.to_container(value, enum_to_str=True) if OmegaConf.is_config(value) else value
            raise MlbenchError(f"{key} must be {must}, got {shown!r}")
    names = {f"variants.{n}": n for n in (cfg.get("variants") or {})}
    names.update({f"stress.{n}": n for n in (cfg.get("stress") or {})})
    export = OmegaConf.select(cfg, "export.variant")
    if export is not None:
        names["export.variant"] = export
    for where, name in names.items():
        if not re.fullmatch(NAME_PATTERN, str(name)) or ".." in str(name):
            raise MlbenchError(f"{where}: the name {str(name)!r} becomes a file name; use letters, digits, "
                               "'_', '-' and '.' (no '/', no '..', at most 100 characters)")

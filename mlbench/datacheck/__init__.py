"""Data engineering checks: linting, leakage, shift, label errors, exploration, complexity,
sufficiency. Each check is one entry of the multi-select ``datacheck`` config group."""

from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.datacheck.checks import (
    Complexity,
    Explore,
    LabelErrors,
    Leakage,
    Lint,
    Shift,
    Sufficiency,
    confident_learning,
    nearest_distances,
)

__all__ = ["Check", "CheckContext", "CheckResult", "Finding", "Lint", "Leakage", "Shift", "LabelErrors",
           "Explore", "Complexity", "Sufficiency", "confident_learning", "nearest_distances"]

"""Data engineering checks: linting, leakage, shift, label errors, exploration, complexity,
sufficiency, factor balance and coverage. Each check is one entry of the multi-select ``datacheck`` config group."""

from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.datacheck.common import nearest_distances
from mlbench.datacheck.complexity import Complexity, Explore, Sufficiency
from mlbench.datacheck.coverage import Balance, Coverage
from mlbench.datacheck.labels import LabelErrors, confident_learning
from mlbench.datacheck.quality import Leakage, Lint
from mlbench.datacheck.shift import Shift

__all__ = ["Check", "CheckContext", "CheckResult", "Finding", "Lint", "Leakage", "Shift", "LabelErrors",
           "Explore", "Complexity", "Sufficiency", "Balance", "Coverage", "confident_learning", "nearest_distances"]

"""The data-check contract.

A check is one entry of the multi-select ``datacheck`` config group. It declares the
data it fits (``modalities``, or ``fits(meta)``) and implements ``run(ctx)``, which
returns :class:`Finding` s (each with a severity, a count and the items concerned, as
indices into the dataset), named figures (the numbers requirements can state conditions
on) and a section for summary.json. A check that does not fit the data is skipped with
its reason recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mlbench.choices import WhenUnfit, choose
from mlbench.data import DataBundle
from mlbench.named import recorded_class
from mlbench.text import Doc

SEVERITIES = ("info", "warn", "fail")
MAX_ITEMS_LISTED = 50


@dataclass
class Finding:
    """One observation: ``items`` are dataset indices (``DataBundle.index``), at most 50 listed;
    ``count`` is how many there are in all."""

    check: str
    severity: str
    message: str
    count: int = 0
    items: list[int] = field(default_factory=list)
    split: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        self.items = [int(i) for i in self.items[:MAX_ITEMS_LISTED]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, float | int | None] = field(default_factory=dict)  # requirement-ready numbers
    section: dict[str, Any] = field(default_factory=dict)  # everything else, for summary.json
    plots: list[Path] = field(default_factory=list)
    # name -> rows (one dict per row, same keys): written whole to <run dir>/datacheck/<name>.csv
    # by the stage, which records the file's path in the check's section under "files"
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class CheckContext:
    """What a check may use: the data, features per split (inputs for tabular data; for images
    the baseline's penultimate-layer embeddings when a baseline exists), the run's seed and
    requirements, and where plots go."""

    data: DataBundle
    features: Callable[[str], torch.Tensor]
    embedding_space: str  # "inputs" or "penultimate layer of the baseline"
    seed: int
    device: torch.device
    plots_dir: Path
    accuracy_target: float | None = None  # the strictest absolute accuracy requirement, if any
    partition: str = "none"  # the run's partition.strategy: what the group and time columns mean for leakage

    def inputs(self, split: str) -> np.ndarray:
        """Inputs flattened to (n, features), float64."""
        return self.data.x[split].flatten(1).double().numpy()

    def proxy_features(self, split: str, max_inputs: int = 1024) -> np.ndarray:
        """Features for a fast proxy model: the inputs when they have at most ``max_inputs``
        values, else the embeddings."""
        x = self.data.x[split]
        if x[0].numel() <= max_inputs:
            return self.inputs(split)
        return self.features(split).double().cpu().numpy()


class Check:
    """A data check: ``run(ctx)`` finds, measures and writes its section; ``report`` renders
    that section again from summary.json (the findings and figures tables every check gets
    are the report's)."""

    modalities: ClassVar[tuple[str, ...]] = ("image", "tabular")
    raw_data: ClassVar[bool] = False  # sees the data as loaded, before non-finite values are imputed

    def __init__(self, when_unfit: str = "skip"):
        self.when_unfit = choose(WhenUnfit, when_unfit, "datacheck when_unfit")
        self.name = type(self).__name__

    def fits(self, data: DataBundle) -> str | None:
        """Why this check does not fit the data, or None."""
        if data.meta.modality not in self.modalities:
            return f"needs {' or '.join(self.modalities)} data; {data.meta.name} is {data.meta.modality}"
        return None

    def validate(self, data: DataBundle) -> None:
        """Raise :class:`MlbenchError` when the data makes this check impossible (not merely
        unfit): it fails the run before any work."""

    def run(self, ctx: CheckContext) -> CheckResult:
        raise NotImplementedError

    @classmethod
    def report(cls, doc: Doc, name: str, section: dict[str, Any]) -> None:
        """Its details in the report, beyond the findings and figures every check gets."""


def check_class(section: dict[str, Any]) -> type[Check]:
    """The class that wrote a check's section (its recorded ``target``, else its ``class``)."""
    return recorded_class(section, Check, "class", Check)


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """The learning-curve model of the sufficiency check: err(n) = a·n^(−b) + c."""
    return a * np.power(n, -b) + c


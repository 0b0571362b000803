"""The run context: the run's inputs (config, data, factories) and what the stages have
produced so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mlbench.calibrate import Calibrator
from mlbench.components import VariantSpec
from mlbench.compress import Artifact
from mlbench.compress.cache import ArtifactCache
from mlbench.data import DataBundle, Dataset
from mlbench.datacheck import Check
from mlbench.evaluate.loop import Settings
from mlbench.monitor import Monitor
from mlbench.records import Live, RunRecord, VariantRecord
from mlbench.stress.base import Stressor

MIN_TEST_ITEMS = 200  # fewer test items than this: a warning in the console, summary and report


@dataclass
class RunContext:
    """The run's inputs (config, data, factories) and what the stages have produced so far:
    typed records (``records``, ``run``) and, for later stages of the same run, the live
    models and runners (``live``)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device = torch.device("cpu")
    started: str = ""
    t0: float = 0.0
    env: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None
    model_factory: Callable[..., torch.nn.Module] | None = None
    calibrator_factory: Callable[[], Calibrator] | None = None
    specs: list[VariantSpec] = field(default_factory=list)
    stressors: list[Stressor] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    check_skipped: list[dict[str, str]] = field(default_factory=list)
    monitor: Monitor | None = None
    tracker: Any = None  # tracking=mlflow
    data: DataBundle | None = None
    data_hash: str = ""
    baseline: Artifact | None = None
    baseline_info: dict[str, Any] = field(default_factory=dict)
    baseline_calibrator: Calibrator | None = None
    records: dict[str, VariantRecord] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)  # measured variants only
    built: dict[str, Artifact] = field(default_factory=dict)  # lineage id -> artifact built in this run
    artifacts: ArtifactCache | None = None  # ONNX artifacts kept across runs
    run: RunRecord = field(default_factory=RunRecord)
    settings: Settings = field(default_factory=Settings)  # how variants are measured (set-up)

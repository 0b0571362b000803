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


@dataclass(frozen=True)
class RunSetup:
    """What set-up resolved from the config before any data is read: when the run started, how
    variants are measured, the device, the caches, the environment record, the dataset and
    model factories, the calibrator factory and the tracker. Made once by the ``setup`` stage;
    no stage changes it (the fields cannot be reassigned)."""

    started: str
    t0: float
    settings: Settings
    device: torch.device
    artifacts: ArtifactCache  # artifacts kept across runs (formats that are cacheable)
    env: dict[str, Any]
    dataset: Dataset
    model_factory: Callable[..., torch.nn.Module]
    calibrator_factory: Callable[[], Calibrator] | None
    tracker: Any  # tracking=mlflow


def _from_setup(name: str, before: Any = None) -> property:
    """A read-only view of ``RunSetup.<name>`` (``before`` until set-up has run)."""
    return property(lambda ctx: before if ctx.setup is None else getattr(ctx.setup, name),
                    doc=f"``setup.{name}`` (read-only).")


@dataclass
class RunContext:
    """A run: its config and folder; what set-up resolved (``setup``, read-only: reached as
    ``ctx.device``, ``ctx.settings``, ...); the components this command runs (set-up builds
    them from the config, the command and the data's fit narrow them); and what the stages have
    produced so far: typed records (``records``, ``run``) and, for later stages of the same
    run, the live models and runners (``live``)."""

    cfg: DictConfig
    run_dir: Path
    setup: RunSetup | None = None
    # the components this command runs
    specs: list[VariantSpec] = field(default_factory=list)
    stressors: list[Stressor] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    check_skipped: list[dict[str, str]] = field(default_factory=list)
    monitor: Monitor | None = None
    # what the stages produced
    data: DataBundle | None = None
    data_hash: str = ""
    baseline: Artifact | None = None
    baseline_info: dict[str, Any] = field(default_factory=dict)
    baseline_calibrator: Calibrator | None = None
    records: dict[str, VariantRecord] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)  # measured variants only
    built: dict[str, Artifact] = field(default_factory=dict)  # lineage id -> artifact built in this run
    run: RunRecord = field(default_factory=RunRecord)
    sizing: dict[str, Any] = field(default_factory=dict)  # budget.minutes: e.g. stress_items

    started = _from_setup("started", "")
    t0 = _from_setup("t0", 0.0)
    settings = _from_setup("settings", Settings())
    device = _from_setup("device", torch.device("cpu"))
    artifacts = _from_setup("artifacts")
    env = _from_setup("env", {})
    dataset = _from_setup("dataset")
    model_factory = _from_setup("model_factory")
    calibrator_factory = _from_setup("calibrator_factory")
    tracker = _from_setup("tracker")

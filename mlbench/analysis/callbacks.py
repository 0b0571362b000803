"""Hydra callbacks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """After a multirun, write one table over all jobs into the sweep folder
    (sweep_summary/compare.{csv,md,html}) and print it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported when a sweep ends: Hydra builds this callback as every run starts
        from mlbench.analysis.compare import compare
        from mlbench.errors import MlbenchError
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            compare([sweep_dir], sweep_dir / "sweep_summary")  # paired intervals up to 10 jobs
        except MlbenchError as e:  # a sweep whose jobs all failed still ends cleanly
            log.warning("no sweep summary: %s", e)

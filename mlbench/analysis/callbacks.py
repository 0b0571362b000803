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
    (sweep_summary/compare.{csv,md,html}) and print it. Before it, Optuna's own INFO banner is
    turned down (its logger resets itself on import, past Hydra's logging config)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower():
            import optuna  # present whenever the Optuna sweeper is
            optuna.logging.set_verbosity(optuna.logging.WARNING)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported when a sweep ends: Hydra builds this callback as every run starts
        from mlbench.analysis.compare import compare
        from mlbench.errors import MlbenchError
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            compare([sweep_dir], sweep_dir / "sweep_summary")  # paired intervals up to 10 jobs
        except MlbenchError as e:  # a sweep whose jobs all failed still ends cleanly
            log.warning("no sweep summary: %s", e)

"""Resumable runs (``resume=true``): a run killed at any point (Ctrl-C, kill -9, a crash) and
started again with the same config skips the stages it had finished.

After each stage the run's records (every variant's figures and the run-level sections) and the
files the stages wrote so far (plots, data-check tables, unlabelled predictions) are saved to
``<cache_dir>/resume/<config hash>/`` (``state.json`` written atomically, then ``files/``); a
run that ends normally removes its entry. With ``resume=true`` the set-up, data, baseline and
variant stages run again — they rebuild the live models the later stages use, from the baseline
cache and the artifact cache, and they are deterministic (same weights, same figures) — while the
finished measurement stages (data checks, timing, paired deltas, stress, monitoring, unlabelled
data, seed spread) are not: their saved records are put back before the first unfinished stage
runs. The saved state is trusted only for the same config (its hash names the entry) and the same
data (its content hash is checked); a damaged entry is one error line.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlbench.errors import MlbenchError, first_line
from mlbench.progress import console
from mlbench.records import RunRecord, VariantRecord
from mlbench.results import atomic_write, jsonable

# measurement stages whose records are saved and put back; the others rebuild live objects
SKIPPABLE = ("datacheck", "efficiency", "compare", "stress", "monitor", "unlabelled", "seeds")
# progress is saved after these (the stages after the variants): a run that stops earlier, a
# mistake in the config included, leaves nothing behind
SAVED_AFTER = SKIPPABLE[1:]
# stages rerun on resume to rebuild the live models; the saved records go back before any other stage runs
REBUILT = ("setup", "load_data", "baseline", "plan", "variants", "revise")
KEEP_OUT = {"models", ".hydra", "cli.log", "mlbench.log", ".mlbench-run"}  # not stage outputs
STATE_VERSION = 1


def resume_key(cfg: DictConfig) -> str:
    """The config's hash without ``resume`` itself: the same command line finds its entry."""
    from mlbench.train.cache import content_hash
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("resume", None)
    return content_hash(config)


class Resume:
    """The saved progress of one config's run (see the module docstring)."""

    def __init__(self, cfg: DictConfig):
        self.folder = Path(cfg.paths.cache_dir).expanduser() / "resume" / resume_key(cfg)
        self.state: dict[str, Any] | None = None
        self.restored = True  # nothing to put back unless a saved state is loaded
        self.done: list[str] = []
        if cfg.get("resume"):
            self._load()

    def _load(self) -> None:
        path = self.folder / "state.json"
        if not path.is_file():
            console.print("[yellow]resume[/]: no interrupted run of this config; starting afresh")
            return
        try:
            state = json.loads(path.read_text())
            if state.get("version") != STATE_VERSION or not isinstance(state.get("done"), list):
                raise ValueError("unknown layout")
            self.pending = {"records": {n: VariantRecord(**r) for n, r in state["records"].items()},
                            "run": RunRecord(**state["run"])}
        except (ValueError, TypeError, KeyError) as e:
            raise MlbenchError(f"resume: the saved state {path} is damaged ({first_line(e)}); nothing was changed: "
                               "run without resume=true to start afresh") from None
        self.state, self.done, self.restored = state, list(state["done"]), False
        shown = [s for s in self.done if s in SKIPPABLE]
        console.print(f"[bold]resume[/]: {len(shown)} finished stage(s) kept from the interrupted run "
                      f"({', '.join(shown) or 'none'}); set-up, data, baseline and variants are rebuilt from the caches")

    def skips(self, stage: str) -> bool:
        """Whether ``stage`` finished before the interruption (and is put back, not rerun)."""
        return self.state is not None and stage in SKIPPABLE and stage in self.done

    def before(self, stage: str, ctx: Any) -> None:
        """Put the saved records back before the first stage that runs again and is not a rebuild
        (a stage that is never skipped, such as the per-factor accuracies, then adds to them)."""
        if not self.restored and stage not in REBUILT and not self.skips(stage):
            self.restore(ctx)

    def restore(self, ctx: Any) -> None:
        if self.restored:
            return
        if self.state.get("data_hash") != ctx.data_hash:
            raise MlbenchError("resume: the data changed since the interrupted run (content hash "
                               f"{self.state.get('data_hash')} then, {ctx.data_hash} now); run without resume=true")
        live_stages, live_peak = dict(ctx.run.stages), dict(ctx.run.peak_rss_mb)
        ctx.records = self.pending["records"]
        ctx.run = self.pending["run"]
        ctx.run.stages.update({k: v for k, v in live_stages.items() if k not in SKIPPABLE})
        ctx.run.peak_rss_mb.update({k: v for k, v in live_peak.items() if k not in SKIPPABLE})
        files = self.folder / "files"
        if files.is_dir():
            shutil.copytree(files, ctx.run_dir, dirs_exist_ok=True)
        self.restored = True

    def save(self, stage: str, ctx: Any) -> None:
        """After ``stage``: the records and the run folder's stage outputs, atomically."""
        if not self.restored:  # a stage rerun on the way to the interruption point: the saved state stands
            return
        if stage in SKIPPABLE and stage not in self.done:
            self.done.append(stage)
        if stage not in SAVED_AFTER:
            return
        files = self.folder / "files"
        for p in ctx.run_dir.iterdir() if ctx.run_dir.is_dir() else []:
            if p.name in KEEP_OUT or p.name.startswith("."):
                continue
            dest = files / p.name
            if p.is_dir():
                shutil.copytree(p, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest)
        state = {"version": STATE_VERSION, "done": self.done, "data_hash": ctx.data_hash,
                 "records": {n: jsonable(dataclasses.asdict(r), keep_nonfinite=True) for n, r in ctx.records.items()},
                 "run": jsonable(dataclasses.asdict(ctx.run), keep_nonfinite=True)}
        atomic_write(self.folder / "state.json", json.dumps(state, allow_nan=True))

    def finish(self) -> None:
        """The run ended normally: its entry is no longer needed (nor an empty ``resume/``)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:  # another config's entry is still there, or it never existed
            pass


__all__ = ["Resume", "SKIPPABLE", "resume_key"]

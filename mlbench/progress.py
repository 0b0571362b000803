"""Shared rich console and progress bars (quiet when not attached to a terminal)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader of stdout went away (``mlbench compare | head -1``): stop printing, quietly;
        the work itself is not affected (rich's default would end the process with status 1)."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# Wide enough for the full results table when output goes to a file or a pipe.
# record=True: what a run prints is also written to its log file (keep_console_log).
console = _Console(stderr=False, highlight=False, record=True, width=None if sys.stdout.isatty() else 160)
# Errors and warnings the user must see go to stderr, one line each.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def keep_console_log(run_dir: Path, name: str | None = None) -> None:
    """Append what the console printed since the last call to the run's log file (Hydra's
    ``<job>.log``, beside the library messages it already holds); the record is then cleared."""
    text = console.export_text(clear=True)
    if name is None:
        try:
            from hydra.core.hydra_config import HydraConfig
            name = f"{HydraConfig.get().job.name}.log"
        except ValueError:  # not inside a Hydra job
            name = "console.log"
    try:
        with open(Path(run_dir) / name, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass  # the results are written; a log that cannot be is not worth failing the run for


def progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=console, transient=transient, disable=not sys.stdout.isatty(),
    )

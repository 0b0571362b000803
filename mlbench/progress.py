"""Shared rich console and progress bars (quiet when not attached to a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

# Wide enough for the results table when output goes to a file or a pipe.
console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)
# Errors and warnings the user must see go to stderr, one line each.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=console, transient=transient, disable=not sys.stdout.isatty(),
    )

"""A run's folder from the command line's point of view: claimed by one run, removed when the run
fails or is interrupted before it wrote summary.json, and the one-line ``error:`` /
``interrupted`` endings with their exit statuses (2 and 130)."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlbench.errors import MlbenchError, environment_error
from mlbench.process import quiet_libraries
from mlbench.progress import err_console

# A run folder holds this file from the moment a run claims it: a second run aimed at the same
# folder (the same hydra.run.dir, started at the same time) is refused instead of mixing its
# files into the first's.
CLAIM = ".mlbench-run"
_CLAIMED: set[Path] = set()


RUN_FOLDER_LEFTOVERS = {".hydra", "cli.log", "mlbench.log", "models", "predictions", "plots", "datacheck",
                        "splits.npz", "export.log", CLAIM}


def discard_unfinished(run_dir: Path | None) -> None:
    """Remove a run folder this process claimed (:func:`claim`) that has no summary.json and
    holds nothing but what a run writes (Hydra's record, partial outputs): a failed or
    interrupted run leaves no folder that looks like a run."""
    if run_dir is None or not run_dir.is_dir() or (run_dir / "summary.json").exists():
        return
    if not _claimed_here(run_dir):
        return  # another process's folder (or one this run was refused): never ours to remove
    if {p.name for p in run_dir.iterdir()} <= RUN_FOLDER_LEFTOVERS:
        shutil.rmtree(run_dir, ignore_errors=True)


def fail(e: BaseException, run_dir: Path | None = None) -> None:
    """One ``error:`` line on stderr, exit status 2. A run folder this failed run made and
    filled with nothing but Hydra's record is removed, so no empty runs are left behind."""
    if isinstance(e, OSError):
        msg = f"cannot write {e.filename or 'a file'}: {e.strerror or e} (is the folder full or read-only?)"
    else:
        msg = str(e)
    from rich.markup import escape
    err_console.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
    discard_unfinished(run_dir)
    sys.exit(2)


def interrupted(run_dir: Path | None = None, what: str = "") -> None:
    """Ctrl-C: one line on stderr, the unfinished run folder removed, exit status 130."""
    err_console.print(f"[yellow]interrupted[/]{': ' + what if what else ''}", soft_wrap=True)
    discard_unfinished(run_dir)
    sys.exit(130)


def claim(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process (an exclusive create of its :data:`CLAIM` file), or
    raise MlbenchError when another run holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise MlbenchError(f"run folder {run_dir} belongs to another run (it holds {CLAIM}); give a new "
                           "hydra.run.dir") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    _CLAIMED.add(run_dir.resolve())


def _claimed_here(run_dir: Path) -> bool:
    return run_dir.resolve() in _CLAIMED


def guarded(fn: Callable[[DictConfig, Path], dict], cfg: DictConfig,
            on_interrupt: str = "the unfinished run folder is removed") -> tuple[dict, Path]:
    """Run ``fn(cfg, run_dir)`` in the run folder this process claims; a mistake the user can
    fix, or an environment that fails a write (full disk, read-only folder), ends in one
    ``error:`` line (exit 2); Ctrl-C in one ``interrupted`` line (exit 130). Either way the
    unfinished folder is removed."""
    quiet_libraries()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        claim(run_dir)
        return fn(cfg, run_dir), run_dir
    except MlbenchError as e:
        fail(e, run_dir)
    except KeyboardInterrupt:
        interrupted(run_dir, on_interrupt)
    except Exception as e:
        env = environment_error(e)
        if env is None:
            raise
        fail(env, run_dir)
    raise AssertionError("unreachable")


def interruptible(entry: Callable[[], None]) -> Callable[[], None]:
    """A command's entry point on which Ctrl-C anywhere (imports, composing the config, between
    stages) is one ``interrupted`` line and exit status 130, not a traceback; inside a run,
    :func:`guarded` has already removed the unfinished folder."""
    @functools.wraps(entry)
    def command() -> None:
        try:
            entry()
        except KeyboardInterrupt:
            interrupted()
    return command

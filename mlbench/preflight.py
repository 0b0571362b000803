"""Checks of a command line before Hydra starts: the subcommand, the path variables, the run
folder, every override (with the group's choices for a misspelt option), and each job of a
sweep. Each problem is one line; nothing has been written yet."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError
from mlbench.progress import err_console
from mlbench.results import results_root
from mlbench.schema import CONF_DIR, group_options, register

SUBCOMMANDS = [("(none)", "a run: baseline, variants, timing, stress, data checks, monitoring, report"),
               ("compare", "compare run and sweep folders (mlbench compare --help)"),
               ("datacheck", "the data checks alone"),
               ("monitor", "the baseline, the variants and the monitoring stage"),
               ("cycle", "the update cycle: a simulated deployment over a drifting stream"),
               ("select", "model selection: candidate models, learning curves, capacity vs data complexity"),
               ("examples", "write sample user inputs (image folders, a table, a model and its weights)")]


PATH_VARIABLES = ("MLBENCH_RESULTS", "MLBENCH_CACHE", "MLBENCH_DATA")


def check_path_variables() -> None:
    """A path variable that is set but empty would put results at the filesystem's root
    (``/runs``, ``/history.sqlite``): one ``error:`` line instead."""
    for name in PATH_VARIABLES:
        if name in os.environ and not os.environ[name].strip():
            raise MlbenchError(f"{name} is set but empty; unset it (the default is used) or name a folder")


def check_results_folder(argv: list[str]) -> None:
    """Hydra makes the run folder before mlbench runs: say in one line when it cannot, or when
    a run folder named on the command line already holds something (a finished run, another
    run's files), which Hydra would overwrite."""
    root = str(results_root())
    for a in argv:
        if a.startswith(("paths.results_dir=", "hydra.run.dir=")):
            root = a.split("=", 1)[1]
    for a in argv:
        key, _, value = a.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and Path(value).exists():
            target = Path(value)
            if not target.is_dir():
                raise MlbenchError(f"{key}={value}: a file is in the way; give a new folder")
            if any(target.iterdir()):
                raise MlbenchError(f"{key}={value} exists and is not empty (another run's folder?); a run "
                                   "never writes into an existing folder: give a new one, or remove it")
    p = Path(root).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not os.access(p, os.W_OK | os.X_OK):
        raise MlbenchError(f"results folder {root}: {p} is not writable")


def _choices(group: str) -> list[str]:
    return list(group_options(group))


QUOTE_HINT = ("; Hydra's override grammar needs quotes around a value with spaces, non-ASCII letters or "
              "any of ()[]{}:=,'\" — e.g. 'data.path=\"/data/données v2.npz\"'")


def compose_or_problem(overrides: list[str], hydra_config: bool = False) -> tuple[Any, str | None]:
    """The config composed with ``overrides`` and None, or None and the composition error as one
    line (Hydra's own message, first line, and OmegaConf's reason: the key, the expected type;
    for a value the override grammar cannot read, how to quote it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=hydra_config), None
    except Exception as e:  # noqa: BLE001 - any composition error becomes one line
        why = [str(e).split("\n")[0].rstrip(".")]
        if e.__cause__ is not None:
            why.append(str(e.__cause__).split("\n")[0])
        text = ": ".join(w for w in why if w)
        if "LexerNoViableAlt" in text or "mismatched input" in text or "token recognition" in text:
            text += QUOTE_HINT
        return None, text
    finally:
        GlobalHydra.instance().clear()


def check_sweep(argv: list[str]) -> str | None:
    """Before the first job of a sweep (``-m``) starts: every job's config composes and its
    values are in range, so a misspelt key or a bad value in job 5 is one line now, not an
    abort after four jobs. The basic sweeper's jobs are expanded (command line and the
    config's ``hydra.sweeper.params``); other sweepers (Optuna) choose their values as they
    go, so their fixed overrides are checked once."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mlbench.components import (
        components,  # imports torch: heavy, but a sweep needs it anyway
    )
    from mlbench.values import check_values

    if any(a in ("--config-dir", "-cd") or a.startswith(("--config-dir=", "hydra.searchpath")) for a in argv):
        return None  # configs from elsewhere: Hydra composes (and reports) them itself
    words = [a for a in argv if not a.startswith("-") and "=" in a]
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(words)
    except Exception as e:  # noqa: BLE001 - a grammar error, one line
        return str(e).split("\n")[0] + (QUOTE_HINT if "LexerNoViableAlt" in str(e) else "")
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg, problem = compose_or_problem(fixed, hydra_config=True)
    if problem:
        return problem
    jobs = [fixed]
    if cfg.hydra.sweeper.get("_target_", "").endswith("BasicSweeper"):
        params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.get("params") or {}).items()]
        given = {o.key_or_group for o in parsed}  # the command line wins over the config's params
        swept = [o for o in parser.parse_overrides(params) if o.key_or_group not in given]
        swept += [o for o in parsed if o.is_sweep_override()]
        if swept:
            jobs = [[*fixed, *job] for batch in BasicSweeper.split_arguments(swept, None) for job in batch]
    for i, job in enumerate(jobs):
        job_cfg, problem = compose_or_problem(job) if job is not fixed else (cfg, None)
        if problem is None:
            try:
                check_values(job_cfg)
                components(job_cfg)
            except MlbenchError as e:
                problem = str(e)
        if problem:
            return f"sweep job {i} ({' '.join(job[len(fixed):]) or 'the fixed overrides'}): {problem}"
    return None


def check_overrides(argv: list[str], compose: bool = True) -> str | None:
    """The first mistake in the command line's overrides, as one line (None if it composes).

    A group option that does not exist is named with the group's choices (and the closest
    one); any other composition error (an unknown key, a wrong type) is Hydra's own message,
    first line (``compose=False``: group options only, for a caller that composes next and
    reports its errors with ``compose_or_problem``). Sweeps (``-m``): group options here, each
    job's composition in :func:`check_sweep`."""
    import difflib

    multirun = any(a in ("-m", "--multirun") for a in argv)
    extra = [Path(b) for a, b in zip(argv, argv[1:]) if a in ("--config-dir", "-cd")]
    extra += [Path(a.split("=", 1)[1]) for a in argv if a.startswith("--config-dir=")]
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    for a in overrides:
        key, _, value = a.lstrip("+~").partition("=")
        if not (CONF_DIR / key).is_dir() or key.startswith("hydra") or value in ("null", "", "[]"):
            continue
        known = list(group_options(key, *extra))
        for name in (v.strip() for v in value.strip("[]").split(",")):
            if name and name not in known:
                near = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                return f"{key}={value}: no option {name!r}{hint}; {key} options: {', '.join(known)}"
    if multirun or extra or any(a.startswith("hydra.searchpath") for a in argv):
        return None  # sweeps: check_sweep composes every job; configs from elsewhere: Hydra does
    if not compose or all((CONF_DIR / a.split("=", 1)[0]).is_dir() and not a.startswith(("+", "~"))
                          for a in overrides):
        return None  # only group options (or none), checked above: no need to compose twice
    return compose_or_problem(overrides)[1]


def precheck(argv: list[str]) -> None:
    sweep = any(a in ("-m", "--multirun") for a in argv)
    problem = check_overrides(argv) or (check_sweep(argv) if sweep else None)
    if problem:
        from rich.markup import escape
        err_console.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        sys.exit(2)


def check_subcommand(argv: list[str]) -> None:
    """The first word, when it is neither an option nor an override, must be a subcommand."""
    import difflib

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        stray = next((a for a in argv[1:] if not a.startswith("-") and "=" not in a
                      and not _flag_value(argv, a)), None)
        if stray is not None:
            raise MlbenchError(f"{stray!r} is neither an option (key=value, group=option) nor a flag; "
                               "quote a value with spaces: 'key=\"a value\"'")
        return
    names = [n for n, _ in SUBCOMMANDS if n != "(none)"]
    if argv[0] not in names:
        near = difflib.get_close_matches(argv[0], names, n=1, cutoff=0.5)
        raise MlbenchError(f"no subcommand {argv[0]!r}" + (f" (did you mean {near[0]}?)" if near else "")
                           + f"; subcommands: {', '.join(names)}; options are key=value")


def _flag_value(argv: list[str], word: str) -> bool:
    """Whether ``word`` is the value of a flag that takes one (``--config-dir DIR``, ``-cd DIR``)."""
    i = argv.index(word)
    return i > 0 and argv[i - 1] in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
                                     "--cfg", "-c", "--package", "-p", "--info", "--experimental-rerun")

"""Entry points: ``mlbench`` (a run or a sweep) and ``mlbench-export``.

Thin on purpose: compose the config, run the stages, print the table, return
the objective. Exit status: 0 done; 2 a mistake the user can fix (one ``error:`` line:
a config value, an unknown option, a missing file, a full disk); 3 the run finished but
no variant met the requirements (with ``requirements.fail_if_none``); 130 interrupted.
"""

from __future__ import annotations

import errno
import functools
import gc
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlbench.errors import MlbenchError
from mlbench.progress import err_console
from mlbench.schema import CONF_DIR, register

log = logging.getLogger("mlbench")


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
    for name in ("torch.onnx", "onnxscript", "torch._dynamo", "torch.export", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # libraries that log INFO lines (onnxruntime's quantizer) stay off the console but are kept
    # in the run's log file: Hydra's console handler takes WARNING and up (conf/config.yaml), its
    # file handler everything. Outside a Hydra job (the Python API) the root logger stays as the
    # caller set it.


def fail(e: BaseException, run_dir: Path | None = None) -> None:
    """One ``error:`` line on stderr, exit status 2. A run folder this failed run made and
    filled with nothing but Hydra's record is removed, so no empty runs are left behind."""
    if isinstance(e, OSError):
        msg = f"cannot write {e.filename or 'a file'}: {e.strerror or e} (is the folder full or read-only?)"
    else:
        msg = str(e)
    from rich.markup import escape
    err_console.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
    if run_dir is not None and run_dir.is_dir() and not (run_dir / "summary.json").exists():
        left = {p.name for p in run_dir.iterdir()}
        if left <= {".hydra", "cli.log", "mlbench.log", "models", "predictions", "plots"}:
            shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(2)


WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def guarded(fn: Callable[[DictConfig, Path], dict], cfg: DictConfig) -> tuple[dict, Path]:
    """Run ``fn(cfg, run_dir)``; a mistake the user can fix ends in one ``error:`` line."""
    quiet_libraries()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return fn(cfg, run_dir), run_dir
    except MlbenchError as e:
        fail(e, run_dir)
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise
        fail(e, run_dir)
    raise AssertionError("unreachable")


def _run(cfg: DictConfig) -> float | None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench import pipeline
    from mlbench.analysis.decision import objective
    from mlbench.analysis.report import key_figures, print_decision, print_table
    from mlbench.progress import console, keep_console_log
    as_json = cfg.get("output") == "json"
    if as_json:  # stdout carries the JSON alone; progress and messages go to stderr
        console.file = sys.stderr
    try:
        summary, run_dir = guarded(pipeline.run, cfg)
        if as_json:
            print(json.dumps(key_figures(summary, run_dir), indent=1))
        else:
            table = cfg.get("table", "auto")
            print_table(summary, run_dir, full=None if table == "auto" else table == "full")
            print_decision(summary)
            console.print(f"run directory: [bold]{run_dir}[/]")
    finally:
        if as_json:
            console.file = sys.stdout
    keep_console_log(run_dir)
    if not summary["recommended"]["variant"] and cfg.requirements.fail_if_none:
        sys.exit(3)
    return objective(summary, cfg)


def _monitor(cfg: DictConfig) -> None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench import pipeline
    from mlbench.analysis.report import print_monitor
    from mlbench.progress import console
    summary, run_dir = guarded(pipeline.run_monitor_command, cfg)
    print_monitor(summary)
    console.print(f"run directory: [bold]{run_dir}[/]")


def _cycle(cfg: DictConfig) -> None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench.cycle.report import print_cycle
    from mlbench.cycle.stage import run_cycle_command
    from mlbench.progress import console
    try:
        summary, run_dir = guarded(run_cycle_command, cfg)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: the finished periods are saved; run the same command with "
                          "cycle.resume=true to continue")
        sys.exit(130)
    print_cycle(summary)
    console.print(f"run directory: [bold]{run_dir}[/]")


def _datacheck(cfg: DictConfig) -> None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench import pipeline
    from mlbench.datacheck.stage import print_findings
    from mlbench.progress import console
    summary, run_dir = guarded(pipeline.run_datacheck, cfg)
    section = summary.get("datacheck")
    if section is None:
        console.print("no data checks configured (datacheck=none)")
        return
    print_findings(section)
    console.print(f"run directory: [bold]{run_dir}[/]")
    gate = [r for r in cfg.requirements.checks if r.data is not None]
    if gate and cfg.requirements.fail_if_none:
        from mlbench.analysis.requirements import check_data
        failed = [c["requirement"] for c in (check_data(r, section) for r in gate) if not c["passed"]]
        if failed:
            console.print(f"[yellow]data requirements not met[/]: {'; '.join(failed)}")
            sys.exit(3)


def hydra_entry(fn: Callable[[DictConfig], Any]) -> None:
    """Compose the config (schemas registered first) and call ``fn`` with it."""
    register()
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(fn)()


def _check_results_folder(argv: list[str]) -> None:
    """Hydra makes the run folder before mlbench runs: say in one line when it cannot."""
    root = os.environ.get("MLBENCH_RESULTS") or "results"
    for a in argv:
        if a.startswith(("paths.results_dir=", "hydra.run.dir=")):
            root = a.split("=", 1)[1]
    p = Path(root).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not os.access(p, os.W_OK | os.X_OK):
        err_console.print(f"[bold red]error:[/] results folder {root}: {p} is not writable")
        sys.exit(2)


SUBCOMMANDS = [("(none)", "a run: baseline, variants, timing, stress, data checks, monitoring, report"),
               ("compare", "compare run and sweep folders (mlbench compare --help)"),
               ("datacheck", "the data checks alone"),
               ("monitor", "the baseline, the variants and the monitoring stage"),
               ("cycle", "the update cycle: a simulated deployment over a drifting stream")]
LIST_GROUPS = ("variants", "stress", "datacheck")  # groups that take a list of options


def short_help() -> str:
    """``mlbench --help``: read from conf/ without composing a config (fast: no torch, no
    Hydra composition). Hydra's own help stays at ``--hydra-help``."""
    import yaml  # only here: the rest of the CLI gets YAML through Hydra
    text = yaml.safe_load((CONF_DIR / "hydra" / "help" / "mlbench.yaml").read_text())
    lines = [text["header"].splitlines()[0].replace("${hydra.help.app_name}", "mlbench"), "",
             "usage: mlbench [SUBCOMMAND] [group=option ...] [key=value ...]", "", "subcommands:"]
    lines += [f"  {name:<11} {what}" for name, what in SUBCOMMANDS]
    lines += ["  (mlbench-export, a separate command, packages a variant for deployment)", "",
              "configuration groups (one option each; variants, stress and datacheck take a list 'g=[a,b]'):"]
    for group in sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra",)):
        opts = sorted(q.stem for q in (CONF_DIR / group).glob("*.yaml"))
        lines.append(f"  {group + ':':<14}{', '.join(opts)}")
    lines += ["", text["footer"].rstrip(), "",
              "flags: --json (the key figures as JSON on stdout) · --version · --cfg job (the composed config)"
              " · --hydra-help",
              "exit status: 0 done · 2 a mistake (one error: line) · 3 no variant met the requirements "
              "(requirements.fail_if_none=true) · 130 interrupted · docs: README.md"]
    return "\n".join(lines)


def _choices(group: str) -> list[str]:
    return sorted(q.stem for q in (CONF_DIR / group).glob("*.yaml"))


def compose_or_problem(overrides: list[str]) -> tuple[Any, str | None]:
    """The config composed with ``overrides`` and None, or None and the composition error as one
    line (Hydra's own message, first line, and OmegaConf's reason: the key, the expected type)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=overrides), None
    except Exception as e:  # noqa: BLE001 - any composition error becomes one line
        why = [str(e).split("\n")[0].rstrip(".")]
        if e.__cause__ is not None:
            why.append(str(e.__cause__).split("\n")[0])
        return None, ": ".join(w for w in why if w)
    finally:
        GlobalHydra.instance().clear()


def check_overrides(argv: list[str], compose: bool = True) -> str | None:
    """The first mistake in the command line's overrides, as one line (None if it composes).

    A group option that does not exist is named with the group's choices (and the closest
    one); any other composition error (an unknown key, a wrong type) is Hydra's own message,
    first line (``compose=False``: group options only, for a caller that composes next and
    reports its errors with ``compose_or_problem``). Sweeps (``-m``) are left to Hydra, which
    composes each job."""
    import difflib

    if any(a in ("-m", "--multirun") for a in argv):
        return None
    extra = [Path(b) for a, b in zip(argv, argv[1:]) if a in ("--config-dir", "-cd")]
    extra += [Path(a.split("=", 1)[1]) for a in argv if a.startswith("--config-dir=")]
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    for a in overrides:
        key, _, value = a.lstrip("+~").partition("=")
        if not (CONF_DIR / key).is_dir() or key.startswith("hydra") or value in ("null", "", "[]"):
            continue
        known = sorted({*_choices(key), *(q.stem for d in extra for q in (d / key).glob("*.yaml"))})
        for name in (v.strip() for v in value.strip("[]").split(",")):
            if name and name not in known:
                near = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                return f"{key}={value}: no option {name!r}{hint}; {key} options: {', '.join(known)}"
    if extra or any(a.startswith("hydra.searchpath") for a in argv):
        return None  # configs from elsewhere: Hydra composes (and reports) them itself
    if not compose or all((CONF_DIR / a.split("=", 1)[0]).is_dir() and not a.startswith(("+", "~"))
                          for a in overrides):
        return None  # only group options (or none), checked above: no need to compose twice
    return compose_or_problem(overrides)[1]


EXPORT_HELP = """mlbench-export: write a deployable ONNX model and its metadata (model.json beside it).

usage: mlbench-export [key=value ...]

  export.variant=NAME   build this variant's recipe on the cached baseline (default onnx_fp32;
                        a recipe that ends in ONNX: {variants})
  export.source=FILE    or check and package an existing .onnx file instead
  export.output=PATH    where to write (default model.onnx; PATH.json holds the metadata)
  export.force=true     write even when the parity check against the baseline fails

The run's other options apply (data=..., model=..., seed=..., calibrate=...): they decide which
cached baseline is used and which calibrator is fitted. The written model is scored in a fresh
onnxruntime session before it is kept. Exit status: 0 written, 2 a mistake (one error: line).

examples:
  mlbench-export export.variant=ort_int8_static export.output=dist/model.onnx
  mlbench-export data=wine export.variant=onnx_fp32 export.output=dist/wine.onnx
  mlbench-export export.source=some_model.onnx export.output=dist/model.onnx"""


def early_exit(argv: list[str], help_text: Callable[[], str]) -> bool:
    """``--version`` and ``--help``: answered before anything heavy is imported."""
    if argv == ["--version"]:
        from mlbench.version import __version__
        print(f"mlbench {__version__}")
        return True
    if argv and argv[-1] in ("--help", "-h"):
        print(help_text())
        return True
    return False


def precheck(argv: list[str]) -> None:
    problem = check_overrides(argv)
    if problem:
        from rich.markup import escape
        err_console.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        sys.exit(2)


def skip_final_collection(entry: Callable[[], None]) -> Callable[[], None]:
    """A command's entry point that, as it ends (whatever its exit status), hides every object
    from the garbage collector's last passes (``gc.freeze``). At exit the interpreter collects
    cycles while it tears down its modules, walking every object left (1-2 s after a run, spent
    only to free memory the operating system takes back anyway). atexit handlers still run and
    objects without reference cycles are still finalized; files are written and closed by then."""
    @functools.wraps(entry)
    def command() -> None:
        try:
            entry()
        finally:
            gc.freeze()
    return command


@skip_final_collection
def main() -> None:
    """``mlbench``: a run, a sweep or a subcommand (see the module docstring for exit statuses)."""
    if "--json" in sys.argv[1:]:  # the key figures as JSON on stdout, for scripts
        sys.argv = [a for a in sys.argv if a != "--json"] + ["output=json"]
    if len(sys.argv) > 1 and sys.argv[1:] == ["--version"]:
        early_exit(sys.argv[1:], short_help)
        return
    if len(sys.argv) > 1 and sys.argv[-1] in ("--help", "-h") and (len(sys.argv) == 2 or sys.argv[1] in
                                                                   ("cycle", "monitor", "datacheck")):
        print(short_help())
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if not any(a in ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help") or a.startswith("--cfg")
               for a in sys.argv[1:]) and not (len(sys.argv) > 1 and sys.argv[1] == "compare"):
        _check_results_folder(sys.argv[1:])
    if not (len(sys.argv) > 1 and sys.argv[1] == "compare"):
        precheck([a for a in sys.argv[1:] if a not in ("monitor", "cycle", "datacheck")])
    if len(sys.argv) > 1 and sys.argv[1] == "monitor":
        del sys.argv[1]
        hydra_entry(_monitor)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "cycle":
        del sys.argv[1]
        hydra_entry(_cycle)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "datacheck":
        del sys.argv[1]
        hydra_entry(_datacheck)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from mlbench.analysis.compare import (
            main as compare_main,  # only for this subcommand
        )
        sys.exit(compare_main(sys.argv[2:]))
    hydra_entry(_run)


if __name__ == "__main__":
    main()

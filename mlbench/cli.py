"""Entry points: ``mlbench`` (a run or a sweep) and ``mlbench-export``.

Thin on purpose: compose the config, run the stages, print the table, return
the objective. Errors the user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import errno
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
    # libraries that log INFO lines on the root logger (onnxruntime's quantizer) stay quiet;
    # warnings, mlbench's own included (a corrupt cache entry, history not recorded), still show
    logging.getLogger().setLevel(logging.WARNING)


def fail(e: BaseException, run_dir: Path | None = None) -> None:
    """One ``error:`` line on stderr, exit status 2. A run folder this failed run made and
    filled with nothing but Hydra's record is removed, so no empty runs are left behind."""
    if isinstance(e, OSError):
        msg = f"cannot write {e.filename or 'a file'}: {e.strerror or e} (is the folder full or read-only?)"
    else:
        msg = str(e)
    err_console.print(f"[bold red]error:[/] {msg}")
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
    from mlbench.analysis.report import print_table
    from mlbench.progress import console
    summary, run_dir = guarded(pipeline.run, cfg)
    print_table(summary, run_dir)
    rec = summary["recommended"]
    if rec["variant"]:
        console.print(f"recommended: [bold]{rec['variant']}[/] ({rec['reason']})")
    else:
        console.print(f"[yellow]no variant recommended[/]: {rec['reason']}", soft_wrap=True)
        if cfg.requirements.fail_if_none:
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
              "the composed config: mlbench --cfg job · Hydra's help: mlbench --hydra-help · docs: README.md"]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[-1] in ("--help", "-h") and (len(sys.argv) == 2 or sys.argv[1] in
                                                                   ("cycle", "monitor", "datacheck")):
        print(short_help())
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if not any(a in ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help") or a.startswith("--cfg")
               for a in sys.argv[1:]) and not (len(sys.argv) > 1 and sys.argv[1] == "compare"):
        _check_results_folder(sys.argv[1:])
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

"""Entry points: ``mlbench`` (a run or a sweep) and ``mlbench-export``.

Thin on purpose: compose the config, run the stages, print the table, return
the objective. Exit status: 0 done; 2 a mistake the user can fix (one ``error:`` line:
a config value, an unknown option, a missing file, a full disk); 3 the run finished but
no variant met the requirements (with ``requirements.fail_if_none``); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from mlbench.errors import MlbenchError
from mlbench.preflight import (
    SUBCOMMANDS,
    check_path_variables,
    check_results_folder,
    check_subcommand,
    precheck,
)
from mlbench.process import polite_threads, skip_final_collection, tolerant_streams
from mlbench.runfolder import fail, guarded, interruptible
from mlbench.schema import CONF_DIR, group_options, register

log = logging.getLogger("mlbench")


def _run(cfg: DictConfig) -> float | None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench import pipeline
    from mlbench.analysis.console import key_figures, print_decision, print_table
    from mlbench.analysis.decision import objective
    from mlbench.progress import console, keep_console_log
    as_json = cfg.get("output") == "json"
    if as_json:  # stdout carries the JSON alone; progress and messages go to stderr
        console.file = sys.stderr
    try:
        summary, run_dir = guarded(pipeline.run, cfg, on_interrupt="the unfinished run folder is removed and the "
                                   "finished stages are saved; the same command with resume=true continues")
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
    from mlbench.monitor.report import print_monitor
    from mlbench.progress import console
    summary, run_dir = guarded(pipeline.run_monitor_command, cfg)
    print_monitor(summary)
    console.print(f"run directory: [bold]{run_dir}[/]")


def _cycle(cfg: DictConfig) -> None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench.cycle.report import print_cycle
    from mlbench.cycle.stage import run_cycle_command
    from mlbench.progress import console
    summary, run_dir = guarded(run_cycle_command, cfg, on_interrupt="the finished periods are saved; run the "
                                                                     "same command with cycle.resume=true to continue")
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


def _select(cfg: DictConfig) -> None:
    # imported here, not at the top: `mlbench --help` and config errors need none of torch
    from mlbench.progress import console
    from mlbench.select import print_select, run_select_command
    summary, run_dir = guarded(run_select_command, cfg)
    print_select(summary)
    console.print(f"run directory: [bold]{run_dir}[/]")
    if summary["select"]["recommended"] is None and cfg.requirements.fail_if_none:
        sys.exit(3)


# the subcommands Hydra composes a config for, and those with their own parser (module with
# main(argv) -> exit status); their words for --help are preflight.SUBCOMMANDS
HYDRA_COMMANDS: dict[str, Callable[[DictConfig], Any]] = {"monitor": _monitor, "cycle": _cycle, "datacheck": _datacheck,
                                                          "select": _select}
PLAIN_COMMANDS = {"compare": "mlbench.analysis.compare", "examples": "mlbench.examples"}


def hydra_entry(fn: Callable[[DictConfig], Any]) -> None:
    """Compose the config (schemas registered first) and call ``fn`` with it."""
    register()
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(fn)()


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
        opts = list(group_options(group))
        lines.append(f"  {group + ':':<14}{', '.join(opts)}")
    lines += ["", text["footer"].rstrip(), "",
              "flags: --json (the key figures as JSON on stdout) · --version · --cfg job (the composed config)"
              " · --hydra-help",
              "exit status: 0 done · 2 a mistake (one error: line) · 3 no variant met the requirements "
              "(requirements.fail_if_none=true) · 130 interrupted · docs: README.md"]
    return "\n".join(lines)


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


@skip_final_collection
@interruptible
def main() -> None:
    """``mlbench``: a run, a sweep or a subcommand (see the module docstring for exit statuses)."""
    polite_threads()
    tolerant_streams()
    if "--json" in sys.argv[1:]:  # the key figures as JSON on stdout, for scripts
        sys.argv = [a for a in sys.argv if a != "--json"] + ["output=json"]
    if len(sys.argv) > 1 and sys.argv[1:] == ["--version"]:
        early_exit(sys.argv[1:], short_help)
        return
    if len(sys.argv) > 1 and sys.argv[-1] in ("--help", "-h") and (len(sys.argv) == 2 or sys.argv[1] in
                                                                   HYDRA_COMMANDS):
        print(short_help())
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if len(sys.argv) > 1 and sys.argv[1] in PLAIN_COMMANDS:  # their own parsers, no config
        import importlib
        sys.exit(importlib.import_module(PLAIN_COMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    try:
        check_subcommand(sys.argv[1:])
        check_path_variables()
        if not any(a in ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help") or a.startswith("--cfg")
                   for a in sys.argv[1:]):
            check_results_folder(sys.argv[1:])
    except MlbenchError as e:
        fail(e)
    precheck([a for a in sys.argv[1:] if a not in HYDRA_COMMANDS])
    if len(sys.argv) > 1 and sys.argv[1] in HYDRA_COMMANDS:
        hydra_entry(HYDRA_COMMANDS[sys.argv.pop(1)])
        return
    hydra_entry(_run)


if __name__ == "__main__":
    main()

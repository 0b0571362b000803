"""Entry points: ``mlbench`` (a run or a sweep) and ``mlbench-export``.

Thin on purpose: compose the config, run the stages, print the table, return
the objective. Exit status: 0 done; 2 a mistake the user can fix (one ``error:`` line:
a config value, an unknown option, a missing file, a full disk); 3 the run finished but
no variant met the requirements (with ``requirements.fail_if_none``); 130 interrupted.
"""

from __future__ import annotations

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

from mlbench.errors import MlbenchError, environment_error
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


def hydra_entry(fn: Callable[[DictConfig], Any]) -> None:
    """Compose the config (schemas registered first) and call ``fn`` with it."""
    register()
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(fn)()


PATH_VARIABLES = ("MLBENCH_RESULTS", "MLBENCH_CACHE", "MLBENCH_DATA")


def check_path_variables() -> None:
    """A path variable that is set but empty would put results at the filesystem's root
    (``/runs``, ``/history.sqlite``): one ``error:`` line instead."""
    for name in PATH_VARIABLES:
        if name in os.environ and not os.environ[name].strip():
            raise MlbenchError(f"{name} is set but empty; unset it (the default is used) or name a folder")


def _check_results_folder(argv: list[str]) -> None:
    """Hydra makes the run folder before mlbench runs: say in one line when it cannot, or when
    a run folder named on the command line already holds something (a finished run, another
    run's files), which Hydra would overwrite."""
    root = os.environ.get("MLBENCH_RESULTS") or "results"
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


SUBCOMMANDS = [("(none)", "a run: baseline, variants, timing, stress, data checks, monitoring, report"),
               ("compare", "compare run and sweep folders (mlbench compare --help)"),
               ("datacheck", "the data checks alone"),
               ("monitor", "the baseline, the variants and the monitoring stage"),
               ("cycle", "the update cycle: a simulated deployment over a drifting stream")]


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

    # the pipeline imports torch: heavy, but a sweep needs it anyway
    from mlbench.pipeline import components
    from mlbench.schema import check_values

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
        known = sorted({*_choices(key), *(q.stem for d in extra for q in (d / key).glob("*.yaml"))})
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
    sweep = any(a in ("-m", "--multirun") for a in argv)
    problem = check_overrides(argv) or (check_sweep(argv) if sweep else None)
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


# OpenMP threads that finish their share of an operation spin for GOMP_SPINCOUNT iterations
# before they sleep (libgomp's default: 300,000). On a machine whose cores other processes also
# use, the spinning threads of one process take the cores the others' threads wait for: two
# `mlbench cycle` runs side by side on 2 cores took more than 10x as long as one after the other.
# 10,000 iterations (microseconds) keeps a lone run's speed (within 2 % on the default run) and
# ends that collapse; the thread count, and so the trained weights, are unchanged. Set before
# torch is imported; a value the user set wins (OMP_WAIT_POLICY included).
SPIN_COUNT = "10000"


def polite_threads() -> None:
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


def tolerant_streams() -> None:
    """Output to a terminal or pipe that cannot encode a character (``PYTHONIOENCODING=ascii``,
    a C locale) prints a replacement instead of failing the run on ``·`` or ``✓``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):  # not a text stream we can change
            pass


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
                                                                   ("cycle", "monitor", "datacheck")):
        print(short_help())
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from mlbench.analysis.compare import (
            main as compare_main,  # only for this subcommand
        )
        sys.exit(compare_main(sys.argv[2:]))
    try:
        check_subcommand(sys.argv[1:])
        check_path_variables()
        if not any(a in ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help") or a.startswith("--cfg")
                   for a in sys.argv[1:]):
            _check_results_folder(sys.argv[1:])
    except MlbenchError as e:
        fail(e)
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
    hydra_entry(_run)


if __name__ == "__main__":
    main()

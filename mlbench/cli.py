"""Entry points: ``mlbench`` (a run or a sweep) and ``mlbench-export``.

Thin on purpose: compose the config, run the stages, print the table, return
the objective. Errors the user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlbench.errors import MlbenchError
from mlbench.schema import CONF_DIR, register

log = logging.getLogger("mlbench")


def _quiet_libraries() -> None:
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
    for name in ("torch.onnx", "onnxscript", "torch._dynamo", "torch.export", "torchao", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _fail(e: MlbenchError) -> None:
    from mlbench.progress import err_console
    err_console.print(f"[bold red]error:[/] {e}")
    sys.exit(2)


def _run(cfg: DictConfig) -> float | None:
    from mlbench import pipeline
    from mlbench.analysis.report import print_table
    _quiet_libraries()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = pipeline.run(cfg, run_dir)
    except MlbenchError as e:
        _fail(e)
    print_table(summary, run_dir)
    rec = summary["recommended"]
    from mlbench.progress import console
    if rec["variant"]:
        console.print(f"recommended: [bold]{rec['variant']}[/] ({rec['reason']})")
    else:
        console.print(f"[yellow]no variant recommended[/]: {rec['reason']}", soft_wrap=True)
        if cfg.requirements.fail_if_none:
            sys.exit(3)
    return pipeline.objective(summary, cfg)


def _export(cfg: DictConfig) -> None:
    from mlbench.export import export
    from mlbench.progress import console
    _quiet_libraries()
    try:
        out = export(cfg, Path(HydraConfig.get().runtime.output_dir))
    except MlbenchError as e:
        _fail(e)
    console.print(f"wrote [bold]{out['output']}[/] and {out['metadata']} "
                  f"(test accuracy {out['test_accuracy']:.4f} in a fresh onnxruntime session)")


def hydra_entry(task: str = "run") -> None:
    register()
    fn = {"run": _run, "export": _export}[task]
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(fn)()


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from mlbench.analysis.compare import main as compare_main
        sys.exit(compare_main(sys.argv[2:]))
    hydra_entry("run")


if __name__ == "__main__":
    main()

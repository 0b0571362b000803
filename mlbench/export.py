"""``mlbench-export``: write a deployable ONNX model and its metadata JSON.

Either builds a variant's recipe on the (cached) baseline, or checks and packages
an existing ONNX file (``export.source=...``). The written model is loaded in a
fresh onnxruntime session and scored on the test split; a model whose parity
check fails is refused unless ``export.force=true``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mlbench.cli import EXPORT_HELP, early_exit, hydra_entry
from mlbench.errors import MlbenchError, environment_error
from mlbench.preflight import precheck
from mlbench.process import (
    polite_threads,
    quiet_libraries,
    skip_final_collection,
    tolerant_streams,
)
from mlbench.progress import console
from mlbench.runfolder import fail, interrupted, interruptible
from mlbench.schema import CONF_DIR, group_options
from mlbench.values import check_values


def export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build or read the ONNX model, check it, score it, and copy it with metadata to the output."""
    # imported here, not at the top: `mlbench-export --help` needs none of torch or onnx
    import onnx

    from mlbench import pipeline
    from mlbench.backends import runner_for
    from mlbench.compress import Artifact, OnnxExport, check_onnx, onnx_files
    from mlbench.deploy import check_io, onnx_metadata
    from mlbench.evaluate.loop import evaluate
    from mlbench.results import write_json
    from mlbench.train.cache import file_sha256, umask

    check_values(cfg)
    e = cfg.export
    out = Path(e.output)
    if out.suffix != ".onnx":
        raise MlbenchError(f"export.output must end in .onnx, got {out}")
    if out.is_dir():
        raise MlbenchError(f"export.output {out} is a folder; name the .onnx file to write")
    blocking = next((p for p in [out.parent, *out.parent.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise MlbenchError(f"export.output {out}: {blocking} is a file, not a folder")
    ctx = pipeline.RunContext(cfg=cfg, run_dir=run_dir)
    if e.source is None and e.variant not in (cfg.variants or {}):
        node = _variant_node(e.variant)
        with open_dict(cfg):  # the config is in struct mode; this variant is added on purpose
            cfg.variants[e.variant] = node
    pipeline.setup(ctx)
    pipeline.load_data(ctx)
    pipeline.baseline(ctx)
    if e.source is not None:
        src = Path(e.source)
        if not src.is_file():
            raise MlbenchError(f"export.source: no file at {src}")
        check_onnx(src)
        check_io(src, ctx.data.meta)
        art = Artifact(id=file_sha256(src)[:12], format="onnx", path=src,
                       files=onnx_files(src), recipe=["external"])
    else:
        spec = next(s for s in ctx.specs if s.name == e.variant)
        if e.force:
            for p in spec.passes:
                if isinstance(p, OnnxExport):
                    p.parity_atol, p.parity_min_agreement = float("inf"), 0.0
        art, _ = pipeline.build(ctx, spec)
        if not art.kind.exportable:
            raise MlbenchError(f"variant {e.variant} ends in a {art.format} model; export needs an ONNX recipe")
    # calibrate on this model's own calib outputs
    runner = runner_for(art, cfg.backend, ctx.device)
    calibrator = None
    if ctx.calibrator_factory is not None:
        logits = evaluate(runner, ctx.data.x["calib"], ctx.data.y["calib"]).logits
        calibrator = ctx.calibrator_factory().fit(logits, ctx.data.y["calib"]).state()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.stem}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        model = onnx.load(str(art.path))  # pulls external data in
        onnx.save_model(model, str(tmp / out.name), save_as_external_data=len(art.files) > 1,
                        location=out.name + ".data")
        written = Artifact(id=art.id, format="onnx", path=tmp / out.name, files=onnx_files(tmp / out.name),
                           recipe=art.recipe, records=art.records, facts=art.facts)
        fresh = runner_for(written, cfg.backend, ctx.device)  # a fresh session on what we wrote
        ev = evaluate(fresh, ctx.data.x["test"], ctx.data.y["test"])
        meta = onnx_metadata(written, ctx.data.meta, ctx.baseline.id, calibrator, cfg)
        meta["test_accuracy"] = ev.metrics["accuracy"]
        meta["forced"] = bool(e.force)
        write_json(tmp / (out.stem + ".json"), meta)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask())  # readable as the umask allows, like any file written
            f.replace(out.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"output": str(out), "metadata": str(out.with_suffix(".json")), "test_accuracy": meta["test_accuracy"]}


def _variant_node(name: str) -> Any:
    path = CONF_DIR / "variants" / f"{name}.yaml"
    if not path.is_file():
        raise MlbenchError(f"export.variant={name}: no such variant in conf/variants")
    return OmegaConf.load(path)[name]


def _export_task(cfg: DictConfig) -> None:
    quiet_libraries()
    try:
        with tempfile.TemporaryDirectory(prefix="mlbench-export-") as work:  # the recipe's files
            out = export(cfg, Path(work))
    except MlbenchError as e:
        fail(e)
    except KeyboardInterrupt:
        interrupted(None, "nothing was written to export.output")
    except Exception as e:
        env = environment_error(e)
        if env is None:
            raise
        fail(env)
    console.print(f"wrote [bold]{out['output']}[/] and {out['metadata']} "
                  f"(test accuracy {out['test_accuracy']:.4f} in a fresh onnxruntime session)")


@skip_final_collection
@interruptible
def main() -> None:
    """``mlbench-export``: ``--help`` and ``--version`` answer at once; a config mistake is one line."""
    polite_threads()
    tolerant_streams()
    argv = sys.argv[1:]
    if early_exit(argv, lambda: EXPORT_HELP.format(variants=", ".join(
            group_options("variants")))):
        return
    precheck(argv)
    positional = [a for a in argv if not a.startswith("-") and "=" not in a]
    if positional:
        fail(MlbenchError(f"mlbench-export takes key=value options, not {positional[0]!r} "
                          "(e.g. export.variant=onnx_fp32 export.output=model.onnx)"))
    # export writes only export.output: Hydra's job folder (its record and log) goes to a
    # temporary folder that is removed afterwards, so no run folder is left under results/
    hydra_dir = None
    if not any(a.startswith(("hydra.run.dir=", "hydra.output_subdir=")) for a in argv):
        hydra_dir = tempfile.mkdtemp(prefix="mlbench-export-hydra-")
        sys.argv += [f"hydra.run.dir={hydra_dir}", "hydra.output_subdir=null"]
    try:
        hydra_entry(_export_task)
    finally:
        if hydra_dir is not None:
            shutil.rmtree(hydra_dir, ignore_errors=True)


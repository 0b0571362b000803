"""``mlbench-export``: write a deployable ONNX model and its metadata JSON.

Either builds a variant's recipe on the (cached) baseline, or checks and packages
an existing ONNX file (``export.source=...``). The written model is loaded in a
fresh onnxruntime session and scored on the test split; a model whose parity
check fails is refused unless ``export.force=true``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnx
from omegaconf import DictConfig, OmegaConf, open_dict

from mlbench import __version__
from mlbench.compress import Artifact, OnnxExport, check_onnx, onnx_files
from mlbench.data import DataMeta
from mlbench.errors import MlbenchError
from mlbench.train.cache import content_hash, file_sha256


def onnx_metadata(art: Artifact, meta: DataMeta, source_id: str, calibrator: dict | None,
                  cfg: DictConfig) -> dict[str, Any]:
    """Input name/shape/dtype, normalization, class names, calibration, lineage and parity."""
    model = onnx.load(str(art.path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    parity = {k: v for rec in art.records for k, v in rec["info"].items() if k.startswith(("parity_", "vs_parent"))}
    return {
        "format": "onnx", "file": art.path.name, "files": [p.name for p in art.files],
        "input": {"name": inp.name, "shape": dims,
                  "dtype": onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name,
                  "range": meta.input_range, "normalization": meta.normalization},
        "output": {"name": model.graph.output[0].name, "meaning": "logits (apply softmax, or the calibrator)"},
        "class_names": meta.class_names,
        "calibration": calibrator,
        "source": {"baseline_id": source_id, "artifact_id": art.id, "recipe": art.recipe,
                   "config_hash": content_hash(OmegaConf.to_container(cfg, resolve=True)),
                   "passes": art.records, "mlbench_version": __version__},
        "parity": parity,
    }


def check_io(path: Path, meta: DataMeta) -> None:
    """The ONNX model takes this dataset's inputs and gives one logit per class (where its
    graph states the sizes), or one :class:`MlbenchError` saying what differs."""
    model = onnx.load(str(path), load_external_data=False)
    if len(model.graph.input) != 1 or len(model.graph.output) < 1:
        raise MlbenchError(f"export.source {path}: needs one input and an output, has "
                           f"{len(model.graph.input)} input(s), {len(model.graph.output)} output(s)")
    dims = [d.dim_value or None for d in model.graph.input[0].type.tensor_type.shape.dim]
    want = [None, *meta.input_shape]
    if len(dims) != len(want) or any(a is not None and b is not None and a != b for a, b in zip(dims[1:], want[1:])):
        raise MlbenchError(f"export.source {path}: input shape {dims} does not fit the data's "
                           f"(N, {', '.join(map(str, meta.input_shape))})")
    out = [d.dim_value or None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(out) != 2 or (out[1] is not None and out[1] != meta.num_classes):
        raise MlbenchError(f"export.source {path}: output shape {out}; the data has {meta.num_classes} classes "
                           "(expected [N, classes])")


def export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build or read the ONNX model, check it, score it, and copy it with metadata to the output."""
    from mlbench import pipeline
    from mlbench.backends import OrtRunner
    from mlbench.evaluate import evaluate
    from mlbench.results import write_json

    from mlbench.schema import check_values
    check_values(cfg)
    e = cfg.export
    out = Path(e.output)
    if out.suffix != ".onnx":
        raise MlbenchError(f"export.output must end in .onnx, got {out}")
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
        art = pipeline.build(ctx, spec)
        if art.format != "onnx":
            raise MlbenchError(f"variant {e.variant} ends in a {art.format} model; export needs an ONNX recipe")
    # calibrate on this model's own calib outputs
    runner = OrtRunner(art.path, threads=cfg.backend.threads)
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
        fresh = OrtRunner(tmp / out.name, threads=cfg.backend.threads)  # a fresh session on what we wrote
        ev = evaluate(fresh, ctx.data.x["test"], ctx.data.y["test"])
        meta = onnx_metadata(Artifact(id=art.id, format="onnx", path=tmp / out.name,
                                      files=onnx_files(tmp / out.name), recipe=art.recipe, records=art.records),
                             ctx.data.meta, ctx.baseline.id, calibrator, cfg)
        meta["test_accuracy"] = ev.metrics["accuracy"]
        meta["forced"] = bool(e.force)
        write_json(tmp / (out.stem + ".json"), meta)
        for f in tmp.iterdir():
            f.replace(out.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"output": str(out), "metadata": str(out.with_suffix(".json")), "test_accuracy": meta["test_accuracy"]}


def _variant_node(name: str) -> Any:
    from mlbench.schema import CONF_DIR
    path = CONF_DIR / "variants" / f"{name}.yaml"
    if not path.is_file():
        raise MlbenchError(f"export.variant={name}: no such variant in conf/variants")
    return OmegaConf.load(path)[name]


def main() -> None:
    from mlbench.cli import hydra_entry
    hydra_entry(task="export")


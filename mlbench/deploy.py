"""What a deployer needs beside an ONNX file: its metadata (inputs, normalization, classes,
calibration, lineage, parity) and a check that a file fits a dataset's inputs and classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from omegaconf import DictConfig, OmegaConf

from mlbench.components import settings_from
from mlbench.compress import Artifact
from mlbench.data import DataMeta
from mlbench.data.base import NO_NORMALIZATION
from mlbench.errors import MlbenchError
from mlbench.train.cache import content_hash
from mlbench.version import __version__


def onnx_metadata(art: Artifact, meta: DataMeta, source_id: str, calibrator: dict | None,
                  cfg: DictConfig) -> dict[str, Any]:
    """Input name/shape/dtype/layout, feature names (tabular, in input order), normalization as
    numbers with its formula, class names, the calibrator's parameters and formula, the serving
    mode it was evaluated in, lineage and parity."""
    model = onnx.load(str(art.path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    d = cfg.get("deployment") or {}
    return {
        "format": "onnx", "file": art.path.name, "files": [p.name for p in art.files],
        "input": {"name": inp.name, "shape": dims,
                  "dtype": onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name,
                  "layout": "NCHW" if meta.modality == "image" else "N x features",
                  "feature_names": meta.feature_names,
                  "range": meta.input_range, "normalization": meta.normalization or dict(NO_NORMALIZATION),
                  **({"preprocessing": meta.preprocessing} if meta.preprocessing else {})},
        "output": {"name": model.graph.output[0].name,
                   "meaning": "logits; probs = softmax(logits), or the calibration formula below"},
        "serving": {"mode": d.get("serving", "batch"), "batch_size": settings_from(cfg).quality_batch,
                    "meaning": "the mode its quality figures (and the calibrator's fit) were measured in: "
                               "online = one item per call, batch = batches of batch_size"},
        "class_names": meta.class_names,
        "calibration": calibrator,
        "source": {"baseline_id": source_id, "artifact_id": art.id, "recipe": art.recipe,
                   "config_hash": content_hash(OmegaConf.to_container(cfg, resolve=True)),
                   "passes": art.records, "mlbench_version": __version__},
        "parity": art.facts.parity.as_dict() if art.facts.parity is not None else None,
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

"""onnxruntime's graph optimization and quantization, as passes on ONNX artifacts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from mlbench.backends import OrtRunner
from mlbench.compress.base import Artifact, Facts, Pass, PassContext
from mlbench.compress.onnx_export import error_line, onnx_files, parity
from mlbench.errors import MlbenchError

log = logging.getLogger(__name__)
_LEVELS = ("basic", "extended", "all")


@dataclass
class OrtOptimize(Pass):
    """onnxruntime graph optimization (``basic`` / ``extended`` / ``all``), saved as a model.
    ``all`` includes layout transforms specific to the machine that ran it."""

    name = "ort_optimize"
    produces = "onnx"
    accepts = ("onnx",)
    level: str = "extended"

    def __post_init__(self):
        if self.level not in _LEVELS:
            raise MlbenchError(f"ort_optimize.level must be one of {_LEVELS}, got {self.level!r}")

    def apply(self, art: Artifact, ctx: PassContext):
        import onnxruntime as ort  # heavy: on use
        out = ctx.workdir / f"{ctx.step:02d}_{self.name}.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[self.level]
        opts.optimized_model_filepath = str(out)
        ort.InferenceSession(str(art.path), opts, providers=["CPUExecutionProvider"])
        par = parity(OrtRunner(art.path, threads=1), OrtRunner(out, threads=1),
                     ctx.data.x["test"][:256].float())
        new = Artifact(id="", format="onnx", path=out, files=onnx_files(out), facts=Facts(parity=par))
        return new, {"level": self.level}


def _quant_enums():
    from onnxruntime.quantization import (  # heavy: on use
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    return CalibrationMethod, QuantFormat, QuantType


def _enum(enum_cls, value: str, what: str):
    try:
        return getattr(enum_cls, value)
    except AttributeError:
        names = [n for n in dir(enum_cls) if not n.startswith("_")]
        raise MlbenchError(f"{what} must be one of {names}, got {value!r}") from None


def _preprocess(src: Path, dst: Path) -> Path:
    """onnxruntime's recommended pre-processing: symbolic shape inference, ONNX shape
    inference and graph optimization before quantization."""
    from onnxruntime.quantization.shape_inference import (
        quant_pre_process,  # heavy: on use
    )
    # when symbolic inference is incomplete, onnxruntime saves the half-inferred graph as
    # sym_shape_infer_temp.onnx in the working directory before it raises: not a file of ours
    # to leave in the user's folder
    debris = [Path("sym_shape_infer_temp.onnx"), Path("sym_shape_infer_temp.onnx.data")]
    existed = {p for p in debris if p.exists()}
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as e:  # symbolic shape inference can fail on some graphs
        log.warning("quant_pre_process with symbolic shape inference failed (%s); retrying without",
                    error_line(e))
        for p in debris:
            if p not in existed:
                p.unlink(missing_ok=True)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


@dataclass
class OrtQuantizeDynamic(Pass):
    """onnxruntime dynamic quantization: int8 weights, activations quantized on the fly.

    - ``weight_type``: ``QInt8`` or ``QUInt8``.
    - ``per_channel``: per-output-channel weight scales.
    - ``reduce_range``: 7-bit weights (for older CPUs without VNNI).
    - ``preprocess``: run onnxruntime's ``quant_pre_process`` first.
    """

    name = "ort_quantize_dynamic"
    produces = "onnx"
    accepts = ("onnx",)
    weight_type: str = "QInt8"
    per_channel: bool = False
    reduce_range: bool = False
    preprocess: bool = True

    def __post_init__(self):
        _enum(_quant_enums()[2], self.weight_type, "ort_quantize_dynamic.weight_type")

    def apply(self, art: Artifact, ctx: PassContext):
        from onnxruntime.quantization import quantize_dynamic  # heavy: on use
        out = ctx.workdir / f"{ctx.step:02d}_{self.name}.onnx"
        args = {"weight_type": self.weight_type, "per_channel": self.per_channel,
                "reduce_range": self.reduce_range, "preprocessed": self.preprocess}

        def quantize(src: Path) -> None:
            quantize_dynamic(str(src), str(out), per_channel=self.per_channel, reduce_range=self.reduce_range,
                             weight_type=_enum(_quant_enums()[2], self.weight_type, "weight_type"))

        if self.preprocess:
            try:
                quantize(_preprocess(art.path, ctx.workdir / f"{ctx.step:02d}_preprocessed.onnx"))
            except Exception as e:  # stale shapes from pre-processing trip some exporter/ORT pairs
                log.warning("dynamic quantization of the pre-processed model failed (%s); "
                            "quantizing the exported model as is", error_line(e))
                args["preprocessed"] = f"no: {error_line(e)}"
                quantize(art.path)
        else:
            quantize(art.path)
        par = parity(OrtRunner(art.path, threads=1), OrtRunner(out, threads=1),
                     ctx.data.x["test"][:256].float())
        return Artifact(id="", format="onnx", path=out, files=onnx_files(out), facts=Facts(parity=par)), \
            {"quantizer": "onnxruntime.quantization.quantize_dynamic", "quantizer_args": args}


class _CalibReader:
    """onnxruntime CalibrationDataReader over the calib split, in batches."""

    def __init__(self, input_name: str, x: torch.Tensor, batch: int):
        self.items = [{input_name: x[i:i + batch].numpy().astype(np.float32)}
                      for i in range(0, len(x), batch)]
        self.pos = 0

    def get_next(self) -> dict[str, Any] | None:
        if self.pos >= len(self.items):
            return None
        self.pos += 1
        return self.items[self.pos - 1]

    def rewind(self) -> None:
        self.pos = 0


@dataclass
class OrtQuantizeStatic(Pass):
    """onnxruntime static quantization, calibrated on the calib split only.

    - ``quant_format``: ``QDQ`` (QuantizeLinear/DequantizeLinear pairs) or ``QOperator``.
    - ``per_channel``: per-output-channel weight scales.
    - ``calibrate_method``: ``MinMax``, ``Entropy`` or ``Percentile``.
    - ``num_samples``: calibration examples drawn from the calib split (at most its size).
    - ``activation_type`` / ``weight_type``: ``QUInt8``, ``QInt8`` (or 16-bit types).
    - ``reduce_range``: 7-bit weights; ``preprocess``: run ``quant_pre_process`` first.
    """

    name = "ort_quantize_static"
    produces = "onnx"
    accepts = ("onnx",)
    quant_format: str = "QDQ"
    per_channel: bool = True
    calibrate_method: str = "MinMax"
    num_samples: int = 256
    calib_batch: int = 64
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False
    preprocess: bool = True

    def __post_init__(self):
        cm, qf, qt = _quant_enums()
        _enum(qf, self.quant_format, "ort_quantize_static.quant_format")
        _enum(cm, self.calibrate_method, "ort_quantize_static.calibrate_method")
        _enum(qt, self.activation_type, "ort_quantize_static.activation_type")
        _enum(qt, self.weight_type, "ort_quantize_static.weight_type")
        if self.num_samples < 1:
            raise MlbenchError("ort_quantize_static.num_samples must be >= 1")

    def apply(self, art: Artifact, ctx: PassContext):
        from onnxruntime.quantization import quantize_static  # heavy: on use
        cm, qf, qt = _quant_enums()
        src = art.path
        if self.preprocess:
            src = _preprocess(src, ctx.workdir / f"{ctx.step:02d}_preprocessed.onnx")
        out = ctx.workdir / f"{ctx.step:02d}_{self.name}.onnx"
        calib = ctx.data.x["calib"][: self.num_samples].float()
        name = onnx.load(str(src), load_external_data=False).graph.input[0].name
        quantize_static(
            str(src), str(out), _CalibReader(name, calib, self.calib_batch),
            quant_format=getattr(qf, self.quant_format), per_channel=self.per_channel,
            reduce_range=self.reduce_range, activation_type=getattr(qt, self.activation_type),
            weight_type=getattr(qt, self.weight_type),
            calibrate_method=getattr(cm, self.calibrate_method))
        par = parity(OrtRunner(art.path, threads=1), OrtRunner(out, threads=1),
                     ctx.data.x["test"][:256].float())
        return Artifact(id="", format="onnx", path=out, files=onnx_files(out), facts=Facts(parity=par)), \
            {"quantizer": "onnxruntime.quantization.quantize_static",
             "quantizer_args": {**self.params(), "calibration_examples": len(calib),
                                "calibration_split": "calib"}}

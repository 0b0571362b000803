"""ONNX export and onnxruntime's graph optimization and quantization, as passes."""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from mlbench.backends import OrtRunner
from mlbench.compress.base import Artifact, Facts, Parity, Pass, PassContext, copy_torch
from mlbench.errors import MlbenchError, VariantFailed
from mlbench.train.cache import umask

log = logging.getLogger(__name__)


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file plus every external-data file its initializers point to."""
    model = onnx.load(str(path), load_external_data=False)
    extra: set[str] = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    extra.add(entry.value)
    return [path, *[path.parent / e for e in sorted(extra)]]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    ops = sorted(set(re.findall(r"(aten::[\w.]+|torch\.ops\.[\w.]+)", text)))
    if ops:
        return "unsupported operator(s) " + ", ".join(ops[:5])
    for line in text.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if line:
            return line[:300]
    return type(e).__name__


# float32 parity of an exported graph, |a − b| ≤ atol + rtol·|b| per logit (numpy/torch.testing's
# form). Measured by scripts/parity_tolerance.py (docs/benchmarks.md): on the built-in models and
# ResNet-18 (widths 16-64) the worst logit used 2.2 % of this tolerance (5.3e-6 absolute, 4.6e-4
# relative where |b| >= 1e-3); a wider ResNet-18 on a busy machine drifted by 1.07e-4 absolute.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3


def compare_logits(ref: torch.Tensor, out: torch.Tensor, atol: float = PARITY_ATOL,
                   rtol: float = PARITY_RTOL) -> dict[str, Any]:
    """Element-wise agreement of two logit matrices: max |a − b|; the worst element by
    |a − b| / (atol + rtol·|b|) (``worst_excess`` ≤ 1: every element within tolerance), with its
    item, class, both values and its relative error; the fraction of elements within tolerance;
    top-1 agreement."""
    ref, out = ref.double(), out.double()
    diff = (ref - out).abs()
    excess = diff / (atol + rtol * ref.abs())
    item, cls = divmod(int(excess.argmax()), ref.shape[1])
    b = float(ref[item, cls])
    return {"max_abs_diff": float(diff.max()), "worst_excess": float(excess.max()),
            "within_tolerance": float((excess <= 1).double().mean()),
            "worst": {"item": item, "class": cls, "reference": b, "candidate": float(out[item, cls]),
                      "rel_diff": float(diff[item, cls]) / abs(b) if b else float("inf")},
            "top1_agreement": float((ref.argmax(1) == out.argmax(1)).double().mean())}


def parity(reference: torch.nn.Module | OrtRunner, candidate: OrtRunner, x: torch.Tensor,
           dtype: torch.dtype = torch.float32, atol: float = PARITY_ATOL, rtol: float = PARITY_RTOL) -> Parity:
    """Logit agreement between a reference (the torch model, or the parent ONNX model) and an
    ONNX model (:func:`compare_logits`)."""
    kind = "torch" if isinstance(reference, torch.nn.Module) else "parent"
    if isinstance(reference, torch.nn.Module):
        with torch.inference_mode():
            ref = reference(x.to(dtype)).float()
    else:
        ref = reference.predict(x)
    c = compare_logits(ref, candidate.predict(x), atol, rtol)
    return Parity(reference=kind, max_abs_diff=c["max_abs_diff"], top1_agreement=c["top1_agreement"],
                  samples=int(len(x)), atol=atol, rtol=rtol, worst_excess=c["worst_excess"],
                  within_tolerance=c["within_tolerance"], worst=c["worst"])


def check_onnx(path: Path) -> None:
    """onnx.checker's full check (shape inference included); one clear line on failure."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx raises several exception types, some from C++
        raise MlbenchError(f"ONNX model {path} fails onnx.checker: {_first_line(e)}") from None


@dataclass
class OnnxExport(Pass):
    """torch -> ONNX with a dynamic batch axis, checked by ``onnx.checker`` (full check) and
    by a parity check against the torch model on real test inputs.

    - ``opset``: ONNX opset version.
    - ``dynamo``: use the ``torch.export``-based exporter (else the TorchScript one).
    - ``external_data``: store weights in a ``.data`` file beside the model.
    - ``parity_atol``, ``parity_rtol``: each logit must satisfy |a − b| ≤ atol + rtol·|b|
      against torch's (b); a miss within them is float noise of a deeper graph only if every
      prediction agrees: it is recorded as a warning on the variant, not a failure.
    - ``parity_min_agreement``: smallest allowed top-1 agreement with torch; below it the
      variant fails (the exported graph computes something else).
    - ``parity_samples``: how many test examples the parity check uses.
    """

    name = "onnx_export"
    produces = "onnx"
    opset: int = 18
    dynamo: bool = True
    external_data: bool = True
    parity_atol: float = PARITY_ATOL
    parity_rtol: float = PARITY_RTOL
    parity_min_agreement: float = 0.999
    parity_samples: int = 512

    def __post_init__(self):
        low = DYNAMO_MIN_OPSET if self.dynamo else 7
        if not low <= self.opset <= MAX_OPSET:
            raise MlbenchError(f"onnx_export.opset must be in [{low}, {MAX_OPSET}] with the "
                               f"{'dynamo' if self.dynamo else 'TorchScript'} exporter, got {self.opset}"
                               + (" (dynamo: false exports older opsets)" if self.dynamo and self.opset < low else ""))
        if (not self.parity_atol >= 0 or not self.parity_rtol >= 0 or not 0 <= self.parity_min_agreement <= 1
                or self.parity_samples < 1):
            raise MlbenchError("onnx_export needs parity_atol >= 0, parity_rtol >= 0, parity_min_agreement in "
                               "[0, 1] and parity_samples >= 1")

    def apply(self, art: Artifact, ctx: PassContext):
        if art.dtype != torch.float32:
            raise VariantFailed("onnx_export expects a float32 torch model (export before `half`)")
        model = copy_torch(art)
        out = ctx.workdir / f"{ctx.step:02d}_{self.name}.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        example = ctx.data.x["test"][:2].float()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.dynamo:
                    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                    torch.onnx.export(
                        model, (example,), str(out), dynamo=True, opset_version=self.opset,
                        input_names=["input"], output_names=["logits"],
                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},),
                        external_data=self.external_data, verbose=False)
                else:
                    torch.onnx.export(
                        model, (example,), str(out), dynamo=False, opset_version=self.opset,
                        input_names=["input"], output_names=["logits"],
                        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as e:  # the exporters raise many types
            raise VariantFailed(f"ONNX export of {type(model).__name__} failed: {_first_line(e)}") from None
        strip_debug_metadata(out, self.external_data)
        check_onnx(out)
        written = onnx_opset(out)
        if written != self.opset:  # an exporter that quietly wrote another opset than asked for
            raise VariantFailed(f"onnx_export asked for opset {self.opset}; the exporter wrote opset {written}")
        runner = OrtRunner(out, threads=1)
        par = parity(model, runner, ctx.data.x["test"][: self.parity_samples].float(), atol=self.parity_atol,
                     rtol=self.parity_rtol)
        if par.top1_agreement < self.parity_min_agreement:
            raise VariantFailed(
                f"ONNX parity check failed: top-1 agreement with torch {par.top1_agreement:.4f} (minimum "
                f"{self.parity_min_agreement}) on {par.samples} test items; max |diff| {par.max_abs_diff:.3g}")
        new = Artifact(id="", format="onnx", path=out, files=onnx_files(out), facts=Facts(parity=par))
        if par.worst_excess > 1:  # every prediction agrees: float noise beyond the stated tolerance
            w = par.worst
            new.flags.append(f"ONNX logits outside |a-b| <= {self.parity_atol:g} + {self.parity_rtol:g}|b| on "
                             f"{1 - par.within_tolerance:.2%} of elements (worst: item {w['item']} class "
                             f"{w['class']}, {w['candidate']:.6g} vs torch {w['reference']:.6g}, relative "
                             f"{w['rel_diff']:.2g}); every prediction agrees ({par.top1_agreement:.4f})")
        return new, {"opset": self.opset, "exporter": "dynamo" if self.dynamo else "torchscript"}


_LEVELS = ("basic", "extended", "all")
DYNAMO_MIN_OPSET = 18  # torch.onnx's dynamo exporter writes opset 18 or newer
MAX_OPSET = 23  # the newest opset torch's exporters and onnxruntime 1.2x agree on


def strip_debug_metadata(path: Path, external_data: bool) -> None:
    """Remove the per-node metadata the dynamo exporter writes (``pkg.torch.onnx.stack_trace``,
    ``namespace``, ``class_hierarchy``...): Python stack traces that name the folders torch and
    mlbench are installed in. Left in, they make up most of a small model's .onnx file, so its
    ``size_bytes`` depends on the install path (a 44-byte difference between two checkouts of
    the same run), and a shipped model carries the build machine's paths. The graph, its
    weights and their order are unchanged."""
    model = onnx.load(str(path))  # with its external data
    if not any(n.metadata_props for n in model.graph.node):
        return
    for node in model.graph.node:
        del node.metadata_props[:]
    for f in model.functions:
        for node in f.node:
            del node.metadata_props[:]
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)  # onnx appends to an existing external-data file
    onnx.save_model(model, str(path), save_as_external_data=external_data, all_tensors_to_one_file=True,
                    location=data.name)  # tensors under 1 KB stay inline (shape inference reads them)
    for f in (path, data):  # onnx writes external data private; the umask decides, as for every result
        if f.exists():
            os.chmod(f, 0o666 & ~umask())


def onnx_opset(path: Path) -> int:
    """The default-domain opset an ONNX file declares (its weights are not read)."""
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


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
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as e:  # symbolic shape inference can fail on some graphs
        log.warning("quant_pre_process with symbolic shape inference failed (%s); retrying without",
                    _first_line(e))
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
                            "quantizing the exported model as is", _first_line(e))
                args["preprocessed"] = f"no: {_first_line(e)}"
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

"""ONNX export as a pass, with the parity check of the exported graph against torch."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def error_line(e: BaseException) -> str:
    """One line for an exporter or onnxruntime error: the unsupported operators when it names
    any, else its first non-empty line without terminal colours."""
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
        raise MlbenchError(f"ONNX model {path} fails onnx.checker: {error_line(e)}") from None


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
    accepts = ("torch", "onnx")  # an ONNX input (a model=onnx baseline) passes through unchanged
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
        if art.format == "onnx":
            return dataclasses.replace(art), {"skipped": "the input is already an ONNX graph"}
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
            raise VariantFailed(f"ONNX export of {type(model).__name__} failed: {error_line(e)}") from None
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

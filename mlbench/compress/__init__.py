"""Compression and export passes; recipes of them are the deployment variants."""

from mlbench.compress.base import Artifact, Facts, Parity, Pass, PassContext, lineage_id
from mlbench.compress.onnx_export import OnnxExport, check_onnx, onnx_files
from mlbench.compress.ort_passes import (
    OrtOptimize,
    OrtQuantizeDynamic,
    OrtQuantizeStatic,
)
from mlbench.compress.torch_passes import (
    Finetune,
    Half,
    PruneStructured,
    PruneUnstructured,
    TorchQuantizeDynamic,
    TorchQuantizeStatic,
)

__all__ = ["Artifact", "Facts", "Parity", "Pass", "PassContext", "lineage_id", "OnnxExport", "OrtOptimize",
           "OrtQuantizeDynamic", "OrtQuantizeStatic", "check_onnx", "onnx_files", "Half",
           "TorchQuantizeDynamic", "TorchQuantizeStatic", "PruneUnstructured", "PruneStructured",
           "Finetune"]

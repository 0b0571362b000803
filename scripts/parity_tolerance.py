"""How far an exported ONNX graph's float32 logits drift from torch's, on the built-in models
and on ResNet-18: the measurement behind ``onnx_export``'s parity tolerances.

    python scripts/parity_tolerance.py

Each model is trained briefly (so its logits have realistic magnitudes), exported with the dynamo
exporter, run in onnxruntime (CPU, 1 thread) on up to 512 test items, and compared element by
element with torch: max |a − b|, the largest |a − b| / |b| over elements with |b| ≥ 1e-3, and
the largest |a − b| / (atol + rtol·|b|) at mlbench's defaults (≤ 1: within tolerance).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from mlbench.backends import OrtRunner
from mlbench.compress.onnx_export import PARITY_ATOL, PARITY_RTOL, compare_logits
from mlbench.data import BreastCancer, Digits
from mlbench.data.base import DataBundle, DataMeta
from mlbench.models import CNN, MLP, ResNet
from mlbench.train import fit


def cifar_like(n: int = 1200, seed: int = 0) -> DataBundle:
    """32×32 RGB items whose class sets the mean colour and a stripe (a task ResNet-18 learns a
    little of in one epoch)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32)
    x[np.arange(n), y % 3] += 1.0
    x[np.arange(n), :, (y * 3) % 32] += 2.0
    parts = {"train": slice(0, n // 2), "val": slice(n // 2, 3 * n // 4), "calib": slice(0, 0),
             "test": slice(3 * n // 4, n)}
    meta = DataMeta("cifar_like", (3, 32, 32), 10, [str(i) for i in range(10)], "image", None, {})
    return DataBundle(meta=meta, x={k: torch.from_numpy(x[s]) for k, s in parts.items()},
                      y={k: torch.from_numpy(y[s]) for k, s in parts.items()},
                      index={k: torch.arange(n)[s] for k, s in parts.items()})


def measure(name: str, model: torch.nn.Module, d: DataBundle, epochs: int) -> None:
    torch.manual_seed(0)
    fit(model, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=epochs, batch_size=64,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3), device=torch.device("cpu"), seed=0)
    x = d.x["test"][:512].float()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(model.eval(), (x[:2],), str(path), dynamo=True, opset_version=18,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},), verbose=False)
        with torch.inference_mode():
            ref = model(x).float()
        out = OrtRunner(path, threads=1).predict(x)
    c = compare_logits(ref, out)
    big = ref.abs() >= 1e-3
    rel = float(((ref - out).abs()[big] / ref.abs()[big]).max())
    print(f"{name:<34} |logit| max {float(ref.abs().max()):8.3f}   max |a-b| {c['max_abs_diff']:.3g}   "
          f"max rel (|b|>=1e-3) {rel:.3g}   worst/(atol+rtol|b|) {c['worst_excess']:.3f}   "
          f"top-1 agreement {c['top1_agreement']:.4f}")


def main() -> None:
    torch.set_num_threads(2)
    print(f"defaults: atol {PARITY_ATOL}, rtol {PARITY_RTOL}; onnxruntime CPU, 1 thread; torch {torch.__version__}")
    digits, cancer = Digits().load(), BreastCancer().load()
    measure("MLP, breast_cancer", MLP(cancer.meta.input_shape, 2), cancer, 20)
    measure("MLP, digits", MLP(digits.meta.input_shape, 10), digits, 20)
    measure("CNN, digits", CNN(digits.meta.input_shape, 10), digits, 10)
    measure("ResNet-18 width 16, digits", ResNet(digits.meta.input_shape, 10, width=16), digits, 3)
    cifar = cifar_like()
    measure("ResNet-18 width 32, 32x32 RGB", ResNet(cifar.meta.input_shape, 10, width=32), cifar, 1)
    measure("ResNet-18 width 64, 32x32 RGB", ResNet(cifar.meta.input_shape, 10, width=64), cifar, 1)


if __name__ == "__main__":
    main()

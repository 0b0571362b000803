"""Plain ``nn.Module`` classifiers sized from the data's input shape.

Each takes ``input_shape`` and ``num_classes`` (filled in at run time; the
config holds the rest) and returns logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mlbench.errors import MlbenchError


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden width, then a linear head."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 hidden: Sequence[int] = (256, 128), dropout: float = 0.1):
        super().__init__()
        width = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN(nn.Module):
    """A small conv net: per stage ``Conv3x3 -> BN -> ReLU`` (x2), 2x2 max-pool while the
    feature map is at least 4 pixels wide, then global average pooling and a linear head."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 channels: Sequence[int] = (32, 64), hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        if len(input_shape) != 3:
            raise MlbenchError(f"model=cnn needs image inputs (C, H, W), got shape {tuple(input_shape)}")
        c, h, _ = input_shape
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if h >= 4:
                blocks.append(nn.MaxPool2d(2))
                h //= 2
            c = out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.features(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


_LAYOUTS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem without max-pool, four stages of basic blocks
    (``depth`` 10, 18 or 34) with widths ``width * (1, 2, 4, 8)``."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 18,
                 width: int = 64):
        super().__init__()
        if len(input_shape) != 3:
            raise MlbenchError(f"model=resnet needs image inputs (C, H, W), got {tuple(input_shape)}")
        if depth not in _LAYOUTS:
            raise MlbenchError(f"model.depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for i, n in enumerate(_LAYOUTS[depth]):
            cout = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(x))))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, parameters that are not exactly zero)."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


@torch.no_grad()
def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's outputs for the items ``x`` (one forward pass): about what
    a backward pass through ``model`` keeps per batch of ``len(x)``. 0 for a model without leaf
    modules to hook (a graph of functional calls)."""
    total = [0]

    def add(mod: nn.Module, inp: Any, out: Any) -> None:
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()
    hooks = [m.register_forward_hook(add) for m in model.modules() if next(m.children(), None) is None]
    training = model.training
    if training:  # the same sizes; no batch-norm statistics move (an eval model is left untouched)
        model.eval()
    try:
        model(x)
    finally:
        if training:
            model.train()
        for h in hooks:
            h.remove()
    return total[0]


__all__ = ["MLP", "CNN", "ResNet", "activation_bytes", "batch_within", "count_params"]


def embedding_space(model: torch.nn.Module) -> str:
    """What :func:`penultimate` returns for ``model``, in words."""
    if any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        return "penultimate layer"
    return "outputs (logits; the model has no Linear layer to hook)"


# an embedding pass's batch: at most this many items, and fewer where their leaf outputs
# (activation_bytes) would pass EMBEDDING_BATCH_BYTES. A ResNet-18 of width 16 on 32x32 inputs
# keeps ~1.4 MB per item there: batches of 67 instead of 512 cut the pass's transient memory by
# ~300 MB and ran faster on 2 cores (1.3 s against 2.3 s for 3,000 items). In eval mode an item's
# embedding does not depend on its batch beyond float rounding (the built-in models gave the same
# bits at batches of 33 to 512; a batch of one or two may differ in the last bit).
EMBEDDING_BATCH = 256
EMBEDDING_BATCH_BYTES = 96 << 20


def batch_within(model: nn.Module, one: torch.Tensor, limit_bytes: int, most: int) -> int:
    """Items per batch: ``most``, or fewer where one item's leaf outputs (``one``: a batch of
    one, on the model's device and dtype) would put a batch above ``limit_bytes``."""
    per_item = activation_bytes(model, one)
    if per_item <= 0:
        return most
    return max(1, min(most, limit_bytes // per_item))


def penultimate(model: torch.nn.Module, x: torch.Tensor, batch_size: int | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The input of the model's last ``nn.Linear`` (its penultimate-layer embedding), as float32;
    inputs are cast to ``dtype``, the precision the model runs in. A model without a Linear
    module to hook (a ``torch.export`` program, a graph of functional calls) gives its outputs
    (logits) instead: :func:`embedding_space` says which. ``batch_size`` None: batches sized by
    ``EMBEDDING_BATCH_BYTES``."""
    model = model.to(device).eval()
    if batch_size is None:  # an empty x runs no batch
        batch_size = batch_within(model, x[:1].to(device, dtype), EMBEDDING_BATCH_BYTES,
                                  EMBEDDING_BATCH) if len(x) else 1
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    got: list[torch.Tensor] = []
    if linears:
        hook = linears[-1].register_forward_hook(lambda mod, inp, out: got.append(inp[0].detach().float().cpu()))
    else:
        hook = model.register_forward_hook(lambda mod, inp, out: got.append(out.detach().float().cpu()))
    try:
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(device, dtype))
    finally:
        hook.remove()
    return torch.cat(got) if got else torch.empty(0)

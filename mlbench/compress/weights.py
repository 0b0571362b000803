"""Weight manipulation of stored models: random bit flips and Gaussian noise on the weights
a format stores (a torch model's floating-point parameters; an ONNX model's int8 or float32
initializers). At a bit-error rate ``ber`` exactly ``round(ber * total_bits)`` distinct bits
are flipped, chosen uniformly over all weight bits. The fault stressor (``stress/faults.py``)
reaches these through each artifact format (``compress/formats.py``)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from mlbench.errors import MlbenchError

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def flip_positions(total_bits: int, ber: float, g: torch.Generator) -> torch.Tensor:
    """``round(ber * total_bits)`` distinct bit positions in [0, total_bits)."""
    k = int(round(ber * total_bits))
    if k == 0:
        return torch.empty(0, dtype=torch.int64)
    if k > total_bits // 2:
        return torch.randperm(total_bits, generator=g)[:k]
    chosen = torch.unique(torch.randint(0, total_bits, (k,), generator=g))
    while len(chosen) < k:
        extra = torch.randint(0, total_bits, (k - len(chosen),), generator=g)
        chosen = torch.unique(torch.cat([chosen, extra]))
    return chosen[torch.randperm(len(chosen), generator=g)][:k]


def flip_bits_(flat: torch.Tensor, ber: float, g: torch.Generator) -> int:
    """Flip bits of a flat tensor in place (viewed as integers); returns how many."""
    width = flat.element_size()
    ints = flat.view(_INT_VIEW[width])
    bits = width * 8
    pos = flip_positions(ints.numel() * bits, ber, g)
    if len(pos) == 0:
        return 0
    elem, bit = pos // bits, pos % bits
    if width == 1:
        masks = (torch.ones_like(bit) << bit).to(torch.uint8)
    else:
        masks = torch.bitwise_left_shift(torch.ones_like(bit), bit).to(ints.dtype)
    # several flips can hit one element: combine them with xor before applying
    for m_elem, m in zip(elem.tolist(), masks.tolist()):
        ints[m_elem] ^= m
    return len(pos)


def torch_with_faults(model: nn.Module, mode: str, rate: float, g: torch.Generator) -> tuple[nn.Module, int]:
    """A faulty copy of a torch model: all floating-point parameters, as one bit array."""
    faulty = copy.deepcopy(model).cpu()
    params = [p for p in faulty.parameters() if p.is_floating_point()]
    with torch.no_grad():
        if mode == "bitflip":
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            n = flip_bits_(flat, rate, g)
            offset = 0
            for p in params:
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
            return faulty, n
        for p in params:
            std = p.float().std() if p.numel() > 1 else p.float().abs()
            p.add_((rate * std * torch.randn(p.shape, generator=g)).to(p.dtype))
        return faulty, 0


def onnx_with_faults(path: Path, mode: str, rate: float, g: torch.Generator, workdir: Path) -> tuple[Path, int, str]:
    """A faulty copy of an ONNX model. Int8/uint8 weight initializers are hit when the model
    has them (zero points excluded), else float32 ones. Returns (path, bits flipped, format)."""
    model = onnx.load(str(path))
    inits = list(model.graph.initializer)
    int8 = [t for t in inits if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
            and "zero_point" not in t.name and np.prod(t.dims) > 1]
    targets = int8 or [t for t in inits if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 1]
    fmt = "int8" if int8 else "float32"
    if mode == "gaussian" and int8:
        raise MlbenchError("gaussian weight noise applies to float weights, not int8 initializers")
    arrays = [numpy_helper.to_array(t).copy() for t in targets]
    n = 0
    if mode == "bitflip":
        # one-byte types (int8 and uint8 together) as raw bytes, float32 as is
        flat = torch.from_numpy(np.concatenate(
            [a.reshape(-1).view(np.uint8) if a.dtype.itemsize == 1 else a.reshape(-1) for a in arrays]).copy())
        n = flip_bits_(flat, rate, g)
        new, offset = [], 0
        for a in arrays:
            new.append(flat[offset:offset + a.size].numpy().view(a.dtype).reshape(a.shape))
            offset += a.size
        arrays = new
    else:
        arrays = [a + (rate * a.std() * torch.randn(a.shape, generator=g).numpy()).astype(a.dtype) for a in arrays]
    for t, a in zip(targets, arrays):
        t.CopyFrom(numpy_helper.from_array(a.astype(numpy_helper.to_array(t).dtype), t.name))
    out = Path(tempfile.mkdtemp(dir=workdir)) / "faulty.onnx"
    onnx.save_model(model, str(out))
    return out, n, fmt

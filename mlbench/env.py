"""Run environment: device choice, seeding, threads and provenance."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench import __version__
from mlbench.errors import MlbenchError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MlbenchError(f"device={name} was requested but CUDA is not available")
    if not (name == "cpu" or name.startswith("cuda")):
        raise MlbenchError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch. ``deterministic`` asks torch for deterministic kernels
    (runs use it on the CPU); otherwise cuDNN may pick the fastest kernels (GPU runs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def set_threads(threads: int) -> int:
    """Set torch intra-op threads (0 keeps torch's default) and return the number in force."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def git_sha(path: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Provenance recorded with every number: versions, device, threads, git sha."""
    import onnx  # versions only; these load when a run records its provenance
    import onnxruntime
    import torchmetrics

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mlbench": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torchmetrics": torchmetrics.__version__,
        "numpy": np.__version__,
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
    }

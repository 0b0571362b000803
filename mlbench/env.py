"""Run environment: device choice, seeding, threads and provenance."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench.errors import MlbenchError
from mlbench.version import __version__


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
    # what torch.use_deterministic_algorithms(deterministic, warn_only=True) does, without importing
    # the compiler stack (over a second) just to set its flag: the compiler's copy is set here when
    # it is loaded already, and by compiled_flags() before torch.compile otherwise
    torch._C._set_deterministic_algorithms(deterministic, warn_only=True)
    if "torch._inductor.config" in sys.modules:
        sys.modules["torch._inductor.config"].deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def compiled_flags() -> None:
    """Carry the deterministic-kernels setting into torch.compile's (inductor's) config."""
    import torch._inductor.config as inductor_config
    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()


# torch's intra-op default, read before any run changes it: the machine's physical cores
# (within this process's affinity mask).
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def _cpu_times() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process). The machine's
    busy time comes from /proc/stat (everything but idle and iowait; steal counts as busy:
    it is time another guest took from us); NaN where /proc/stat is absent."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    mine = own.ru_utime + own.ru_stime
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan, mine
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK"), mine


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class MachineWatch:
    """What else the machine did while something was timed: the CPU cores that *other*
    processes kept busy on average (machine busy time minus this process's, per second),
    and the 1-minute load average before and after."""

    wall0: float = 0.0
    busy0: float = 0.0
    own0: float = 0.0
    load0: float = 0.0

    @classmethod
    def start(cls) -> MachineWatch:
        busy, own = _cpu_times()
        return cls(time.perf_counter(), busy, own, os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        busy, own = _cpu_times()
        wall = max(time.perf_counter() - self.wall0, 1e-9)
        other = max(0.0, ((busy - self.busy0) - (own - self.own0)) / wall)
        return {"wall_s": wall, "other_busy_cores": None if math.isnan(other) else other,
                "own_busy_cores": (own - self.own0) / wall,
                "loadavg_before": self.load0, "loadavg_after": os.getloadavg()[0]}


def busy_cores(sample_s: float = 0.2) -> float:
    """CPU cores that *other* processes keep busy, averaged over ``sample_s`` seconds
    (machine busy time minus this process's, from /proc/stat; 0 where it is absent)."""
    watch = MachineWatch.start()
    time.sleep(sample_s)
    return float(watch.stop()["other_busy_cores"] or 0.0)


def resolve_threads(setting: Any, busy: float | None = None) -> tuple[int, dict[str, Any]]:
    """The intra-op thread count a ``backend.threads`` setting asks for, and how it was chosen.

    ``auto``: the physical cores that other processes do not keep busy (at least 1), so a
    shared machine is not oversubscribed; an integer > 0: exactly that many; 0: torch's
    default (all physical cores)."""
    if str(setting) == "auto":
        busy = busy_cores() if busy is None else busy
        n = max(1, TORCH_DEFAULT_THREADS - int(round(busy)))
        return n, {"setting": "auto", "physical": TORCH_DEFAULT_THREADS, "busy_cores": round(busy, 2)}
    n = int(setting)
    return (n if n > 0 else TORCH_DEFAULT_THREADS), {"setting": n, "physical": TORCH_DEFAULT_THREADS}


def set_threads(threads: int) -> int:
    """Set torch intra-op threads (0 keeps torch's default) and return the number in force."""
    torch.set_num_threads(threads if threads > 0 else TORCH_DEFAULT_THREADS)
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """torch's intra-op thread count for a block (process-wide; restored after). 0 keeps it."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


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
        "host": platform.node(),
        "scheduler": scheduler_job(),
    }


def scheduler_job() -> dict[str, str] | None:
    """The cluster job this run is, when a scheduler started it (Slurm's job, array and node
    variables; Ray's job id): which job produced which number. None when run by hand."""
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST",
            "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK", "RAY_JOB_ID")
    found = {k.lower(): os.environ[k] for k in keys if os.environ.get(k)}
    return found or None

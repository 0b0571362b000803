"""What every command sets up for its process: library messages kept off the console, OpenMP
threads that spin briefly, output streams that never fail on a character, and an exit that
skips the garbage collector's final passes."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import warnings
from collections.abc import Callable


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
    for name in ("torch.onnx", "onnxscript", "torch._dynamo", "torch.export", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # libraries that log INFO lines (onnxruntime's quantizer) stay off the console but are kept
    # in the run's log file: Hydra's console handler takes WARNING and up (conf/config.yaml), its
    # file handler everything. Outside a Hydra job (the Python API) the root logger stays as the
    # caller set it.


# OpenMP threads that finish their share of an operation spin for GOMP_SPINCOUNT iterations
# before they sleep (libgomp's default: 300,000). On a machine whose cores other processes also
# use, the spinning threads of one process take the cores the others' threads wait for: two
# `mlbench cycle` runs side by side on 2 cores took more than 10x as long as one after the other.
# 10,000 iterations (microseconds) keeps a lone run's speed (within 2 % on the default run) and
# ends that collapse; the thread count, and so the trained weights, are unchanged. Set before
# torch is imported; a value the user set wins (OMP_WAIT_POLICY included).
SPIN_COUNT = "10000"


def polite_threads() -> None:
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


def tolerant_streams() -> None:
    """Output to a terminal or pipe that cannot encode a character (``PYTHONIOENCODING=ascii``,
    a C locale) prints a replacement instead of failing the run on ``·`` or ``✓``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):  # not a text stream we can change
            pass


def skip_final_collection(entry: Callable[[], None]) -> Callable[[], None]:
    """A command's entry point that, as it ends (whatever its exit status), hides every object
    from the garbage collector's last passes (``gc.freeze``). At exit the interpreter collects
    cycles while it tears down its modules, walking every object left (1-2 s after a run, spent
    only to free memory the operating system takes back anyway). atexit handlers still run and
    objects without reference cycles are still finalized; files are written and closed by then."""
    @functools.wraps(entry)
    def command() -> None:
        try:
            entry()
        finally:
            gc.freeze()
    return command


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc only (musl has no such call)
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Hand the memory a stage freed back to the operating system (glibc's ``malloc_trim``): the
    allocator otherwise keeps freed test-set-sized buffers in its heap, so every later stage's
    peak would stack on them (about 200 MB after the variants of a CIFAR-sized run). Changes no
    figure; a no-op off glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

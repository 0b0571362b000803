"""Benchmark ``mlbench select``.

    python scripts/bench_select.py

``mlbench select`` over its four default image candidates (linear, cnn_8, cnn_32, resnet10_16)
on digits, in a fresh process with a fresh cache (every candidate trained at 4 learning-curve
sizes: 16 trainings), 3 repetitions interleaved with a default ``mlbench 'variants=[]'
stress=none monitor=none datacheck=none`` run (one baseline trained, fresh cache), the baseline
this cost is measured against (target: select <= 60 s on 2 cores). Then the same select again
on a warm cache (nothing trained: the analysis alone).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import torch
from _bench import row, timed_run

ONE_BASELINE = ("variants=[]", "stress=none", "monitor=none", "datacheck=none", "device=cpu")


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    sel, base = [], []
    for _ in range(3):  # interleaved: the machine's load hits both alike
        sel.append(timed_run("select", "device=cpu")[0])
        base.append(timed_run(*ONE_BASELINE)[0])
    s, b = statistics.median(sel), statistics.median(base)
    row("`mlbench select` (4 candidates, digits), fresh process + cache", s, "s",
        f"(range {min(sel):.1f}-{max(sel):.1f}; target <= 60 s)")
    row("  one default run's baseline alone, fresh process + cache", b, "s", f"(select = {s / b:.1f}x that)")
    cache = Path(tempfile.mkdtemp(prefix="mlbench-bench-cache-"))
    timed_run("select", "device=cpu", cache=cache)
    warm = [timed_run("select", "device=cpu", cache=cache)[0] for _ in range(3)]
    row("  again on a warm cache (no training)", statistics.median(warm), "s",
        f"(range {min(warm):.1f}-{max(warm):.1f})")


if __name__ == "__main__":
    main()

"""Benchmark the monitoring stage.

    python scripts/bench_monitor.py

- `monitor=light` on digits with the default variants: the stage's own wall time
  (`monitor.seconds` in summary.json; target <= 15 s on 2 cores), from `mlbench monitor` in
  fresh processes, 3 repetitions;
- MMD with 500 permutations on 2 x 1,000 embeddings (64-d; target <= 0.5 s), all permutations
  batched, against the same permutations one at a time in the same process; median and range
  over 5 repetitions.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from _bench import row, timed_run


def _times(fn, repeats: int = 5) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    from mlbench.evaluate.twosample import mmd_test
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 64, generator=g), torch.randn(1000, 64, generator=g)
    ts = _times(lambda: mmd_test(a, b, permutations=500))
    z = torch.cat([a, b]).double()
    k = torch.exp(-torch.cdist(z, z).pow(2) / 2)
    w0 = torch.cat([torch.full((1000,), 1e-3), torch.full((1000,), -1e-3)]).double()
    loop = _times(lambda: [float(w0[torch.randperm(2000)] @ k @ w0[torch.randperm(2000)]) for _ in range(500)], 3)
    row("MMD, 500 permutations, 2 x 1,000 embeddings (64-d), batched", statistics.median(ts), "s",
        f"(range {min(ts):.3f}-{max(ts):.3f}; target <= 0.5 s)")
    row("  the same number of permutations one at a time", statistics.median(loop), "s",
        f"({statistics.median(loop) / statistics.median(ts):.1f}x slower)")
    stage, wall = [], []
    for _ in range(3):
        w, _, s = timed_run("monitor", "device=cpu")
        stage.append(s["monitor"]["seconds"])
        wall.append(w)
    row("monitor=light stage on digits, 6 variants (monitor.seconds)", statistics.median(stage), "s",
        f"(range {min(stage):.1f}-{max(stage):.1f}; target <= 15 s)")
    row("  whole `mlbench monitor` run, fresh process and cache", statistics.median(wall), "s",
        f"(range {min(wall):.1f}-{max(wall):.1f})")


if __name__ == "__main__":
    main()

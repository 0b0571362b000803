"""Benchmark the data checks.

    python scripts/bench_datacheck.py

- the light checks (lint, leakage, shift) on digits, in process, with the baseline's embeddings:
  the time they add to a run (target <= 3 s on 2 cores);
- `mlbench datacheck datacheck=full` on digits, fresh process and cache (target <= 60 s);
- MMD with 1,000 permutations on 2 x 2,000 items (target <= 2 s), against the same statistic
  computed permutation by permutation in a loop (the batched speed-up, same process);
- near duplicates of 10,000 queries against 50,000 references (64-d): peak RSS of a fresh
  process (imports included; target < 1 GB), against a dense distance matrix's size;
- the balance and coverage checks on 20,000 synthetic table items with the group factor and
  two declared factors (target <= 2 s together).

Each timing: median and range over 3 repetitions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import torch
from _bench import ROOT, row, timed_run


def _median(fn, repeats: int = 3) -> tuple[float, float, float]:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def light_checks() -> tuple[float, float, float]:
    from mlbench.data import Digits
    from mlbench.datacheck import CheckContext, Leakage, Lint, Shift
    from mlbench.datacheck.stage import feature_source, run_checks
    from mlbench.models import CNN
    d = Digits().load()
    model = CNN(d.meta.input_shape, 10).eval()
    tmp = ROOT / "results" / "bench_datacheck"

    def once():
        features, space = feature_source(d, model, torch.device("cpu"))
        ctx = CheckContext(d, features, space, 0, torch.device("cpu"), tmp)
        run_checks([Lint(), Leakage(), Shift()], ctx, [], tmp.parent)
    return _median(once)


def mmd_figures() -> tuple[tuple[float, float, float], float]:
    from mlbench.evaluate.twosample import mmd_test
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 64, generator=g), torch.randn(2000, 64, generator=g) + 0.05
    batched = _median(lambda: mmd_test(a, b, permutations=1000))
    z = torch.cat([a, b]).double()
    s = float(mmd_test(a, b, permutations=1)["bandwidth"])
    k = torch.exp(-torch.cdist(z, z).pow(2) / (2 * s * s))
    w0 = torch.cat([torch.full((2000,), 1 / 2000), torch.full((2000,), -1 / 2000)]).double()

    def loop(perms: int = 50):
        for _ in range(perms):
            w = w0[torch.randperm(4000, generator=g)]
            float(w @ k @ w)
    t_loop = _median(loop)[0] / 50 * 1000  # per 1,000 permutations
    return batched, t_loop


def factor_checks() -> tuple[float, float, float]:
    from mlbench.data import Synthetic
    from mlbench.datacheck import Balance, CheckContext, Coverage
    from mlbench.datacheck.stage import feature_source
    d = Synthetic(n=20000, dims=16).load()
    tmp = ROOT / "results" / "bench_datacheck"

    def once():
        features, space = feature_source(d, None, torch.device("cpu"))
        ctx = CheckContext(d, features, space, 0, torch.device("cpu"), tmp)
        Balance(factors=["x0", "x1"]).run(ctx)
        Coverage(factors=["x0", "x1"]).run(ctx)
    return _median(once)


NEAR = """
import resource, torch
from mlbench.datacheck import nearest_distances
g = torch.Generator().manual_seed(0)
ref, q = torch.randn(50000, 64, generator=g), torch.randn(10000, 64, generator=g)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = nearest_distances(q, ref)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after * 1024, (after - before) * 1024)
"""


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    med, lo, hi = light_checks()
    row("datacheck=light on digits (lint, leakage, shift), in process", med, "s",
        f"(range {lo:.2f}-{hi:.2f}; target <= 3 s)")
    walls = [timed_run("datacheck", "datacheck=full", "device=cpu")[0] for _ in range(3)]
    row("`mlbench datacheck datacheck=full` on digits, fresh process + cache", statistics.median(walls), "s",
        f"(range {min(walls):.1f}-{max(walls):.1f}; target <= 60 s)")
    (med, lo, hi), loop = mmd_figures()
    row("MMD, 1,000 permutations, 2 x 2,000 items (64-d), batched", med, "s", f"(range {lo:.2f}-{hi:.2f}; target <= 2 s)")
    row("  the same permutations one by one (per 1,000)", loop, "s", f"({loop / med:.1f}x slower)")
    med, lo, hi = factor_checks()
    row("balance + coverage on 20,000 items (group + 2 factors, 16-d)", med, "s",
        f"(range {lo:.2f}-{hi:.2f}; target <= 2 s)")
    out = subprocess.run([sys.executable, "-c", NEAR], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak, grew = map(int, out.stdout.strip().splitlines()[-1].split())
    row("near duplicates 10,000 x 50,000 (64-d): peak RSS of the process", peak / 2**20, "MB",
        f"(grew {grew / 2**20:.0f} MB in the search; a dense matrix alone: {10000 * 50000 * 4 / 2**20:,.0f} MB;"
        " target < 1 GB)")


if __name__ == "__main__":
    main()

"""Benchmark memory: peak RSS of a whole default run on a million synthetic test items.

    python scripts/bench_memory.py                   # 1,000,000 test items vs 10,000 (slow: ~1 h on 2 cores)
    python scripts/bench_memory.py --items 200000    # a quicker look at the same curve
    python scripts/bench_memory.py --no-stress       # without the stress stage (about 12 min on 2 cores)

Each run is `mlbench data=synthetic` (the default variants, stress, data checks and monitoring)
in a fresh process; its peak resident set size is the kernel's (``ru_maxrss`` of the child).
The baseline is the same run on 10,000 test items, measured in this script: a flat-memory run
grows by the size of its data and predictions, not by items × resamples or items × items.
Target: peak RSS < 2 GB at 1,000,000 test items.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT


def peak_run(test_items: int, extra: tuple[str, ...] = ()) -> tuple[float, float, dict]:
    """(peak RSS in MB, wall seconds, stage seconds) of a default run on ``test_items`` test items
    (train : test = 1 : 8 with 5 % each for val and calib, as a large scoring set would be)."""
    n = int(test_items / 0.8)
    work = Path(tempfile.mkdtemp(prefix="mlbench-mem-"))
    env = {**os.environ, "MLBENCH_RESULTS": str(work / "results"), "MLBENCH_CACHE": str(work / "cache"),
           "PYTHONPATH": str(ROOT)}
    code = ("import resource, subprocess, sys; "
            "r = subprocess.run([sys.executable, '-m', 'mlbench', *sys.argv[1:]]); "
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, "data=synthetic", f"data.n={n}", "data.val=0.05",
                          "data.calib=0.05", "data.test=0.8", *extra], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"mlbench failed on {test_items} items:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    peak_kb = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("PEAK_KB")))
    (summary,) = list((work / "results").rglob("summary.json"))
    stages = json.loads(summary.read_text()).get("stages", {})
    return peak_kb / 1024, wall, {k: v for k, v in stages.items() if isinstance(v, (int, float))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000, help="test items of the large run")
    ap.add_argument("--baseline-items", type=int, default=10_000)
    ap.add_argument("--no-stress", action="store_true",
                    help="stress=none on both runs: at 10^6 items the stress stage alone takes over an hour on "
                         "2 cores (every condition bootstraps 2,000 resamples of 10^6 items)")
    args = ap.parse_args()
    extra = ("stress=none",) if args.no_stress else ()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; "
          f"self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    small = peak_run(args.baseline_items, extra)
    large = peak_run(args.items, extra)
    for (peak, wall, stages), items in ((small, args.baseline_items), (large, args.items)):
        top = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:4])
        print(f"{items:>9,} test items: peak RSS {peak:7.0f} MB, wall {wall:6.0f} s ({top})")
    print(f"peak RSS ratio {args.items:,} / {args.baseline_items:,} items: {large[0] / small[0]:.2f}x "
          f"(items ratio {args.items / args.baseline_items:.0f}x); target: {large[0]:.0f} MB < 2048 MB"
          f" -> {'met' if large[0] < 2048 else 'NOT met'}")


if __name__ == "__main__":
    main()

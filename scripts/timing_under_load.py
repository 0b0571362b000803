"""Does mlbench say when its timings cannot be trusted? The default run, once on the machine
as it is and once while two busy processes (bounded in time) compete for the cores.

    python scripts/timing_under_load.py                # default digits run, stress off
    python scripts/timing_under_load.py --busy 3       # three busy processes

Prints, for each run, the verdict in summary.json's ``timing`` section, the cores other
processes kept busy, the round spread and the baseline's p50. Look at ``uptime`` first:
the "idle" run is only idle if the machine is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _bench import timed_run

SPIN = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def report(label: str, wall: float, s: dict) -> None:
    t = s["timing"]
    ph = t["phases"]
    base = s["variants"]["baseline"]["metrics"]
    print(f"{label:<8} wall {wall:5.1f} s | reliable: {str(t['reliable']):<5} | other busy cores: latency "
          f"{ph['latency']['other_busy_cores']:.2f}, throughput {ph['throughput']['other_busy_cores']:.2f} | "
          f"worst round spread {max(t['round_spread'].values()):.2f}x | baseline p50 {base['latency_p50_ms']:.3f} ms")
    for r in t["reasons"]:
        print(f"{'':<8} reason: {r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=2, help="busy processes in the loaded run")
    ap.add_argument("--seconds", type=float, default=600, help="upper bound on each busy process's life")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    overrides = ("stress=none", "analysis.history=false")
    wall, _, s = timed_run(*overrides)
    report("idle", wall, s)
    busy = [subprocess.Popen([sys.executable, "-c", SPIN.format(s=a.seconds)]) for _ in range(a.busy)]
    try:
        wall, _, s = timed_run(*overrides)
    finally:
        for p in busy:
            p.kill()
    report(f"{a.busy} busy", wall, s)


if __name__ == "__main__":
    main()

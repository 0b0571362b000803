"""OpenMP spinning and processes that share the cores: two ``mlbench cycle`` runs side by side,
and the default run alone, with libgomp's own spin count and with mlbench's (GOMP_SPINCOUNT,
set by the entry points unless the user set it).

    python scripts/bench_spin.py             # both comparisons, 2 repetitions of the lone run
    python scripts/bench_spin.py --skip-pair # the lone default run only
    python scripts/bench_spin.py --load      # training and variant builds idle vs beside 2 busy processes

Prints wall seconds per setting and the ratios (mlbench's ÷ libgomp's). Look at ``uptime``
first: the lone runs are only comparable on an otherwise idle machine. The two-cycle side runs
up to ``--limit`` seconds per setting (libgomp's default spin count took more than 400 s where
one cycle alone takes about 40 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT

LIBGOMP_DEFAULT = "300000"  # libgomp's spin count when neither variable is set


def _env(work: Path, spin: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, "GOMP_SPINCOUNT": spin, "MLBENCH_RESULTS": str(work / "results"),
            "MLBENCH_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}


def lone_run(spin: str, cache: Path) -> float:
    work = Path(tempfile.mkdtemp(prefix="mlbench-spin-"))
    env = {**_env(work, spin), "MLBENCH_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlbench"], env=env, cwd=work, capture_output=True, check=True)
    return time.perf_counter() - t0


def two_cycles(spin: str, limit: float) -> float:
    work = Path(tempfile.mkdtemp(prefix="mlbench-spin-"))
    env = _env(work, spin)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "mlbench", "cycle", "debug=smoke", f"seed={s}"], env=env,
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in (5, 6)]
    for p in procs:
        try:
            p.wait(timeout=max(1.0, limit - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return time.perf_counter() - t0


SPIN = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def loaded_run(spin: str, busy: int) -> tuple[float, float, Path]:
    """The default run with a fresh cache (so the baseline trains) beside ``busy`` spinning
    processes; returns (baseline training s, variant builds s, the baseline's weights file)."""
    import json
    work = Path(tempfile.mkdtemp(prefix="mlbench-spin-"))
    hogs = [subprocess.Popen([sys.executable, "-c", SPIN.format(s=600)]) for _ in range(busy)]
    try:
        subprocess.run([sys.executable, "-m", "mlbench"], env=_env(work, spin), cwd=work, capture_output=True,
                       check=True)
    finally:
        for h in hogs:
            h.kill()
    (summary,) = (work / "results").rglob("summary.json")
    s = json.loads(summary.read_text())
    builds = sum(v for v in s["stages"]["variant_builds"].values() if v)
    return s["baseline_training"]["train_s"], builds, summary.parent / "models" / "baseline" / "model.safetensors"


def load_table(repeats: int) -> None:
    """Training and variant-build seconds idle and beside 2 busy processes, per spin count, and
    the trained weights' largest difference between the idle and the loaded run."""
    from safetensors.numpy import load_file

    from mlbench.process import SPIN_COUNT
    for spin in (LIBGOMP_DEFAULT, SPIN_COUNT):
        rows = {0: [], 2: []}
        for _ in range(repeats):
            for busy in rows:  # interleaved
                rows[busy].append(loaded_run(spin, busy))
        idle, busy = rows[0], rows[2]
        diff = max(float(abs(a - b).max()) for (_, _, fa), (_, _, fb) in zip(idle, busy)
                   for a, b in zip(load_file(fa).values(), load_file(fb).values()))
        for k, what in ((0, "baseline training"), (1, "variant builds")):
            i, b = statistics.median(r[k] for r in idle), statistics.median(r[k] for r in busy)
            print(f"GOMP_SPINCOUNT={spin:>6} {what:<18}: idle {i:6.1f} s, 2 busy {b:6.1f} s, loaded/idle {b / i:5.2f}")
        print(f"GOMP_SPINCOUNT={spin:>6} weights: largest |idle - loaded| {diff:.3g}")


def main() -> None:
    from mlbench.process import SPIN_COUNT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--limit", type=float, default=420.0)
    ap.add_argument("--skip-pair", action="store_true")
    ap.add_argument("--load", action="store_true", help="only: training and builds idle vs 2 busy processes")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; spin counts: libgomp {LIBGOMP_DEFAULT}, "
          f"mlbench {SPIN_COUNT}")
    if a.load:
        load_table(a.repeats)
        return
    cache = Path(tempfile.mkdtemp(prefix="mlbench-spin-cache-"))
    lone_run(SPIN_COUNT, cache)  # fill the baseline and artifact caches: both sides read them
    times: dict[str, list[float]] = {LIBGOMP_DEFAULT: [], SPIN_COUNT: []}
    for _ in range(a.repeats):  # interleaved
        for spin in times:
            times[spin].append(lone_run(spin, cache))
    ratios = [m / g for g, m in zip(times[LIBGOMP_DEFAULT], times[SPIN_COUNT])]
    for spin, ts in times.items():
        print(f"default run alone, GOMP_SPINCOUNT={spin:>6}: {statistics.median(ts):6.1f} s "
              f"({min(ts):.1f}-{max(ts):.1f})")
    print(f"  mlbench's ÷ libgomp's: {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    if a.skip_pair:
        return
    pair = {spin: two_cycles(spin, a.limit) for spin in (LIBGOMP_DEFAULT, SPIN_COUNT)}
    for spin, t in pair.items():
        print(f"two cycles side by side, GOMP_SPINCOUNT={spin:>6}: {t:6.1f} s"
              + ("  (stopped at the limit)" if t >= a.limit - 1 else ""))
    print(f"  mlbench's ÷ libgomp's: {pair[SPIN_COUNT] / pair[LIBGOMP_DEFAULT]:.3f} (at most: the libgomp side "
          "may have been stopped at the limit)")


if __name__ == "__main__":
    main()

"""Benchmark the analysis stage.

    python scripts/bench_compare.py

- `mlbench compare` over 200 run directories (copies of one real run's summary.json and
  predictions), wall time in a fresh process (target < 5 s);
- a 6-job sweep over unstructured sparsity with the joblib launcher (2 workers) against the
  same 6 jobs run one after another as separate `mlbench` commands (target <= 0.7x), and how many
  jobs trained the baseline (target: 1). Equal work on both sides: the same overrides, one
  intra-op thread for training and inference (`train.threads=1 backend.threads=1`), and each side
  a fresh cache of its own, so each trains the baseline once. The two sides alternate, 3 times
  (`--repeats`); median and range are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT, row, timed_run

SPARSITIES = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6"]
JOB = ["variants=[prune50_ft]", "stress=none", "eval.latency.min_time_s=0.2", "eval.throughput.min_time_s=0.2",
       "eval.bootstrap.resamples=500", "device=cpu", "backend.threads=1", "train.threads=1"]


def mlbench(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mlbench", *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stdout + out.stderr)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    _, run_dir, _ = timed_run("variants=[onnx_fp32,prune50_ft]", "stress=none", "device=cpu")
    work = Path(tempfile.mkdtemp(prefix="mlbench-compare-"))
    for i in range(200):
        d = work / "runs" / f"run{i:03d}"
        (d / "predictions").mkdir(parents=True)
        shutil.copy(run_dir / "summary.json", d / "summary.json")
        for f in (run_dir / "predictions").iterdir():
            shutil.copy(f, d / "predictions" / f.name)
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mlbench", "compare", str(work / "runs"), "--out",
                              str(work / f"cmp{i}")], cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stdout + out.stderr
    row("mlbench compare over 200 run directories (fresh process)", statistics.median(times), "s",
        f"(range {min(times):.1f}-{max(times):.1f} over {args.repeats} runs; target < 5 s)")

    seqs, pars, ratios, trained = [], [], [], []
    for rep in range(args.repeats):  # the two sides alternate; each side has a fresh cache of its own
        seq = work / f"seq{rep}"
        env = {**os.environ, "MLBENCH_RESULTS": str(seq / "results"), "MLBENCH_CACHE": str(seq / "cache")}
        t_seq = sum(mlbench([*JOB, f"variants.prune50_ft.passes.0.sparsity={s}"], env) for s in SPARSITIES)
        par = work / f"par{rep}"
        env = {**os.environ, "MLBENCH_RESULTS": str(par / "results"), "MLBENCH_CACHE": str(par / "cache")}
        t_par = mlbench(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *JOB,
                         "variants.prune50_ft.passes.0.sparsity=" + ",".join(SPARSITIES)], env)
        seqs.append(t_seq)
        pars.append(t_par)
        ratios.append(t_par / t_seq)
        trained.append(sum(not json.loads(p.read_text())["baseline_training"]["cache_hit"]
                           for p in (par / "results").rglob("summary.json")))
    med = statistics.median
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} alternating repetitions, median (range):")
    row("6 jobs one after another (separate commands), 1 thread", med(seqs), "s", f"({min(seqs):.1f}-{max(seqs):.1f})")
    row("6-job joblib sweep, 2 workers x 1 thread", med(pars), "s", f"({min(pars):.1f}-{max(pars):.1f})")
    row("  ratio sweep / one after another", med(ratios), "x",
        f"({min(ratios):.2f}-{max(ratios):.2f}; target <= 0.7)")
    row("  jobs of a sweep that trained the baseline", float(max(trained)), "", "(target 1)")


if __name__ == "__main__":
    main()

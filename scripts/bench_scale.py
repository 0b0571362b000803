"""Scale: a CIFAR-sized run on synthetic data, the plan's estimate against the measured stages.

    python scripts/bench_scale.py                          # ResNet-18 width 16, 5,000 train, n_test 1,000 and 10,000
    python scripts/bench_scale.py --width 64 --train 50000 # the full CIFAR-10 size (hours on 2 CPU cores)
    python scripts/bench_scale.py --budget 10              # + the 10,000-item run with budget.minutes=10
    python scripts/bench_scale.py --device cuda --width 64 --train 50000 --tests 10000   # CIFAR-10 size on a GPU

The data is written as CIFAR-10 *binary* batches (``cifar-10-batches-bin``), so the real loader
reads it: per class a fixed random colour pattern plus noise (learnable, with known labels).
For each n_test the script prints, per stage, the plan's estimate, the measured seconds and
their ratio, and the estimate as revised once the variants are built (the stages after them);
the whole run's peak memory (the child process's max RSS); and the stress stage's
seconds per thousand item evaluations (its counted evaluations from the plan).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """``root/cifar-10-batches-bin``: five train batches and a test batch of (label, 3,072 bytes)."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 3072)).astype(np.float32)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)

    def records(n: int) -> bytes:
        y = rng.integers(0, 10, n)
        x = np.clip(0.35 * patterns[y] + 0.65 * rng.integers(0, 256, (n, 3072)), 0, 255).astype(np.uint8)
        return np.concatenate([y.astype(np.uint8)[:, None], x], 1).tobytes()
    per = -(-n_train // 5)
    for i in range(5):
        (folder / f"data_batch_{i + 1}.bin").write_bytes(records(min(per, n_train - i * per)))
    (folder / "test_batch.bin").write_bytes(records(n_test))


def run(data_root: Path, n_test: int, args: argparse.Namespace, budget: float | None = None) -> dict:
    import json
    work = Path(tempfile.mkdtemp(prefix="mlbench-scale-"))
    val = min(2000, args.train // 10)
    over = ["data=cifar10", f"paths.data_root={data_root}", "model=resnet", f"model.width={args.width}",
            f"data.test={n_test}", f"data.val={val}", f"data.calib={val}", f"train.epochs={args.epochs}",
            *(["budget.minutes=" + str(budget)] if budget else []),
            *(["device=cuda", "backend=gpu"] if args.device == "cuda" else [])]
    env = {**os.environ, "MLBENCH_RESULTS": str(work / "results"), "MLBENCH_CACHE": str(work / "cache")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mlbench", *over], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"mlbench failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    (summary,) = list((work / "results").rglob("summary.json"))
    return {"summary": json.loads(summary.read_text()), "wall": wall, "peak_mb": peak_mb}


def report(label: str, r: dict) -> None:
    s = r["summary"]
    plan, m = s["plan"], s["plan"]["measured"]
    print(f"\n== {label}: wall {r['wall']:.0f} s, peak memory (max RSS, largest run so far) {r['peak_mb']:.0f} MB")
    rev = (plan.get("revised") or {}).get("measured") or {"stages": {}}
    nan = float("nan")
    print(f"{'stage':<12} {'estimate s':>11} {'measured s':>11} {'ratio':>7}   {'revised s':>10} {'ratio':>7}")
    for k, row in m["stages"].items():
        ms, rv = row["measured_s"], rev["stages"].get(k) or {}
        print(f"{k:<12} {row['estimate_s']:>11.1f} {ms if ms is not None else nan:>11.1f} "
              f"{row['ratio'] if row['ratio'] is not None else nan:>7.2f}   "
              + (f"{rv['estimate_s']:>10.1f} {rv['ratio'] if rv['ratio'] is not None else nan:>7.2f}" if rv else ""))
    print(f"{'total':<12} {m['estimate_total_s']:>11.1f} {m['measured_total_s']:>11.1f} {m['ratio']:>7.2f}"
          + (f"   {rev['estimate_total_s']:>10.1f} {rev['ratio']:>7.2f}  (revised: the stages after the variants)"
             if rev.get("ratio") else ""))
    pk = s.get("peak_rss_mb") or {}
    if pk:  # where the peak rose: the stages whose peak is above the one before
        prev, rises = 0.0, []
        for k, v in pk.items():
            if v > prev + 20:
                rises.append(f"{k} {v:,.0f}")
            prev = max(prev, v)
        print("peak RSS after each stage that raised it (MB): " + ", ".join(rises))
    ev = (plan.get("revised") or plan).get("stress_evaluations") or {}  # as the budget last sized them
    n_ev = (ev.get("forward", 0) + ev.get("gradient", 0)) / 1000
    if n_ev and "stress" in s["stages"]:
        print(f"stress: {s['stages']['stress'] / n_ev:.4f} s per 1,000 item evaluations "
              f"({ev['forward']:,} forward, {ev['gradient']:,} gradient, on {ev['items']:,} items)")
    if s.get("budget"):
        b = s["budget"]
        print(f"budget {b['minutes']:g} min: wall {r['wall'] / 60:.1f} min ({100 * (r['wall'] / 60 / b['minutes'] - 1):+.0f} %), "
              f"sized {b['sized']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--tests", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--budget", type=float, default=None, help="also run the largest n_test with budget.minutes")
    ap.add_argument("--device", default=None, help="cuda: the runs on the GPU (backend=gpu device=cuda)")
    args = ap.parse_args()
    print(f"uptime: {os.getloadavg()}; threads: the run's own choice (summary.json run.env.threads)")
    root = Path(tempfile.mkdtemp(prefix="mlbench-cifar-"))
    val = min(2000, args.train // 10)
    write_cifar(root, args.train + 2 * val, max(args.tests))
    print(f"ResNet-18 width {args.width}, {args.train} train items, {args.epochs} epoch(s), CIFAR-10 binary batches in {root}")
    for n in args.tests:
        report(f"n_test {n:,}", run(root, n, args))
    if args.budget:
        report(f"n_test {max(args.tests):,}, budget.minutes={args.budget:g}", run(root, max(args.tests), args, args.budget))


if __name__ == "__main__":
    main()

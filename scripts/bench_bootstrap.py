"""Benchmark the paired bootstrap: 10,000 resamples over 10,000 test items.

    python scripts/bench_bootstrap.py            # CPU
    python scripts/bench_bootstrap.py --cuda     # + the same on the GPU

Bootstrapped statistics per resample: the variant-minus-baseline change of accuracy,
macro F1, NLL, Brier, ECE, MCE and worst-class recall, the disagreement rate and the
change of worst-group accuracy (with a group attribute): 9 metrics, 10 classes, 2 groups.
Compared against a straightforward loop (numpy indexing per resample, 200 resamples,
scaled) measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _bench import row

from mlbench.evaluate.stats import paired_deltas


def data(n: int = 10_000, c: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    lb = torch.randn(n, c, generator=g) * 2 + 3 * torch.nn.functional.one_hot(y, c)
    lv = lb + 0.5 * torch.randn(n, c, generator=g)
    group = torch.randint(0, 2, (n,), generator=g)
    return lb.softmax(1), lv.softmax(1), y, group


def naive(pb, pv, y, resamples: int) -> float:
    """Accuracy, NLL and Brier deltas only, one resample at a time (numpy)."""
    pb, pv, y = pb.numpy(), pv.numpy(), y.numpy()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        for p in (pb, pv):
            q, t = p[i], y[i]
            (q.argmax(1) == t).mean()
            -np.log(q[np.arange(len(t)), t]).mean()
            ((q - np.eye(q.shape[1])[t]) ** 2).sum(1).mean()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    pb, pv, y, g = data()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if a.cuda else [])
    for dev in devices:
        paired_deltas(pb[:500], pv[:500], y[:500], g[:500], n_resamples=100, device=dev)  # warm-up
        ours, loop, metrics = [], [], 0
        for _ in range(a.repeats):  # interleaved: drift lands on both sides alike
            t0 = time.perf_counter()
            metrics = len(paired_deltas(pb, pv, y, g, n_resamples=10_000, device=dev))
            ours.append(time.perf_counter() - t0)
            loop.append(naive(pb, pv, y, 200) * 50)
        ratios = [o / n for o, n in zip(ours, loop)]
        row(f"paired bootstrap 10k x 10k items, {metrics} metrics, {dev.type}", statistics.median(ours), "s",
            f"(range {min(ours):.2f}-{max(ours):.2f}; target < 2 s on CPU)")
        row("  naive numpy loop, 3 metrics, scaled to 10k resamples", statistics.median(loop), "s",
            f"(range {min(loop):.1f}-{max(loop):.1f})")
        row("  mlbench (all metrics) / naive loop (3 metrics)", statistics.median(ratios), "x",
            f"(range {min(ratios):.3f}-{max(ratios):.3f} over {a.repeats} interleaved repetitions)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()

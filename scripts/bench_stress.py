"""Benchmark the stress stage.

    python scripts/bench_stress.py           # default stress set over all default variants on digits (CPU)
    python scripts/bench_stress.py --cuda    # + PGD-10 on a CIFAR-shaped ResNet-18: mlbench vs a hand loop

The stress time is the stress stage's own wall time as the run records it (summary.json
``stages.stress``), over 3 default runs (median and range): the same work measured the same
way each time, instead of the difference of two separate runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _bench import row, timed_run

from mlbench.models import ResNet
from mlbench.stress import Attack


def hand_pgd(model, x, y, eps, alpha, steps):
    """A plain L-inf PGD loop with random start, the usual way."""
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def pgd_ratio(batch: int = 1024, reps: int = 5) -> tuple[float, float]:
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = ResNet((3, 32, 32), 10).to(dev).eval()
    x = torch.rand(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    eps, steps = 8 / 255, 10
    atk = Attack("pgd", "Linf", [eps], steps=steps, step_ratio=0.25, random_start=True, batch_size=batch)
    atk.bounds = (0.0, 1.0)

    def timeit(fn):
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return batch / best

    hand = timeit(lambda: hand_pgd(model, x, y, eps, 0.25 * eps, steps))
    ours = timeit(lambda: atk.craft(model, x, y, eps))
    return ours / hand, hand


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--skip-run", action="store_true", help="only the CUDA PGD figure")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if not a.skip_run:
        dev = [] if a.cuda else ["device=cpu"]
        stage, share = [], []
        for _ in range(a.repeats):
            wall, _, s = timed_run(*dev)
            stage.append(s["stages"]["stress"])
            share.append(s["stages"]["stress"] / wall)
        row("stress stage over all default variants (the run's own stage clock)", statistics.median(stage), "s",
            f"(range {min(stage):.2f}-{max(stage):.2f}, {a.repeats} runs; target < 60 s)")
        row("  share of the run's wall time", 100 * statistics.median(share), "%")
    if a.cuda:
        r, hand = pgd_ratio()
        row("PGD-10 ResNet-18 bs1024: mlbench (captum) / hand loop", r, "x",
            f"(hand-written {hand:,.0f} img/s; target >= 0.9)")


if __name__ == "__main__":
    main()

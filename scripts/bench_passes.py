"""What keeping memory flat costs an evaluation pass: interleaved A/B in one process.

    python scripts/bench_passes.py               # 3,000 CIFAR-shaped items, ResNet-18 width 16, 3 rounds
    python scripts/bench_passes.py --items 10000 --rounds 5

(a) an evaluation pass with the freed heap handed back at its end (``release_memory`` in
``predict_all``) against the same pass without; (b) a white-box FGSM variant scored on its
adversarial batches as they are crafted (``Refill``) against crafting the whole set first and
scoring it. Prints each arm's median seconds and the ratio (1.0: no cost); (b) also checks that
both arms give the same logits bit for bit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mlbench.evaluate.loop as loop
from mlbench.backends import TorchRunner
from mlbench.models import ResNet
from mlbench.stress import Attack
from mlbench.stress.base import Refill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = ResNet((3, 32, 32), 10, width=16).eval()
    runner = TorchRunner(model, torch.device("cpu"))
    x, y = torch.rand(args.items, 3, 32, 32), torch.randint(0, 10, (args.items,))
    attack = Attack("fgsm", "Linf", [0.05])
    attack.bounds = (0.0, 1.0)
    trim = loop.release_memory
    times: dict[str, list[float]] = {k: [] for k in ("trim", "no trim", "whole copy", "as crafted")}
    for _ in range(args.rounds):  # interleaved: a burst of load from elsewhere hits both arms
        for arm in ("trim", "no trim"):
            loop.release_memory = trim if arm == "trim" else (lambda: None)
            t0 = time.perf_counter()
            loop.predict_all(runner, x, 256)
            times[arm].append(time.perf_counter() - t0)
        loop.release_memory = trim
        t0 = time.perf_counter()
        whole = loop.predict_all(runner, attack.craft(model, x, y, 0.05), 256)
        times["whole copy"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        streamed = loop.predict_all(runner, x, 256, Refill(attack.batches(x, y, 0.05, model)), y)
        times["as crafted"].append(time.perf_counter() - t0)
        assert torch.equal(whole, streamed), "scored as crafted gave other logits"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.items} items, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds (median s)")
    print(f"evaluation pass: trim {med['trim']:.2f} s, no trim {med['no trim']:.2f} s, "
          f"ratio {med['trim'] / med['no trim']:.3f}")
    print(f"white-box FGSM: as crafted {med['as crafted']:.2f} s, whole copy {med['whole copy']:.2f} s, "
          f"ratio {med['as crafted'] / med['whole copy']:.3f} (same logits)")


if __name__ == "__main__":
    main()

"""Latency, throughput and memory, timed the way docs/metrics.md says.

- Latency: batch 1, host input to host output (``predict(x).cpu()``, which
  waits for the device), after warm-up; at least ``min_calls`` timed calls and
  at least ``min_time_s`` seconds. Percentiles are over the timed calls.
- Throughput: samples per second at a batch size, inputs already on the
  runner's device (as in ``evaluate``), device synchronized before the clock stops;
  the median of several short timing windows.
- Peak memory: peak allocated bytes on CUDA; on CPU the peak resident set size
  of the process sampled during prediction, minus the resident size just before.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import torch

from mlbench.backends import Runner


def latency(runner: Runner, example: torch.Tensor, warmup: int = 10, min_calls: int = 200,
            min_time_s: float = 2.0, max_calls: int = 100_000) -> dict[str, float]:
    """Batch-1 latency percentiles in milliseconds, with the number of timed calls."""
    x = example[:1].cpu()
    predict, clock = runner.predict, time.perf_counter
    for _ in range(warmup):
        predict(x).cpu()
    times: list[float] = []
    start = clock()
    while (len(times) < min_calls or clock() - start < min_time_s) and len(times) < max_calls:
        t0 = clock()
        predict(x).cpu()  # .cpu() waits for a GPU; on the CPU it is a no-op
        times.append(clock() - t0)
    return latency_stats(times)


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99 and mean in milliseconds over timed calls, and how many calls."""
    ms = np.asarray(seconds) * 1e3
    return {"latency_p50_ms": float(np.percentile(ms, 50)), "latency_p90_ms": float(np.percentile(ms, 90)),
            "latency_p99_ms": float(np.percentile(ms, 99)), "latency_mean_ms": float(ms.mean()),
            "latency_calls": len(ms)}


def throughput(runner: Runner, x: torch.Tensor, batch_size: int, min_time_s: float = 1.0,
               warmup: int = 3, windows: int = 5) -> float:
    """Samples per second predicting batches of ``batch_size`` (cycled from ``x``): the median
    over ``windows`` timing windows that together last at least ``min_time_s`` (each at least
    one batch), so that a burst of load from elsewhere moves one window, not the figure."""
    x = x.to(runner.input_device)
    if len(x) < batch_size:  # tile so that a full batch exists
        x = x.repeat((batch_size + len(x) - 1) // len(x), *([1] * (x.dim() - 1)))
    starts = list(range(0, len(x) - batch_size + 1, batch_size))
    for i in range(warmup):
        runner.predict(x[starts[i % len(starts)]:][:batch_size])
    runner.synchronize()
    rates, n = [], 0
    for _ in range(windows):
        done, t0 = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - t0 < min_time_s / windows:
            s = starts[n % len(starts)]
            runner.predict(x[s:s + batch_size])
            n, done = n + 1, done + 1
            if done % 8 == 0:
                runner.synchronize()
        runner.synchronize()
        rates.append(done * batch_size / (time.perf_counter() - t0))
    return float(np.median(rates))


def compare_efficiency(runners: dict[str, Runner], x: torch.Tensor, batch_sizes: list[int], *,
                       warmup: int = 10, min_calls: int = 200, min_time_s: float = 2.0,
                       throughput_time_s: float = 0.5, rounds: int = 5) -> dict[str, dict]:
    """Latency and throughput of several runners, measured in interleaved rounds.

    Each runner is timed in turn, ``rounds`` times over, and its figures pool its own
    rounds: slow drift of the machine (other tenants, clocks) then lands on every runner
    alike instead of on whichever happened to be timed at a bad moment. Each runner still
    gets at least ``min_calls`` batch-1 calls and ``min_time_s`` seconds of latency timing,
    and ``throughput_time_s`` seconds per batch size; nothing is timed concurrently.
    """
    x1 = x[:1].cpu()
    staged = {name: x.to(r.input_device) for name, r in runners.items()}
    for r in runners.values():
        for _ in range(warmup):
            r.predict(x1).cpu()
    times: dict[str, list[float]] = {n: [] for n in runners}
    for k in range(rounds):
        for name, r in runners.items():
            predict, clock, t = r.predict, time.perf_counter, times[name]
            need_calls = -(-min_calls * (k + 1) // rounds)
            start = clock()
            while len(t) < need_calls or clock() - start < min_time_s / rounds:
                t0 = clock()
                predict(x1).cpu()  # .cpu() waits for a GPU; on the CPU it is a no-op
                t.append(clock() - t0)
    out = {name: {**latency_stats(t), "throughput_sps_by_batch": {}} for name, t in times.items()}
    for b in batch_sizes:
        rates: dict[str, list[float]] = {n: [] for n in runners}
        for name, r in runners.items():  # warm-up at this batch size
            throughput(r, staged[name], b, min_time_s=0.0, warmup=2, windows=1)
        for _ in range(rounds):
            for name, r in runners.items():
                rates[name].append(throughput(r, staged[name], b, min_time_s=throughput_time_s / rounds,
                                              warmup=0, windows=1))
        for name in runners:
            out[name]["throughput_sps_by_batch"][str(b)] = float(np.median(rates[name]))
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(runner: Runner, x: torch.Tensor, batch_size: int) -> dict[str, int]:
    """Peak memory while predicting one batch of ``batch_size`` (see module docstring)."""
    xb = x[:batch_size].to(runner.input_device)
    device = getattr(runner, "device", torch.device("cpu"))
    if isinstance(device, torch.device) and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.predict(xb)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mem_bytes": int(peak), "peak_mem_delta_bytes": int(peak - before)}
    before, peak, stop = _rss_bytes(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    for _ in range(3):
        runner.predict(xb)
    stop.set()
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {"peak_mem_bytes": int(peak[0]), "peak_mem_delta_bytes": int(max(0, peak[0] - before))}

"""Latency, throughput and memory, timed the way docs/metrics.md says.

- Latency: batch 1, host input to host output (``predict(x).cpu()``, which
  waits for the device), after warm-up; at least ``min_calls`` timed calls and
  at least ``min_time_s`` seconds. Percentiles are over the timed calls.
- Throughput: samples per second at a batch size, inputs already on the
  runner's device (as in ``evaluate``), device synchronized before the clock stops;
  the median of several short timing windows.
- Threads: batch-1 latency runs with a stated number of intra-op threads (1 by
  default: a single stream), throughput with the run's threads; both are recorded.
- Conditions: the cores other processes kept busy and the load average around each
  timed phase, and the spread of the interleaved rounds; ``judge_timing`` states
  when the figures cannot be trusted.
- Peak memory: peak allocated bytes on CUDA; on CPU the peak resident set size
  of the process sampled during prediction, minus the resident size just before.
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from typing import Any

import numpy as np
import torch

from mlbench.backends import Runner
from mlbench.env import MachineWatch, cpu_count, torch_threads  # noqa: F401 - cpu_count re-exported


def latency(runner: Runner, example: torch.Tensor, warmup: int = 10, min_calls: int = 200,
            min_time_s: float = 2.0, max_calls: int = 100_000) -> dict[str, float]:
    """Batch-1 latency percentiles in milliseconds, with the number of timed calls."""
    call, clock = runner.serving_call(example[:1].cpu()), time.perf_counter
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = clock()
    while (len(times) < min_calls or clock() - start < min_time_s) and len(times) < max_calls:
        t0 = clock()
        call()
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


def _rel_halfwidth(values: list[float], scale: float = 1e3) -> float:
    """Half-width of the median's 95 % interval over the median (inf with no values)."""
    p50, lo, hi = median_ci(values, scale=scale)
    return (hi - lo) / (2 * p50) if p50 > 0 else math.inf


def _blocks(items: list, n: int) -> list[list]:
    """``items`` cut into ``n`` consecutive blocks of near-equal length (fewer if too short)."""
    k = min(n, len(items))
    return [[items[i] for i in idx] for idx in np.array_split(np.arange(len(items)), k)] if k else []


MIN_CALLS_PER_ROUND = 20  # fewer batch-1 calls per round: the rounds' p50s are too noisy to compare


def judge_timing(conditions: dict, spreads: dict[str, float], cores: int, tolerance: float,
                 calls_per_round: int = MIN_CALLS_PER_ROUND) -> list[str]:
    """Why the timings cannot be trusted (empty: they can). Two rules, stated in docs/metrics.md:
    the interleaved rounds of a runner disagree (max/min of its per-round p50 above
    1 + ``tolerance``; judged when every round has at least ``MIN_CALLS_PER_ROUND`` calls),
    or other processes kept more cores busy than the timing left free
    (``other_busy_cores`` > cores - threads used + 0.25, in any timed phase)."""
    reasons = []
    worst = max(spreads.items(), key=lambda kv: kv[1], default=None)
    if worst is not None and worst[1] > 1 + tolerance and calls_per_round >= MIN_CALLS_PER_ROUND:
        reasons.append(f"interleaved rounds disagree: {worst[0]}'s per-round p50 spans {worst[1]:.2f}x "
                       f"(tolerance {1 + tolerance:.2f}x)")
    for phase, c in conditions.items():
        other = c.get("other_busy_cores")
        free = max(cores - c["threads"], 0) + 0.25
        if other is not None and other > free:
            reasons.append(f"other processes kept {other:.2f} of {cores} cores busy during {phase} timing "
                           f"with {c['threads']} thread(s)")
    return reasons


def median_ci(seconds: list[float] | np.ndarray, z: float = 1.96, scale: float = 1e3) -> tuple[float, float, float]:
    """The median of timed calls with a distribution-free 95 % interval (order statistics at
    n/2 ± z·√n/2, the normal approximation of the sign-test interval), times ``scale``
    (default: seconds to milliseconds)."""
    xs = np.sort(np.asarray(seconds, dtype=np.float64)) * scale
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan
    half = z * math.sqrt(n) / 2
    lo, hi = int(max(0, math.floor(n / 2 - half))), int(min(n - 1, math.ceil(n / 2 + half)))
    return float(np.median(xs)), float(xs[lo]), float(xs[hi])


def compare_efficiency(runners: dict[str, Runner], x: torch.Tensor, batch_sizes: list[int], *,
                       warmup: int = 10, min_calls: int = 200, min_time_s: float = 0.0,
                       target_ci: float = 0.02, max_time_s: float = 2.0,
                       throughput_time_s: float = 0.1, throughput_target_ci: float = 0.05,
                       rounds: int = 6, latency_threads: int = 1,
                       throughput_threads: int = 0, tolerance: float = 0.25,
                       ratio_batch: int | None = None) -> dict[str, Any]:
    """Latency and throughput of several runners, measured in interleaved rounds.

    Each runner is timed in turn, round after round, and its figures pool its own rounds:
    slow drift of the machine (other tenants, clocks) then lands on every runner alike
    instead of on whichever happened to be timed at a bad moment. Latency timing is adaptive:
    after at least ``rounds`` rounds and ``min_calls`` batch-1 calls (and ``min_time_s``
    seconds) per runner, it stops once every runner's p50 is known to within ``target_ci``
    (the half-width of its 95 % interval over its p50), or when each runner has had
    ``max_time_s`` seconds on average (the phase's budget is ``max_time_s`` × runners); all
    runners stay in lockstep so their rounds pair up. Throughput, per batch size, works the
    same way on rounds of one short window per runner (the median window's interval within
    ``throughput_target_ci``), with ``throughput_time_s`` seconds per runner as the cap; nothing
    is timed concurrently.

    Batch-1 latency runs with ``latency_threads`` intra-op threads (single-stream), throughput
    with ``throughput_threads`` (0: torch's current setting). Returns ``{"runners": {name:
    figures}, "timing": conditions}``: each runner's pooled figures plus its per-round p50
    latency and per-round throughput at ``ratio_batch`` (what ratio intervals are built
    from); the conditions say what the machine did meanwhile and whether to trust it.
    """
    t_start = time.perf_counter()
    x1 = x[:1].cpu()
    cores = cpu_count()
    out: dict[str, dict] = {}
    conditions: dict[str, dict] = {}
    with torch_threads(latency_threads) as n_lat:
        lat_runners = {name: r.with_threads(n_lat) for name, r in runners.items()}
        calls = {name: r.serving_call(x1) for name, r in lat_runners.items()}
        for call in calls.values():
            for _ in range(warmup):
                call()
        times: dict[str, list[list[float]]] = {n: [] for n in runners}
        spent = dict.fromkeys(runners, 0.0)
        per_round = max(1, -(-min_calls // rounds))
        watch = MachineWatch.start()
        k, stop = 0, "converged"
        while True:
            for name, call in calls.items():
                clock, t = time.perf_counter, []
                start = clock()
                while len(t) < per_round or clock() - start < min_time_s / rounds:
                    t0 = clock()
                    call()
                    t.append(clock() - t0)
                spent[name] += clock() - start
                times[name].append(t)
            k += 1
            if k < rounds:
                continue
            widths = {n: _rel_halfwidth([v for rt in times[n] for v in rt]) for n in runners}
            if all(w <= target_ci for w in widths.values()):
                break
            if sum(spent.values()) >= max_time_s * len(spent):  # the budget: max_time_s per runner
                stop = "time cap"
                break
        conditions["latency"] = {**watch.stop(), "threads": n_lat, "rounds": k, "stop": stop,
                                 "target_ci": target_ci, "max_time_s": max_time_s}
    for name, rounds_t in times.items():
        pooled = [v for rt in rounds_t for v in rt]
        _, lo, hi = median_ci(pooled)
        out[name] = {**latency_stats(pooled), "throughput_sps_by_batch": {},
                     "latency_p50_ci_low_ms": lo, "latency_p50_ci_high_ms": hi,
                     "latency_p50_ci_rel": _rel_halfwidth(pooled),
                     "latency_p50_ms_by_round": [float(np.median(rt)) * 1e3 for rt in rounds_t],
                     "latency_threads": n_lat}
    with torch_threads(throughput_threads) as n_tp:
        tp_runners = {name: r.with_threads(n_tp) for name, r in runners.items()}
        staged = {name: x.to(r.input_device) for name, r in tp_runners.items()}
        watch = MachineWatch.start()
        window = throughput_time_s / (2 * rounds)
        stops = {}
        for b in batch_sizes:
            rates: dict[str, list[float]] = {n: [] for n in runners}
            for name, r in tp_runners.items():  # warm-up at this batch size
                throughput(r, staged[name], b, min_time_s=0.0, warmup=2, windows=1)
            spent_tp, k = 0.0, 0
            while True:  # adaptive like latency: rounds of one window each, in lockstep
                t_round = time.perf_counter()
                for name, r in tp_runners.items():
                    rates[name].append(throughput(r, staged[name], b, min_time_s=window, warmup=0, windows=1))
                spent_tp += time.perf_counter() - t_round
                k += 1
                if k < rounds:
                    continue
                if all(_rel_halfwidth(v, scale=1.0) <= throughput_target_ci for v in rates.values()):
                    stops[str(b)] = {"rounds": k, "stop": "converged"}
                    break
                if spent_tp >= throughput_time_s * len(rates):
                    stops[str(b)] = {"rounds": k, "stop": "time cap"}
                    break
            for name in runners:
                out[name]["throughput_sps_by_batch"][str(b)] = float(np.median(rates[name]))
                if b == ratio_batch:
                    out[name]["throughput_sps_by_round"] = rates[name]
                out[name]["throughput_threads"] = n_tp
        conditions["throughput"] = {**watch.stop(), "threads": n_tp, "by_batch": stops,
                                    "target_ci": throughput_target_ci, "max_time_s": throughput_time_s}
    # agreement is judged over `rounds` consecutive blocks of rounds (however many rounds the
    # adaptive stop took), so the rule means the same with 6 rounds or 60
    blocks = {n: [float(np.median([v for rt in part for v in rt])) for part in _blocks(rt_list, rounds)]
              for n, rt_list in times.items()}
    spreads = {n: max(b) / min(b) for n, b in blocks.items() if min(b) > 0}
    fewest = min((sum(len(rt) for rt in part) for rt_list in times.values() for part in _blocks(rt_list, rounds)),
                 default=0)
    reasons = judge_timing(conditions, spreads, cores, tolerance, fewest)
    timing = {"cpu_count": cores, "rounds": conditions["latency"]["rounds"], "latency_threads": n_lat, "throughput_threads": n_tp,
              "phases": conditions, "round_spread": spreads, "tolerance": tolerance,
              "fewest_calls_per_round": fewest,
              "reliable": not reasons, "reasons": reasons}
    # the stage's own wall time, and what of it the timed phases do not cover (runners rebuilt
    # for other thread counts, warm-up calls): where to look when timing takes long
    timing["wall_s"] = time.perf_counter() - t_start
    timing["outside_phases_s"] = max(0.0, timing["wall_s"] - sum(c["wall_s"] for c in conditions.values()))
    return {"runners": out, "timing": timing}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
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

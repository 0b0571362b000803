"""Benchmark the deployment variants of one default run (digits CNN, 2 cores here).

    python scripts/bench_variants.py

- mlbench's batch-1 p50 for the ONNX fp32 model / a bare `session.run` loop over the
  same file, both timed in this process (target: within 10 %);
- ORT static int8 / ORT fp32 throughput at batch 256, with the accuracy change;
- structured pruning 50 % (+ fine-tune) / unpruned torch throughput at batch 256;
- wall time of the whole default run with all default variants (target < 90 s).
The last three come from one `mlbench` run (same process, same machine state).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnxruntime as ort
import torch
from _bench import row, timed_run

from mlbench.backends import OrtRunner
from mlbench.data import Digits
from mlbench.evaluate import latency


def bare_p50(path, x: np.ndarray, threads: int, min_calls: int = 200, min_time_s: float = 2.0) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(10):
        s.run(None, {name: x})
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        s.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.percentile(np.asarray(times) * 1e3, 50))


def main() -> None:
    wall, run_dir, s = timed_run("device=cpu")
    v = s["variants"]
    threads = s["run"]["env"]["threads"]
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {threads} threads, run {run_dir}")
    onnx_path = run_dir / v["onnx_fp32"]["artifact"]
    x1 = Digits().load().x["test"][:1]
    ours, bare = [], []
    for _ in range(3):  # interleave to share machine state
        ours.append(latency(OrtRunner(onnx_path, threads=threads), x1)["latency_p50_ms"])
        bare.append(bare_p50(onnx_path, x1.numpy(), threads))
    row("ONNX fp32 batch-1 p50: mlbench latency() [ms]", statistics.median(ours), "ms")
    row("ONNX fp32 batch-1 p50: bare session.run loop [ms]", statistics.median(bare), "ms")
    row("  ratio mlbench / bare", statistics.median(ours) / statistics.median(bare), "x", "(target 0.9-1.1)")
    tp = {k: val["throughput_sps_by_batch"]["256"] for k, val in v.items() if val["status"] == "ok"}
    acc = {k: val["metrics"]["accuracy"] for k, val in v.items() if val["status"] == "ok"}
    row("ORT static int8 / ORT fp32 throughput, batch 256", tp["ort_int8_static"] / tp["onnx_fp32"], "x")
    row("  accuracy change (points)", 100 * (acc["ort_int8_static"] - acc["onnx_fp32"]), "pt", "(target >= -1)")
    row("structured 50% + ft / unpruned torch throughput, batch 256", tp["structured50_ft"] / tp["baseline"], "x",
        "(target >= 1.5)")
    row("  accuracy change (points)", 100 * (acc["structured50_ft"] - acc["baseline"]), "pt", "(target >= -1)")
    row("unstructured 50% + ft / unpruned torch throughput (no speedup expected)",
        tp["prune50_ft"] / tp["baseline"], "x")
    row("whole default run, all default variants, start-up included", wall, "s", "(target < 90 s)")


if __name__ == "__main__":
    main()

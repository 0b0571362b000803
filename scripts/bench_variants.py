"""Benchmark the deployment variants of one default run (digits CNN, 2 cores here).

    python scripts/bench_variants.py

- mlbench's batch-1 p50 for the ONNX fp32 model / a bare `session.run` loop over the
  same file, interleaved in this process, 3 repetitions (target <= 1.05);
- int8 / fp32 (dynamic and static) and structured-pruned / dense batch-1 p50 ratios as
  mlbench times them against the same ratios from bare loops (target: agree within 5 %);
- ORT static int8 / ORT fp32 throughput at batch 256, with the accuracy change;
- structured pruning 50 % (+ fine-tune) / unpruned torch throughput at batch 256;
- wall time of the whole default run with all default variants (target < 90 s);
- batch-1 throughput of the torch baseline on 2 threads, timed in turn with the run's three
  onnxruntime sessions as the timing stage does, with their worker threads spinning (onnxruntime's
  default) against sleeping (mlbench's default): how much a spinning session slows the next
  runner timed in the same process, and the sessions' own batch-256 throughput both ways.
The three throughput and wall figures come from one `mlbench` run (same process, same machine state).
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


def bare_torch_p50(model: torch.nn.Module, x: torch.Tensor, min_calls: int = 300) -> float:
    """A hand-written no_grad batch-1 loop (no runner), p50 in ms."""
    with torch.no_grad():
        for _ in range(10):
            model(x)
        times = []
        for _ in range(min_calls):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.percentile(np.asarray(times) * 1e3, 50))


def main() -> None:
    torch.set_num_threads(1)  # batch-1 latency is single-stream (eval.latency.threads = 1)
    wall, run_dir, s = timed_run(*(["device=cpu"] if torch.cuda.is_available() else []))
    v = s["variants"]
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, batch-1 timing on 1 thread, run {run_dir}")
    x1 = Digits().load().x["test"][:1]
    files = {k: run_dir / v[k]["artifact"] for k in ("onnx_fp32", "ort_int8_dynamic", "ort_int8_static")}
    ours: dict[str, list[float]] = {k: [] for k in files}
    bare: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(5):  # interleaved: mlbench's runner and a bare session, same file, same process
        for k, f in files.items():
            ours[k].append(latency(OrtRunner(f, threads=1), x1, min_time_s=0.5)["latency_p50_ms"])
            bare[k].append(bare_p50(f, x1.numpy(), 1, min_time_s=0.5))
    ratio = [o / b for o, b in zip(ours["onnx_fp32"], bare["onnx_fp32"], strict=True)]
    row("ONNX fp32 batch-1 p50: mlbench OrtRunner / bare session.run loop", statistics.median(ratio), "x",
        f"(range {min(ratio):.3f}-{max(ratio):.3f}; {statistics.median(ours['onnx_fp32']) * 1e3:.1f} vs "
        f"{statistics.median(bare['onnx_fp32']) * 1e3:.1f} us; target <= 1.05)")
    for k in ("ort_int8_dynamic", "ort_int8_static"):
        r_ours = [a / b for a, b in zip(ours[k], ours["onnx_fp32"], strict=True)]
        r_bare = [a / b for a, b in zip(bare[k], bare["onnx_fp32"], strict=True)]
        agree = statistics.median(r_ours) / statistics.median(r_bare)
        row(f"{k} / fp32 p50: mlbench {statistics.median(r_ours):.3f}, bare {statistics.median(r_bare):.3f}",
            agree, "x", "(agreement; target within 0.95-1.05)")
    # structured pruning: the same pass on a CNN, dense and pruned timed by mlbench's runner and by a bare loop
    from mlbench.backends import TorchRunner
    from mlbench.compress import Artifact, PassContext, PruneStructured
    from mlbench.models import CNN
    d = Digits().load()
    dense = CNN(d.meta.input_shape, 10).eval()
    pruned = PruneStructured(ratio=0.5).apply(Artifact(id="x", format="torch", model=dense),
                                              PassContext(data=d, device=torch.device("cpu"), workdir=run_dir))[0].model
    rs_ours, rs_bare = [], []
    for _ in range(3):
        lo = {n: latency(TorchRunner(m, torch.device("cpu")), x1, min_time_s=0.5)["latency_p50_ms"]
              for n, m in (("dense", dense), ("pruned", pruned))}
        lb = {n: bare_torch_p50(m, x1) for n, m in (("dense", dense), ("pruned", pruned))}
        rs_ours.append(lo["pruned"] / lo["dense"])
        rs_bare.append(lb["pruned"] / lb["dense"])
    row(f"structured 50% / dense p50: mlbench {statistics.median(rs_ours):.3f}, bare {statistics.median(rs_bare):.3f}",
        statistics.median(rs_ours) / statistics.median(rs_bare), "x", "(agreement; target within 0.95-1.05)")
    tp = {k: val["throughput_sps_by_batch"]["256"] for k, val in v.items() if val["status"] == "ok"}
    acc = {k: val["metrics"]["accuracy"] for k, val in v.items() if val["status"] == "ok"}
    row("ORT static int8 / ORT fp32 throughput, batch 256 (from the run)", tp["ort_int8_static"] / tp["onnx_fp32"], "x")
    row("  accuracy change (points)", 100 * (acc["ort_int8_static"] - acc["onnx_fp32"]), "pt", "(target >= -1)")
    row("structured 50% + ft / unpruned torch throughput, batch 256", tp["structured50_ft"] / tp["baseline"], "x",
        "(target >= 1.5)")
    row("  accuracy change (points)", 100 * (acc["structured50_ft"] - acc["baseline"]), "pt", "(target >= -1)")
    row("whole default run, all default variants, start-up included", wall, "s", "(target < 90 s)")
    spinning_interference(run_dir, v)


def spinning_interference(run_dir, v: dict, repeats: int = 3) -> None:
    """The timing stage's throughput rounds on the baseline and the three ONNX variants, once
    with sessions that spin and once with sessions that sleep, alternating, ``repeats`` times."""
    from mlbench.backends import TorchRunner
    from mlbench.evaluate.efficiency import compare_efficiency
    from mlbench.models import CNN
    from mlbench.train.cache import load_weights
    d = Digits().load()
    model = load_weights(CNN(d.meta.input_shape, 10), run_dir / v["baseline"]["artifact"]).eval()
    files = {k: run_dir / v[k]["artifact"] for k in ("onnx_fp32", "ort_int8_static", "ort_int8_dynamic")}
    torch_bs1: dict[bool, list[float]] = {True: [], False: []}
    ort_256: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for spinning in (True, False):
            runners = {"baseline": TorchRunner(model, torch.device("cpu")),
                       **{k: OrtRunner(f, threads=2, spinning=spinning) for k, f in files.items()}}
            out = compare_efficiency(runners, d.x["test"], [1, 256], min_calls=60, max_time_s=0.0,
                                     throughput_time_s=0.1, latency_threads=1, throughput_threads=2)["runners"]
            torch_bs1[spinning].append(out["baseline"]["throughput_sps_by_batch"]["1"])
            ort_256[spinning].append(statistics.median(out[k]["throughput_sps_by_batch"]["256"] for k in files))
    for name, figures in (("torch baseline, batch 1, 2 threads", torch_bs1),
                          ("ONNX variants (median of 3), batch 256, 2 threads", ort_256)):
        ratio = [a / b for a, b in zip(figures[False], figures[True], strict=True)]
        row(f"{name}: sessions sleeping / spinning", statistics.median(ratio), "x",
            f"(range {min(ratio):.2f}-{max(ratio):.2f}; {statistics.median(figures[False]):.0f} vs "
            f"{statistics.median(figures[True]):.0f} samples/s)")


if __name__ == "__main__":
    main()

"""Benchmark the foundation: default run wall time, evaluate() overhead, train loop overhead.

    python scripts/bench_pipeline.py            # CPU figures: the default run 3 times, with its stage breakdown
    python scripts/bench_pipeline.py --cuda     # adds the CUDA training-loop ratio
    python scripts/bench_pipeline.py --against ../old-checkout   # default run: this code / that code

Every ratio is measured against a hand-written baseline in the same process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _bench import ROOT, row, timed_run

from mlbench.backends import TorchRunner
from mlbench.data import Digits
from mlbench.evaluate import evaluate
from mlbench.models import CNN, ResNet
from mlbench.train import fit


def eval_ratio(repeats: int = 15) -> list[float]:
    """evaluate() throughput / a bare no_grad loop over the same tensors, one ratio per paired trial."""
    d = Digits().load()
    model = CNN(d.meta.input_shape, 10).eval()
    x = d.x["test"].repeat(8, 1, 1, 1)  # ~3.6k images
    y = d.y["test"].repeat(8)
    runner = TorchRunner(model, torch.device("cpu"))

    def bare():
        with torch.no_grad():
            outs = [model(x[i:i + 256]) for i in range(0, len(x), 256)]
            torch.cat(outs).softmax(1)

    ratios = []
    for _ in range(3):
        bare(), evaluate(runner, x, y)
    for _ in range(repeats):
        t0 = time.perf_counter(); bare(); tb = time.perf_counter() - t0
        t0 = time.perf_counter(); evaluate(runner, x, y, batch_size=256); te = time.perf_counter() - t0
        ratios.append(tb / te)
    return ratios


def cuda_train_ratio(amp: str, channels_last: bool, batch: int = 512, steps: int = 60) -> tuple[float, float]:
    """fit() throughput / a hand-written loop, ResNet-18 on synthetic 3x32x32 data."""
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # "fp32" = TF32 on Hopper
    n = batch * steps
    x = torch.rand(n, 3, 32, 32)
    y = torch.randint(0, 10, (n,))
    xv, yv = x[:batch], y[:batch]
    dtype = torch.bfloat16 if amp == "bf16" else None

    def hand() -> float:
        torch.manual_seed(0)
        m = ResNet((3, 32, 32), 10).to(dev)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        xd, yd = x.to(dev), y.to(dev)
        if channels_last:
            xd = xd.contiguous(memory_format=torch.channels_last)
        lossf = torch.nn.CrossEntropyLoss()
        best = 0.0
        for _ in range(2):  # epoch 1 warms up cudnn
            perm = torch.randperm(n, device=dev)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                    loss = lossf(m(xd[idx]), yd[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
            best = max(best, n / (time.perf_counter() - t0))
        return best

    def ours() -> float:
        torch.manual_seed(0)
        m = ResNet((3, 32, 32), 10)
        res = fit(m, x, y, xv, yv, epochs=2, batch_size=batch,
                  optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), amp=amp,
                  channels_last=channels_last, device=dev)
        return res.samples_per_s

    hand(); ours()  # warm-up both
    h, o = hand(), ours()
    return o / h, h


def against_default(other: Path, repeats: int) -> None:
    """The default run of this code and of ``other`` (an earlier checkout), each in a fresh
    process with a fresh cache, alternating which goes first; the ratio this / other per pair,
    and per stage (summary.json ``stages``) the median seconds of each side."""
    ratios, walls = [], {"this": [], "other": []}
    stages: dict[str, list[dict]] = {"this": [], "other": []}
    for i in range(repeats):
        order = [("this", ROOT), ("other", other)] if i % 2 == 0 else [("other", other), ("this", ROOT)]
        got = {}
        for name, code in order:
            got[name], _, summary = timed_run(*CPU, code=code)
            walls[name].append(got[name])
            stages[name].append({k: v for k, v in (summary.get("stages") or {}).items() if isinstance(v, float)})
        ratios.append(got["this"] / got["other"])
        print(f"pair {i + 1}: this {got['this']:.1f} s, other {got['other']:.1f} s, ratio {ratios[-1]:.3f}")
    row("default run: this checkout / the other, median of pairs", statistics.median(ratios), "x",
        f"(range {min(ratios):.3f}-{max(ratios):.3f} over {repeats} pairs)")
    for side in ("this", "other"):
        row(f"  {side}: wall, median", statistics.median(walls[side]), "s",
            f"(range {min(walls[side]):.1f}-{max(walls[side]):.1f})")
    names = [k for k in stages["this"][0] if all(k in s for side in stages.values() for s in side)] if repeats else []
    for k in names:
        a = statistics.median(s[k] for s in stages["this"])
        b = statistics.median(s[k] for s in stages["other"])
        row(f"  stage {k}: this / other", a / b if b > 0 else float("nan"), "x", f"({a:.2f} s vs {b:.2f} s)")


# the default run is plain `mlbench`; `device=cpu` only where a GPU would otherwise be picked
# (any override that is not a config group makes the CLI check it by composing the config once
# more before the run, which a plain `mlbench` does not)
CPU = ["device=cpu"] if torch.cuda.is_available() else []

OVERHEAD = ("startup", "setup", "efficiency", "compare", "write")  # imports, timing, bootstrap, plots, report


def _stage_rows(label: str, walls: list[float], stages: list[dict], target: str) -> None:
    row(label, statistics.median(walls), "s", f"(range {min(walls):.1f}-{max(walls):.1f}, {len(walls)} runs{target})")
    for k in stages[0]:
        vals = [st[k] for st in stages]
        row(f"  stage {k}", statistics.median(vals), "s", f"(range {min(vals):.2f}-{max(vals):.2f})")
    shares = [sum(st.get(k, 0.0) for k in OVERHEAD) / sum(st.values()) for st in stages]
    row("  share outside real work (" + ", ".join(OVERHEAD) + ")", 100 * statistics.median(shares), "%",
        f"(range {100 * min(shares):.0f}-{100 * max(shares):.0f}; target <= 35 %)")


def default_run_breakdown(repeats: int, overrides: list[str]) -> None:
    """The default run ``repeats`` times, each in a fresh process with a fresh cache, each
    followed by the same run again on the cache it left (baseline and ONNX artifacts kept: a
    sweep's later jobs, the next update of a cycle): wall time, seconds per stage (summary.json
    ``stages``) and the share spent outside real work (start-up and imports, set-up, timing,
    the paired bootstrap, plots and report)."""
    runs: dict[str, tuple[list, list]] = {"fresh": ([], []), "warm": ([], [])}
    for _ in range(repeats):
        cache = Path(tempfile.mkdtemp(prefix="mlbench-bench-cache-"))
        for kind in ("fresh", "warm"):
            wall, _, s = timed_run(*overrides, cache=cache)
            runs[kind][0].append(wall)
            runs[kind][1].append({k: v for k, v in s["stages"].items() if isinstance(v, (int, float))})
        shutil.rmtree(cache, ignore_errors=True)
    _stage_rows("default `mlbench` run, fresh cache, start-up included", *runs["fresh"],
                "; target <= 20 s on 2 idle cores")
    _stage_rows("the same run again on the cache it left (baseline and ONNX artifacts kept)", *runs["warm"], "")


def thread_weight_difference(epochs: int = 3) -> float:
    """Largest |weight difference| between the digits CNN trained on 1 and on 2 intra-op
    threads (same seed, same batches): why train.threads is not load-dependent."""
    import functools
    d = Digits().load()
    weights = []
    for threads in (1, 2):
        torch.manual_seed(0)
        m = CNN(d.meta.input_shape, 10)
        fit(m, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=epochs, batch_size=64,
            optimizer=functools.partial(torch.optim.Adam, lr=1e-3), threads=threads)
        weights.append([p.detach().clone() for p in m.state_dict().values()])
    return max(float((a - b).abs().max()) for a, b in zip(*weights))


def reliability_plot_ratio(repeats: int = 8) -> tuple[list[float], float]:
    """One reliability diagram saved with its fixed layout ÷ the same saved with a tight bounding
    box (what it did before), interleaved; the paired ratios of ``repeats`` trials (2 warm-ups
    dropped), and the fixed layout's median seconds."""
    import matplotlib.pyplot as plt

    from mlbench.analysis.plots import reliability_diagram

    torch.manual_seed(0)
    labels = torch.randint(0, 10, (450,))
    curves = {n: (torch.softmax(3 * torch.randn(450, 10), 1), labels) for n in ("variant", "baseline")}
    save = plt.Figure.savefig
    out = Path(tempfile.mkdtemp(prefix="mlbench-bench-plot-"))
    times: dict[str, list[float]] = {"fixed": [], "tight": []}
    try:
        for _ in range(repeats + 2):
            for kind in ("fixed", "tight"):
                plt.Figure.savefig = save if kind == "fixed" else (
                    lambda fig, *a, **k: save(fig, *a, **{**k, "bbox_inches": "tight"}))
                t0 = time.perf_counter()
                reliability_diagram(curves, out / f"{kind}.png", "reliability · variant vs baseline")
                times[kind].append(time.perf_counter() - t0)
    finally:
        plt.Figure.savefig = save
        shutil.rmtree(out, ignore_errors=True)
    ratios = [f / t for f, t in zip(times["fixed"][2:], times["tight"][2:])]
    return ratios, statistics.median(times["fixed"][2:])


EXIT_CHILD = """
import atexit, sys, time
import mlbench.pipeline, mlbench.cli, torch._dynamo, torch.onnx, matplotlib.pyplot, river.drift  # a run's modules
atexit.register(lambda: print(time.time(), flush=True))  # runs after the other atexit handlers
if sys.argv[1] == "frozen":  # what the entry points do as they end
    mlbench.process.skip_final_collection(lambda: None)()
"""


def exit_ratio(repeats: int = 5) -> tuple[float, float, float, list[float]]:
    """The interpreter's exit after a run's imports (last atexit handler to process end, seen by
    the parent): with the heap frozen as `mlbench` ends ÷ without, interleaved in fresh
    processes; median of paired ratios, each side's median seconds, and the ratios."""
    import subprocess
    import sys
    times: dict[str, list[float]] = {"frozen": [], "plain": []}
    for i in range(repeats):
        for kind in (("frozen", "plain") if i % 2 == 0 else ("plain", "frozen")):
            out = subprocess.run([sys.executable, "-c", EXIT_CHILD, kind], capture_output=True, text=True,
                                 cwd=ROOT, check=True)
            times[kind].append(time.time() - float(out.stdout.split()[-1]))
    ratios = [f / p for f, p in zip(times["frozen"], times["plain"])]
    return statistics.median(ratios), statistics.median(times["frozen"]), statistics.median(times["plain"]), ratios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--against", type=Path, default=None,
                    help="a checkout of an earlier version: time its default run and this one, interleaved")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {'cuda: ' + torch.cuda.get_device_name() if a.cuda else 'cpu'}")
    if a.against is not None:
        against_default(a.against, a.repeats)
        return
    if not a.skip_run:
        default_run_breakdown(a.repeats, CPU if not a.cuda else [])
        wall2, _, _ = timed_run("variants=[]", *(CPU if not a.cuda else []))
        row("`mlbench variants=[]` (baseline only), fresh cache", wall2, "s")
    r, frozen, plain, rs = exit_ratio()
    row("interpreter exit after a run's imports: heap frozen / not", r, "x",
        f"({frozen:.2f} s vs {plain:.2f} s; range {min(rs):.2f}-{max(rs):.2f} over {len(rs)} pairs)")
    rs = eval_ratio()
    row("evaluate() / bare no_grad loop throughput", statistics.median(rs), "x",
        f"(range {min(rs):.2f}-{max(rs):.2f} over {len(rs)} pairs; target >= 0.9)")
    rs, secs = reliability_plot_ratio()
    row("reliability diagram: fixed layout / tight bounding box", statistics.median(rs), "x",
        f"(range {min(rs):.2f}-{max(rs):.2f} over {len(rs)} pairs; {secs:.2f} s per diagram, one per variant)")
    row("max |weight difference|, CNN trained on 1 vs 2 threads (3 epochs)", thread_weight_difference(), "",
        "(> 0: trained weights depend on the thread count)")
    if a.cuda:
        for amp, cl in (("none", False), ("bf16", True)):
            r, hand = cuda_train_ratio(amp, cl)
            row(f"fit() / hand loop, ResNet-18 bs512 amp={amp} channels_last={cl}", r, "x",
                f"(hand-written {hand:,.0f} img/s; target >= 0.9)")


if __name__ == "__main__":
    main()

"""Benchmark the update cycle.

    python scripts/bench_cycle.py [--skip-run] [--cuda] [--repeats 3]

- one period with an update on digits (score, monitor, data checks, retrain, structured
  pruning + fine-tune, ONNX export, onnxruntime static int8, evaluation, gate), in process,
  each repetition from the same initial deployment; median and range (target <= 10 s on 2 cores);
- the default ``mlbench cycle`` (12 periods, 3 policies) in a fresh process, fresh cache
  (target <= 3 minutes on 2 cores);
- with ``--cuda``: the train + compress + evaluate part of an update for the ResNet on
  CIFAR-sized synthetic images (3 x 32 x 32, 10 classes), on 2 CPU threads and on CUDA, in
  the same process, interleaved (target: CUDA at least 3x faster). ``--image-device cpu``
  runs only the CPU side (a dry run of the same code).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _bench import row, timed_run
from hydra import compose, initialize_config_dir

from mlbench import pipeline
from mlbench.components import settings_from
from mlbench.cycle.loop import Engine
from mlbench.cycle.policies import Every
from mlbench.cycle.stage import load_recipe
from mlbench.cycle.state import PolicyState
from mlbench.cycle.stream import Stream
from mlbench.data import DataBundle, DataMeta
from mlbench.schema import CONF_DIR, register


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _no_perturb(sc, x, y, t):
    return x


def digits_period(repeats: int, cache: Path) -> list[float]:
    """Seconds of one period with an update (``Engine.step`` at period 5 of the default cycle)."""
    cfg = _cfg(f"paths.cache_dir={cache}", "cycle.schedule=[]")
    ctx = pipeline.RunContext(cfg=cfg, run_dir=cache / "run")
    pipeline.setup(ctx)
    ctx.stressors, ctx.specs, ctx.monitor = [], [], None
    cyc = pipeline.instantiate_checked(cfg.cycle, "cycle")
    pipeline.load_data(ctx)
    pipeline.baseline(ctx)
    stream = Stream(ctx.data, cyc.scenarios, cyc.period_size, cyc.seed, _no_perturb)
    eng = Engine(cyc, cfg, ctx.data, ctx.data_hash, stream, ctx.model_factory, ctx.baseline.model, ctx.device,
                 ctx.checks, load_recipe(cfg, cyc.recipe), settings_from(cfg).quality_batch)
    eng.state_dir.mkdir(parents=True, exist_ok=True)
    initial = eng.initial()
    out = []
    for _ in range(repeats):
        ps = PolicyState(Every(1), initial, stream_detector=eng.new_stream_detector())
        t0 = time.perf_counter()
        r = eng.step(ps, 5)
        out.append(time.perf_counter() - t0)
        assert r["update"]["status"] in ("deployed", "refused"), r["update"]
    return out


def synthetic_images(n: int = 3000, classes: int = 10, seed: int = 0) -> DataBundle:
    """CIFAR-sized images with planted class patterns (a smooth template per class + noise)."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.nn.functional.interpolate(torch.rand(classes, 3, 4, 4, generator=g), size=32, mode="bilinear")
    y = torch.randint(0, classes, (n,), generator=g)
    x = (0.6 * templates[y] + 0.4 * torch.rand(n, 3, 32, 32, generator=g)).clamp(0, 1)
    cut = {"train": (0, n // 5), "val": (n // 5, n // 5 + 200), "calib": (n // 5 + 200, (n + n // 5 + 200) // 2),
           "test": ((n + n // 5 + 200) // 2, n)}
    meta = DataMeta("synthetic_images", (3, 32, 32), classes, [str(c) for c in range(classes)], "image", (0.0, 1.0))
    idx = torch.arange(n)
    return DataBundle(meta, {k: x[a:b] for k, (a, b) in cut.items()}, {k: y[a:b] for k, (a, b) in cut.items()},
                      {k: idx[a:b] for k, (a, b) in cut.items()})


def image_update(devices: list[str], repeats: int, cache: Path, width: int, items: int) -> dict[str, list[dict]]:
    """train + compress + evaluate seconds of one update for the ResNet, per device."""
    period = items // 2
    cfg = _cfg(f"paths.cache_dir={cache}", "model=resnet", f"model.width={width}", "datacheck=none",
               "cycle.schedule=[]", f"cycle.period_size={period}", "cycle.periods=6", "cycle.epochs=3",
               "cycle.batch_size=64")
    cyc = pipeline.instantiate_checked(cfg.cycle, "cycle")
    data = synthetic_images()
    factory = pipeline.instantiate_checked(cfg.model, "model")
    torch.manual_seed(0)
    model = factory(input_shape=data.meta.input_shape, num_classes=data.meta.num_classes).eval()
    stream = Stream(data, cyc.scenarios, period, cyc.seed, _no_perturb)
    eng = Engine(cyc, cfg, data, "synthetic", stream, factory, model, torch.device("cpu"), [],
                 load_recipe(cfg, cyc.recipe), 256)
    eng.state_dir.mkdir(parents=True, exist_ok=True)
    initial = eng.initial()
    out: dict[str, list[dict]] = {d: [] for d in devices}
    if "cuda" in devices:  # CUDA warm-up (kernels, cuDNN autotuning), not counted
        eng.candidate(initial.dense, [0, 1], [2], 0, eng.state_dir / "warm", torch.device("cuda"), initial)
    for r in range(repeats):
        for d in devices:  # interleaved
            with _threads(2 if d == "cpu" else torch.get_num_threads()):
                rec, _ = eng.candidate(initial.dense, [0, 1], [2], r, eng.state_dir / f"{d}{r}", torch.device(d), initial)
            assert rec.get("status") in ("deployed", "refused"), rec
            out[d].append(rec["seconds"])
    return out


class _threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-run", action="store_true", help="skip the default `mlbench cycle` in a fresh process")
    ap.add_argument("--cuda", action="store_true", help="the ResNet update on CUDA against 2 CPU threads")
    ap.add_argument("--image-device", choices=["cpu"], help="the ResNet update on the CPU only (a dry run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=32, help="ResNet-18 width for the image update")
    ap.add_argument("--items", type=int, default=400, help="training items of the image update")
    a = ap.parse_args()
    register()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}, "
          f"cuda {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    cache = Path(tempfile.mkdtemp(prefix="mlbench-bench-cycle-"))
    ts = digits_period(a.repeats, cache)
    row("one period with an update, digits (prune + ORT int8 + gate)", statistics.median(ts), "s",
        f"(range {min(ts):.2f}-{max(ts):.2f}, {a.repeats} reps; target <= 10 s on 2 cores)")
    if not a.skip_run:
        wall, _, s = timed_run("cycle")
        row("default `mlbench cycle` (12 periods, 3 policies), fresh process", wall, "s", "(target <= 180 s)")
        iv = s["cycle"]["interval"]
        row("  its shortest sustainable update interval", iv["interval_s"], "s",
            f"({iv['updates']} updates, {s['cycle']['env']['device']})")
    devices = ["cpu", "cuda"] if a.cuda else (["cpu"] if a.image_device else [])
    if devices:
        res = image_update(devices, a.repeats, cache, a.width, a.items)
        part = {d: [sum(s[k] for k in ("train", "compress", "evaluate")) for s in v] for d, v in res.items()}
        for d in devices:
            stages = {k: statistics.median(s[k] for s in res[d]) for k in ("train", "compress", "evaluate")}
            row(f"ResNet-18 (width {a.width}) update on {d}: train + compress + evaluate", statistics.median(part[d]),
                "s", f"(range {min(part[d]):.2f}-{max(part[d]):.2f}; " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                + ")")
        if a.cuda:
            ratios = [c / g for c, g in zip(part["cpu"], part["cuda"], strict=True)]
            row("  2 CPU threads / CUDA", statistics.median(ratios), "x",
                f"(range {min(ratios):.2f}-{max(ratios):.2f}; target >= 3; {torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()

"""Your data, your model: what reading a user's inputs costs.

    python scripts/bench_inputs.py               # all three
    python scripts/bench_inputs.py --only images --images 20000 --reps 3

1. images: N RGB 32x32 PNG files in 10 class folders read by ``data=image_folder`` the first
   time (decode + cache) and the second time (cache hit), against a bare single-thread Pillow
   loop over the same files. Targets (20,000 files, 2 cores): first <= 15 s, cached <= 1 s.
2. table: a 1,000,000-row x 20-column CSV (5 categorical, 1 % missing) read and encoded by
   ``data=table``, against ``pandas.read_csv`` alone; peak memory of a fresh process doing it.
   Targets: <= 10 s, <= 2 GB.
3. model: the same run (debug=smoke, variants and stages of the default) with the built-in
   ``model=mlp`` and with the same class named as a user's ``model=torch``; targets: ratio <= 1.05.

Repetitions are interleaved; medians and ranges printed. The files are written once into a
temporary folder (not timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):6.2f} s (range {min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def write_pngs(folder: Path, n: int) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        c = i % 10
        base = (np.sin(xx / (2 + c) + i) * 60 + np.cos(yy / (3 + c)) * 60 + 128)[..., None]
        img = np.clip(base + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        p = folder / f"class_{c}" / f"{i:06d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "RGB").save(p)


def bench_images(n: int, reps: int) -> None:
    from PIL import Image

    from mlbench.data import ImageFolder
    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    print(f"writing {n} PNG files ...", flush=True)
    write_pngs(work / "png", n)
    files = sorted((work / "png").rglob("*.png"))
    first, cached, bare = [], [], []
    for r in range(reps):
        t = time.perf_counter()
        for p in files:
            with Image.open(p) as im:
                np.asarray(im.convert("RGB"))
        bare.append(time.perf_counter() - t)
        cache = work / f"cache{r}"
        t = time.perf_counter()
        ImageFolder(str(work / "png"), cache_dir=str(cache)).load()
        first.append(time.perf_counter() - t)
        t = time.perf_counter()
        ds = ImageFolder(str(work / "png"), cache_dir=str(cache))
        ds.load()
        cached.append(time.perf_counter() - t)
        assert ds.record["cache_hit"]
    print(f"images ({n} RGB 32x32 PNG, {os.cpu_count()} CPUs)")
    print(f"  bare Pillow loop, 1 thread : {_fmt(bare)}")
    print(f"  image_folder, first read   : {_fmt(first)}   target <= 15 s at 20,000; "
          f"{statistics.median(bare) / statistics.median(first):.2f}x the bare loop's speed")
    print(f"  image_folder, cached       : {_fmt(cached)}   target <= 1 s at 20,000")


TABLE_CHILD = """
import resource, sys, time
from mlbench.data import Table
t = time.perf_counter()
b = Table(sys.argv[1], target="label", categorical="auto").load()
dt = time.perf_counter() - t
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, b.x["train"].shape[1])
"""
PANDAS_CHILD = """
import resource, sys, time
import pandas as pd
t = time.perf_counter()
pd.read_csv(sys.argv[1], engine="pyarrow")
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
"""


def write_table(path: Path, rows: int) -> None:
    import pandas as pd
    rng = np.random.default_rng(0)
    cols = {f"num{j}": rng.normal(size=rows).astype(np.float32) for j in range(15)}
    for j in range(5):
        cols[f"cat{j}"] = rng.choice([f"v{k}" for k in range(4 + 3 * j)], rows)
    df = pd.DataFrame(cols)
    df.loc[rng.choice(rows, rows // 100, replace=False), "num0"] = np.nan
    df["label"] = (df["num1"] + (df["cat0"] == "v1") > 0.5).astype(int)
    df.to_csv(path, index=False)


def bench_table(rows: int, reps: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-table-"))
    path = work / "rows.csv"
    print(f"writing a {rows}-row CSV ...", flush=True)
    write_table(path, rows)
    ours, bare, peak, width = [], [], [], 0
    for _ in range(reps):
        for code, out in ((PANDAS_CHILD, bare), (TABLE_CHILD, ours)):
            res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
            t, mb, w = res.stdout.split()
            out.append(float(t))
            if code is TABLE_CHILD:
                peak.append(float(mb))
                width = int(w)
    print(f"table ({rows} rows x 20 columns, 5 categorical; {path.stat().st_size / 1e6:.0f} MB CSV)")
    print(f"  pandas.read_csv alone      : {_fmt(bare)}")
    print(f"  data=table read + encode   : {_fmt(ours)}   target <= 10 s; {width} encoded features")
    print(f"  peak memory (data=table)   : median {statistics.median(peak):.0f} MB (max {max(peak):.0f})   target <= 2048 MB")


def bench_model(reps: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import run_in_process
    work = Path(tempfile.mkdtemp(prefix="bench-model-"))
    sources = {"builtin model=mlp": ["model=mlp"],
               "user model=torch (same class)": ["model=torch", "model.arch={_target_:mlbench.models.MLP,hidden:[256,128],dropout:0.1}"]}
    times: dict[str, list[float]] = {k: [] for k in sources}
    for r in range(reps):
        for name, ov in sources.items():
            t = time.perf_counter()
            run_in_process(*ov, "data=wine", run_dir=work / f"{r}-{len(times[name])}-{name[:4]}" / "run",
                           cache=work / f"cache-{r}-{name[:4]}")
            times[name].append(time.perf_counter() - t)
    print("model source (debug=smoke on data=wine, the default variants and stages; fresh caches)")
    for name, xs in times.items():
        print(f"  {name:30s}: {_fmt(xs)}")
    ratio = [u / b for u, b in zip(times["user model=torch (same class)"], times["builtin model=mlp"])]
    print(f"  user / builtin             : median {statistics.median(ratio):.3f} (range {min(ratio):.3f}-{max(ratio):.3f})"
          "   target <= 1.05")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["images", "table", "model"])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    if args.only in (None, "images"):
        bench_images(args.images, args.reps)
    if args.only in (None, "table"):
        bench_table(args.rows, args.reps)
    if args.only in (None, "model"):
        bench_model(args.reps)


if __name__ == "__main__":
    main()

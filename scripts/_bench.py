"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_run(*overrides: str, cache: Path | None = None, code: Path = ROOT) -> tuple[float, Path, dict]:
    """Run ``mlbench`` in a fresh process (Python start-up included) with fresh results and,
    unless given, a fresh baseline cache. ``code``: the checkout whose ``mlbench`` package runs
    (an earlier version, to compare against). Returns (wall seconds, run dir, summary)."""
    work = Path(tempfile.mkdtemp(prefix="mlbench-bench-"))
    env = {**os.environ, "MLBENCH_RESULTS": str(work / "results"),
           "MLBENCH_CACHE": str(cache or work / "cache"), "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mlbench", *overrides], env=env, cwd=code,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"mlbench failed:\n{out.stdout}\n{out.stderr}")
    (summary,) = list((work / "results").rglob("summary.json"))
    return wall, summary.parent, json.loads(summary.read_text())


def row(name: str, value: float, unit: str = "", target: str = "") -> None:
    print(f"{name:<62} {value:>10.3f} {unit:<6} {target}")

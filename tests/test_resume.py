"""Resumable runs: a run killed with SIGKILL during the stress stage, started again with
``resume=true``, keeps its finished stages and ends with the same figures as a run that was
never interrupted (timings and memory aside)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, run_dirs

# the coverage check makes the per-factor stage run: a stage that is never skipped, between the
# saved deltas and the stress stage the run is killed in (its figures must survive the restore)
ARGS = ("debug=smoke", "data=synthetic", "variants=[onnx_fp32,prune50_ft]", "monitor=none",
        "datacheck=[lint,leakage,shift,coverage]")
TIMEY = ("latency", "throughput", "seconds", "load_s", "build_s", "timing", "wall", "started", "stages", "env",
         "train_s", "_ms", "runner", "peak_mem", "peak_rss", "created", "cache_", "config_hash", "overrides", "sps", "loadavg",
         "basis", "explanation", "requirements", "recommended", "id", "pareto", "plan", "budget")


def _figures(obj):
    """summary.json without what depends on the clock or the process (timings, memory, ids)."""
    if isinstance(obj, dict):
        return {k: _figures(v) for k, v in obj.items() if not any(t in k for t in TIMEY)}
    if isinstance(obj, list):
        return [_figures(v) for v in obj]
    return obj


def _state(cache: Path) -> dict | None:
    for p in (cache / "resume").glob("*/state.json"):
        try:
            return json.loads(p.read_text())
        except ValueError:  # never: it is replaced atomically
            return None
    return None


@pytest.mark.reliability
def test_killed_during_stress_then_resumed_gives_the_uninterrupted_figures(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    env = {**os.environ, "MLBENCH_RESULTS": str(work / "results"), "MLBENCH_CACHE": str(work / "cache")}
    code = "import sys; from mlbench.cli import main; sys.argv = ['mlbench', *sys.argv[1:]]; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, *ARGS], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        st = _state(work / "cache")
        if st and "compare" in st["done"]:  # the stress stage is next: kill it there
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed during stress"
    st = _state(work / "cache")
    assert st["done"] == ["datacheck", "efficiency", "compare"] and not run_dirs(work)

    out = run_cli(*ARGS, "resume=true", cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 finished stage(s) kept from the interrupted run (datacheck, efficiency, compare)" in out.stdout
    assert _state(work / "cache") is None  # a finished run removes its entry
    (resumed,) = run_dirs(work)

    fresh_work = tmp_path / "fresh"
    fresh_work.mkdir()
    assert run_cli(*ARGS, cwd=fresh_work).returncode == 0
    (fresh,) = run_dirs(fresh_work)
    a = json.loads((resumed / "summary.json").read_text())
    b = json.loads((fresh / "summary.json").read_text())
    assert a["stress"] and a["variants"]["prune50_ft"]["stress"] and a["factors"]["variants"]["prune50_ft"]
    assert a["run"]["config"].pop("resume") is True and b["run"]["config"].pop("resume") is False
    for s in (a, b):  # two working folders: their own results and cache paths
        s["run"]["config"].pop("paths")
        s["run"]["config"]["data"].pop("cache_dir", None)
    assert _figures(a) == _figures(b)
    assert {p.name for p in (resumed / "plots").iterdir()} == {p.name for p in (fresh / "plots").iterdir()}


def test_a_damaged_state_is_one_error_line_and_a_missing_one_starts_afresh(tmp_path):
    from conftest import compose_config

    from mlbench.pipeline.resume import resume_key
    cfg = compose_config("variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false",
                         results=tmp_path / "results", cache=tmp_path / "cache")
    entry = tmp_path / "cache" / "resume" / resume_key(cfg)
    entry.mkdir(parents=True)
    (entry / "state.json").write_text('{"version": 1, "done": ["compare"], "records": {"baseline": {"nope": 1}}}')
    out = run_cli("variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false",
                  "debug=smoke", "resume=true", cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "resume: the saved state" in lines[0] and "damaged" in lines[0]
    (entry / "state.json").unlink()
    out = run_cli("variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false",
                  "debug=smoke", "resume=true", cwd=tmp_path)
    assert out.returncode == 0 and "no interrupted run of this config; starting afresh" in out.stdout

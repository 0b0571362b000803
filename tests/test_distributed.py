"""A sweep on a real Slurm cluster: ``hydra/launcher=cluster`` (submitit) submits a 4-job sweep
as a Slurm array to the single-node cluster ``scripts/slurm_cluster.sh`` starts (slurmctld and
slurmd on 127.0.0.1); the jobs share the baseline cache on a shared folder (one trains, three
reuse it) and ``mlbench compare`` collects them.

Where no Slurm controller answers the test skips, saying why; CI starts the cluster and sets
``MLBENCH_REQUIRE_SLURM=1``, which turns the skip into a failure."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest
from conftest import run_cli, run_dirs

SWEEP = ("-m", "hydra/launcher=cluster", "sweep=sparsity", "debug=smoke", "stress=none", "monitor=none",
         "datacheck=none", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=15")


def _slurm() -> str | None:
    """Why no Slurm cluster can take jobs here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (bash scripts/slurm_cluster.sh start installs and starts one)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        return f"no Slurm node takes jobs (sinfo: {(out.stdout + out.stderr).strip()[:200] or 'nothing'})"
    return None


@pytest.mark.reliability
def test_a_four_job_sweep_on_slurm_shares_the_baseline_and_compare_collects_it(tmp_path):
    why = _slurm()
    if why is not None:
        if os.environ.get("MLBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    out = run_cli(*SWEEP, cwd=tmp_path, fresh=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert len(runs) == 4
    s = [json.loads((r / "summary.json").read_text()) for r in runs]
    jobs = [x["run"]["env"]["scheduler"] for x in s]
    assert all(j and j["slurm_job_id"] for j in jobs), jobs  # each job ran under Slurm, and says which
    assert len({j["slurm_array_job_id"] for j in jobs}) == 1  # one array job
    assert sorted(j["slurm_array_task_id"] for j in jobs) == ["0", "1", "2", "3"]
    hits = sorted(x["baseline_training"]["cache_hit"] for x in s)
    assert hits == [False, True, True, True], hits  # one job trained the baseline, three reused it
    assert len({x["baseline_training"]["key"] for x in s}) == 1 and len({x["variants"]["baseline"]["lineage"]["id"]
                                                                       for x in s}) == 1
    sparsity = {x["run"]["config"]["variants"]["prune50_ft"]["passes"][0]["sparsity"]:
                x["variants"]["prune50_ft"]["metrics"] for x in s}
    assert sorted(sparsity) == [0.3, 0.5, 0.7, 0.9]
    kept = [sparsity[k]["nonzero_params"] for k in sorted(sparsity)]
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[-1]  # each job ran its own setting
    sweep = runs[0].parent
    assert (sweep / "sweep_summary" / "compare.csv").is_file()  # the sweep callback collected them
    cmp = run_cli("compare", str(sweep), "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    with open(tmp_path / "cmp" / "compare.csv", newline="") as f:
        pruned = [r for r in csv.DictReader(f) if r["variant"] == "prune50_ft"]
    assert len({r["run"] for r in pruned}) == 4
    assert sorted(r["run"].split("sparsity=")[1].rstrip("]") for r in pruned) == ["0.3", "0.5", "0.7", "0.9"]

"""`mlbench cycle` end to end: failures and refusals keep the deployed model, an interrupted
cycle resumes with identical results, impossible schedules fail before any work, and the run
folder (summary, report, compare) is complete."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli, run_dirs

from mlbench.analysis.compare import compare
from mlbench.cycle import loop as cycle_loop
from mlbench.cycle.stage import run_cycle_command
from mlbench.errors import MlbenchError
from mlbench.results import validate_summary

# --------------------------------------------------------------------------- end to end

SMALL = ["cycle.periods=6", "cycle.period_size=40", "cycle.label_delay=0", "cycle.window=2", "cycle.scaling=[]",
         "cycle.schedule=[{from: 0, kind: none}, {from: 3, kind: concept, classes: [0, 1]}]"]


def _strip(rows):
    """Timeline rows without their timings (stage seconds, the candidates' latency: the only
    things a rerun may change)."""
    out = json.loads(json.dumps(rows))
    for r in out:
        r.pop("seconds")
        if r["update"]:
            r["update"].pop("seconds", None)
            for k in [k for k in r["update"].get("candidate", {}) if k.startswith("latency")]:
                r["update"]["candidate"].pop(k)
    return out


def test_cycle_keeps_a_model_deployed_through_failures_and_refusals(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg(*SMALL, "cycle.policies=[oracle,every_k,never]", "cycle.every=2", "cycle.recipe=null")
    calls = {"n": 0}
    real = cycle_loop.Engine.compress

    def flaky(self, dense, bundle, workdir, seed, device):  # the oracle's second update fails parity
        calls["n"] += workdir.parent.name == "oracle"
        if workdir.parent.name == "oracle" and calls["n"] == 2:
            from mlbench.errors import VariantFailed
            raise VariantFailed("ONNX parity check failed: max |diff| 1 (tolerance 0.0001)")
        return real(self, dense, bundle, workdir, seed, device)

    monkeypatch.setattr(cycle_loop.Engine, "compress", flaky)
    s = run_cycle_command(cfg, tmp_path / "run")
    c = s["cycle"]
    oracle = c["timeline"]["oracle"]
    statuses = [(r["update"] or {}).get("status") for r in oracle]
    assert statuses[0] != "skipped" and statuses[-1] is None  # no delay: period 0's labels; nothing left to serve
    assert "failed" in statuses
    failed = next(r for r in oracle if (r["update"] or {}).get("status") == "failed")
    assert failed["update"]["reason"].startswith("compress: ONNX parity check failed")
    nxt = oracle[failed["period"] + 1]
    assert nxt["version"] == failed["version"]  # the failure kept the model that was deployed
    assert c["table"]["never"]["retrains"] == 0 and {r["version"] for r in c["timeline"]["never"]} == {0}
    assert [r["period"] for r in c["timeline"]["every_k"] if r["update"]] == [1, 3]
    assert c["stages"]["compress"]["n"] >= 1 and c["interval"]["interval_s"] > 0
    for name in ("oracle", "every_k", "never"):
        dep = c["table"][name]["deployed"]
        assert all((tmp_path / "run" / f).is_file() for f in dep["files"])
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "plots" / "cycle_timeline.png").is_file()
    # the recurring labels (concept drift from period 3): the oracle, which sees them, beats never
    assert c["table"]["oracle"]["mean_accuracy"] >= c["table"]["never"]["mean_accuracy"]


def test_a_gate_that_refuses_keeps_the_initial_model(make_cfg, tmp_path):
    cfg = make_cfg(*SMALL, "cycle.policies=[oracle]", "cycle.recipe=null",
                   "cycle.requirements=[{metric: accuracy, op: '>=', value: 1.01}]")
    c = run_cycle_command(cfg, tmp_path / "run")["cycle"]
    ups = [r["update"] for r in c["timeline"]["oracle"] if r["update"] and r["update"]["status"] != "skipped"]
    assert ups and all(u["status"] == "refused" for u in ups)
    assert all("accuracy >= 1.01" in u["reason"] for u in ups)
    assert {r["version"] for r in c["timeline"]["oracle"]} == {0}


def test_an_interrupted_cycle_resumes_with_identical_results(make_cfg, tmp_path, monkeypatch):
    over = [*SMALL, "cycle.periods=5", "cycle.policies=[oracle]", "cycle.recipe=onnx_fp32", "datacheck=none",
            "cycle.requirements=[{metric: size_bytes, op: '<=', value: 1e9}]"]  # a gate that deploys every update
    full = run_cycle_command(make_cfg(*over), tmp_path / "full")["cycle"]
    real = cycle_loop.save_state

    def killed(engine, states, done):  # the process dies after period 3's updates, before its state is saved
        if done == 3:
            raise KeyboardInterrupt
        return real(engine, states, done)

    monkeypatch.setattr(cycle_loop, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        run_cycle_command(make_cfg(*over), tmp_path / "first")
    monkeypatch.setattr(cycle_loop, "save_state", real)
    resumed = run_cycle_command(make_cfg(*over, "cycle.resume=true"), tmp_path / "second")["cycle"]
    assert resumed["resumed_from"] == 3  # periods 0-2 were saved; 3 is done again
    assert _strip(resumed["timeline"]["oracle"]) == _strip(full["timeline"]["oracle"])
    assert all(r["update"]["status"] == "deployed" for r in full["timeline"]["oracle"][:3])
    assert full["timeline"]["oracle"][3]["previous"]["version"] == 2  # the replaced model was reloaded too
    # a damaged saved model is one error line, and the saved state is left as it was
    state = __import__("pathlib").Path(resumed["state"])
    dense = sorted(p for p in state.rglob("dense.safetensors") if p.parent.name != "initial")[0]
    dense.write_bytes(b"not a safetensors file")
    before = (state / "state.json").read_bytes()
    with pytest.raises(MlbenchError, match="is damaged .* run without cycle.resume=true"):
        run_cycle_command(make_cfg(*over, "cycle.resume=true"), tmp_path / "third")
    assert (state / "state.json").read_bytes() == before


def test_cycle_command_fails_before_any_work_on_an_impossible_schedule(tmp_path):
    out = run_cli("cycle", "debug=smoke", "cycle.periods=40", cwd=tmp_path)
    assert out.returncode == 2
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "40 periods of 50 items need 2000 items" in err[0]
    assert "baseline" not in out.stdout  # nothing was trained


def test_cycle_command_end_to_end(tmp_path):
    out = run_cli("cycle", "debug=smoke", "cycle.periods=4", "cycle.period_size=40", "cycle.policies=[never,oracle]",
                  "cycle.schedule=[{from: 0, kind: none}, {from: 2, kind: covariate, corruption: auto, param: 4}]",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = run_dirs(tmp_path)
    s = json.loads((run_dir / "summary.json").read_text())
    c = s["cycle"]
    assert c["schedule"][2]["scenario"] == "covariate:gaussian_blur:4"
    assert set(c["timeline"]) == {"never", "oracle"}
    assert c["timeline"]["oracle"][2]["update"]["status"] in ("deployed", "refused")  # the real recipe ran
    assert "shortest sustainable update interval" in out.stdout
    assert c["scaling"][0]["device"] == "cpu" and c["scaling"][0]["update_s"] > 0
    assert "mlbench cycle" in (run_dir / "report.md").read_text()
    validate_summary(s)
    files = compare([run_dir], tmp_path / "cmp", quiet=True)  # mlbench compare reads cycle runs
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "cycle.csv")))
    assert tmp_path / "cmp" / "cycle.html" in files and [r["policy"] for r in rows] == ["never", "oracle"]
    assert float(rows[0]["mean_accuracy"]) == pytest.approx(c["table"]["never"]["mean_accuracy"])


def test_a_budgeted_cycle_buys_its_labels_and_trains_only_on_them(make_cfg, tmp_path):
    """access=budgeted: every timeline that retrains buys `budget` labels per period (the oracle
    sees all, never none); its updates train on the bought training items (+ replay) and gate on
    the bought gate items; each strategy is a timeline of its own."""
    cfg = make_cfg(*SMALL, "cycle.policies=[never,every_k,oracle]", "cycle.every=2", "cycle.recipe=null",
                   "cycle.labels.access=budgeted", "cycle.labels.budget=10", "cycle.labels.strategies=[random,entropy]",
                   "cycle.train_data=window", "cycle.requirements=[{metric: size_bytes, op: '<=', value: 1e9}]")
    c = run_cycle_command(cfg, tmp_path / "run")["cycle"]
    assert list(c["timeline"]) == ["never", "every_k+random", "every_k+entropy", "oracle"]
    assert c["tracks"]["every_k+entropy"] == {"policy": "every_k", "strategy": "entropy"}
    assert all(r["labels"] == 0 for r in c["timeline"]["never"])
    assert all(r["labels"] == 40 for r in c["timeline"]["oracle"])
    for name in ("every_k+random", "every_k+entropy"):
        rows = c["timeline"][name]
        assert all(r["labels"] == 10 for r in rows)
        ups = [r["update"] for r in rows if r["update"] and r["update"]["status"] == "deployed"]
        assert ups, name
        for u in ups:  # 10 bought per period: 3 from the gate (30 %), 7 to train on
            assert u["n_train"] == 7 * len(u["train_periods"]) and u["n_holdout"] == 3 * len(u["gate_periods"])
        assert c["table"][name]["labels_bought"] == 10 * len(rows)
    assert "labels bought by entropy" in (tmp_path / "run" / "report.md").read_text()

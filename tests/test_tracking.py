"""tracking=mlflow writes what summary.json says into a real (local SQLite) MLflow store;
sweep jobs nest under one parent run; a store that cannot be written leaves the run intact."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, run_dirs

mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is not installed (pip install 'mlbench[tracking]')")
pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy")

SMALL = ["debug=smoke", "model=mlp", "variants=[onnx_fp32]", "stress=none", "monitor=none", "datacheck=none",
         "eval.efficiency=false", "tracking=mlflow"]


def _runs(uri: str):
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("mlbench")
    return client, client.search_runs([exp.experiment_id])


def test_a_run_is_logged_with_its_metrics_curve_and_artifacts(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_cli("data=wine", *SMALL, f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    client, (run,) = _runs(uri)
    assert run.data.params["override.data"] == "wine" and run.data.params["data"] == "wine"
    m = s["variants"]["onnx_fp32"]
    assert run.data.metrics["onnx_fp32/accuracy"] == pytest.approx(m["metrics"]["accuracy"])
    assert run.data.metrics["onnx_fp32/delta_accuracy_ci_low"] == pytest.approx(m["deltas"]["accuracy"]["ci_low"])
    assert run.data.tags["mlbench.recommended"] == str(s["recommended"]["variant"])
    curve = client.get_metric_history(run.info.run_id, "baseline/val_loss")
    history = s["baseline_training"]["history"]
    assert [c.step for c in curve] == [h["epoch"] for h in history]
    assert [c.value for c in curve] == pytest.approx([h["val_loss"] for h in history])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "report.html", "plots"} <= names


def test_sweep_jobs_nest_under_one_parent(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_cli("-m", "data=wine,breast_cancer", *SMALL, f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    _, runs = _runs(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.data.tags["mlbench.data"] for c in children) == ["breast_cancer", "wine"]


def test_an_unwritable_store_warns_and_the_run_stands(tmp_path, caplog):
    from mlbench.tracking import MlflowTracker, track
    summary = {"run": {"id": "r", "config": {}, "env": {}}, "data": {"name": "wine"}, "variants": {}}
    with caplog.at_level("WARNING"):
        track(MlflowTracker("file:///proc/not-a-store"), summary, tmp_path)  # returns: the run stands
    assert "not logged to MLflow at file:///proc/not-a-store" in caplog.text


def test_a_users_metric_and_the_inputs_reach_mlflow(tmp_path):
    hook = tmp_path / "my_metric.py"
    hook.write_text("import numpy as np\n\ndef mean_true_prob(p, y):\n    return float(p[np.arange(len(y)), y].mean())\n")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_cli("data=wine", *SMALL, f"tracking.uri={uri}", f"metrics.extra=[{hook}:mean_true_prob]", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    _, (run,) = _runs(uri)
    want = s["variants"]["onnx_fp32"]["metrics"]["mean_true_prob"]
    assert run.data.metrics["onnx_fp32/mean_true_prob"] == pytest.approx(want)
    assert run.data.params["inputs.data.content_hash"] == s["inputs"]["data"]["content_hash"]
    assert run.data.params["inputs.model.source"] == "builtin"

"""The Python API runs what the CLI runs and reads back exactly what summary.json says."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

import mlbench
from mlbench.errors import MlbenchError


def _overrides(tmp_path):
    return ["debug=smoke", "data=wine", "model=mlp", "variants=[onnx_fp32,ort_int8_dynamic]",
            "eval.efficiency=false", "stress=none", "monitor=none", f"paths.results_dir={tmp_path}/results",
            f"paths.cache_dir={tmp_path}/cache", f"paths.history_db={tmp_path}/history.sqlite"]


def test_run_compare_and_export_from_python(tmp_path):
    s = mlbench.run(_overrides(tmp_path), run_dir=tmp_path / "run")
    raw = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s.raw == raw and s.run_dir == tmp_path / "run" and s.baseline == raw["baseline"]
    assert set(s.variants) == set(raw["variants"])
    v = s["onnx_fp32"]
    assert v.ok and v.accuracy == raw["variants"]["onnx_fp32"]["metrics"]["accuracy"]
    d = raw["variants"]["onnx_fp32"]["deltas"]["accuracy"]
    assert v.delta("accuracy") == mlbench.api.Interval(d["value"], d["ci_low"], d["ci_high"])
    assert s.recommended == (raw["recommended"] or {}).get("variant")
    assert s.decision and s.decision == raw["recommended"]["explanation"]["text"]
    assert mlbench.Summary.load(tmp_path / "run").raw == raw
    with pytest.raises(KeyError, match="no variant 'nope'"):
        s["nope"]

    rows = mlbench.compare([tmp_path / "run"])
    assert [r["variant"] for r in rows] == list(raw["variants"])
    assert rows[1]["accuracy"] == raw["variants"][rows[1]["variant"]]["metrics"]["accuracy"]

    out = mlbench.export(_overrides(tmp_path)[:3] + [f"paths.cache_dir={tmp_path}/cache",
                                                      "export.variant=onnx_fp32",
                                                      f"export.output={tmp_path}/dist/wine.onnx"],
                         run_dir=tmp_path / "export")
    meta = json.loads((tmp_path / "dist" / "wine.json").read_text())
    assert out["output"] == str(tmp_path / "dist" / "wine.onnx") and meta["input"]["feature_names"][0] == "alcohol"
    sess = ort.InferenceSession(out["output"])
    assert sess.get_inputs()[0].name == meta["input"]["name"]


def test_api_mistakes_are_one_line_errors_and_leave_no_folder(tmp_path):
    with pytest.raises(MlbenchError, match=r"no option 'wien' \(did you mean wine\?\)"):
        mlbench.run(["data=wien"], run_dir=tmp_path / "a")
    with pytest.raises(MlbenchError, match="'abc' of type 'str' could not be converted to Integer"):
        mlbench.compose(["seed=abc"])  # a wrong type: Hydra's reason, one line
    with pytest.raises(MlbenchError, match="Key 'vall' not in 'DigitsConf'"):
        mlbench.run(["data.vall=1"], run_dir=tmp_path / "a")
    with pytest.raises(MlbenchError, match="train.epochs must be"):
        mlbench.run([*_overrides(tmp_path), "train.epochs=0"], run_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(MlbenchError, match="summary.json: cannot read"):
        mlbench.Summary.load(tmp_path)

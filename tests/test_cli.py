"""The CLI end to end: the results contract, bad input, the cache, export, multirun."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import run_cli, run_cli_cases, run_dirs

from mlbench.evaluate.metrics import classification_metrics
from mlbench.evaluate.stats import paired_deltas
from mlbench.results import validate_summary

DEFAULT_VARIANTS = ["baseline", "onnx_fp32", "ort_int8_static", "ort_int8_dynamic", "prune50_ft",
                    "structured50_ft"]


def test_smoke_run_writes_a_valid_contract(smoke_run):
    run_dir, s, out = smoke_run
    validate_summary(s)
    assert list(s["variants"]) == DEFAULT_VARIANTS
    assert all(v["status"] == "ok" for v in s["variants"].values()), {k: v["error"] for k, v in s["variants"].items()}
    assert "mlbench · digits" in out.stdout and "run directory:" in out.stdout
    assert (run_dir / "report.md").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    env = s["run"]["env"]
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["torch"]
    for name in DEFAULT_VARIANTS:
        m = s["variants"][name]["metrics"]
        for k in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_sps", "size_bytes",
                  "params", "nonzero_params", "peak_mem_bytes", "load_s"):
            assert m[k] is not None and m[k] >= 0, (name, k)
        assert (run_dir / s["variants"][name]["artifact"]).is_file()


def test_shared_recipe_prefixes_are_built_once_and_stages_are_timed(smoke_run):
    run_dir, s, _ = smoke_run
    v = s["variants"]
    # onnx_fp32 exports; both int8 recipes start with the same export (same lineage id) and reuse it
    assert "reused" not in v["onnx_fp32"]["lineage"]
    for name in ("ort_int8_static", "ort_int8_dynamic"):
        lin = v[name]["lineage"]
        assert lin["reused"] == ["onnx_export"] and lin["passes"][0] == v["onnx_fp32"]["lineage"]["passes"][0]
        assert (run_dir / v[name]["artifact"]).parent.name == name  # its files live in its own folder
        assert v[name]["build_s"] < v["onnx_fp32"]["build_s"]
    st = s["stages"]
    for k in ("setup", "load_data", "baseline", "datacheck", "variants", "efficiency", "compare", "stress",
              "monitor", "seeds", "write"):
        assert st[k] >= 0, k
    assert st["startup"] is None or st["startup"] > 0
    assert set(st["variant_builds"]) == set(DEFAULT_VARIANTS) - {"baseline"}
    assert sum(st[k] for k in ("setup", "load_data", "baseline", "variants")) <= s["run"]["wall_s"]
    assert "Where the run's time went" in (run_dir / "report.md").read_text()
    # the process's peak memory after each stage: one per stage, never falling, and in the range a
    # torch process of this size can have (imports alone take over 100 MB)
    pk = s["peak_rss_mb"]
    assert list(pk) == [k for k in st if k not in ("startup", "write", "variant_builds")]
    assert all(a <= b for a, b in zip(list(pk.values()), list(pk.values())[1:])) and 100 < pk["setup"] < pk["seeds"] < 8192


def test_predictions_recompute_the_summary(smoke_run):
    run_dir, s, _ = smoke_run
    base = np.load(run_dir / "predictions" / "baseline.npz")
    for name, v in s["variants"].items():
        f = np.load(run_dir / v["predictions"])
        assert f["probs"].dtype == np.float32 and f["labels"].dtype == np.int64
        assert np.array_equal(f["index"], base["index"]) and len(f["labels"]) == s["data"]["n_test"]
        m = classification_metrics(torch.from_numpy(f["probs"]), torch.from_numpy(f["labels"]))
        for k in ("accuracy", "ece", "nll", "brier"):
            assert m[k] == pytest.approx(v["metrics"][k], abs=1e-9), (name, k)
        if name == "baseline":
            continue
        d = paired_deltas(torch.from_numpy(base["probs"]), torch.from_numpy(f["probs"]),
                          torch.from_numpy(f["labels"]), n_resamples=s["bootstrap"]["resamples"],
                          seed=s["bootstrap"]["seed"])
        for k in ("accuracy", "nll", "ece"):
            assert d[k]["value"] == pytest.approx(v["deltas"][k]["value"], abs=1e-6)
            assert d[k]["ci_low"] == pytest.approx(v["deltas"][k]["ci_low"], abs=1e-6)


def test_the_run_folder_records_split_membership_by_dataset_index(smoke_run):
    # predictions' `index` holds dataset indices: rows of scikit-learn's digits, read here
    # independently of mlbench's loader; splits.npz maps every used dataset index to its split
    from sklearn.datasets import load_digits
    run_dir, s, _ = smoke_run
    splits = np.load(run_dir / s["data"]["splits"])
    assert sorted(splits.files) == ["calib", "test", "train", "val"]
    for name in splits.files:
        assert len(splits[name]) == s["data"][f"n_{name}"]
    used = np.concatenate([splits[k] for k in splits.files])
    assert len(np.unique(used)) == len(used)  # no item in two splits
    pred = np.load(run_dir / "predictions" / "baseline.npz")
    assert np.array_equal(pred["index"], splits["test"])  # the test split, in row order
    digits = load_digits()
    assert np.array_equal(digits.target[pred["index"]], pred["labels"])


def test_variant_facts(smoke_run):
    run_dir, s, _ = smoke_run
    v = s["variants"]
    assert v["prune50_ft"]["metrics"]["nonzero_params"] < 0.6 * v["prune50_ft"]["metrics"]["params"]
    assert any("no speedup" in f for f in v["prune50_ft"]["flags"])
    assert v["structured50_ft"]["metrics"]["params"] < 0.5 * v["baseline"]["metrics"]["params"]
    assert v["ort_int8_static"]["metrics"]["size_bytes"] < 0.5 * v["onnx_fp32"]["metrics"]["size_bytes"]
    assert v["onnx_fp32"]["runner"]["provider"] == "CPUExecutionProvider"
    assert v["ort_int8_static"]["lineage"]["passes"][1]["info"]["quantizer_args"]["calibrate_method"] == "MinMax"
    meta = json.loads((run_dir / v["onnx_fp32"]["artifact"]).with_suffix(".json").read_text())
    assert meta["input"]["name"] == "input" and meta["class_names"][:2] == ["0", "1"]
    assert meta["parity"]["top1_agreement"] == 1.0 and meta["parity"]["reference"] == "torch" and "temperature" in meta["calibration"]
    assert set(v["onnx_fp32"]["calibration"]) == {"uncalibrated", "carried", "refit"}
    assert list((run_dir / "plots").glob("reliability_*.png"))
    assert (run_dir / "plots" / "throughput_vs_batch_size.png").is_file()
    assert (run_dir / "plots" / "pareto.png").is_file() and (run_dir / "report.html").is_file()


def _digest(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.rglob("*") if p.is_file()}


BAD = [
    (["data.val=-1"], "data.val must be positive"),
    (["data=mnist", "paths.data_root=/nonexistent"], "does not exist"),
    (["model=resnet", "data=wine"], "needs image inputs"),
    (["variants.prune50_ft.passes.0.sparsity=1.0"], "sparsity must be in [0, 1)"),
    (["device=cuda"], "CUDA is not available"),
    (["eval.calibration=sometimes"], "eval.calibration=sometimes: Invalid value 'sometimes', expected one of [uncalibrated"),
    (["data=wine", "model=mlp", "stress=[gaussian_blur]"], "needs image data"),
    (["stress=[fgsm]", "stress.fgsm.eps=[0.1,3.0]"], "outside the input range"),
    (["+variants.onnx_fp32.pases=[]"], "unknown key(s) ['pases']"),
    (["datacheck.leakage.threshold=-1"], "leakage.threshold must be >= 0"),
    (["monitor.alpha=0"], "monitor.alpha must be in (0, 1)"),
    (["monitor.scenarios=[{kind: covariate, corruption: gausian_noise, param: 3}]"], "unknown corruption 'gausian_noise'"),
    (["monitor.windows=[5000]", "monitor.when_unfit=error"], "larger than the held-out test split"),
    (["requirements.checks=[{data: x, metric: accuracy, op: '<=', value: 1}]"], "either a metric or a data figure"),
]
SET_UP = 5  # the last cases are config mistakes of the new stages: they must fail before any training


@pytest.fixture(scope="module")
def bad_runs(smoke_run, tmp_path_factory):
    """Every BAD command line, run beside the smoke run (each a forked real CLI), with the
    smoke run's files hashed before and after."""
    run_dir, _, _ = smoke_run
    before = _digest(run_dir)
    cases = [(f"bad{i}", ["debug=smoke", *args]) for i, (args, _) in enumerate(BAD)]
    outs = run_cli_cases(cases, run_dir.parents[3], tmp_path_factory.mktemp("bad-logs"))  # the smoke run's folder
    return outs, before, _digest(run_dir)


@pytest.mark.parametrize("i", range(len(BAD)), ids=[m for _, m in BAD])
def test_bad_input_is_one_clear_line_and_leaves_runs_alone(bad_runs, i):
    outs, before, after = bad_runs
    args, message = BAD[i]
    out = outs[f"bad{i}"]
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert after == before
    if i >= len(BAD) - SET_UP:
        assert "baseline" not in out.stdout, out.stdout  # failed at set-up, before any work


def test_unknown_names_fail_at_compose(tmp_path):
    cases = (("data=digitz", "no option 'digitz' (did you mean digits?); data options: breast_cancer,"),
             ("variants=[onnx_fp32,prune5]", "no option 'prune5' (did you mean prune50_ft?)"),
             ("model=nope", "model options: cnn, mlp, onnx, python, resnet, timm, torch, torchvision"),
             ("data.vall=1", "Key 'vall' not in 'DigitsConf'"),
             ("seed=abc", "'abc' of type 'str' could not be converted to Integer"))
    for arg, says in cases:
        out = run_cli(arg, cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (arg, out.stderr)
        assert says in lines[0], (arg, lines[0])
    assert not (tmp_path / "results").exists() or not run_dirs(tmp_path)


def test_version_and_export_help_are_mlbench_own(tmp_path):
    from mlbench import __version__
    out = run_cli("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"mlbench {__version__}"
    code = "import sys; from mlbench.export import main; sys.argv = ['mlbench-export', '--help']; main()"
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("mlbench-export: write a deployable ONNX model")
    assert "export.variant=NAME" in out.stdout and "ort_int8_static" in out.stdout


def test_commands_hide_their_objects_from_the_exit_collection_whatever_their_exit_status(tmp_path):
    """Both entry points freeze the heap as they end (the interpreter's last cycle collections
    would walk every object a run left), on success and on a mistake, and keep their exit status."""
    import subprocess
    import sys
    report = "import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 1000))"
    cases = [("mlbench.cli", ["mlbench", "--version"], 0), ("mlbench.cli", ["mlbench", "data=nope"], 2),
             ("mlbench.export", ["mlbench-export", "export.variant=nope"], 2)]
    for module, argv, status in cases:
        code = f"import sys; {report}; from {module} import main; sys.argv = {argv!r}; main()"
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == status and out.stdout.strip().endswith("frozen True"), (argv, out)
    code = f"import sys; {report}; import mlbench.cli"  # importing alone freezes nothing
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "frozen False"


def test_help_lists_groups(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for group in ("data:", "model:", "variants:", "calibrate:", "backend:", "experiment:", "debug:", "cycle:"):
        assert group in out.stdout
    assert "evaluation and compression benchmarks" in out.stdout
    assert "schema/" not in out.stdout  # internal groups stay out of the help
    for sub in ("compare", "datacheck", "monitor", "cycle"):
        assert f"  {sub} " in out.stdout
    assert "structured50_ft_ort_int8" in out.stdout and run_cli("cycle", "--help", cwd=tmp_path).stdout == out.stdout


def test_caches_across_runs_and_corrupt_entries_are_rebuilt(tmp_path):
    """A second run with the same settings loads the baseline from the baseline cache and the
    exported and quantized ONNX files from the artifact cache instead of building them, and
    measures the same numbers; damaged entries are reported, rebuilt, and the run still succeeds."""
    args = ("debug=smoke", "data=wine", "model=mlp", "variants=[onnx_fp32,ort_int8_dynamic]", "eval.efficiency=false",
            "stress=none", "monitor=none", "datacheck=none")
    first = run_cli(*args, cwd=tmp_path)
    second = run_cli(*args, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, second.stderr
    s1, s2 = [json.loads((d / "summary.json").read_text()) for d in run_dirs(tmp_path)]
    assert not s1["baseline_training"]["cache_hit"] and s2["baseline_training"]["cache_hit"]
    assert "cached" not in s1["variants"]["onnx_fp32"]["lineage"]
    assert s2["variants"]["onnx_fp32"]["lineage"]["cached"] == ["onnx_export"]
    assert s2["variants"]["ort_int8_dynamic"]["lineage"]["cached"] == ["onnx_export", "ort_quantize_dynamic"]
    for name in ("baseline", "onnx_fp32", "ort_int8_dynamic"):
        a, b = s1["variants"][name], s2["variants"][name]
        assert a["lineage"]["passes"] == b["lineage"]["passes"]  # ids, parameters, parity: as built
        for k in ("accuracy", "nll", "ece", "size_bytes", "params"):
            assert a["metrics"][k] == b["metrics"][k], (name, k)
        assert (run_dirs(tmp_path)[1] / b["artifact"]).is_file()  # copied into the run, not linked
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name != "artifacts"]
    (entry / "model.safetensors").write_bytes(b"\0" * 64)
    artifacts = sorted((tmp_path / "cache" / "artifacts").iterdir())
    assert len(artifacts) == 2
    for f in artifacts[0].glob("*.onnx"):
        f.write_bytes(b"\0" * 16)
    third = run_cli(*args, cwd=tmp_path)
    assert third.returncode == 0 and "corrupt" in third.stdout + third.stderr
    assert "artifact cache entry" in third.stdout + third.stderr
    s3 = json.loads((run_dirs(tmp_path)[-1] / "summary.json").read_text())
    assert not s3["baseline_training"]["cache_hit"]
    assert s3["variants"]["onnx_fp32"]["metrics"]["accuracy"] == s1["variants"]["onnx_fp32"]["metrics"]["accuracy"]


def test_export_writes_a_model_plain_onnxruntime_reproduces(tmp_path):
    out = run_cli("debug=smoke", "export.variant=ort_int8_static", f"export.output={tmp_path}/dist/model.onnx",
                  cwd=tmp_path, module="mlbench.export")
    assert out.returncode == 0, out.stdout + out.stderr
    meta = json.loads((tmp_path / "dist" / "model.json").read_text())
    s = ort.InferenceSession(str(tmp_path / "dist" / "model.onnx"), providers=["CPUExecutionProvider"])
    from mlbench.data import Digits
    d = Digits().load()
    logits = s.run(None, {meta["input"]["name"]: d.x["test"].numpy()})[0]
    assert float((logits.argmax(1) == d.y["test"].numpy()).mean()) == pytest.approx(meta["test_accuracy"])
    assert meta["source"]["recipe"] == ["onnx_export", "ort_quantize_static"]
    # a corrupt ONNX source gives one clear line
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    out = run_cli("debug=smoke", f"export.source={bad}", f"export.output={tmp_path}/x.onnx", cwd=tmp_path,
                  module="mlbench.export")
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stdout + out.stderr


def test_multirun_sweeps_jobs(tmp_path):
    out = run_cli("-m", "debug=smoke", "data=wine", "model=mlp", "variants=[]", "eval.efficiency=false",
                  "stress=none", "monitor=none", "datacheck=none", "seed=0,1", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2 and all("sweeps" in str(d) for d in dirs)


def test_default_run_includes_the_light_stress_set(smoke_run):
    run_dir, s, _ = smoke_run
    for name, v in s["variants"].items():
        st = v["stress"]
        assert set(st) == {"gaussian_noise", "gaussian_blur", "occlusion", "fgsm"}, name
        assert list(st["gaussian_noise"]["severities"]) == ["1", "3", "5"]
        assert set(st["fgsm"]["eps"]) == {"0.05", "0.1"}
        mode = st["fgsm"]["eps"]["0.1"]["mode"]
        assert mode == ("white-box" if v["backend"] == "torch" else "transfer (crafted on the float baseline)")
        assert 0 <= v["metrics"]["mean_corruption_accuracy"] <= 1
        if name != "baseline":
            assert "ci_low" in st["fgsm"]["eps"]["0.1"]["delta_accuracy"]
    assert s["variants"]["baseline"]["stress"]["gaussian_noise"]["corruption_error"] == 1.0
    assert {x["stressor"] for x in s["stress"]["skipped"]} == {"feature_noise", "missing_features"}
    for plot in ("accuracy_vs_severity.png", "robust_accuracy_vs_eps.png"):
        assert (run_dir / "plots" / plot).is_file()
    assert "## Robustness" in (run_dir / "report.md").read_text()


def test_tabular_default_skips_image_stress(tmp_path):
    out = run_cli("debug=smoke", "data=breast_cancer", "model=mlp", "variants=[onnx_fp32]",
                  "eval.efficiency=false", "monitor=none", "datacheck=none", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    assert set(s["variants"]["onnx_fp32"]["stress"]) == {"feature_noise", "missing_features", "fgsm"}

    # --json: stdout holds the key figures and nothing else; progress went to stderr and the log
    figures = json.loads(out.stdout)
    assert figures["recommended"] == s["recommended"]["variant"] and figures["data"] == "breast_cancer"
    assert figures["variants"]["onnx_fp32"]["accuracy"] == s["variants"]["onnx_fp32"]["metrics"]["accuracy"]
    assert figures["variants"]["onnx_fp32"]["delta_accuracy"] == s["variants"]["onnx_fp32"]["deltas"]["accuracy"]
    assert "baseline MLP" in out.stderr
    log = (run_dirs(tmp_path)[0] / "cli.log").read_text()
    assert "baseline MLP" in log and "data breast_cancer" in log
    assert s["run"]["overrides"][:3] == ["debug=smoke", "data=breast_cancer", "model=mlp"]

    # the ONNX model's metadata is enough to serve it from raw feature values
    art = run_dirs(tmp_path)[0] / s["variants"]["onnx_fp32"]["artifact"]
    meta = json.loads(art.with_suffix(".json").read_text())
    from sklearn.datasets import load_breast_cancer
    raw = load_breast_cancer()
    assert meta["input"]["feature_names"] == list(raw.feature_names)
    norm = meta["input"]["normalization"]
    assert norm["kind"] == "standardize" and len(norm["mean"]) == len(norm["std"]) == 30
    assert meta["calibration"]["formula"] == "probs = softmax(logits / temperature)"
    assert meta["serving"]["mode"] == "batch" and meta["serving"]["batch_size"] >= 1
    x = ((raw.data - np.asarray(norm["mean"])) / np.asarray(norm["std"])).astype(np.float32)
    logits = ort.InferenceSession(str(art)).run(None, {meta["input"]["name"]: x})[0]
    pred = np.argmax(logits / meta["calibration"]["temperature"], axis=1)
    assert (pred == raw.target).mean() > 0.9  # the documented recipe reproduces a working model
    import os
    mask = os.umask(0)
    os.umask(mask)
    for f in (run_dirs(tmp_path)[0] / "models").rglob("*"):
        if f.is_file():
            assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f


def test_mnist_from_its_idx_files_end_to_end(tmp_path):
    from test_data import write_mnist
    write_mnist(tmp_path / "data", n_train=160, n_test=40)
    out = run_cli("debug=smoke", "data=mnist", f"paths.data_root={tmp_path / 'data'}", "data.val=20",
                  "data.calib=20", "data.test=30", "variants=[]", "eval.efficiency=false",
                  "stress=none", "monitor=none", "datacheck=none", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    assert s["data"]["name"] == "mnist" and s["data"]["n_test"] == 30 and s["data"]["n_train"] == 120
    out = run_cli("data=mnist", f"paths.data_root={tmp_path / 'empty'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: data=mnist: data root")


def test_broken_variant_is_marked_failed_and_others_kept(tmp_path):
    out = run_cli("debug=smoke", "data=wine", "model=mlp", "stress=none", "eval.efficiency=false",
                  "monitor=none", "datacheck=none", "variants=[onnx_fp32]",
                  "+variants.broken={description: NaN outputs, passes: [{_target_: helpers.Poison}]}",
                  cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    validate_summary(s)
    assert s["variants"]["broken"]["status"] == "failed"
    assert "NaN" in s["variants"]["broken"]["error"]
    assert s["variants"]["onnx_fp32"]["status"] == "ok" and s["variants"]["baseline"]["status"] == "ok"
    assert not (run_dirs(tmp_path)[0] / "predictions" / "broken.npz").exists()
    assert s["variants"]["broken"]["requirements"]["passed"] is False


def test_seed_spread_and_group_fairness(tmp_path):
    out = run_cli("debug=smoke", "experiment=fairness", "variants=[structured50_ft]", "stress=none",
                  "eval.efficiency=false", "monitor=none", "datacheck=none", "seeds=[1]", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    sp = s["seed_spread"]
    assert sp["seeds"] == [0, 1] and sp["metrics"]["accuracy"]["std"] >= 0
    g = s["variants"]["baseline"]["groups"]
    # group 1 is planted harder (noise std x2): its accuracy is lower
    assert g["per_group_accuracy"]["1"] < g["per_group_accuracy"]["0"]
    assert s["variants"]["baseline"]["metrics"]["worst_group_accuracy"] == g["per_group_accuracy"]["1"]
    d = s["variants"]["structured50_ft"]["deltas"]
    assert {"worst_group_accuracy", "demographic_parity_difference"} <= set(d)
    assert "## Groups" in (run_dirs(tmp_path)[0] / "report.md").read_text()


def test_missing_provider_is_a_recorded_fallback_or_a_strict_error(tmp_path):
    args = ["debug=smoke", "data=wine", "model=mlp", "variants=[onnx_fp32]", "stress=none", "eval.efficiency=false",
            "monitor=none", "datacheck=none", "backend=gpu"]
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    r = s["variants"]["onnx_fp32"]["runner"]
    assert r["provider"] == "CPUExecutionProvider" and "CUDAExecutionProvider" in r["warnings"][0]
    out = run_cli(*args, "backend.onnxruntime.strict=true", cwd=tmp_path)
    s = json.loads((run_dirs(tmp_path)[-1] / "summary.json").read_text())
    assert s["variants"]["onnx_fp32"]["status"] == "failed" and "strict" in s["variants"]["onnx_fp32"]["error"]


def test_a_quantization_that_wrecks_accuracy_is_flagged(tmp_path):
    out = run_cli("debug=smoke", "data=wine", "model=mlp", "stress=none", "eval.efficiency=false", "monitor=none",
                  "datacheck=none", "+variants.wrecked={passes: [{_target_: mlbench.compress.PruneUnstructured, sparsity: 0.995}]}",
                  "variants=[]", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    v = s["variants"]["wrecked"]
    assert v["status"] == "ok" and any("accuracy drops by" in f for f in v["flags"]), v["flags"]


def test_every_recipe_runs_under_the_smoke_preset(tmp_path):
    from mlbench.schema import CONF_DIR
    names = sorted(p.stem for p in (CONF_DIR / "variants").glob("*.yaml"))
    out = run_cli("debug=smoke", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false",
                  f"variants=[{','.join(names)}]", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    validate_summary(s)
    for name in names:
        v = s["variants"][name]
        if name == "half_fp16":  # fp16 needs CUDA: a clear failure on a CPU machine
            assert v["status"] == "failed" and "CUDA" in v["error"] and v["backend"] == "torch"
            continue
        assert v["status"] == "ok", (name, v["error"])
        assert v["metrics"]["accuracy"] > 0.8, name
        assert v["lineage"]["passes"] and v["backend"] in ("torch", "onnxruntime"), name
    assert s["variants"]["structured50_ft_ort_int8"]["recipe"] == [
        "prune_structured", "finetune", "onnx_export", "ort_quantize_static"]


def test_nan_features_on_the_command_line(tmp_path):
    import numpy as np
    x = np.random.default_rng(0).normal(size=(60, 4))
    x[5, 2] = np.inf
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(60) % 2)
    out = run_cli("debug=smoke", "data=npz", f"data.path={tmp_path / 'bad.npz'}", "model=mlp", cwd=tmp_path)
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "NaN/inf" in lines[0]


def test_a_built_wheel_carries_its_config(tmp_path):
    """`pip install .` / a wheel must work without a source checkout: conf/ ships inside."""
    import subprocess
    import sys
    import sysconfig

    from conftest import ROOT
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("mlbench-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    assert (target / "mlbench" / "conf" / "config.yaml").is_file()
    assert not (target / "mlbench" / "conf").is_symlink()
    # -S: no .pth files, so the editable checkout cannot shadow the installed wheel
    code = (f"import sys; sys.path[:0] = [{str(target)!r}, {sysconfig.get_paths()['purelib']!r}]; "
            "import mlbench.cli as c; assert c.__file__.startswith(sys.path[0]), c.__file__; "
            "sys.argv = ['mlbench', '--cfg', 'job', 'data=wine']; c.main()")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "_target_: mlbench.data.Wine" in out.stdout and "variants:" in out.stdout


def test_peak_rss_reads_the_kernels_own_peak():
    """``peak_rss_mb`` (getrusage) against the kernel's VmHWM for this process, read from /proc."""
    from mlbench.pipeline.write import peak_rss_mb
    _ = bytearray(64 << 20)  # raise the peak a little
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    assert peak_rss_mb() == pytest.approx(hwm / 1024, abs=2.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_hands_a_fragmented_heap_back_to_the_system(tmp_path):
    """64 KB buffers (below glibc's mmap threshold: they live in the heap) pinned by small live
    allocations between them: freeing them leaves the pages with the process until
    release_memory (run after every stage) trims the heap."""
    code = (
        "from mlbench.process import release_memory\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) / 1024\n"
        "big, keep = [], []\n"
        "for _ in range(3000):\n"
        "    big.append(bytearray(b'x' * 65536)); keep.append(bytearray(b'y' * 600))\n"
        "del big\n"
        "before = rss(); release_memory(); print(before - rss())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 100  # of about 190 MB freed but held

"""Serving mode, batch invariance and timing conditions against independent computations."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import run_cli, run_dirs, run_in_process
from omegaconf import OmegaConf
from scipy.stats import binom

from mlbench.analysis.explain import figures
from mlbench.analysis.requirements import check_requirements, recommend
from mlbench.analysis.timing import order_interval, ratio_delta, round_ratio
from mlbench.backends import TorchRunner
from mlbench.evaluate.efficiency import compare_efficiency, cpu_count, judge_timing

# ------------------------------------------------------------------ serving mode and batch invariance

@pytest.fixture(scope="module")
def fairness_runs(tmp_path_factory):
    """experiment=fairness with the dynamic int8 variant, served in batches and online (the
    second run reads the same baseline and ONNX files from the first one's cache)."""
    out = {}
    cache = tmp_path_factory.mktemp("cache")
    for mode in ("batch", "online"):
        run_dir = tmp_path_factory.mktemp(mode) / "run"
        _, s = run_in_process("experiment=fairness", "variants=[ort_int8_dynamic]", "stress=none", "eval.efficiency=false",
                              "monitor=none", "datacheck=none", "analysis.history=false", f"deployment.serving={mode}",
                              run_dir=run_dir, cache=cache, smoke=False)
        out[mode] = run_dir, json.loads((run_dir / "summary.json").read_text())
        assert out[mode][1]["serving"]["mode"] == s["serving"]["mode"] == mode
    return out


def _ort_predictions(path, x: np.ndarray, batch: int) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])


def test_dynamic_int8_is_flagged_batch_dependent_and_agrees_with_a_fresh_session(fairness_runs):
    from mlbench.data import Synthetic
    run_dir, s = fairness_runs["batch"]
    inv = s["variants"]["ort_int8_dynamic"]["batch_invariance"]
    assert s["serving"] == {**s["serving"], "mode": "batch", "batch_size": 256}
    assert inv["items"] == s["data"]["n_test"] and inv["changed"] > 0
    assert any("predictions depend on the batch" in f for f in s["variants"]["ort_int8_dynamic"]["flags"])
    # independent: a plain onnxruntime session scoring the same test items at batch 1 and at 256
    cfg = s["run"]["config"]["data"]
    d = Synthetic(**{k: v for k, v in cfg.items() if not k.startswith("_")}).load()
    x, y = d.x["test"].numpy(), d.y["test"].numpy()
    path = run_dir / s["variants"]["ort_int8_dynamic"]["artifact"]
    p1, p256 = _ort_predictions(path, x, 1), _ort_predictions(path, x, 256)
    assert int((p1 != p256).sum()) == inv["changed"]
    assert inv["accuracy_online"] == pytest.approx((p1 == y).mean(), abs=1e-12)
    assert inv["accuracy_batch"] == pytest.approx((p256 == y).mean(), abs=1e-12)
    assert s["variants"]["ort_int8_dynamic"]["metrics"]["accuracy"] == pytest.approx((p256 == y).mean(), abs=1e-6)
    assert s["variants"]["baseline"]["batch_invariance"]["changed"] == 0  # fp32 torch: same answers


def test_online_serving_measures_quality_at_batch_one(fairness_runs):
    _, sb = fairness_runs["batch"]
    run_dir, so = fairness_runs["online"]
    assert so["serving"]["mode"] == "online" and so["serving"]["batch_size"] == 1
    inv_b = sb["variants"]["ort_int8_dynamic"]["batch_invariance"]
    inv_o = so["variants"]["ort_int8_dynamic"]["batch_invariance"]
    assert so["variants"]["ort_int8_dynamic"]["metrics"]["accuracy"] == pytest.approx(inv_o["accuracy_online"], abs=1e-6)
    assert inv_o["changed"] == inv_b["changed"]
    f = np.load(run_dir / "predictions" / "ort_int8_dynamic.npz")
    assert (f["probs"].argmax(1) == f["labels"]).mean() == pytest.approx(inv_o["accuracy_online"], abs=1e-12)


def test_bad_serving_mode_is_one_line(tmp_path):
    out = run_cli("debug=smoke", "deployment.serving=stream", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("error:") == 1 and "deployment.serving" in out.stderr
    assert "Traceback" not in out.stderr and not run_dirs(tmp_path)


# ------------------------------------------------------------------ timing statistics

@pytest.mark.parametrize("n", [3, 5, 6, 9, 12, 20])
def test_order_interval_coverage_is_the_binomial_one(n):
    values = list(np.random.default_rng(n).normal(size=n))
    lo, hi, cov = order_interval(values, 0.95)
    xs = sorted(values)
    k = xs.index(lo) + 1
    assert xs[n - k] == hi
    assert cov == pytest.approx(1 - 2 * binom.cdf(k - 1, n, 0.5), abs=1e-12)
    if n >= 6:
        assert cov >= 0.95 and (k + 1 > n // 2 or 1 - 2 * binom.cdf(k, n, 0.5) < 0.95)


def test_round_ratio_tie_and_no_tie():
    base = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
    same = [b * f for b, f in zip(base, [1.01, 0.99, 1.02, 0.98, 1.0, 1.01])]
    faster = [b * 0.5 for b in base]
    assert round_ratio(same, base)["tie"] is True
    r = round_ratio(faster, base)
    assert r["tie"] is False and r["ci_low"] == pytest.approx(0.5) and r["ci_high"] == pytest.approx(0.5)
    assert round_ratio([], [])["tie"] is None


def test_judge_timing_rules():
    ok = {"latency": {"other_busy_cores": 0.05, "threads": 1}, "throughput": {"other_busy_cores": 0.1, "threads": 2}}
    assert judge_timing(ok, {"a": 1.05}, cores=2, tolerance=0.25) == []
    assert "rounds disagree" in judge_timing(ok, {"a": 1.4}, cores=2, tolerance=0.25)[0]
    busy = {"latency": {"other_busy_cores": 1.6, "threads": 1}}
    assert "other processes" in judge_timing(busy, {"a": 1.0}, cores=2, tolerance=0.25)[0]


def _summary_with(latencies: dict[str, list[float]], sizes: dict[str, int]) -> dict:
    return {"baseline": "baseline", "variants": {
        n: {"status": "ok", "metrics": {"latency_p50_ms": float(np.median(r)), "size_bytes": sizes[n],
                                        "accuracy": 0.9},
            "deltas": {}, "timing_rounds": {"latency_p50_ms_by_round": r}} for n, r in latencies.items()}}


def test_recommendation_breaks_latency_ties_by_the_next_objective():
    s = _summary_with({"baseline": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                       "fast_big": [0.50, 0.52, 0.49, 0.51, 0.50, 0.50],
                       "fast_small": [0.51, 0.50, 0.50, 0.50, 0.52, 0.49]},
                      {"baseline": 300, "fast_big": 300, "fast_small": 100})
    res = check_requirements(s, [])
    plain = recommend(s, res, "latency_p50_ms", "min")
    assert plain["tied"] == ["fast_big", "fast_small"] or plain["tied"] == ["fast_small", "fast_big"]
    rec = recommend(s, res, "latency_p50_ms", "min", [("size_bytes", "min")])
    assert rec["variant"] == "fast_small" and "tied" in rec["reason"] and "size_bytes" in rec["reason"]
    # a real difference is not a tie
    s2 = _summary_with({"baseline": [1.0] * 6, "fast": [0.5] * 6}, {"baseline": 100, "fast": 300})
    rec2 = recommend(s2, check_requirements(s2, []), "latency_p50_ms", "min", [("size_bytes", "min")])
    assert rec2["variant"] == "fast" and rec2["tied"] == []


def test_a_ratio_point_lies_inside_its_interval_even_when_the_pooled_ratio_does_not():
    # pooled p50s (all calls of all rounds) can give a ratio outside the per-round interval
    rounds = [0.48, 0.485, 0.49, 0.48, 0.49, 0.485]
    r = ratio_delta(0.52, 1.0, rounds, [1.0] * 6)
    assert r["pooled"] == pytest.approx(0.52)
    assert r["value"] == pytest.approx(0.485) and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.48), pytest.approx(0.49))
    assert ratio_delta(2.0, 4.0) == {"value": 0.5, "pooled": 0.5, "ci_low": None, "ci_high": None}
    # the decision text prints that point with that interval
    s = _summary_with({"baseline": [1.0] * 6, "v": rounds}, {"baseline": 100, "v": 50})
    s["variants"]["v"]["metrics"]["latency_p50_ms"] = 0.52
    s["variants"]["v"]["deltas"]["latency_p50_ms_ratio"] = r
    text = " ".join(figures(s, "v", "latency_p50_ms"))
    assert "0.48x the baseline's (0.48-0.49x)" in text or "0.49x the baseline's (0.48-0.49x)" in text


def test_latency_degradation_requirement_treats_a_tie_as_no_degradation():
    s = _summary_with({"baseline": [1.0] * 6, "v": [1.02, 0.97, 1.03, 0.99, 1.01, 0.98]},
                      {"baseline": 1, "v": 1})
    s["variants"]["v"]["deltas"]["latency_p50_ms_ratio"] = round_ratio(
        s["variants"]["v"]["timing_rounds"]["latency_p50_ms_by_round"], [1.0] * 6)
    s["variants"]["v"]["metrics"]["latency_p50_ms"] = 1.02  # point estimate slower than the baseline
    req = [{"metric": "latency_p50_ms", "max_degradation": 0.0}]
    c = check_requirements(s, req)["v"]["checks"][0]
    assert c["passed"] and c["basis"].startswith("tie")


# ------------------------------------------------------------------ a loaded machine

def _spin(seconds: float) -> subprocess.Popen:
    code = f"import time\nt=time.time()\nwhile time.time()-t<{seconds}: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def test_timings_on_a_loaded_machine_are_flagged():
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    runners = {"a": TorchRunner(model, torch.device("cpu")), "b": TorchRunner(model, torch.device("cpu"))}
    x = torch.randn(512, 64)
    busy = [_spin(20) for _ in range(cpu_count() + 1)]
    try:
        time.sleep(0.5)
        out = compare_efficiency(runners, x, [64], warmup=2, min_calls=50, min_time_s=1.5,
                                 throughput_time_s=1.0, rounds=4, latency_threads=1, throughput_threads=0)
    finally:
        for p in busy:
            p.kill()
    t = out["timing"]
    assert not t["reliable"] and any("other processes" in r for r in t["reasons"]), t
    assert t["phases"]["latency"]["other_busy_cores"] > 1.0
    assert all(math.isfinite(v) for v in out["runners"]["a"]["latency_p50_ms_by_round"])
    assert out["runners"]["a"]["latency_threads"] == 1


# ------------------------------------------------------------------ adaptive timing

def test_median_ci_is_the_order_statistic_interval_on_a_worked_example():
    from mlbench.evaluate.efficiency import median_ci
    # 1..100 ms: half-width 1.96 * sqrt(100) / 2 = 9.8 ranks -> x[40] = 41 and x[60] = 61 (0-based)
    p50, lo, hi = median_ci([v / 1e3 for v in range(1, 101)])
    assert (p50, lo, hi) == pytest.approx((50.5, 41.0, 61.0))
    # and it agrees with the exact sign-test interval within a rank or two
    xs = list(np.random.default_rng(0).exponential(size=400))
    e_lo, e_hi, _ = order_interval(xs, 0.95)
    _, a_lo, a_hi = median_ci(xs, scale=1.0)
    s = sorted(xs)
    assert abs(s.index(a_lo) - s.index(e_lo)) <= 2 and abs(s.index(a_hi) - s.index(e_hi)) <= 2


def test_order_interval_survives_thousands_of_rounds():
    lo, hi, cov = order_interval(list(np.random.default_rng(1).normal(size=3000)), 0.95)
    assert lo < 0 < hi and 0.95 <= cov < 0.96


class _Clocked:
    """A runner whose batch-1 call takes a set time (busy wait), so the stopping rule is known."""

    input_device = torch.device("cpu")

    def __init__(self, seconds: list[float]):
        self.seconds, self.i = seconds, 0

    def serving_call(self, x):
        def call():
            end = time.perf_counter() + self.seconds[self.i % len(self.seconds)]
            self.i += 1
            while time.perf_counter() < end:
                pass
        return call

    def predict(self, x):
        return torch.zeros(len(x), 2)

    def with_threads(self, n):
        return self

    def synchronize(self):
        return None


def test_adaptive_latency_stops_on_the_interval_or_the_budget():
    x = torch.zeros(8, 3)
    steady = {"a": _Clocked([2e-4]), "b": _Clocked([4e-4])}
    out = compare_efficiency(steady, x, [4], warmup=1, min_calls=60, target_ci=0.05, max_time_s=5.0,
                             throughput_time_s=0.0, rounds=6)
    lat = out["timing"]["phases"]["latency"]
    assert lat["stop"] == "converged" and lat["rounds"] >= 6
    for name, r in out["runners"].items():
        assert r["latency_calls"] >= 60 and r["latency_p50_ci_rel"] <= 0.05
        assert r["latency_p50_ci_low_ms"] <= r["latency_p50_ms"] <= r["latency_p50_ci_high_ms"]
        assert len(r["latency_p50_ms_by_round"]) == lat["rounds"]  # rounds stay paired
    assert out["runners"]["b"]["latency_p50_ms"] / out["runners"]["a"]["latency_p50_ms"] == pytest.approx(2, rel=0.25)
    # calls that alternate between 0.1 and 0.4 ms never pin the p50 to +-2 %: the budget stops it
    noisy = {"a": _Clocked([1e-4, 4e-4])}
    out = compare_efficiency(noisy, x, [4], warmup=1, min_calls=60, target_ci=0.02, max_time_s=0.05,
                             throughput_time_s=0.0, rounds=6)
    lat = out["timing"]["phases"]["latency"]
    assert lat["stop"] == "time cap" and lat["wall_s"] < 1.0


class _SlowToSetUp(_Clocked):
    """Instant calls, but 0.15 s to rebuild for another thread count."""

    def with_threads(self, n):
        time.sleep(0.15)
        return self


def test_timing_records_the_time_spent_outside_its_timed_phases():
    x = torch.zeros(8, 3)
    out = compare_efficiency({"a": _SlowToSetUp([1e-5])}, x, [4], warmup=1, min_calls=12, max_time_s=0.05,
                             throughput_time_s=0.0, rounds=6)
    t = out["timing"]
    phases = sum(c["wall_s"] for c in t["phases"].values())
    # rebuilt twice (latency, then throughput threads), both before their phase's clock starts
    assert t["outside_phases_s"] == pytest.approx(t["wall_s"] - phases) and t["outside_phases_s"] >= 0.3
    assert phases < 0.3


def test_ort_serving_call_runs_the_same_model_as_predict(tmp_path):
    from mlbench.backends import OrtRunner
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(m, (torch.randn(1, 12),), str(path), input_names=["x"], dynamo=False)
    r = OrtRunner(path, threads=1)
    x = torch.randn(1, 12)
    direct = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.allclose(r.serving_call(x)()[0], direct) and np.allclose(r.predict(x).numpy(), direct)


def test_ort_sessions_do_not_spin_unless_asked(tmp_path):
    """Idle onnxruntime worker threads busy-wait by default and take the cores from the runner
    timed next in the same process; mlbench's sessions sleep instead unless
    ``backend.onnxruntime.spinning`` asks otherwise, and say which in the runner record."""
    from mlbench.backends import OrtRunner, runner_for
    from mlbench.compress import Artifact
    from mlbench.schema import BackendConf
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(m, (torch.randn(1, 12),), str(path), input_names=["x"], dynamo=False)

    def entry(r: OrtRunner, key: str) -> str:
        return r.session.get_session_options().get_session_config_entry(key)

    quiet = OrtRunner(path, threads=2)
    assert entry(quiet, "session.intra_op.allow_spinning") == "0" == entry(quiet, "session.inter_op.allow_spinning")
    assert quiet.describe()["spinning"] is False
    assert entry(quiet.with_threads(1), "session.intra_op.allow_spinning") == "0"  # the latency session too
    backend = OmegaConf.structured(BackendConf)
    backend.onnxruntime.spinning = True
    loud = runner_for(Artifact(id="m", format="onnx", path=path, files=[path]), backend, torch.device("cpu"))
    assert entry(loud, "session.intra_op.allow_spinning") == "1" and loud.describe()["spinning"] is True

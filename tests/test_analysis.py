"""Requirements, Pareto front, compare, history, sweeps."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli, run_dirs, run_in_process

from mlbench.analysis.compare import compare, find_runs
from mlbench.analysis.history import history, record
from mlbench.analysis.pareto import pareto_front
from mlbench.analysis.requirements import check_requirements, recommend
from mlbench.errors import MlbenchError


def summary(**variants):
    """A hand-built summary: name -> (metrics, deltas)."""
    out = {"schema_version": 1, "baseline": "baseline", "variants": {}}
    for name, (metrics, deltas) in variants.items():
        out["variants"][name] = {"status": "ok", "metrics": metrics, "deltas": deltas}
    return out


S = summary(
    baseline=({"accuracy": 0.97, "latency_p99_ms": 3.0, "size_bytes": 4e6, "nll": 0.10}, {}),
    int8=({"accuracy": 0.965, "latency_p99_ms": 1.0, "size_bytes": 1e6, "nll": 0.12},
          {"accuracy": {"value": -0.005, "ci_low": -0.02, "ci_high": 0.01}}),
    pruned=({"accuracy": 0.90, "latency_p99_ms": 0.5, "size_bytes": 5e5, "nll": 0.30},
            {"accuracy": {"value": -0.07, "ci_low": -0.09, "ci_high": -0.05}}),
)


def test_thresholds_and_margins():
    reqs = [{"metric": "accuracy", "op": ">=", "value": 0.95}, {"metric": "latency_p99_ms", "op": "<=", "value": 2}]
    r = check_requirements(S, reqs)
    assert [r[n]["passed"] for n in ("baseline", "int8", "pruned")] == [False, True, False]
    assert r["baseline"]["checks"][1]["margin"] == pytest.approx(-1.0)
    assert r["int8"]["checks"][0]["margin"] == pytest.approx(0.015)
    assert r["pruned"]["checks"][0]["margin"] == pytest.approx(-0.05)


def test_degradation_point_bound_and_relative():
    point = check_requirements(S, [{"metric": "accuracy", "max_degradation": 0.01}])
    assert point["int8"]["passed"] and not point["pruned"]["passed"]
    assert point["int8"]["checks"][0]["margin"] == pytest.approx(0.005)
    bound = check_requirements(S, [{"metric": "accuracy", "max_degradation": 0.01}], use_bound=True)
    assert not bound["int8"]["passed"]  # the pessimistic bound loses 2 points
    assert bound["int8"]["checks"][0]["margin"] == pytest.approx(-0.01)
    assert bound["int8"]["checks"][0]["basis"] == "95% CI bound"
    rel = check_requirements(S, [{"metric": "nll", "max_degradation": 0.25, "relative": True}])
    assert rel["int8"]["passed"] and not rel["pruned"]["passed"]  # +20 % vs +200 %
    assert rel["baseline"]["passed"]


def test_recommended_and_nothing_passes():
    reqs = [{"metric": "accuracy", "op": ">=", "value": 0.95}]
    rec = recommend(S, check_requirements(S, reqs), "latency_p99_ms", "min")
    assert rec["variant"] == "int8"
    hard = [{"metric": "accuracy", "op": ">=", "value": 0.99}, {"metric": "size_bytes", "op": "<=", "value": 1e6}]
    rec = recommend(S, check_requirements(S, hard), "latency_p99_ms")
    assert rec["variant"] is None
    (unmet,) = rec["unmet"]  # the size limit is met by someone; the accuracy one by nobody
    assert unmet["requirement"] == "accuracy >= 0.99" and unmet["closest_variant"] == "baseline"
    assert unmet["shortfall"] == pytest.approx(0.02)
    assert "short by 0.02" in rec["reason"]


def test_thresholds_relative_to_the_baseline():
    reqs = [{"metric": "size_bytes", "op": "<=", "value": 0.5, "of_baseline": True},
            {"metric": "latency_p99_ms", "max_degradation": 0, "relative": True}]
    r = check_requirements(S, reqs)
    assert [r[n]["passed"] for n in ("baseline", "int8", "pruned")] == [False, True, True]
    assert r["int8"]["checks"][0]["threshold"] == 2e6 and r["int8"]["checks"][0]["margin"] == 1e6
    assert r["int8"]["checks"][0]["requirement"] == "size_bytes <= 0.5 x the baseline's"
    assert r["int8"]["checks"][1]["requirement"] == "latency_p99_ms no worse than the baseline's"
    with pytest.raises(MlbenchError, match="of_baseline goes with op and value"):
        check_requirements(S, [{"metric": "size_bytes", "max_degradation": 0.1, "of_baseline": True}])


def test_the_decision_is_explained_with_figures_runner_up_and_closest_call():
    from mlbench.analysis.explain import explain
    s = summary(
        baseline=({"accuracy": 0.97, "latency_p50_ms": 3.0, "size_bytes": 4e6}, {}),
        int8=({"accuracy": 0.965, "latency_p50_ms": 1.0, "latency_p50_ci_low_ms": 0.9, "latency_p50_ci_high_ms": 1.1,
               "size_bytes": 1e6}, {"accuracy": {"value": -0.005, "ci_low": -0.008, "ci_high": 0.002}}),
        fp16=({"accuracy": 0.97, "latency_p50_ms": 2.0, "size_bytes": 2e6},
              {"accuracy": {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}}),
        pruned=({"accuracy": 0.90, "latency_p50_ms": 0.5, "size_bytes": 5e5},
                {"accuracy": {"value": -0.07, "ci_low": -0.09, "ci_high": -0.05}}),
    )
    reqs = [{"metric": "accuracy", "max_degradation": 0.01, "use_bound": True},
            {"metric": "size_bytes", "op": "<=", "value": 0.5, "of_baseline": True}]
    res = check_requirements(s, reqs)
    rec = recommend(s, res, "latency_p50_ms", "min")
    e = explain(s, res, rec)
    assert rec["variant"] == "int8" and rec["runner_up"] == "fp16"
    assert e["figures"][0] == "accuracy 0.9650 (-0.50 points vs the baseline, 95% CI -0.80 to +0.20 points)"
    assert e["figures"][1] == "p50 latency 1 ms (95% CI 0.9-1.1 ms)"
    assert e["figures"][2] == "size 976.6 KB (0.25x the baseline's)"  # 1e6 bytes
    assert e["runner_up_reason"] == "latency_p50_ms 2 ms vs 1 ms"
    # pruned is faster but 9 points down on the bound: it misses the 1-point limit by 8 points
    assert e["better_but_failed"]["variant"] == "pruned"
    assert "misses 'accuracy at most 0.01 worse than the baseline (on the CI bound)' by 8.00 points" in e["text"]
    # int8's margins: 0.2 of 1 point (20 %) on accuracy, 1 MB of 2 MB (50 %) on size -> accuracy
    assert e["closest_call"]["requirement"].startswith("accuracy") and "0.20 points to spare" in e["text"]
    assert e["text"].startswith("Ship int8: it meets all 2 requirements and has the lowest latency_p50_ms of the 2")
    none = explain(s, check_requirements(s, [{"metric": "accuracy", "op": ">=", "value": 0.99}]),
                   recommend(s, check_requirements(s, [{"metric": "accuracy", "op": ">=", "value": 0.99}]),
                             "latency_p50_ms"))
    assert none["text"] == ("No variant recommended: no variant meets 'accuracy >= 0.99' "
                            "(closest: baseline, short by 2.00 points).")


def test_pareto_labels_never_overlap():
    from mlbench.analysis.pareto import _spread_labels
    ys = [100.0, 103.0, 104.0, 300.0, 50.0]
    placed = _spread_labels(ys, height=11.0)
    order = sorted(range(len(ys)), key=lambda i: placed[i])
    assert all(placed[b] - placed[a] >= 11.0 - 1e-9 for a, b in zip(order, order[1:]))
    assert [sorted(range(5), key=lambda i: ys[i])] == [order]  # the vertical order is kept
    assert abs(sum(placed) - sum(ys)) < 1e-9  # the column of labels stays centred on its points


def test_a_pareto_plot_of_hundreds_of_points_labels_the_front_and_keeps_its_size(tmp_path):
    """Past MAX_LABELS points only the front is labelled: hundreds of spread labels had made a
    7,000-pixel-tall image (and a 20 s plot in `mlbench compare` over 200 runs)."""
    import matplotlib.image as mpimg

    from mlbench.analysis.pareto import MAX_LABELS, pareto_front, pareto_plot
    rng = np.random.default_rng(0)
    points = {f"run{i:03d} · v": {"accuracy": float(a), "latency_p50_ms": float(t), "size_bytes": 1000.0}
              for i, (a, t) in enumerate(zip(rng.uniform(0.8, 1.0, 300), rng.uniform(0.1, 2.0, 300)))}
    axes = [("accuracy", "max"), ("latency_p50_ms", "min")]
    front = pareto_front(points, axes)
    assert 0 < len(front) < MAX_LABELS < len(points)
    assert pareto_plot(points, axes, front, tmp_path / "p.png")
    h, w = mpimg.imread(tmp_path / "p.png").shape[:2]
    assert h <= 1.3 * 4.6 * 110 and w <= 1.5 * 7.5 * 110, (h, w)  # the 7.5 x 4.6 in figure, plus margins


def test_missing_metric_fails_with_reason():
    r = check_requirements(S, [{"metric": "worst_group_accuracy", "op": ">=", "value": 0.9}])
    assert not r["int8"]["passed"] and r["int8"]["checks"][0]["reason"] == "not measured"


def test_bad_requirement_is_an_error():
    with pytest.raises(MlbenchError):
        check_requirements(S, [{"metric": "accuracy"}])
    with pytest.raises(MlbenchError):
        check_requirements(S, [{"metric": "stress_accuracy", "op": ">=", "value": 0.5}])


def test_pareto_front_hand_built():
    pts = {"a": {"acc": 0.9, "lat": 1.0}, "b": {"acc": 0.8, "lat": 0.5}, "c": {"acc": 0.85, "lat": 1.2},
           "d": {"acc": 0.9, "lat": 1.0}, "e": {"acc": 0.95, "lat": 3.0}, "f": {"acc": None, "lat": 0.1}}
    assert sorted(pareto_front(pts, [("acc", "max"), ("lat", "min")])) == ["a", "b", "d", "e"]


def test_unknown_requirement_metric_fails_at_set_up(make_cfg):
    """Requirement metrics are checked at set-up (after metrics.extra adds its names), with the
    closest known name."""
    from mlbench.analysis.requirements import validate
    cfg = make_cfg("requirements.checks=[{metric: acuracy, op: '>=', value: 0.9}]")
    with pytest.raises(MlbenchError, match="no metric 'acuracy' \\(did you mean accuracy\\?\\)"):
        validate(cfg.requirements.checks[0])
    cfg = make_cfg("requirements=strict")
    assert cfg.requirements.checks[-1].metric == "stress_accuracy"
    validate(cfg.requirements.checks[-1])


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_compare_on_fixture_runs(smoke_run, tmp_path):
    run_dir, s, _ = smoke_run
    runs_root = run_dir.parents[1]
    out = run_cli("compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    assert {"run", "variant", "status", "accuracy", "ece", "latency_p50_ms", "size_bytes", "delta_accuracy",
            "delta_accuracy_ci_low", "requirements", "recommended"} <= set(rows[0])
    assert [r["variant"] for r in rows] == list(s["variants"])  # one run, given twice, read once
    p = _Parser()
    p.feed((tmp_path / "cmp" / "compare.html").read_text())
    assert "table" in p.tags
    assert "data:image/png;base64" in (tmp_path / "cmp" / "compare.html").read_text()
    assert runs_root.exists()


def test_compare_bad_inputs(smoke_run, tmp_path):
    run_dir, _, _ = smoke_run
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("compare", str(empty), cwd=tmp_path)
    assert out.returncode == 2 and "no runs found" in out.stderr
    # a half-written run is skipped with a warning, the rest compared
    import shutil
    mix = tmp_path / "mix"
    shutil.copytree(run_dir, mix / "good")
    (mix / "half" / ".hydra").mkdir(parents=True)
    runs, warnings = find_runs([mix])
    assert len(runs) == 1 and "half" in warnings[0]
    # another schema version is a clear error
    shutil.copytree(run_dir, mix / "future")
    f = mix / "future" / "summary.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "schema_version": 2}))
    out = run_cli("compare", str(mix), "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 2 and "schema_version 2" in out.stderr


def test_cross_run_comparison_is_paired(smoke_run, tmp_path):
    import shutil
    run_dir, _, _ = smoke_run
    shutil.copytree(run_dir, tmp_path / "a")
    shutil.copytree(run_dir, tmp_path / "b")
    files = compare([tmp_path / "a", tmp_path / "b"], tmp_path / "out", quiet=True)
    md = files[1].read_text()
    assert "Changes against each group's reference run" in md and "paired over the same test items" in md


def _writer(db: str, i: int) -> None:
    for k in range(10):
        s = {"run": {"config": {"model": {"_target_": "m.MLP"}}, "env": {"device": "cpu"}, "id": f"r{i}-{k}",
                     "started": f"2026-01-01T00:{i:02d}:{k:02d}", "config_hash": "h"},
             "data": {"name": "d"}, "variants": {"baseline": {"metrics": {"accuracy": i + k / 100}}}}
        record(Path(db), s, Path(f"/runs/{i}/{k}"))


def test_history_concurrent_writes_lose_nothing(tmp_path):
    db = tmp_path / "h.sqlite"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(db), i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = history(db, ["accuracy"])
    assert len(rows) == 40
    assert sorted(r["accuracy"] for r in rows) == sorted(i + k / 100 for i in range(4) for k in range(10))


def test_run_records_history_and_compare_history(smoke_run):
    run_dir, s, _ = smoke_run
    cwd = run_dir.parents[3]
    db = cwd / "results" / "history.sqlite"
    rows = history(db, ["accuracy"])
    assert {r["variant"] for r in rows} == set(s["variants"])
    out = run_cli("compare", "--history", "--db", str(db), cwd=cwd)
    assert out.returncode == 0 and "baseline" in out.stdout


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_multirun_with_launchers_writes_a_sweep_table(tmp_path, launcher):
    out = run_cli("-m", f"hydra/launcher={launcher}", "debug=smoke", "data=wine", "model=mlp", "variants=[]",
                  "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false", "train.epochs=2",
                  "seed=0,1", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2
    (table,) = list((tmp_path / "results" / "sweeps").rglob("sweep_summary/compare.csv"))
    rows = list(csv.DictReader(open(table)))
    assert len(rows) == 2 and {r["run"].split("[")[-1] for r in rows} == {"seed=0]", "seed=1]"}


def test_sweep_shares_the_baseline_cache(tmp_path):
    out = run_cli("-m", "hydra/launcher=joblib", "debug=smoke", "data=wine", "model=mlp", "stress=none",
                  "monitor=none", "datacheck=none", "eval.efficiency=false", "variants=[prune50_ft]",
                  "variants.prune50_ft.passes.0.sparsity=0.3,0.6", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    hits = sorted(json.loads((d / "summary.json").read_text())["baseline_training"]["cache_hit"]
                  for d in run_dirs(tmp_path))
    assert hits == [False, True]  # trained once, loaded once


def test_optuna_sweep_example_runs(tmp_path):
    out = run_cli("-m", "sweep=optuna_structured", "debug=smoke", "hydra.sweeper.n_trials=2",
                  "eval.efficiency=false", "monitor=none", "datacheck=none", "analysis.objective.metric=accuracy",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (res,) = list((tmp_path / "results" / "sweeps").rglob("optimization_results.yaml"))
    assert "best_value" in res.read_text()


def test_fail_if_none_exits_non_zero(tmp_path):
    out = run_cli("debug=smoke", "data=wine", "model=mlp", "variants=[]", "stress=none", "eval.efficiency=false",
                  "monitor=none", "datacheck=none", "requirements.fail_if_none=true", "requirements.checks=[{metric: accuracy, op: '>=', value: 1.01}]",
                  cwd=tmp_path)
    assert out.returncode == 3 and "no variant recommended" in out.stdout.lower()
    assert "'accuracy >= 1.01' (closest: baseline, short by" in out.stdout.replace("\n", " ")
    s = json.loads((run_dirs(tmp_path)[0] / "summary.json").read_text())
    assert s["recommended"]["variant"] is None and s["recommended"]["unmet"][0]["shortfall"] > 0


def test_compare_reads_a_run_written_before_the_records_refactor(smoke_run, tmp_path):
    """tests/data/run_0.1.0: a digits run written by mlbench 0.1.0 (flat parity keys in the
    lineage, no exemplar plot), trimmed to three variants; compared against a run of this code."""
    import shutil
    old = tmp_path / "run_0.1.0"
    shutil.copytree(ROOT / "tests" / "data" / "run_0.1.0", old)
    assert "parity_top1_agreement" in json.loads((old / "summary.json").read_text())[
        "variants"]["onnx_fp32"]["lineage"]["passes"][0]["info"]
    run_dir, s, _ = smoke_run
    out = run_cli("compare", str(old), str(run_dir), "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    assert {r["run"].split(" [")[0] for r in rows} == {"run_0.1.0", run_dir.name}  # label: dir [overrides]
    old_rows = {r["variant"]: r for r in rows if r["run"] == "run_0.1.0"}
    assert set(old_rows) == {"baseline", "onnx_fp32", "ort_int8_static"}
    assert float(old_rows["onnx_fp32"]["accuracy"]) == pytest.approx(0.9866, abs=1e-4)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "onnx_fp32" in md and "run_0.1.0" in md


@pytest.mark.parametrize("key", ["severities", "eps"])
def test_a_stress_degradation_limit_reads_the_paired_bound_whatever_the_condition_key(key):
    delta = {"value": -0.02, "ci_low": -0.08, "ci_high": 0.01}
    summary = {"baseline": "baseline", "variants": {
        "baseline": {"status": "ok", "metrics": {"stress/s/3/accuracy": 0.90},
                     "stress": {"s": {"kind": "k", key: {"3": {"accuracy": 0.90}}}}},
        "v": {"status": "ok", "metrics": {"stress/s/3/accuracy": 0.88},
              "stress": {"s": {"kind": "k", key: {"3": {"accuracy": 0.88, "delta_accuracy": delta}}}}}}}
    req = {"metric": "stress_accuracy", "stress": "s", "condition": "3", "max_degradation": 0.05}
    point = check_requirements(summary, [req])["v"]["checks"][0]
    bound = check_requirements(summary, [{**req, "use_bound": True}])["v"]["checks"][0]
    assert point["passed"] and point["degradation"] == pytest.approx(0.02)
    assert not bound["passed"] and bound["degradation"] == pytest.approx(0.08) and bound["basis"] == "95% CI bound"


def test_a_sweep_is_compared_within_its_group_with_intervals_and_a_parameter_plot(tmp_path):
    out = run_cli("-m", "debug=smoke", "data=wine", "model=mlp", "variants=[prune50_ft]", "stress=none",
                  "monitor=none", "datacheck=none", "eval.efficiency=false",
                  "variants.prune50_ft.passes.0.sparsity=0.3,0.9", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (summary_dir,) = list((tmp_path / "results" / "sweeps").rglob("sweep_summary"))
    html = (summary_dir / "compare.html").read_text()
    assert "Key metrics against variants.prune50_ft.passes.0.sparsity" in html
    assert (summary_dir / "sweep.png").is_file()
    from mlbench.analysis.compare import cross_run
    runs, _ = find_runs([summary_dir.parent])
    changes = cross_run(runs, [summary_dir.parent], paired=True)
    pruned = [c for c in changes if c["variant"] == "prune50_ft"]
    assert len(pruned) == 1 and all(c["basis"] == "paired over the same test items" for c in pruned)
    assert all(c["accuracy_ci"][0] <= c["accuracy"] <= c["accuracy_ci"][1] for c in pruned)
    # another dataset is its own group: no change rows against the wine runs unless asked
    run_in_process("data=breast_cancer", "model=mlp", "variants=[]", "stress=none", "monitor=none",
                   "datacheck=none", "eval.efficiency=false",
                   run_dir=tmp_path / "results" / "runs" / "breast_cancer", cache=tmp_path / "cache")
    runs, _ = find_runs([tmp_path / "results"])
    within = cross_run(runs, [tmp_path / "results"], paired=False)
    assert within and all(c["group"].startswith("wine") for c in within)  # breast_cancer has no partner
    across = cross_run(runs, [tmp_path / "results"], paired=False, across=True)
    assert not any("breast_cancer" in c["reference"] for c in within)
    assert any("breast_cancer" in c["reference"] for c in across)  # asked for: wine against breast_cancer


def test_console_result_lines_name_each_stressors_worst_case():
    from mlbench.analysis.console import result_lines
    s = summary(
        baseline=({"stress/fgsm/0.1/accuracy": 0.70, "stress/fgsm/0.05/accuracy": 0.85,
                   "stress/explanations/ig/spearman": 1.0}, {}),
        int8=({"stress/fgsm/0.1/accuracy": 0.62, "stress/fgsm/0.05/accuracy": 0.80,
               "stress/explanations/ig/spearman": 0.91}, {}),
    )
    s["seed_spread"] = {"seeds": [0, 1, 2], "metrics": {"accuracy": {"mean": 0.97, "std": 0.004, "min": 0.965,
                                                                     "max": 0.975}}}
    assert result_lines(s) == [
        "stress explanations ig: worst spearman 0.910 (int8); baseline 1.000",
        "stress fgsm 0.1: worst accuracy 0.620 (int8); baseline 0.700",
        "seed spread (3 seeds): baseline accuracy 0.9700 ± 0.0040 (0.9650-0.9750)",
    ]


def test_a_report_re_rendered_from_the_run_folder_matches(run_stages, tmp_path):
    """Each stressor and data check renders its own report section, found again through the
    class recorded in summary.json (``target``): re-rendering report.md from the run folder
    alone gives the same page (the stage-time table aside: the write stage's own time is known
    only after the first rendering)."""
    import shutil

    from mlbench.analysis.report import write_report
    ctx, s = run_stages("variants=[onnx_fp32]", "stress=[gaussian_noise,gaussian_blur,fgsm,bitflip]",
                        "datacheck=[lint,complexity]", "monitor=none", "analysis.history=false")
    assert s["variants"]["baseline"]["stress"]["bitflip"]["target"] == "mlbench.stress.faults.WeightFaults"
    assert s["datacheck"]["checks"]["complexity"]["target"] == "mlbench.datacheck.complexity.Complexity"
    again = tmp_path / "again"
    shutil.copytree(ctx.run_dir, again)
    write_report(json.loads((again / "summary.json").read_text()), again)
    cut = lambda p: p.read_text().split("## Where the run's time went")[0]  # noqa: E731
    first, second = cut(ctx.run_dir / "report.md"), cut(again / "report.md")
    assert first == second
    for heading in ("| variant | mCA | gaussian_noise | gaussian_blur |", "### fgsm — FGSM Linf", "### bitflip",
                    "### Complexity (complexity,"):
        assert heading in first

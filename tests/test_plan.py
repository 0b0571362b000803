"""The plan: the item evaluations each stage will make, counted before the work, times unit
costs measured on this machine; recorded beside the measured stage seconds."""

from __future__ import annotations

import pytest
from conftest import compose_config

from mlbench import pipeline
from mlbench.pipeline.plan import estimate

zero = {"forward": 0.0, "train": 0.0, "gradient": 0.0, "call": 0.0, "resample": 0.0, "boot_call": 0.0, "resample_stress": 0.0,
        "boot_call_stress": 0.0}  # unit costs: each test sets the one it counts to 1 s


def _ready(tmp_path, *overrides: str):
    """A run of ``overrides`` up to its baseline (what the plan sees), and its split sizes."""
    cfg = compose_config(*overrides, results=tmp_path / "results", cache=tmp_path / "cache")
    (tmp_path / "run").mkdir()
    ctx = pipeline.RunContext(cfg=cfg, run_dir=tmp_path / "run")
    pipeline.timed_stages(ctx, [pipeline.setup, pipeline.load_data, pipeline.baseline])
    return ctx, {s: len(ctx.data.y[s]) for s in ("train", "val", "calib", "test")}


def test_the_plan_counts_each_stages_item_evaluations(tmp_path):
    ctx, n = _ready(tmp_path, "stress=[gaussian_noise,fgsm,bitflip]", "variants=[onnx_fp32,prune50_ft]")
    by = {s.name: s for s in ctx.stressors}
    noise, fgsm, flips = by["gaussian_noise"], by["fgsm"], by["bitflip"]
    # one second per forward item: stress counts every condition, variant and test item once,
    # weight faults once per trial
    est = estimate(ctx, {**zero, "forward": 1.0})
    per_variant = (len(noise.conditions()) + len(fgsm.conditions()) + flips.trials * len(flips.conditions())) * n["test"]
    assert est["stress"] == pytest.approx(3 * per_variant)
    # one second per gradient item: FGSM's single step on each variant it can craft on
    assert estimate(ctx, {**zero, "gradient": 1.0})["stress"] == pytest.approx(3 * len(fgsm.conditions()) * n["test"])
    est = estimate(ctx, {**zero, "train": 1.0})  # a training step's item: fine-tuning only
    assert est["stress"] == 0
    # fine-tuning: prune50_ft's epochs over the train split
    epochs = ctx.specs[1].passes[-1].epochs if hasattr(ctx.specs[1].passes[-1], "epochs") else \
        next(p.epochs for p in ctx.specs[1].passes if hasattr(p, "epochs"))
    assert est["variants"] == pytest.approx(epochs * n["train"] + 1.5)  # + the first ONNX export's allowance
    # one second per resample: every stress row and every compared variant bootstraps
    est = estimate(ctx, {**zero, "resample": 1.0, "resample_stress": 1.0})
    rows = 3 * (len(noise.conditions()) + len(fgsm.conditions()) + len(flips.conditions()))
    r = ctx.cfg.eval.bootstrap.resamples
    assert est["compare"] == pytest.approx(2 * r) and est["stress"] == pytest.approx(rows * r)


def test_the_plan_is_recorded_beside_the_measured_stage_seconds(tmp_path):
    from conftest import run_cli, run_dirs
    assert run_cli("debug=smoke", "variants=[onnx_fp32]", cwd=tmp_path).returncode == 0
    (run,) = run_dirs(tmp_path)
    import json
    s = json.loads((run / "summary.json").read_text())
    plan = s["plan"]
    assert plan["unit_costs_s"]["forward"] > 0 and plan["estimate_total_s"] > 0
    m = plan["measured"]
    for stage in ("variants", "efficiency", "compare", "stress", "monitor"):
        row = m["stages"][stage]
        assert row["measured_s"] == pytest.approx(s["stages"][stage])
        assert row["ratio"] == pytest.approx(row["measured_s"] / row["estimate_s"])
    assert m["measured_total_s"] == pytest.approx(sum(s["stages"][k] for k in plan["estimate_s"]))
    assert "planned (s)" in (run / "report.md").read_text()
    # revised after the variants were built: each one's own time per item; only the stages still to run
    rev = plan["revised"]
    assert list(rev["forward_by_variant_s"]) == ["baseline", "onnx_fp32"]
    assert all(v > 0 for v in rev["forward_by_variant_s"].values())
    assert "variants" not in rev["estimate_s"] and "datacheck" not in rev["estimate_s"] and "stress" in rev["estimate_s"]
    assert rev["measured"]["stages"]["stress"]["measured_s"] == pytest.approx(s["stages"]["stress"])


def test_a_budget_sizes_stress_items_resamples_and_repetitions_and_says_so(tmp_path):
    from conftest import run_in_process
    args = ("stress=[gaussian_noise]", "variants=[prune50_ft]", "datacheck=none", "eval.bootstrap.resamples=1000")
    _, free = run_in_process(*args, run_dir=tmp_path / "free", cache=tmp_path / "cache")
    _, tight = run_in_process(*args, "budget.minutes=0.001", run_dir=tmp_path / "tight", cache=tmp_path / "cache")
    assert "budget" not in free and free["stress"]["items"]["n"] == free["data"]["n_test"]
    b = tight["budget"]
    assert b["factor"] == 0.0 and not b["fits"]  # 0.06 s cannot hold the run: every sizable figure at its floor
    assert b["at"] == "after the variants" and b["at_plan"]["sized"]["stress_items"] == 100  # sized twice
    assert b["sized"]["stress_items"] == 100 and tight["stress"]["items"] == {
        "n": 100, "of": tight["data"]["n_test"], "how": "seeded random subset of the test split (budget.minutes)"}
    assert tight["bootstrap"]["resamples"] == 200 and tight["monitor"]["repetitions"] == 10
    # the same stress figure on fewer items: a wider interval
    def width(s):
        d = s["variants"]["prune50_ft"]["stress"]["gaussian_noise"]["severities"]["5"]["delta_accuracy"]
        return d["ci_high"] - d["ci_low"]
    assert width(tight) > width(free) > 0
    without = {k: v for k, v in tight["plan"]["estimate_s"].items()}
    assert tight["plan"]["estimate_total_s"] == pytest.approx(sum(without.values()))
    assert b["estimate_after_s"] < b["estimate_before_s"]


def test_a_budget_that_is_not_positive_is_one_error_line_before_any_training(tmp_path):
    from conftest import run_cli
    out = run_cli("debug=smoke", "budget.minutes=-2", cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: budget.minutes must be > 0 (null: no budget), got -2")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_a_structured_prune_scales_the_variants_work_and_timing_counts_every_batch(tmp_path):
    """structured50_ft (ratio 0.5) is planned at 1 - 0.5 = 0.5 of the baseline's time per item
    for its fine-tuning, its stress evaluations and its throughput batches; throughput counts
    a warm-up of three batches and one batch per round at every batch size."""
    ctx, n = _ready(tmp_path, "stress=[gaussian_noise]", "variants=[structured50_ft]", "monitor=none")
    cfg = ctx.cfg
    epochs = next(p.epochs for p in ctx.specs[0].passes if hasattr(p, "epochs"))
    assert estimate(ctx, {**zero, "train": 1.0})["variants"] == pytest.approx(0.5 * epochs * n["train"])
    # one second per batch-1 call: each variant's batch-invariance check (the first test items)
    calls = min(cfg.deployment.invariance_items, n["test"])
    assert estimate(ctx, {**zero, "call": 1.0})["variants"] == pytest.approx(1.5 * calls)
    est = estimate(ctx, {**zero, "forward": 1.0})
    (noise,) = ctx.stressors
    assert est["stress"] == pytest.approx(1.5 * len(noise.conditions()) * n["test"])
    rounds, thr = cfg.eval.timing.rounds, cfg.eval.throughput
    window = thr.min_time_s / (2 * rounds)
    batches = sorted({*thr.batch_sizes, cfg.eval.batch_size})
    assert est["efficiency"] == pytest.approx(sum((3 + rounds) * max(b * sc, window) for b in batches
                                                  for sc in (1.0, 0.5)))


def test_perturbed_copies_are_counted_once_for_every_variant(tmp_path):
    """A corruption's copies are made once per condition and scored by every variant: the plan
    times making them (``input_cost``) and counts them once, not once per variant; an attack's
    copies are gradients, counted by ``work``. The monitor's covariate scenario likewise."""
    from mlbench.pipeline.plan import unit_costs
    ctx, n = _ready(tmp_path, "stress=[gaussian_noise,fgsm]", "variants=[onnx_fp32,prune50_ft]", "monitor=light")
    inputs = unit_costs(ctx)["inputs"]
    assert set(inputs) == {"gaussian_noise", "monitor"} and all(v > 0 for v in inputs.values())
    est = estimate(ctx, {**zero, "inputs": {"gaussian_noise": 1.0, "monitor": 1.0}})
    assert est["stress"] == pytest.approx(n["test"])  # three variants, one set of copies
    tests_only = estimate(ctx, zero)["monitor"]  # the detectors' statistics: an allowance per test
    assert est["monitor"] - tests_only == pytest.approx(min(n["test"], ctx.monitor.max_items))


def test_the_revised_plan_counts_each_variant_at_its_own_time_per_item(tmp_path):
    """After the variants: one forward item costs what that variant's runner measured, and only
    variants with gradients craft their own attacks (an ONNX graph is attacked by transfer)."""
    from mlbench.pipeline.plan import plan, revise
    ctx, n = _ready(tmp_path, "stress=[gaussian_noise,fgsm]", "variants=[onnx_fp32]", "monitor=none")
    pipeline.timed_stages(ctx, [plan, pipeline.variants, revise])
    noise, fgsm = ctx.stressors
    by_variant = {"baseline": 1.0, "onnx_fp32": 2.0}
    est = estimate(ctx, {**zero, "forward": 1.0, "forward_by_variant": by_variant})
    assert est["stress"] == pytest.approx(3.0 * (len(noise.conditions()) + len(fgsm.conditions())) * n["test"])
    est = estimate(ctx, {**zero, "gradient": 1.0, "forward_by_variant": by_variant})
    assert est["stress"] == pytest.approx(len(fgsm.conditions()) * n["test"])  # the baseline's own only
    rev = ctx.run.plan["revised"]
    assert list(rev["forward_by_variant_s"]) == ["baseline", "onnx_fp32"]
    assert set(rev["estimate_s"]) >= {"efficiency", "compare", "stress", "write"} and "variants" not in rev["estimate_s"]


def test_a_second_budget_fit_sizes_from_the_configured_values(tmp_path):
    """The fit after the variants starts again from the config, so minutes the first fit
    thought lost are given back when the run turns out faster."""
    from mlbench.pipeline.plan import estimate as est_
    from mlbench.pipeline.plan import fit_budget
    ctx, n = _ready(tmp_path, "stress=[gaussian_noise]", "variants=[]", "monitor=light", "budget.minutes=0.001",
                    "eval.bootstrap.resamples=1000")
    costs = {**zero, "forward": 1e-3, "resample": 1e-3}
    reps = ctx.monitor.repetitions
    first = fit_budget(ctx, costs, est_(ctx, costs))
    assert first["sized"]["bootstrap_resamples"] == 200 and ctx.sizing["stress_items"] == 100
    assert ctx.monitor.repetitions == 10
    ctx.cfg.budget.minutes = 10_000  # far more time than the estimate: nothing is sized
    second = fit_budget(ctx, costs, {k: v for k, v in est_(ctx, costs).items() if k != "variants"})
    assert second["fits"] and not second["sized"] and "stress_items" not in ctx.sizing
    assert ctx.cfg.eval.bootstrap.resamples == 1000 and ctx.monitor.repetitions == reps > 10

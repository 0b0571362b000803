"""The update cycle: the stream it draws, the policies, the figures of its timeline, and
`mlbench cycle` end to end — failures keep the deployed model, impossible schedules fail
before any work, an interrupted cycle resumes with identical results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import preset

from mlbench.analysis.requirements import check_one
from mlbench.cycle.config import Cycle
from mlbench.cycle.figures import (
    interval,
    onsets,
    paired_mean,
    policy_table,
    recovery,
    stage_times,
    updates_bought,
    versus,
)
from mlbench.cycle.policies import Every, Never, OnDrift, OnEstimate, Oracle, Signals
from mlbench.cycle.stage import load_recipe
from mlbench.cycle.stream import Stream, schedule
from mlbench.data import Digits
from mlbench.errors import MlbenchError
from mlbench.schema import CONF_DIR


@pytest.fixture(scope="module")
def digits():
    return Digits().load()


def _tag(sc, x, y, t):  # a visible "perturbation": the period number added to every input
    return x + 100 + t


def test_schedule_gives_each_period_its_scenario():
    s = schedule([{"from": 2, "kind": "knock_out", "classes": [0, 1]}, {"from": 4, "kind": "none"}], 6)
    assert [x.kind for x in s] == ["none", "none", "knock_out", "knock_out", "none", "none"]
    with pytest.raises(MlbenchError, match="outside the stream"):
        schedule([{"from": 6, "kind": "none"}], 6)
    with pytest.raises(MlbenchError, match="must increase"):
        schedule([{"from": 3, "kind": "none"}, {"from": 1, "kind": "none"}], 6)


def test_the_stream_draws_disjoint_periods_under_their_scenarios(digits):
    scen = schedule([{"from": 0, "kind": "none"}, {"from": 2, "kind": "knock_out", "classes": [0, 1]},
                     {"from": 4, "kind": "concept", "classes": [2, 3]},
                     {"from": 5, "kind": "covariate", "corruption": "gaussian_blur", "param": 2}], 6)
    st = Stream(digits, scen, 60, seed=0, perturb=_tag)
    idx = np.concatenate([p.idx for p in st.periods])
    assert len(idx) == len(set(idx)) == 360  # no item twice: nothing scored after being trained on
    pool_y = st.y.numpy()
    for p in st.periods:
        true = pool_y[p.idx]
        if p.scenario.kind == "knock_out":
            assert not (true == 0).any()  # knock_out drops the first class named
        if p.scenario.kind == "concept":  # the world's labels: 2 and 3 swapped, inputs untouched
            lab = p.labels.numpy()
            assert (lab[true == 2] == 3).all() and (lab[true == 3] == 2).all() and (lab[true > 3] == true[true > 3]).all()
            assert torch.equal(p.x, st.x[p.idx])
        if p.scenario.kind == "covariate":
            assert torch.equal(p.x, st.x[p.idx] + 100 + p.t)
    again = Stream(digits, scen, 60, seed=0, perturb=_tag)
    assert all(np.array_equal(a.idx, b.idx) for a, b in zip(st.periods, again.periods, strict=True))


def test_an_impossible_stream_fails_with_one_line(digits):
    with pytest.raises(MlbenchError, match=r"need 7200 items; the calib and test splits of digits hold 719"):
        Stream(digits, schedule([], 12), 600, 0, _tag)
    # 10 periods without classes 0 and 1 need more of class 2 than the pool holds
    with pytest.raises(MlbenchError, match="items of class"):
        Stream(digits, schedule([{"from": 0, "kind": "tweak_one", "param": 0.9, "classes": [2, 0]}], 10), 60, 0, _tag)


@pytest.mark.parametrize("kw, message", [
    ({"policies": ["never", "never"]}, "never named more than once"),
    ({"policies": [{"_target_": "mlbench.monitor.BBSDs"}]}, "is not a mlbench.cycle.policies.Policy"),
    ({"policies": [{"_target_": "mlbench.cycle.Nope"}]}, "cannot import 'mlbench.cycle.Nope'"),
    ({"policies": ["nevr"]}, "did you mean 'never'"),
    ({"label_delay": 12}, "never delivers a label"),
    ({"window": 0}, "window must be >= 1"),
    ({"train_data": "all"}, "train_data must be one of window, cumulative, replay"),
    ({"gate_holdout": 0.001}, "gate_holdout must leave at least one item"),
    ({"gate_holdout": 1.0}, "gate_holdout must leave at least one item"),
    ({"gate_periods": 0}, "gate_periods must be >= 1"),
    ({"replay": 0}, "cycle.replay must be > 0"),
    ({"policies": ["never", "sometimes"]}, "cycle.policies: unknown 'sometimes'"),
    ({"detectors": ["mmd_embeddings"]}, "mmd_embeddings need embeddings"),
    ({"policies": ["estimate"], "accuracy_target": None, "requirements": [{"metric": "size_bytes", "op": "<=", "value": 1e6}]},
     "needs an accuracy target"),
    ({"requirements": [{"metric": "accuracy"}]}, "give one of op and value, max_degradation or min_gain"),
    ({"requirements": [{"metric": "accuracy", "min_gain": 0, "max_degradation": 0.1}]}, "give one of"),
])
def test_bad_cycle_settings_fail_at_set_up(kw, message):
    with pytest.raises(MlbenchError, match=message):
        preset("cycle", "default", **kw)


def test_an_unknown_recipe_lists_the_variants(make_cfg):
    with pytest.raises(MlbenchError, match="no variant 'nope'; one of .*structured50_ft_ort_int8"):
        load_recipe(make_cfg(), "nope")
    assert [p.name for p in load_recipe(make_cfg(), "structured50_ft_ort_int8")] == [
        "prune_structured", "finetune", "onnx_export", "ort_quantize_static"]


def test_policies_decide_on_what_they_watch():
    sig = lambda t, alarm=(), err=False, est=0.95: Signals(t, list(alarm), err, est)  # noqa: E731
    assert [t for t in range(9) if Every(3).decide(sig(t))] == [2, 5, 8]
    assert OnDrift().decide(sig(0)) is None
    assert "bbsd_soft" in OnDrift().decide(sig(0, alarm=["bbsd_soft"]))
    assert "error-rate" in OnDrift().decide(sig(0, err=True))
    assert OnEstimate(0.9).decide(sig(0, est=0.91)) is None and "0.890" in OnEstimate(0.9).decide(sig(0, est=0.89))


def _rows(acc, kinds, updates=None):
    updates = updates or {}
    return [{"period": t, "accuracy": a, "kind": k, "scenario": k, "n": 50, "alarm": [], "error_alarm": False,
             "update": updates.get(t), "seconds": {"score": 0.1}} for t, (a, k) in enumerate(zip(acc, kinds, strict=True))]


def test_recovery_and_the_policy_table_on_a_worked_example():
    kinds = ["none"] * 3 + ["covariate"] * 4 + ["none"] * 2
    acc = [0.96, 0.98, 0.97, 0.70, 0.80, 0.93, 0.95, 0.90, 0.97]
    up = {3: {"status": "refused", "train_periods": [0, 1], "gate_periods": [1, 2], "n_train": 100, "n_holdout": 50,
              "seconds": {}},
          4: {"status": "deployed", "train_periods": [1, 2], "gate_periods": [2, 3], "n_train": 100, "n_holdout": 50,
              "seconds": {}}}
    rows = _rows(acc, kinds, up)
    d = onsets(rows)
    assert [x["period"] for x in d] == [3, 7]
    r = recovery(rows, d, 0.05)
    # before: mean(0.96, 0.98, 0.97) = 0.97; back within 0.05 (>= 0.92) at period 5 and stays: 2 periods
    assert r[0]["accuracy_before"] == pytest.approx(0.97) and r[0]["periods_to_recover"] == 2
    assert r[0]["lowest_after"] == 0.70 and r[0]["status"] == "recovered" and r[0]["periods_below"] == 2
    # before the second change: mean(0.70, 0.80, 0.93, 0.95) = 0.845; 0.90 and 0.97 stay above 0.795
    assert r[1]["periods_to_recover"] == 0 and r[1]["status"] == "unaffected" and r[1]["first_below"] is None
    tab = policy_table(rows, 0.9, 0.05)
    assert tab["periods_below_target"] == 2 and tab["retrains"] == 2 and tab["deployments"] == 1
    assert tab["refused"] == 1 and tab["labelled_items_used"] == 200  # periods 0-3, each item once
    assert tab["min_accuracy"] == 0.70 and tab["final_accuracy"] == 0.97 and tab["unrecovered"] == 0


def test_a_slow_drift_that_never_comes_back_is_not_recovered():
    """A drift whose first periods are still mild (accuracy holds, then falls for good) is not
    'recovered in 0 periods'; a dip that comes back and falls again is not recovered either."""
    kinds = ["none"] * 3 + ["covariate"] * 6
    ramp = recovery(_rows([0.99, 1.0, 0.99, 0.99, 0.97, 0.80, 0.62, 0.55, 0.46], kinds), onsets(_rows([0] * 9, kinds)), 0.05)
    assert ramp[0]["status"] == "not recovered" and ramp[0]["periods_to_recover"] is None
    assert ramp[0]["first_below"] == 5 and ramp[0]["periods_below"] == 4 and ramp[0]["lowest_after"] == 0.46
    relapse = recovery(_rows([0.99, 0.99, 0.99, 0.70, 0.97, 0.98, 0.70, 0.98, 0.97], kinds), onsets(_rows([0] * 9, kinds)), 0.05)
    # below at 3 and 6: back for good from period 7, four periods after the change
    assert relapse[0]["status"] == "recovered" and relapse[0]["periods_to_recover"] == 4
    tab = policy_table(_rows([0.99, 1.0, 0.99, 0.99, 0.97, 0.80, 0.62, 0.55, 0.46], kinds), None, 0.05)
    assert tab["unrecovered"] == 1


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF_DIR / "cycle").glob("*.yaml")))
def test_every_cycle_option_builds(make_cfg, option):
    from hydra.utils import instantiate
    cyc = instantiate(make_cfg(f"cycle={option}").cycle)
    assert isinstance(cyc, Cycle) and len(cyc.scenarios) == cyc.periods


def test_stage_times_and_the_update_interval_on_a_worked_example():
    def upd(status, secs, n=100):
        return {"status": status, "n_train": n, "seconds": dict(zip(
            ("datacheck", "train", "compress", "evaluate", "gate"), secs, strict=True))}
    rows = {"a": [{"seconds": {"score": 0.1, "monitor": 0.02}, "update": None},
                  {"seconds": {"score": 0.3, "monitor": 0.04}, "update": upd("deployed", (1, 2, 3, 0.5, 0.5))}],
            "b": [{"seconds": {"score": 0.2, "monitor": 0.03}, "update": upd("refused", (1, 1, 1, 0.5, 0.5))},
                  {"seconds": {"score": 0.2, "monitor": 0.03}, "update": upd("failed", (9, 9, 9, 9, 9))}]}
    st = stage_times(rows)
    assert st["score"]["median"] == pytest.approx(0.2) and st["monitor"]["median"] == pytest.approx(0.03)
    assert st["train"] == {"median": 1.5, "min": 1.0, "max": 2.0, "n": 2}  # the failed update is left out
    iv = interval(st, rows, 100)
    # updates of 7 s and 4 s: median 5.5 s, plus the median score (0.2) and monitor (0.03) of a period
    assert iv["update_s_median"] == pytest.approx(5.5) and iv["interval_s"] == pytest.approx(5.73)
    assert (iv["update_s_min"], iv["update_s_max"], iv["updates"]) == (4.0, 7.0, 2)


def test_every_period_keeps_a_seeded_share_out_of_all_training(digits):
    """The gate's evidence: 30 % of each period, the same at every draw; an update's training
    data never holds a gate item, and replay adds original training items, as many per new one
    as asked (a seeded sample of the train split)."""
    st = Stream(digits, schedule([], 6), 50, seed=0, perturb=_tag, gate_holdout=0.3)
    assert all(int(p.gate.sum()) == 15 for p in st.periods)
    again = Stream(digits, schedule([], 6), 50, seed=0, perturb=_tag, gate_holdout=0.3)
    assert all(np.array_equal(a.gate, b.gate) for a, b in zip(st.periods, again.periods, strict=True))
    b = st.bundle([2, 3, 4], [1, 2, 3, 4], digits.meta)
    gate_ids = {int(i) for t in range(6) for i in st.index[st.periods[t].idx][torch.as_tensor(st.periods[t].gate)]}
    assert len(b.y["train"]) == 3 * 35 and len(b.y["test"]) == 4 * 15
    assert not gate_ids & {int(i) for i in b.index["train"]}
    assert {int(i) for i in b.index["test"]} <= gate_ids
    r = st.bundle([2, 3, 4], [4], digits.meta, replay=0.5, seed=7)
    replayed = r.index["train"][105:]
    assert len(replayed) == round(0.5 * 105) and set(replayed.tolist()) <= set(digits.index["train"].tolist())
    assert torch.equal(r.x["train"][:105], b.x["train"])
    assert len(st.bundle([2], [4], digits.meta, replay=100.0).y["train"]) == 35 + len(digits.y["train"])  # capped


def test_min_gain_requires_the_variant_to_beat_the_reference():
    """``min_gain``: strictly better by more than the gain; on the bound, the interval's lower end."""
    req = {"metric": "accuracy", "min_gain": 0.0, "use_bound": True}
    base = {"status": "ok", "metrics": {"accuracy": 0.90}}

    def var(acc, lo, hi):
        return {"status": "ok", "metrics": {"accuracy": acc},
                "deltas": {"accuracy": {"value": acc - 0.9, "ci_low": lo, "ci_high": hi}}}
    ok = check_one(req, var(0.95, 0.01, 0.09), base, False, False)
    assert ok["passed"] and ok["gain"] == pytest.approx(0.01) and ok["basis"] == "95% CI bound"
    assert not check_one(req, var(0.95, -0.01, 0.09), base, False, False)["passed"]  # better, not surely
    assert not check_one(req, var(0.90, 0.0, 0.0), base, False, False)["passed"]  # a tie is no gain
    point = check_one({"metric": "accuracy", "min_gain": 0.02}, var(0.93, -0.01, 0.07), base, False, False)
    assert point["passed"] and point["gain"] == pytest.approx(0.03) and point["margin"] == pytest.approx(0.01)
    assert not check_one(req, base, base, True, False)["passed"]  # the reference never beats itself
    lower = check_one({"metric": "nll", "min_gain": 0.0, "use_bound": True},  # lower is better: −ci_high
                      {"status": "ok", "metrics": {"nll": 0.3}, "deltas": {"nll": {"ci_low": -0.2, "ci_high": -0.05}}},
                      {"status": "ok", "metrics": {"nll": 0.4}}, False, False)
    assert lower["passed"] and lower["gain"] == pytest.approx(0.05)


def test_labelled_windows_follow_the_train_data_setting(make_cfg):
    from hydra.utils import instantiate

    from mlbench.cycle.loop import Engine
    from mlbench.cycle.state import PolicyState

    def window(policy, t=9, **over):
        cyc = instantiate(make_cfg(*(f"cycle.{k}={v}" for k, v in over.items())).cycle)
        eng = Engine.__new__(Engine)
        eng.cyc = cyc
        return eng.labelled_window(PolicyState(policy, None), t)
    # labels 1 late: period 8 is the newest labelled one at the end of period 9
    assert window(Never(), window=3, gate_periods=4) == ([6, 7, 8], [5, 6, 7, 8])
    assert window(Never(), train_data="cumulative", gate_periods=2) == (list(range(9)), [7, 8])
    assert window(Oracle(), window=3) == (list(range(10)), [6, 7, 8, 9])  # every label, no delay
    assert window(Never(), t=0) == ([], [])  # no label has arrived: the update is skipped


def _scored(correct, previous=None, update=None):
    row = {"period": 0, "correct": correct, "update": update}
    if previous is not None:
        row["previous"] = {"version": 0, "correct": previous}
    return row


def test_what_each_update_bought_and_the_paired_difference_to_never_on_a_worked_timeline():
    dep = {"status": "deployed"}
    rows = [_scored([1, 1, 0, 1], update=dep),  # deployed after period 0: v1 serves 1-2
            _scored([1, 1, 1, 1], [1, 0, 0, 1]),
            _scored([1, 0, 1, 1], [0, 0, 1, 1], update=dep),  # v2 serves 3
            _scored([1, 1, 1, 0], [1, 0, 1, 1])]
    for t, r in enumerate(rows):
        r["period"], r["version"] = t, (0, 1, 1, 2)[t]
    b = updates_bought(rows, seed=0)
    assert [x["served_periods"] for x in b] == [[1, 2], [3]]
    # v1 on periods 1-2: 7 of 8 right; v0 beside it: 4 of 8 → +3/8
    assert b[0]["accuracy"] == 7 / 8 and b[0]["accuracy_replaced"] == 4 / 8 and b[0]["bought"]["value"] == 3 / 8
    assert b[1]["bought"]["value"] == 0.0 and b[1]["bought"]["n"] == 4
    assert b[0]["bought"]["ci_low"] <= 3 / 8 <= b[0]["bought"]["ci_high"]
    never = [_scored([1, 1, 0, 1]), _scored([1, 0, 0, 1]), _scored([0, 0, 1, 1]), _scored([1, 0, 1, 1])]
    v = versus(rows, never, seed=0)
    assert v["value"] == pytest.approx((13 - 10) / 16) and v["n"] == 16
    # the interval is the percentile bootstrap of the mean paired difference (scipy's, same data)
    from scipy.stats import bootstrap
    d = np.array([c for r in rows for c in r["correct"]]) - np.array([c for r in never for c in r["correct"]])
    ref = bootstrap((d,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert v["ci_low"] == pytest.approx(ref.low, abs=0.04) and v["ci_high"] == pytest.approx(ref.high, abs=0.04)
    assert paired_mean([], [], 0) is None and versus([{"period": 0}], never, 0) is None


def test_labels_to_target_on_a_worked_timeline():
    """Target 0.9: accuracy falls below it at period 2 and is back at period 4; labels that had
    arrived before period 4: 10 + 20 + 30 + 40."""
    from mlbench.cycle.figures import labels_to_target
    rows = [{"accuracy": a, "labels": n, "n": 50} for a, n in zip([0.95, 0.92, 0.7, 0.85, 0.93, 0.6],
                                                                   [10, 20, 30, 40, 50, 60], strict=True)]
    assert labels_to_target(rows, 0.9) == 100
    assert labels_to_target(rows[:4], 0.9) is None  # fell, never came back
    assert labels_to_target(rows[:2], 0.9) is None and labels_to_target(rows, None) is None  # never fell; no target

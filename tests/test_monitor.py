"""The monitoring stage: detectors against scipy and planted shifts, the null, estimators
against known priors, river's streaming detectors, and the stage through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import preset, run_cli, run_dirs
from scipy import stats as sps

from mlbench.errors import MlbenchError
from mlbench.monitor import (
    ATC,
    BBSE,
    MMD,
    BBSDh,
    BBSDs,
    ConfidenceShift,
    DomainClassifier,
    EntropyShift,
    FeatureKS,
    Monitor,
    Scenario,
    View,
    failing_loudly,
)
from mlbench.monitor.detectors import entropy
from mlbench.monitor.protocol import Pools


def light(**kw) -> Monitor:
    """The default monitor (conf/monitor/light.yaml) with ``kw`` changed."""
    return preset("monitor", "light", **kw)


def _world(n: int = 4000, classes: int = 4, dims: int = 6, seed: int = 0, shift: float = 0.0, scale: float = 1.0):
    """Gaussian classes and a fixed linear "model": a View whose probabilities come from it."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(size=(classes, dims)) * 1.5
    y = rng.integers(0, classes, n)
    x = (means[y] + rng.normal(size=(n, dims))) * scale
    x[:, 0] += shift
    logits = x @ means.T - 0.5 * (means ** 2).sum(1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return View(x, x.copy(), p), y


def test_bbsd_soft_is_bonferroni_over_scipy_ks():
    ref, _ = _world(seed=1)
    win, _ = _world(n=300, seed=2, shift=0.3)
    out = BBSDs().fit(ref).test(win)
    raw = [sps.ks_2samp(ref.probs[:, k], win.probs[:, k]).pvalue for k in range(4)]
    assert out["p_value"] == pytest.approx(min(1.0, 4 * min(raw)))


def test_batched_ks_equals_scipy_bit_for_bit_on_many_windows_with_ties():
    """KSReference reuses scipy's p-value for a repeated (n1, n2, D): every window's statistic
    and p-value must still equal a direct scipy call exactly, ties and constant columns too."""
    from mlbench.evaluate.twosample import KSReference
    rng = np.random.default_rng(3)
    ref = np.round(rng.normal(size=(450, 5)), 1)  # rounded: many ties within and across samples
    ref[:, 4] = 0.25  # a constant reference column
    ks = KSReference(ref)
    hits = 0
    for i in range(300):
        n = (20, 100, 200)[i % 3]
        win = np.round(rng.normal(0.3 * (i % 2), 1.0, size=(n, 5)), 1)
        stats, pvals = ks.test(win)
        for j in range(5):
            r = sps.ks_2samp(ref[:, j], win[:, j])
            assert stats[j] == r.statistic and pvals[j] == r.pvalue, (i, j)
        hits += 1
    assert hits == 300
    one = KSReference(ref[:, 0])  # 1-D reference and window
    s1, p1 = one.test(win[:, 0])
    assert (s1[0], p1[0]) == (sps.ks_2samp(ref[:, 0], win[:, 0]).statistic, sps.ks_2samp(ref[:, 0], win[:, 0]).pvalue)


def test_bbsd_hard_is_the_chi_squared_test_by_hand():
    ref, _ = _world(seed=1)
    win, _ = _world(n=300, seed=2, shift=0.5)
    out = BBSDh().fit(ref).test(win)
    o = np.stack([np.bincount(ref.probs.argmax(1), minlength=4), np.bincount(win.probs.argmax(1), minlength=4)])
    e = o.sum(1, keepdims=True) * o.sum(0, keepdims=True) / o.sum()
    stat = ((o - e) ** 2 / e).sum()
    assert out["statistic"] == pytest.approx(stat)
    assert out["p_value"] == pytest.approx(sps.chi2.sf(stat, 3))


def test_confidence_and_entropy_are_scipy_ks():
    ref, _ = _world(seed=1)
    win, _ = _world(n=300, seed=2, scale=0.5)
    assert ConfidenceShift().fit(ref).test(win)["p_value"] == pytest.approx(
        sps.ks_2samp(ref.probs.max(1), win.probs.max(1)).pvalue)
    assert EntropyShift().fit(ref).test(win)["p_value"] == pytest.approx(
        sps.ks_2samp(entropy(ref.probs), entropy(win.probs)).pvalue)


DETECTORS = {"ks_inputs": lambda: FeatureKS("inputs"), "mmd_inputs": lambda: MMD("inputs", permutations=100),
             "bbsd_soft": BBSDs, "bbsd_hard": BBSDh, "confidence": ConfidenceShift, "entropy": EntropyShift,
             "domain_classifier": lambda: DomainClassifier("inputs")}
# planted shifts each detector must see at n = 200, with a stated minimum power over 40 windows
PLANTED = {"ks_inputs": ("covariate", 0.9), "mmd_inputs": ("covariate", 0.9), "bbsd_soft": ("covariate", 0.7),
           "bbsd_hard": ("label", 0.9), "confidence": ("scale", 0.9), "entropy": ("scale", 0.9),
           "domain_classifier": ("covariate", 0.8)}


def test_every_detector_class_has_a_planted_shift_test():
    """A detector added to mlbench (a Detector subclass with presets) fails here until it gets
    its planted-shift test above."""
    from mlbench.monitor.detectors import Detector
    from mlbench.named import presets
    tested = {type(f()) for f in DETECTORS.values()}
    shipped = {cls for cls, _ in presets(Detector).values() if cls.__module__.startswith("mlbench.")}
    assert shipped and shipped <= tested, sorted(c.__name__ for c in shipped - tested)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_has_power_on_its_planted_shift(name):
    ref, _ = _world(seed=1)
    kind, minimum = PLANTED[name]
    pool, y = _world(seed=3, shift=1.0 if kind == "covariate" else 0.0, scale=0.5 if kind == "scale" else 1.0)
    sc = Scenario("knock_out", classes=(0, 1)) if kind == "label" else Scenario("none")
    det = DETECTORS[name]().fit(ref)
    rng = np.random.default_rng(0)
    hits = [det.test(pool.take(sc.draw(200, y, None, rng)))["drift"] for _ in range(40)]
    assert np.mean(hits) >= minimum, (name, np.mean(hits))


def test_null_false_positive_rates_stay_at_alpha():
    """No shift, 200 windows of 50: each detector's rate within the binomial 99 % interval of α
    (tests corrected for many features may sit below α: only the upper end applies to them)."""
    ref, _ = _world(seed=1)
    pool, y = _world(seed=4)
    mon = light(windows=[50], repetitions=200, detectors=["bbsd_soft", "bbsd_hard", "confidence", "entropy"])
    dets = {n: d for n, d in mon.detectors_for(mon.detectors, ref, "tabular", []).items()}
    rows, _ = mon.power(Pools(ref, pool), y, None, [Scenario("none")], [50], dets, 200)
    lo, hi = sps.binom.ppf([0.005, 0.995], 200, 0.05) / 200
    for r in rows:
        assert r["rate"] <= hi, r
        if r["detector"] in ("bbsd_hard", "confidence", "entropy"):
            assert r["rate"] >= lo, r


def test_bbse_recovers_known_priors_and_atc_the_accuracy():
    calib, yc = _world(n=6000, seed=5)
    bbse, atc = BBSE().fit(calib.probs, yc), ATC().fit(calib.probs, yc)
    pool, y = _world(n=20000, seed=6)
    rng = np.random.default_rng(0)
    for q in ([0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.45, 0.45]):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), int(5000 * p)) for c, p in enumerate(q)])
        est = bbse.estimate(pool.probs[idx])
        assert np.abs(est["priors"] - q).max() < 0.03, (q, est["priors"])
        true_acc = float((pool.probs[idx].argmax(1) == y[idx]).mean())
        assert est["accuracy"] == pytest.approx(true_acc, abs=0.02)
    idx = rng.choice(len(y), 5000)
    assert atc.estimate(pool.probs[idx]) == pytest.approx(float((pool.probs[idx].argmax(1) == y[idx]).mean()),
                                                          abs=0.02)


def test_river_detectors_find_a_planted_error_jump():
    mon = light(windows=[20], repetitions=1, stream_scenario={"kind": "concept", "classes": [0, 1]},
                  stream_length=400, stream_repetitions=5)
    pool, y = _world(seed=7)
    out = mon.streams(Pools(pool, pool), y, None)
    # swapping two of four classes turns about half of their items into errors: ADWIN and
    # Page-Hinkley see it within a few hundred items
    for name in ("adwin", "page_hinkley"):
        s = out["detectors"][name]
        assert s["detected"] == 1.0 and s["delay_mean"] < 300, (name, s)
    assert set(out["detectors"]) == {"adwin", "kswin", "page_hinkley"}


def test_scenarios_draw_what_they_say():
    y = np.repeat(np.arange(4), 250)
    rng = np.random.default_rng(0)
    ko = Scenario("knock_out", classes=(2, 0)).draw(400, y, None, rng)
    assert len(ko) == 400 and not (y[ko] == 2).any()
    tw = Scenario("tweak_one", 0.7, classes=(1, 0)).draw(4000, y, None, rng)
    assert np.mean(y[tw] == 1) == pytest.approx(0.7, abs=0.03)
    g = (np.arange(1000) % 2).astype(int)
    sub = Scenario("subpopulation", 0.9).draw(4000, y, g, rng)
    assert np.mean(g[sub]) == pytest.approx(0.9, abs=0.02)
    assert (Scenario("concept", classes=(0, 3)).labels(y)[:250] == 3).all()


@pytest.mark.parametrize("spec, message", [
    ({"kind": "dirichlet", "param": 0}, "alpha must be > 0"),
    ({"kind": "tweak_one", "param": 1.5}, "must be in \\[0, 1\\]"),
    ({"kind": "subpopulation", "param": -0.1}, "must be in \\[0, 1\\]"),
    ({"kind": "drift"}, "kind must be one of"),
])
def test_bad_scenarios_fail_with_one_line(spec, message):
    with pytest.raises(MlbenchError, match=message):
        light(scenarios=[spec])


def test_a_window_larger_than_the_data_fails_or_is_dropped():
    with pytest.raises(MlbenchError, match="larger than the held-out test split"):
        light(windows=[50, 500], when_unfit="error").prepare(449, False)
    m = light(windows=[50, 500], when_unfit="skip", deployment_window=100)
    m.prepare(449, False)
    assert m.windows == [50] and m.dropped[0]["window"] == "500"
    with pytest.raises(MlbenchError, match="group attribute"):
        light(scenarios=[{"kind": "subpopulation", "param": 0.9}], when_unfit="error").prepare(1000, False)


def test_failing_loudly_findings_from_rows():
    rows = []
    power = {"bbsd_soft": [0.6, 0.9], "ks_embeddings": [0.5, 0.85], "mmd_embeddings": [0.5, 0.9],
             "domain_classifier_embeddings": [0.1, 0.8]}
    for d, (small, big) in power.items():
        rows += [{"kind": "covariate", "detector": d, "window": 20, "rate": small},
                 {"kind": "covariate", "detector": d, "window": 500, "rate": big}]
    out = failing_loudly(rows, list(power))
    f = out["findings"]
    assert out["ranking"][0] == "bbsd_soft" and f["bbsd_soft_among_best"]["holds"]
    assert f["univariate_ks_competitive_with_mmd"]["holds"]
    assert f["domain_classifier_weak_at_small_windows"]["holds"]


def test_the_default_run_monitors_and_reports_false_alarms_per_variant(smoke_run):
    run_dir, s, _ = smoke_run
    mon = s["monitor"]
    assert {"none", "knock_out", "concept"} <= {r["kind"] for r in mon["power"]}
    assert set(mon["deployment"]["variants"]) == set(s["variants"])
    for name, v in s["variants"].items():
        fa = mon["deployment"]["variants"][name]["false_alarms"]
        assert v["metrics"]["monitor_false_alarm_rate"] == max(x["rate"] for x in fa.values())
    ko = [r for r in mon["power"] if r["kind"] == "knock_out" and r["detector"] == "bbsd_hard"]
    assert max(r["rate"] for r in ko) > 0.5  # a knocked-out digit is visible in the predicted labels
    assert "plots/monitor_power.png" in s["plots"] and "Monitoring" in (run_dir / "report.md").read_text()


def test_monitor_command_full_on_digits(tmp_path):
    out = run_cli("monitor", "monitor=full", "debug=smoke", "variants=[ort_int8_dynamic]", "monitor.repetitions=5",
                  "monitor.windows=[10,50]", "monitor.deployment_window=50", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = run_dirs(tmp_path)
    mon = json.loads((run_dir / "summary.json").read_text())["monitor"]
    assert {"mmd_embeddings", "ks_embeddings", "domain_classifier_embeddings"} <= set(mon["detectors"])
    assert set(mon["failing_loudly"]["findings"]) == {"bbsd_soft_among_best", "univariate_ks_competitive_with_mmd",
                                                      "domain_classifier_weak_at_small_windows"}
    assert mon["streams"]["detectors"]["adwin"]["detected"] >= 0
    assert "mlbench monitor" in out.stdout


def test_a_large_test_split_is_monitored_on_a_seeded_sample():
    """Reference and pool are cut to max_items (seeded, same items every time); smaller splits
    are left exactly as they are."""
    from mlbench.data import Synthetic
    d = Synthetic(n=4000, dims=4, test=0.5, calib=0.2).load()
    mon = light(max_items=500, seed=3)
    a, b = mon.sample(d), mon.sample(d)
    assert len(a.y["test"]) == len(a.x["test"]) == len(a.index["test"]) == len(a.group["test"]) == 500
    assert len(a.y["calib"]) == 500 and len(a.y["train"]) == len(d.y["train"])
    assert torch.equal(a.index["test"], b.index["test"])
    pos = {int(i): k for k, i in enumerate(d.index["test"])}  # every sampled item is the split's own
    for k, i in enumerate(a.index["test"].tolist()):
        assert torch.equal(a.x["test"][k], d.x["test"][pos[i]]) and a.y["test"][k] == d.y["test"][pos[i]]
    assert light(max_items=100000).sample(d) is d
    with pytest.raises(MlbenchError, match="max_items"):
        light(max_items=1)


def test_windows_of_a_float32_pool_give_the_float64_pools_figures():
    """Pools keep inputs and embeddings in float32 (half the memory); windows are taken as
    float64, so every detector's figures equal those on a float64 pool."""
    view, _ = _world(n=1200, seed=3, shift=0.4)
    ref, _ = _world(n=800, seed=4)
    as32 = View(view.inputs.astype(np.float32), view.embeddings.astype(np.float32), view.probs)
    exact = View(as32.inputs.astype(np.float64), as32.embeddings.astype(np.float64), view.probs)
    idx = np.random.default_rng(0).permutation(1200)[:300]
    w32, w64 = as32.take(idx), exact.take(idx)
    assert w32.inputs.dtype == np.float64 and np.array_equal(w32.inputs, w64.inputs)
    assert np.array_equal(w32.take(np.arange(10)).inputs, w64.inputs[:10])  # a window of a window
    ref32 = View(ref.inputs.astype(np.float32), ref.embeddings.astype(np.float32), ref.probs)
    ref64 = View(ref32.inputs.astype(np.float64), ref32.embeddings.astype(np.float64), ref.probs)
    for make in (lambda: FeatureKS("inputs"), lambda: FeatureKS("embeddings"),
                 lambda: MMD("embeddings", permutations=50), lambda: DomainClassifier("inputs")):
        a, b = make().fit(ref32).test(w32), make().fit(ref64).test(w64)
        assert a == b, (a, b)


def test_the_embedding_pass_runs_only_when_a_detector_reads_embeddings(monkeypatch):
    """The default (output detectors only) never calls the penultimate-layer pass; a monitor
    with an embedding detector gets the same outputs plus embeddings equal to a direct pass."""
    from mlbench.backends import TorchRunner
    from mlbench.data import Synthetic
    from mlbench.models import MLP, penultimate
    from mlbench.monitor import stage as monitor_stage

    d = Synthetic(n=600, dims=4, test=0.5, calib=0.2).load()
    model = MLP((4,), d.meta.num_classes, hidden=[8]).eval()
    art = type("Art", (), {"model": model, "dtype": torch.float32, "differentiable": True})()
    runner = TorchRunner(model, torch.device("cpu"))
    calls = []
    real = monitor_stage.penultimate
    monkeypatch.setattr(monitor_stage, "penultimate", lambda *a, **k: calls.append(1) or real(*a, **k))
    outs = light()
    p = monitor_stage.pools_for(outs, runner, art, d, 64, torch.device("cpu"), {})
    assert not outs.reads_embeddings and calls == [] and p.reference.embeddings is None
    embs = light(detectors=["bbsd_soft", "mmd_embeddings"])
    q = monitor_stage.pools_for(embs, runner, art, d, 64, torch.device("cpu"), {})
    assert embs.reads_embeddings and len(calls) == 2  # reference and pool
    assert np.array_equal(q.reference.probs, p.reference.probs)
    assert np.array_equal(q.clean.embeddings, penultimate(model, d.x["test"]).float().numpy())

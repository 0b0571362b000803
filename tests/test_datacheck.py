"""Data checks against planted truth and independent implementations."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli, run_dirs
from scipy import stats as sps
from sklearn.datasets import make_blobs
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from mlbench.analysis.requirements import check_requirements
from mlbench.data import Digits, Synthetic
from mlbench.datacheck import (
    Check,
    CheckContext,
    LabelErrors,
    Leakage,
    Lint,
    Shift,
    nearest_distances,
)
from mlbench.datacheck.stage import feature_source, run_checks, select
from mlbench.errors import MlbenchError
from mlbench.evaluate.twosample import (
    ber_bounds,
    ber_interval,
    border_fraction,
    domain_classifier,
    fisher_ratio,
    intrinsic_dimension,
    ks_features,
    lower_from_upper,
    mmd_test,
)


def _ctx(data, tmp_path, target=None):
    features, space = feature_source(data, None, torch.device("cpu"))
    return CheckContext(data, features, space, 0, torch.device("cpu"), tmp_path, target)


# ------------------------------------------------------------------ complexity: published values

def test_ber_bounds_reproduce_the_published_values():
    # DataEval's ber_mst / ber_knn doctest: (upper, lower) = (0.04, 0.020416847668728033) for both
    x, y = make_blobs(n_samples=50, centers=2, n_features=2, random_state=0)
    mst, knn = ber_bounds(x, y, "mst"), ber_bounds(x, y, "knn")
    assert mst["upper"] == pytest.approx(0.04) and mst["lower"] == pytest.approx(0.020416847668728033, rel=1e-12)
    assert knn["upper"] == pytest.approx(0.04) and knn["lower"] == pytest.approx(0.020416847668728033, rel=1e-12)


def _gaussian_classes(classes: int, sep: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-prior unit Gaussians in 5-D whose means lie on the first axis, ``sep`` apart."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, 5))
    x[:, 0] += (y - (classes - 1) / 2) * sep
    return x, y


@pytest.mark.parametrize("classes,sep", [(2, 2 * 1.2815515655446004), (3, 1.5)])
@pytest.mark.parametrize("seed", range(4))
def test_ber_intervals_contain_a_closed_form_bayes_error(classes, sep, seed):
    # closed form: two classes at ±m: Φ(−m) = 0.10 here; three on a line `sep` apart: the middle
    # class errs on both sides, the outer ones on one, so BER = (4/3)·Φ(−sep/2) = 0.302
    from scipy.stats import norm
    truth = norm.cdf(-sep / 2) * (1 if classes == 2 else 4 / 3)
    x, y = _gaussian_classes(classes, sep, 2000, seed)
    mst, knn = ber_bounds(x, y, "mst"), ber_bounds(x, y, "knn")
    for b in (mst, knn, ber_interval(mst, knn)):
        assert b["lower"] <= truth <= b["upper"]


def test_the_verdict_interval_is_the_intersection_or_says_the_estimators_disagree():
    both = ber_interval({"lower": 0.05, "upper": 0.12}, {"lower": 0.07, "upper": 0.15})
    assert both == {"lower": 0.07, "upper": 0.12, "combined": "intersection", "agree": True}
    apart = ber_interval({"lower": 0.20, "upper": 0.35}, {"lower": 0.05, "upper": 0.10})
    assert apart == {"lower": 0.05, "upper": 0.35, "combined": "span", "agree": False}


def test_cover_hart_lower_bound_worked_example():
    # M = 3, R = 0.3: (2/3) (1 - sqrt(1 - 1.5 * 0.3)) = (2/3)(1 - sqrt(0.55))
    assert lower_from_upper(0.3, 3) == pytest.approx((2 / 3) * (1 - math.sqrt(0.55)))
    assert lower_from_upper(0.0, 10) == 0.0


def test_complexity_orders_easy_and_hard_data():
    easy_x, easy_y = make_blobs(400, centers=[[0, 0], [20, 20]], random_state=1)
    hard_x, hard_y = make_blobs(400, centers=[[0, 0], [0.5, 0.5]], random_state=1)
    assert ber_bounds(easy_x, easy_y)["upper"] == 1 / 400  # the tree must cross once: 1 edge / n
    # true Bayes error of the hard pair: Phi(-0.354) = 0.36 (the 1-NN figures are estimates from
    # 400 items, so its lower bound may land a little above)
    mst, knn = ber_bounds(hard_x, hard_y, "mst"), ber_bounds(hard_x, hard_y, "knn")
    assert 0.1 < mst["lower"] < 0.36 < knn["upper"] and knn["lower"] > 0.25
    assert fisher_ratio(easy_x, easy_y)["f1"] < 0.05 < fisher_ratio(hard_x, hard_y)["f1"]
    assert border_fraction(easy_x, easy_y) < 0.02 < 0.5 < border_fraction(hard_x, hard_y)


def test_intrinsic_dimension_of_a_planted_manifold():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1500, 3))
    x = z @ rng.normal(size=(3, 20))  # a 3-D linear manifold in 20-D
    assert intrinsic_dimension(x) == pytest.approx(3, abs=0.5)


# ------------------------------------------------------------------ two-sample tests

def test_ks_matches_scipy_and_hand_written_bh():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(250, 6))
    b[:, 2] += 0.5  # planted shift in feature 2
    out = ks_features(a, b, 0.05, "bh")
    raw = np.array([sps.ks_2samp(a[:, j], b[:, j]).pvalue for j in range(6)])
    order = np.argsort(raw)
    bh = np.empty(6)
    bh[order] = np.minimum.accumulate((raw[order] * 6 / np.arange(1, 7))[::-1])[::-1]
    assert np.allclose(out["p_values"], np.minimum(bh, 1))
    assert out["features_shifted"] == [2] and out["drift"]
    bonf = ks_features(a, b, 0.05, "bonferroni")
    assert np.allclose(bonf["p_values"], np.minimum(raw * 6, 1))


def test_mmd_statistic_is_the_v_statistic_and_the_p_value_counts_permutations():
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(40, 3))), torch.tensor(rng.normal(size=(30, 3)) + 1.0)
    out = mmd_test(a, b, permutations=199, seed=0)
    s = out["bandwidth"]

    def k(x, y):
        return torch.exp(-torch.cdist(x, y) ** 2 / (2 * s * s))

    v = float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())
    assert out["statistic"] == pytest.approx(v, rel=1e-6)
    assert out["p_value"] == pytest.approx(1 / 200)  # shifted by one std: no permutation reaches it
    z = torch.cat([a, b])
    iu = torch.triu_indices(70, 70, 1)
    assert s == pytest.approx(float(torch.cdist(z, z)[iu[0], iu[1]].median()), rel=1e-6)


def test_null_keeps_mmd_and_ks_false_positive_rates_at_alpha():
    """100 same-distribution pairs: rejections at alpha = 0.05 within the binomial 99 % interval."""
    rng = np.random.default_rng(2)
    trials, hits_mmd, hits_ks = 100, 0, 0
    for t in range(trials):
        a, b = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
        hits_mmd += mmd_test(torch.tensor(a), torch.tensor(b), permutations=99, seed=t)["p_value"] < 0.05
        hits_ks += ks_features(a, b, 0.05, "bh")["drift"]
    lo, hi = sps.binom.ppf([0.005, 0.995], trials, 0.05)
    assert lo <= hits_mmd <= hi and lo <= hits_ks <= hi


def test_domain_classifier_auc_is_roc_auc_and_detects_a_planted_shift():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 4))
    shifted = domain_classifier(a, rng.normal(size=(300, 4)) + [1.0, 0, 0, 0], seed=0)
    null = domain_classifier(a, rng.normal(size=(300, 4)), seed=0)
    assert shifted["drift"] and shifted["ci_low"] > 0.6
    assert not null["drift"] and null["ci_low"] <= 0.5 <= null["ci_high"] + 0.05
    # the AUC is scikit-learn's on the out-of-fold scores: perfectly separated data gives 1
    far = domain_classifier(a, a + 50.0, seed=0)
    assert far["auc"] == pytest.approx(roc_auc_score([0] * 300 + [1] * 300, [0] * 300 + [1] * 300))


def test_nearest_distances_match_sklearn_in_chunks():
    rng = np.random.default_rng(4)
    ref, q = rng.normal(size=(500, 8)).astype(np.float32), rng.normal(size=(120, 8)).astype(np.float32)
    want = NearestNeighbors(n_neighbors=1).fit(ref).kneighbors(q)[0][:, 0]
    got = nearest_distances(torch.tensor(q), torch.tensor(ref), chunk_bytes=4 * 500 * 7)  # 7 rows a chunk
    assert np.allclose(got.numpy(), want, atol=1e-4)
    self_nn = nearest_distances(torch.tensor(ref[:50]), torch.tensor(ref), exclude_self=True)
    want_self = NearestNeighbors(n_neighbors=2).fit(ref).kneighbors(ref[:50])[0][:, 1]
    assert np.allclose(self_nn.numpy(), want_self, atol=1e-4)


# ------------------------------------------------------------------ checks on planted truth

def test_leakage_finds_exactly_the_planted_cross_split_duplicates(tmp_path):
    d = Digits().load()
    planted = [3, 10, 50, 77, 120]
    for j, i in enumerate(planted):
        d.x["test"][j] = d.x["train"][i]
    d.x["val"][0] = d.x["train"][5] + 1e-3  # a near duplicate, not exact
    res = Leakage(threshold=0.05).run(_ctx(d, tmp_path))
    assert res.figures["cross_split_duplicates"] == 5
    fail = next(f for f in res.findings if f.severity == "fail" and f.split == "test")
    assert fail.items == d.index["test"][:5].tolist()
    assert res.figures["near_duplicates"] >= 1
    near = next(f for f in res.findings if f.split == "val")
    assert int(d.index["val"][0]) in near.items


def _partition_ctx(data, tmp_path, strategy):
    features, space = feature_source(data, None, torch.device("cpu"))
    return CheckContext(data, features, space, 0, torch.device("cpu"), tmp_path, None, strategy)


def test_leakage_reads_the_partition_strategy(tmp_path):
    """Planted: 3 group values in both train and test, 2 exact repeats inside train, 4 test items
    earlier than the latest train item. What counts as a leak depends on the strategy: the group
    column is a unit only for a group split, time only for a time split."""
    d = Synthetic(n=600, dims=4).load()
    gt, ge = torch.arange(len(d.y["train"])), 10_000 + torch.arange(len(d.y["test"]))
    ge[:3] = gt[:3]
    d.group = {"train": gt, "val": 20_000 + torch.arange(len(d.y["val"])),
               "calib": 30_000 + torch.arange(len(d.y["calib"])), "test": ge}
    d.x["train"][1] = d.x["train"][0]
    d.x["train"][3] = d.x["train"][2]
    rank = {s: 1000 + torch.arange(len(d.y[s])).numpy() for s in ("train", "val", "calib", "test")}
    rank["test"] = rank["test"] + len(d.y["train"])
    rank["test"][:4] = 0
    d.extras = {**(d.extras or {}), "time_rank": rank}
    plain = Leakage().run(_partition_ctx(d, tmp_path, "none"))
    assert "partition" not in plain.section and "groups_shared" not in plain.figures
    grouped = Leakage().run(_partition_ctx(d, tmp_path, "group"))
    assert grouped.figures["groups_shared"] == 3 and grouped.figures["pool_duplicates"] == 2
    assert grouped.section["partition"]["groups_shared_with_train"] == {"val": 0, "calib": 0, "test": 3}
    assert any(f.severity == "fail" and f.split == "test" and f.count == 3 for f in grouped.findings)
    assert "time_leaks" not in grouped.figures
    timed = Leakage().run(_partition_ctx(d, tmp_path, "time"))
    assert timed.figures["time_leaks"] == 4 and "groups_shared" not in timed.figures
    assert any("earlier than the latest training item" in f.message for f in timed.findings)


def test_near_duplicates_in_a_large_split_are_estimated_from_a_sample(tmp_path):
    """Planted: 600 of 4,000 test items are copies of train items nudged by 1e-4. Checking a
    seeded sample of 1,000 finds about 150 and the interval for the total covers 600; checking
    every item finds exactly 600."""
    d = Synthetic(n=16000, dims=6, test=0.25).load()
    n_test = len(d.x["test"])
    g = torch.Generator().manual_seed(3)
    planted = torch.randperm(n_test, generator=g)[:600]
    d.x["test"][planted] = d.x["train"][:600] + 1e-4
    full = Leakage(threshold=0.05).run(_ctx(d, tmp_path))
    assert full.figures["near_duplicates"] == 600 and "near_duplicates_sampled" not in full.section
    res = Leakage(threshold=0.05, max_items=1000).run(_ctx(d, tmp_path))
    s = res.section["near_duplicates_sampled"]["test"]
    assert s["checked"] == 1000 and s["of"] == n_test and 100 <= s["found"] <= 200
    assert s["ci_low"] <= 600 <= s["ci_high"] and s["ci_high"] - s["ci_low"] < 400
    found = next(f for f in res.findings if f.split == "test" and f.severity == "warn")
    assert set(found.items) <= set(d.index["test"][planted].tolist())  # the flagged items are planted ones
    assert "sampled test items" in found.message
    with pytest.raises(MlbenchError, match="max_items"):
        Leakage(max_items=0)


def test_lint_finds_planted_problems(tmp_path):
    d = Synthetic(n=600, dims=6).load()
    d.x["train"][4, 1] = float("nan")
    d.x["train"][:, 5] = 2.0  # a constant feature
    d.x["train"][7] = d.x["train"][8]  # an exact duplicate within train
    d.x["test"][0, 0] = 1e3  # an outlier
    res = Lint().run(_ctx(d, tmp_path))
    text = " | ".join(f.message for f in res.findings)
    assert res.figures["nonfinite_items"] == 1 and "NaN/inf" in text
    assert res.section["constant_features"] == [5]
    assert res.figures["within_split_duplicates"] == 1
    out = next(f for f in res.findings if "robust" in f.message and f.split == "test")
    assert int(d.index["test"][0]) in out.items


def test_lint_scans_large_splits_in_blocks_and_finds_every_outlier(tmp_path):
    """The robust-z scan runs in blocks of 1,024 items: outliers on either side of a block
    boundary, and in the last partial block, are all found, with their own ids."""
    d = Synthetic(n=6000, dims=4, test=0.5).load()
    n = len(d.y["test"])
    assert n > 2048
    planted = [0, 1023, 1024, 2047, n - 1]
    for i in planted:
        d.x["test"][i, 2] = 1e3
    res = Lint().run(_ctx(d, tmp_path))
    out = next(f for f in res.findings if "robust" in f.message and f.split == "test")
    assert {int(d.index["test"][i]) for i in planted} <= set(out.items)
    z = ((d.x["test"].double() - d.x["train"].double().median(0).values).abs()
         / ((d.x["train"].double() - d.x["train"].double().median(0).values).abs().median(0).values * 1.4826))
    assert out.count == int((z > 6).any(1).sum())  # the same count as one whole-split computation


def test_lint_on_images_finds_out_of_range_and_blank_items(tmp_path):
    d = Digits().load()
    d.x["test"][2] = 0.0  # blank
    d.x["val"][1, 0, 0, 0] = 1.5  # outside [0, 1]
    res = Lint().run(_ctx(d, tmp_path))
    assert res.figures["out_of_range_items"] == 1
    assert any("blank test" in f.message and int(d.index["test"][2]) in f.items for f in res.findings)


def test_shift_detects_a_planted_feature_shift_and_not_the_null(tmp_path):
    d = Synthetic(n=3000, dims=8, seed=1).load()
    base = Shift(permutations=200).run(_ctx(d, tmp_path))
    assert base.figures["shift_detected"] == 0
    d.x["test"][:, 3] += 1.0
    res = Shift(permutations=200).run(_ctx(d, tmp_path))
    assert res.figures["shift_detected"] == 1
    shifted = res.section["ks"]["features_shifted"]
    assert 3 in shifted and len(shifted) <= 2  # BH controls the false-discovery rate, not every false one
    assert res.section["mmd"]["p_value"] < 0.01 and res.section["domain_classifier"]["ci_low"] > 0.5


def test_label_errors_recover_planted_flips(tmp_path):
    d = Synthetic(n=3000, dims=16, separation=6.0, label_noise=0.1, seed=0).load()
    res = LabelErrors(folds=5).run(_ctx(d, tmp_path))
    pl = res.section["planted"]
    assert pl["flipped"] == int(d.extras["flipped"].sum())
    assert pl["precision"] > 0.8 and pl["recall"] > 0.6, pl
    assert res.figures["label_noise_estimate"] == pytest.approx(0.1, abs=0.04)
    top = res.section["issues"][0]
    assert top["rank"] == 1 and top["given"] != top["suggested"]


def test_every_flagged_label_issue_is_written_and_summary_keeps_the_head(tmp_path):
    # 20 % planted flips on 1,800 train items: more flagged items than the summary lists
    d = Synthetic(n=3000, dims=16, separation=6.0, label_noise=0.2, seed=0).load()
    section = run_checks([LabelErrors(folds=5)], _ctx(d, tmp_path / "plots"), [], tmp_path)
    sec = section["checks"]["LabelErrors"]
    with open(tmp_path / sec["files"]["label_issues"], newline="") as f:
        rows = list(csv.DictReader(f))
    total = section["figures"]["label_issues"]
    assert total > 200 and sec["issues_total"] == total == len(rows)
    assert list(rows[0]) == ["index", "given", "suggested", "self_confidence", "rank"]
    assert [int(r["rank"]) for r in rows] == list(range(1, total + 1))
    conf = [float(r["self_confidence"]) for r in rows]
    assert conf == sorted(conf)  # ranked by self-confidence, lowest first
    train_index = set(d.index["train"].tolist())
    assert all(int(r["index"]) in train_index and r["given"] != r["suggested"] for r in rows)
    head = sec["issues"]
    assert len(head) == 20 and [int(r["index"]) for r in rows[:20]] == [h["index"] for h in head]
    assert float(rows[0]["self_confidence"]) == head[0]["self_confidence"]  # full precision in the file


def test_label_errors_on_clean_data_flag_few(tmp_path):
    d = Synthetic(n=3000, dims=16, separation=6.0, label_noise=0.0, seed=0).load()
    res = LabelErrors().run(_ctx(d, tmp_path))
    assert res.figures["label_issue_rate"] < 0.03


def test_an_unfit_check_is_skipped_with_its_reason_and_an_impossible_one_fails(tmp_path):
    class ImagesOnly(Check):
        modalities = ("image",)

    d = Synthetic(n=300, dims=4).load()
    keep, skipped = select([ImagesOnly(), Lint()], d)
    assert [type(c).__name__ for c in keep] == ["Lint"]
    assert skipped[0]["check"] == "ImagesOnly" and "image" in skipped[0]["reason"]
    with pytest.raises(MlbenchError, match="fewer than folds=500"):
        select([LabelErrors(folds=500)], d)
    d.y["train"][:] = 0
    with pytest.raises(MlbenchError, match="checks need two or more"):
        select([Lint()], d)


def test_data_requirements_gate_every_variant():
    summary = {"baseline": "baseline", "datacheck": {"figures": {"cross_split_duplicates": 3}},
               "variants": {"baseline": {"status": "ok", "metrics": {"accuracy": 0.9}},
                            "v": {"status": "ok", "metrics": {"accuracy": 0.95}}}}
    reqs = [{"data": "cross_split_duplicates", "op": "<=", "value": 0}, {"metric": "accuracy", "op": ">=", "value": 0.5}]
    res = check_requirements(summary, reqs)
    assert not res["baseline"]["passed"] and not res["v"]["passed"]
    assert res["v"]["checks"][0]["value"] == 3 and res["v"]["checks"][1]["passed"]
    missing = check_requirements(summary, [{"data": "label_issue_rate", "op": "<=", "value": 0.1}])
    assert "not measured" in missing["v"]["checks"][0]["reason"]
    with pytest.raises(MlbenchError, match="either a metric or a data figure"):
        check_requirements(summary, [{"data": "x", "metric": "accuracy", "op": "<=", "value": 1}])


# ------------------------------------------------------------------ the command

def test_datacheck_command_full_on_digits(tmp_path):
    out = run_cli("datacheck", "datacheck=full", "debug=smoke", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = run_dirs(tmp_path)
    s = json.loads((run_dir / "summary.json").read_text())
    dc = s["datacheck"]
    assert s["variants"] == {} and dc["space"] == "penultimate layer of the baseline"
    # balance needs a factor (digits has no group column): skipped with its reason; coverage runs
    assert set(dc["checks"]) == {"lint", "leakage", "shift", "label_errors", "explore", "complexity", "sufficiency",
                                 "coverage"}
    assert [x["check"] for x in dc["skipped"]] == ["balance"] and "no factor" in dc["skipped"][0]["reason"]
    assert dc["checks"]["coverage"]["space"] == "penultimate layer of the baseline"
    for key in ("cross_split_duplicates", "near_duplicates", "shift_detected", "label_issue_rate", "ber_lower"):
        assert key in dc["figures"], key
    assert {"plots/pca.png", "plots/class_means.png", "plots/sufficiency.png"} <= set(s["plots"])
    assert (run_dir / "report.html").is_file() and "Data checks" in (run_dir / "report.md").read_text()
    assert "mlbench datacheck" in out.stdout


def test_data_requirement_gates_the_datacheck_command(tmp_path):
    d = Synthetic(n=400, dims=4).load()
    x = torch.cat([d.x[s] for s in ("train", "val", "calib", "test")]).numpy()
    y = torch.cat([d.y[s] for s in ("train", "val", "calib", "test")]).numpy()
    x = np.concatenate([x, x[:40]])  # 40 exact copies: some land in another split
    y = np.concatenate([y, y[:40]])
    np.savez(tmp_path / "dup.npz", x=x, y=y)
    out = run_cli("datacheck", "data=npz", f"data.path={tmp_path / 'dup.npz'}", "model=mlp",
                  "requirements.checks=[{data: cross_split_duplicates, op: '<=', value: 0}]",
                  "requirements.fail_if_none=true", cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "data requirements not met" in out.stdout


def test_nan_features_are_a_finding_of_the_datacheck_command_and_an_error_for_a_run(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] > 0).astype(int)
    x[[3, 40, 41], 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    args = ("data=npz", f"data.path={tmp_path / 'nan.npz'}", "model=mlp")
    out = run_cli("datacheck", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = run_dirs(tmp_path)
    dc = json.loads((run_dir / "summary.json").read_text())["datacheck"]
    assert dc["figures"]["nonfinite_items"] == 3 and dc["counts"]["fail"] >= 1
    assert dc["notes"] and dc["figures"]["shift_detected"] in (0, 1)  # the other checks ran on imputed data
    run = run_cli(*args, "debug=smoke", cwd=tmp_path)
    assert run.returncode == 2 and "NaN/inf" in run.stderr


def test_fisher_ratio_and_border_fraction_worked_examples():
    # one feature: class 0 at {0, 2}, class 1 at {10, 12}; mu = 6, class means 1 and 11
    # between = 2·25 + 2·25 = 100, within = 1 + 1 + 1 + 1 = 4: ratio 25, F1 = 1/26
    x = np.array([[0.0, 5.0], [2.0, 9.0], [10.0, 5.0], [12.0, 9.0]])  # feature 2 says nothing: ratio 0
    y = np.array([0, 0, 1, 1])
    f = fisher_ratio(x, y)
    assert f["fisher_ratio"] == pytest.approx(25.0) and f["f1"] == pytest.approx(1 / 26)
    # points on a line 0, 1, 2, 3, 10 with labels a a b b b: the MST is the chain; one cross edge (1-2)
    line = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    assert border_fraction(line, np.array([0, 0, 1, 1, 1])) == pytest.approx(2 / 5)
    assert ber_bounds(line, np.array([0, 0, 1, 1, 1]), "mst")["upper"] == pytest.approx(1 / 5)


def test_the_sufficiency_fit_recovers_a_planted_learning_curve():
    from mlbench.datacheck.complexity import _fit, _needed
    n = np.array([100, 200, 400, 700, 1000], dtype=float)
    a, b, c = 3.0, 0.6, 0.02
    fit = _fit(n, a * n ** -b + c)
    assert fit == pytest.approx((a, b, c), rel=1e-3)
    # closed form: err(n) = 0.05 at n = (a / (0.05 - c))^(1/b)
    assert _needed(fit, 0.05) == pytest.approx((3.0 / 0.03) ** (1 / 0.6), rel=1e-2)
    assert _needed(fit, 0.01) == math.inf  # below the fitted floor c: out of reach


def test_lint_block_statistics_equal_the_whole_matrix_computation():
    """The robust median/MAD taken a block of columns at a time, and row tests a block of
    items at a time, give exactly what one float64 call on the whole split gives."""
    import torch

    from mlbench.datacheck.quality import _median_mad, _rows_where
    g = torch.Generator().manual_seed(0)
    x = torch.rand(700, 600, generator=g)
    x[:, 3] = 0.25  # a constant column: MAD 0
    x[5, 7] = float("inf")
    whole = x.double()
    med = whole.median(0).values
    mad = (whole - med).abs().median(0).values * 1.4826
    m, d = _median_mad(x, block=64)
    assert torch.equal(m, med) and torch.equal(d, mad) and d[3] == 0
    rows = _rows_where(x, lambda b: (~torch.isfinite(b)).any(1), step=100)
    assert rows.tolist() == [5]
    sat = _rows_where(x, lambda b: (b >= 0.5).sum(1).double() / b.shape[1] > 0.52, step=64)
    assert torch.equal(sat, ((x >= 0.5).double().mean(1) > 0.52).nonzero().flatten())

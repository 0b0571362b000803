"""Operating-condition factors: balance against the labels and coverage by the test split, on
worked examples and planted truth (mutual information, chi-squared with BH, diversity and the
critical radius computed by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import run_cli

from mlbench.data import DataBundle, DataMeta, Synthetic
from mlbench.datacheck import Balance, CheckContext, Coverage
from mlbench.datacheck.coverage import build_factors, diversity
from mlbench.datacheck.stage import feature_source, select
from mlbench.errors import MlbenchError

SPLITS = ("train", "val", "calib", "test")


def _bundle(x: dict, y: dict, group: dict | None = None, names=None, vocab=None) -> DataBundle:
    meta = DataMeta("worked", (x["train"].shape[1],), int(max(int(v.max()) for v in y.values() if len(v))) + 1,
                    None, "tabular", None, feature_names=names, group_name="site" if group else None)
    meta.class_names = [str(c) for c in range(meta.num_classes)]
    meta.preprocessing = {"vocabularies": vocab or {}}
    idx, start = {}, 0
    for s in SPLITS:
        idx[s] = torch.arange(start, start + len(y[s]))
        start += len(y[s])
    return DataBundle(meta, x, y, idx, group)


def _ctx(data, tmp_path):
    features, space = feature_source(data, None, torch.device("cpu"))
    return CheckContext(data, features, space, 0, torch.device("cpu"), tmp_path)


def _entropy(counts):
    p = np.asarray(counts, float) / np.sum(counts)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_balance_on_a_worked_contingency_table(tmp_path):
    """A site factor against 2 classes on 100 train items: site 0 holds 40 items (30 of class 0),
    site 1 holds 60 (20 of class 0). Mutual information, its normalization and the per-site
    chi-squared tests are computed here by hand from the table."""
    table = np.array([[30, 10], [20, 40]])  # rows: sites, columns: classes
    site = np.repeat([0, 0, 1, 1], table.ravel())
    label = np.repeat([0, 1, 0, 1], table.ravel())
    n = len(label)
    empty = {s: torch.zeros(0, dtype=torch.long) for s in ("val", "calib")}
    x = {"train": torch.zeros(n, 2), "val": torch.zeros(0, 2), "calib": torch.zeros(0, 2), "test": torch.zeros(4, 2)}
    y = {"train": torch.as_tensor(label), **empty, "test": torch.tensor([0, 1, 0, 1])}
    g = {"train": torch.as_tensor(site), **empty, "test": torch.tensor([0, 0, 1, 1])}
    res = Balance(alpha=0.05).run(_ctx(_bundle(x, y, g), tmp_path))
    (row,) = res.section["factors"]
    p = table / n
    mi = float((p * np.log(p / (p.sum(1, keepdims=True) * p.sum(0, keepdims=True)))).sum())
    nmi = 2 * mi / (_entropy(table.sum(1)) + _entropy(table.sum(0)))  # arithmetic-mean normalization
    assert row["factor"] == "site" and row["mutual_information"] == pytest.approx(mi, rel=1e-12)
    assert row["normalized_mutual_information"] == pytest.approx(nmi, rel=1e-12)
    # each site against the other: the same 2 x 2 table, Yates-corrected chi-squared with 1 dof
    exp = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float((((np.abs(table - exp) - 0.5) ** 2) / exp).sum())
    for t in row["parity"]:
        assert t["chi2"] == pytest.approx(chi2, rel=1e-9)
        assert t["p_value"] == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=1e-9)
        assert t["p_adjusted"] == pytest.approx(t["p_value"])  # two equal p-values: BH leaves them
    assert res.figures["skewed_factor_values"] == 2 and res.figures["max_factor_nmi"] == pytest.approx(nmi)
    assert any("site" in f.message and "differs" in f.message for f in res.findings)
    # the test split's diversity: two sites, two items each
    assert row["diversity"]["test"] == {"normalized_entropy": pytest.approx(1.0), "simpson": pytest.approx(1.0)}


def test_diversity_and_bh_on_worked_values():
    d = diversity(np.array([0, 0, 0, 1]), 2)
    assert d["normalized_entropy"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2))
    assert d["simpson"] == pytest.approx((1 - (0.75 ** 2 + 0.25 ** 2)) / (1 - 1 / 2))
    assert diversity(np.array([2, 2, 2]), 3) == {"normalized_entropy": 0.0, "simpson": 0.0}
    assert diversity(np.array([0, 1]), 1) == {"normalized_entropy": None, "simpson": None}


def test_balance_separates_a_planted_factor_from_an_independent_one(tmp_path):
    """Synthetic data whose group is correlated with the class, and a numeric column drawn
    independently of it: the group is flagged, the independent factor (binned) is not."""
    rng = np.random.default_rng(0)
    d = Synthetic(n=3000, dims=3, group_correlation=0.6).load()
    for s in SPLITS:  # column x2 replaced by noise independent of everything
        d.x[s][:, 2] = torch.as_tensor(rng.normal(size=len(d.y[s])), dtype=torch.float32)
    res = Balance(factors=["x2"], bins=4).run(_ctx(d, tmp_path))
    rows = {r["factor"]: r for r in res.section["factors"]}
    assert set(rows) == {"group", "x2"} and rows["x2"]["source"] == "numeric column (quantile bins)"
    assert rows["group"]["normalized_mutual_information"] > 0.05 > rows["x2"]["normalized_mutual_information"]
    assert any(t["p_adjusted"] < 0.05 for t in rows["group"]["parity"])
    assert all(t["p_adjusted"] >= 0.05 for t in rows["x2"]["parity"])
    counts = np.bincount(build_factors(d, ["x2"], 4)[1].codes["train"])
    assert len(counts) == 4 and counts.max() - counts.min() <= 2  # quantile bins: equal train counts


def test_categorical_factors_are_read_from_their_one_hot_columns(tmp_path):
    names = ["age", "region_north", "region_south"]
    x = torch.tensor([[0.1, 1, 0], [0.2, 0, 1], [0.3, 0, 1], [0.4, 0, 0]])
    data = _bundle({s: x for s in SPLITS}, {s: torch.tensor([0, 1, 1, 0]) for s in SPLITS}, names=names,
                   vocab={"region": ["north", "south"]})
    (f,) = build_factors(data, ["region"], 4)
    assert f.values == ["north", "south", "(unseen)"] and f.codes["test"].tolist() == [0, 1, 1, 2]
    with pytest.raises(MlbenchError, match="'regoin' is not a column of worked; columns: age, region"):
        select([Coverage(factors=["regoin"])], data)


def test_the_critical_radius_and_the_uncovered_items_on_a_worked_example(tmp_path):
    """Training points 0, 1, ..., 99 on a line: every training point's nearest other training
    point is 1 away, so the critical radius (any quantile) is 1. Test points 50.5 and 99.9 are
    covered; 150 (51 away) and -3 (3 away) are not, listed farthest first."""
    train = torch.arange(100, dtype=torch.float32)[:, None]
    test = torch.tensor([[50.5], [150.0], [99.9], [-3.0]])
    empty = torch.zeros(0, 1)
    data = _bundle({"train": train, "val": empty, "calib": empty, "test": test},
                   {"train": torch.arange(100) % 2, "val": torch.zeros(0, dtype=torch.long),
                    "calib": torch.zeros(0, dtype=torch.long), "test": torch.tensor([0, 1, 0, 1])}, names=["x"])
    res = Coverage(k=1, quantile=0.99).run(_ctx(data, tmp_path))
    sec = res.section
    assert sec["critical_radius"] == pytest.approx(1.0)
    first_test = int(data.index["test"][0])
    assert sec["uncovered"] == [first_test + 1, first_test + 3] and res.figures["uncovered_test_items"] == 2
    assert [r["kth_neighbour_distance"] for r in res.tables["coverage_uncovered"]] == pytest.approx([51.0, 3.0])
    # k = 2: the second-nearest training point is 1 away inside the line (2 at its ends)
    assert Coverage(k=2, quantile=0.5).run(_ctx(data, tmp_path)).section["critical_radius"] == pytest.approx(1.0)


def test_coverage_counts_test_items_per_factor_value(tmp_path):
    d = Synthetic(n=2000, dims=3).load()
    res = Coverage(min_items=10_000).run(_ctx(d, tmp_path))
    counts = {c["value"]: c for c in res.section["counts"]}
    g = d.group["test"].numpy()
    assert {v: c["test"] for v, c in counts.items()} == {str(v): int((g == v).sum()) for v in np.unique(g)}
    assert res.figures["min_factor_test_items"] == min(int((g == v).sum()) for v in np.unique(g))
    assert any("fewer than 10000 test items" in f.message for f in res.findings)


def test_a_missing_factor_column_fails_the_command_with_one_line(tmp_path):
    out = run_cli("datacheck", "debug=smoke", "data=synthetic", "datacheck=[balance]",
                  "datacheck.balance.factors=[nope]", cwd=tmp_path)
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(err) == 1 and "'nope' is not a column of synthetic" in err[0]


def test_every_variant_gets_its_accuracy_per_factor_value(run_stages, tmp_path):
    """With the coverage check's factors, each variant's accuracy per factor value (recomputed
    here from its saved predictions) with a Wilson interval, and min_factor_accuracy as a metric a
    requirement can name."""
    from mlbench.datacheck.common import wilson
    from mlbench.results import read_predictions
    ctx, s = run_stages("data=synthetic", "datacheck=[coverage]", "datacheck.coverage.factors=[x0]",
                        "datacheck.coverage.min_items=100", "variants=[onnx_fp32]", "stress=none", "monitor=none",
                        "requirements.checks=[{metric: min_factor_accuracy, op: '>=', value: 0.999}]")
    sec = s["factors"]
    assert sec["factors"] == ["group", "x0"] and set(sec["variants"]) == {"baseline", "onnx_fp32"}
    facs = build_factors(ctx.data, ["x0"], 4)
    for name in ("baseline", "onnx_fp32"):
        pred = read_predictions(tmp_path / "run" / s["variants"][name]["predictions"])
        right = pred["probs"].argmax(1) == pred["labels"]
        rows = {(r["factor"], r["value"]): r for r in sec["variants"][name]["values"]}
        low = 1.0
        for f in facs:
            for v, value in enumerate(f.values):
                m = f.codes["test"] == v
                if not m.any():
                    continue
                r = rows[(f.name, value)]
                assert r["n"] == int(m.sum()) and r["accuracy"] == pytest.approx(right[m].mean())
                assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson(int(right[m].sum()), int(m.sum()))[1:])
                if m.sum() >= 100:
                    low = min(low, right[m].mean())
        assert s["variants"][name]["metrics"]["min_factor_accuracy"] == pytest.approx(low)
        assert s["variants"][name]["requirements"]["passed"] is False  # no value reaches 0.999 here
    assert "Accuracy per operating condition" in (tmp_path / "run" / "report.md").read_text()

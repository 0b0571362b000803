"""The estimate's dependence on the split: folds checked against scikit-learn (the same folds
give cross_val_score's accuracies), each strategy's promise (stratified, grouped, time-ordered),
bad settings in one line, and the stage end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import run_cli
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from mlbench.analysis.compare import compare
from mlbench.data import DataBundle, Digits, Synthetic
from mlbench.errors import MlbenchError
from mlbench.evaluate.partition import Partition, fold_bundle, pool, spread


@pytest.fixture(scope="module")
def digits():
    return Digits().load()


def test_kfold_accuracies_equal_scikit_learns_cross_val_score_on_the_same_folds(digits):
    part = Partition("kfold", k=5, seed=3)
    folds = part.folds(digits)
    x, y = pool(digits)[0].flatten(1).numpy(), pool(digits)[1]
    mine = []
    for tr, te in folds:
        fold = fold_bundle(digits, tr, te)
        clf = LogisticRegression(max_iter=2000).fit(fold.x["train"].flatten(1).numpy(), fold.y["train"].numpy())
        mine.append({"accuracy": float((clf.predict(fold.x["test"].flatten(1).numpy()) == fold.y["test"].numpy()).mean())})
    ref = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=folds, scoring="accuracy")
    assert [m["accuracy"] for m in mine] == pytest.approx(ref.tolist(), abs=1e-12)
    s = spread(mine, {"accuracy": 0.97}, ["accuracy"])["accuracy"]
    assert s["mean"] == pytest.approx(ref.mean()) and s["std"] == pytest.approx(ref.std(ddof=1))
    assert s["share_below"] == pytest.approx((ref < 0.97).mean())
    assert s["z"] == pytest.approx((0.97 - ref.mean()) / ref.std(ddof=1))


def test_stratified_folds_cover_the_pool_once_and_keep_the_class_mix(digits):
    y = pool(digits)[1]
    folds = Partition("kfold", k=4, seed=0).folds(digits)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(len(y)))  # every pool item tested exactly once
    for tr, te in folds:
        assert not set(tr) & set(te)
        expected = np.bincount(y, minlength=10) / 4
        assert np.abs(np.bincount(y[te], minlength=10) - expected).max() <= 1
    rep = Partition("repeated", k=4, repeats=3, seed=0).folds(digits)
    assert len(rep) == 12
    for r in range(3):  # each repeat covers the pool once, with its own shuffle
        assert sorted(np.concatenate([te for _, te in rep[4 * r:4 * r + 4]]).tolist()) == list(range(len(y)))
    assert not np.array_equal(rep[0][1], rep[4][1])
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, Partition("kfold", k=4, seed=0).folds(digits),
                                                          strict=True))  # seeded


def _grouped(n_groups: int = 12) -> DataBundle:
    d = Synthetic(n=1200, dims=3).load()
    d.group = {s: torch.as_tensor(d.index[s].numpy() % n_groups) for s in d.x}
    return d


def test_group_folds_never_put_a_group_on_both_sides():
    d = _grouped()
    part = Partition("group", k=4, seed=1)
    group = pool(d)[2]
    for tr, te in part.folds(d):
        assert not set(group[tr]) & set(group[te])
    from mlbench.evaluate.partition import run_partition
    sec = run_partition(part, d, lambda i, f: {"accuracy": 0.5}, {"accuracy": 0.5}, ["accuracy"])
    assert [r["groups_shared"] for r in sec["folds"]] == [0, 0, 0, 0]
    # the same data cut by plain k-fold does share groups: the check can fail
    assert max(r["groups_shared"] for r in run_partition(Partition("kfold", k=4), d, lambda i, f: {},
                                                          {}, [])["folds"]) > 0


def test_time_folds_test_on_later_items_than_they_train_on():
    d = Synthetic(n=600, dims=3).load()
    rng = np.random.default_rng(0)
    rank = rng.permutation(sum(len(d.y[s]) for s in d.x))
    start = 0
    d.extras["time_rank"] = {}
    for s in d.x:
        d.extras["time_rank"][s] = rank[start:start + len(d.y[s])]
        start += len(d.y[s])
    times = pool(d)[3]
    folds = Partition("time", k=3).folds(d)
    assert len(folds) == 3
    for tr, te in folds:
        assert times[tr].max() < times[te].min()


@pytest.mark.parametrize("part, message", [
    (Partition("kfold", k=1000), "partition.k=1000 is larger than a class"),
    (Partition("group", k=3), "needs a group column"),
    (Partition("time", k=3), "needs a time column"),
    (Partition("bootstrap"), "partition.strategy must be one of none, kfold, repeated, group, time"),
    (Partition("kfold", k=1), "k >= 2"),
])
def test_bad_partition_settings_are_one_line(digits, part, message):
    with pytest.raises(MlbenchError, match=message):
        part.check(digits)
    with pytest.raises(MlbenchError, match="3 groups cannot make k=4 folds"):
        Partition("group", k=4).check(_grouped(3))
    with pytest.raises(MlbenchError, match="model=onnx has no torch source"):
        Partition("kfold", k=3).check(digits, trainable=False)


def test_the_partition_stage_end_to_end(run_stages, tmp_path):
    ctx, s = run_stages("partition.strategy=kfold", "partition.k=2", "variants=[onnx_fp32]", "stress=none",
                        "monitor=none", "datacheck=none")
    p = s["partition"]
    assert p["strategy"] == "kfold" and p["k"] == 2 and p["seed"] == s["run"]["config"]["seed"]
    pool_n = len(ctx.data.y["train"]) + len(ctx.data.y["test"])
    assert sum(r["n_test"] for r in p["folds"]) == pool_n and all(r["n_train"] + r["n_test"] == pool_n for r in p["folds"])
    acc = p["spread"]["accuracy"]
    assert acc["chosen"] == ctx.records["baseline"].metrics["accuracy"]  # the run's own split, uncalibrated
    assert acc["min"] <= acc["mean"] <= acc["max"] and "partition" in s["plan"]["estimate_s"]
    assert "Dependence on the split (kfold, k = 2)" in (tmp_path / "run" / "report.md").read_text()
    # mlbench compare: the spread, one row per metric
    files = compare([tmp_path / "run"], out=tmp_path / "cmp", quiet=True)
    assert tmp_path / "cmp" / "partition.csv" in files
    rows = {r["metric"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "partition.csv"))}
    assert float(rows["accuracy"]["mean"]) == pytest.approx(acc["mean"]) and rows["accuracy"]["strategy"] == "kfold"
    out = run_cli("debug=smoke", "partition.strategy=kfold", "partition.k=1000", cwd=tmp_path)
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(err) == 1 and "larger than a class" in err[0]
    assert "baseline" not in out.stdout  # nothing was trained


def test_a_table_time_column_gives_each_row_its_time_rank(tmp_path):
    """``data.time``: each item's rank in time (0 = oldest), the order time folds follow."""
    import pandas as pd

    from mlbench.data.table import Table
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"a": rng.normal(size=n), "y": rng.integers(0, 2, n),
                       "when": rng.permutation(np.arange(n)) * 10.0})
    df.to_csv(tmp_path / "t.csv", index=False)
    d = Table(path=str(tmp_path / "t.csv"), target="y", time="when").load()
    for s in d.x:
        rows = d.index[s].numpy()  # dataset index = row of the file
        assert np.array_equal(d.extras["time_rank"][s], np.argsort(np.argsort(df["when"].to_numpy()))[rows])

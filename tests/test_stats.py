"""Paired bootstrap and McNemar against independent computations and known truths."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest

from mlbench.evaluate.fairness import exemplars, flips, group_metrics
from mlbench.evaluate.metrics import classification_metrics
from mlbench.evaluate.stats import mcnemar_exact, paired_bootstrap, paired_deltas


@pytest.mark.parametrize("b,c", [(0, 0), (3, 9), (10, 10), (25, 4), (0, 7)])
def test_mcnemar_matches_scipy_binomial_test(b, c):
    a = torch.tensor([True] * b + [False] * c + [True] * 5)
    v = torch.tensor([False] * b + [True] * c + [True] * 5)
    out = mcnemar_exact(a, v)
    ref = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert out["p_value"] == pytest.approx(ref, rel=1e-9)
    assert (out["b"], out["c"]) == (b, c)


def _pair(n, seed, p_base=0.8, shift=0.0, c=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)

    def model(p_right):
        right = torch.rand(n, generator=g) < p_right
        wrong = (y + torch.randint(1, c, (n,), generator=g)) % c
        pred = torch.where(right, y, wrong)
        conf = torch.rand(n, generator=g) * 0.5 + 0.45
        probs = torch.full((n, c), 0.0)
        probs[torch.arange(n), pred] = conf
        rest = (1 - conf) / (c - 1)
        probs += rest[:, None] * (1 - torch.nn.functional.one_hot(pred, c))
        return probs

    return model(p_base), model(p_base + shift), y


def test_delta_point_estimates_equal_metric_differences():
    pb, pv, y = _pair(3000, 0, shift=-0.05)
    d = paired_deltas(pb, pv, y, n_resamples=300)
    mb, mv = classification_metrics(pb, y), classification_metrics(pv, y)
    for k in ("accuracy", "f1_macro", "nll", "brier", "ece", "mce", "worst_class_recall"):
        assert d[k]["value"] == pytest.approx(mv[k] - mb[k], abs=1e-5), k
        assert d[k]["ci_low"] <= d[k]["value"] + 1e-9 <= d[k]["ci_high"] + 2e-9
    assert d["disagreement"]["value"] == pytest.approx(float((pb.argmax(1) != pv.argmax(1)).float().mean()))


def test_group_deltas_equal_group_metric_differences():
    pb, pv, y = _pair(2000, 3, shift=-0.1)
    group = torch.randint(0, 3, (2000,), generator=torch.Generator().manual_seed(9))
    d = paired_deltas(pb, pv, y, group, n_resamples=200)
    gb = group_metrics(pb.argmax(1), y, group, 4)
    gv = group_metrics(pv.argmax(1), y, group, 4)
    for k in ("worst_group_accuracy", "demographic_parity_difference"):
        assert d[k]["value"] == pytest.approx(gv[k] - gb[k], abs=1e-6), k


@pytest.mark.parametrize("metrics", [("accuracy", "ece"), ("nll",), ("f1_macro", "worst_class_recall", "mce"),
                                     ("disagreement", "brier"), ("worst_group_accuracy", "demographic_parity_difference")])
def test_bootstrapping_some_metrics_gives_exactly_their_full_figures(metrics):
    """Only the columns the chosen metrics need are resampled: values, intervals and the
    McNemar test must equal those of the full computation exactly (same resamples)."""
    pb, pv, y = _pair(1500, 4, shift=-0.05)
    group = torch.randint(0, 3, (1500,), generator=torch.Generator().manual_seed(2))
    full = paired_deltas(pb, pv, y, group, n_resamples=400, seed=3)
    some = paired_deltas(pb, pv, y, group, n_resamples=400, seed=3, metrics=metrics)
    assert set(some) == set(metrics)
    for m in metrics:
        assert some[m] == full[m], m


def test_bootstrap_is_deterministic_under_a_seed():
    pb, pv, y = _pair(500, 1)
    assert paired_deltas(pb, pv, y, n_resamples=200, seed=7) == paired_deltas(pb, pv, y, n_resamples=200, seed=7)


def test_bootstrap_interval_of_a_mean_matches_numpy_percentiles():
    x = torch.randn(200, generator=torch.Generator().manual_seed(0))[:, None]
    pt, lo, hi = paired_bootstrap(x, lambda s, n: s / n, n_resamples=4000, seed=1)
    assert pt.item() == pytest.approx(x.mean().item(), abs=1e-6)
    se = x.std().item() / 200 ** 0.5
    assert lo.item() == pytest.approx(x.mean().item() - 1.96 * se, abs=0.25 * se)
    assert hi.item() == pytest.approx(x.mean().item() + 1.96 * se, abs=0.25 * se)


def test_bootstrap_interval_coverage_is_near_nominal():
    """Two models whose true accuracies differ by 0.04: the 95% interval of the accuracy
    delta should contain 0.04... about 95% of the time over many independent test sets."""
    hits, trials = 0, 150
    for seed in range(trials):
        g = torch.Generator().manual_seed(1000 + seed)
        n = 400
        u = torch.rand(n, generator=g)
        cb, cv = u < 0.80, u < 0.84  # paired: the variant is right wherever the baseline is
        cols = torch.stack([cv.float() - cb.float()], 1)
        _, lo, hi = paired_bootstrap(cols, lambda s, n: s / n, n_resamples=1000, seed=seed)
        hits += int(lo.item() <= 0.04 <= hi.item())
    assert 0.89 <= hits / trials <= 0.99, hits / trials


def test_group_metrics_hand_built():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    pred = torch.tensor([0, 1, 0, 1, 1, 1, 1, 0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    g = group_metrics(pred, labels, group, 2)
    assert g["per_group_accuracy"] == {0: 1.0, 1: 0.25}
    assert g["worst_group_accuracy"] == 0.25
    # P(pred=1|g0) = 0.5, P(pred=1|g1) = 0.75 -> 0.25 (same for class 0)
    assert g["demographic_parity_difference"] == pytest.approx(0.25)
    # class 1: TPR g0 = 1, g1 = 0.5 (gap .5); FPR g0 = 0, g1 = 1 (gap 1) -> 1.0
    assert g["equalized_odds_difference"] == pytest.approx(1.0)


def test_single_group_is_reported_not_crashed():
    g = group_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3, 3]), 2)
    assert "single group" in g["error"]


def test_flips_and_exemplars():
    labels = torch.tensor([0, 1, 2, 0, 1])
    index = torch.tensor([10, 11, 12, 13, 14])
    base = torch.tensor([0, 1, 2, 1, 1])
    v1 = torch.tensor([0, 0, 2, 0, 0])
    v2 = torch.tensor([1, 0, 2, 1, 1])
    f = flips(base, v1, labels, index)
    assert f["right_to_wrong"] == [11, 14] and f["wrong_to_right"] == [13]
    assert f["disagreement"] == pytest.approx(3 / 5)
    ex = exemplars({"baseline": base, "v1": v1, "v2": v2}, "baseline", labels, index)
    assert [e["index"] for e in ex] == [11]  # item 11: right for base, wrong for both variants
    assert ex[0]["variants"] == ["v1", "v2"]


def test_a_million_item_path_gives_the_same_numbers_block_by_block(monkeypatch):
    """Above 65,536 items the columns are built and summed in blocks; the deltas must equal the
    metric differences computed independently, and the blocks what one pass gives."""
    import mlbench.evaluate.stats as st
    g = torch.Generator().manual_seed(5)
    n, c = 70_000, 4
    y = torch.randint(0, c, (n,), generator=g)
    lb = torch.randn(n, c, generator=g) + 2 * torch.nn.functional.one_hot(y, c)
    pb, pv = lb.softmax(1), (lb + 0.7 * torch.randn(n, c, generator=g)).softmax(1)
    group = torch.randint(0, 2, (n,), generator=g)
    d = paired_deltas(pb, pv, y, group, n_resamples=0)
    mb, mv = classification_metrics(pb, y), classification_metrics(pv, y)
    for k in ("accuracy", "nll", "brier", "ece", "f1_macro"):
        assert d[k]["value"] == pytest.approx(mv[k] - mb[k], abs=1e-6), k
    blocked, _ = st.pair_columns(pb, pv, y, group)
    monkeypatch.setattr(st, "COLUMN_CHUNK", n)
    whole, _ = st.pair_columns(pb, pv, y, group)
    assert torch.equal(blocked, whole)
    assert torch.allclose(st._sum64(blocked), whole.double().sum(0, keepdim=True), rtol=1e-12, atol=1e-9)


def test_resample_counts_drawn_a_block_of_rows_at_a_time_equal_one_draw(monkeypatch):
    """The CPU generator fills in order: counts drawn in row blocks (to bound the index matrix's
    memory) are the counts of one (b, n) draw, so every bootstrap figure is unchanged."""
    from mlbench.evaluate import stats
    n, b = 997, 64
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(0, n, (b, n), generator=g)
    one_draw = torch.zeros(b, n).scatter_add_(1, idx, torch.ones(1).expand(b, n))
    monkeypatch.setattr(stats, "_INDEX_BLOCK_BYTES", 8 * n * 5)  # blocks of 5 rows: 13 of them
    blocked = stats.resample_weights(n, b, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(blocked, one_draw) and bool((blocked.sum(1) == n).all())

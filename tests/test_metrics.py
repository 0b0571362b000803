"""Metric definitions against worked examples and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from mlbench.evaluate.metrics import (
    brier,
    classification_metrics,
    classwise_ece,
    ece,
    ece_adaptive,
    mce,
    nll,
    per_class_recall,
)

P = torch.tensor([[.25, .20, .55], [.55, .05, .40], [.10, .30, .60], [.90, .05, .05]])
Y = torch.tensor([0, 1, 2, 0])


def test_worked_example_from_torchmetrics_docs():
    assert ece(P, Y, n_bins=3) == pytest.approx(0.2000, abs=1e-4)
    assert mce(P, Y, n_bins=3) == pytest.approx(0.2333, abs=1e-4)


def ref_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 15, norm: str = "l1") -> float:
    """Independent loop implementation of our definition (last bin closed)."""
    conf, pred = p.max(1), p.argmax(1)
    total, worst = 0.0, 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        m = (conf >= lo) & ((conf < hi) if k < n_bins - 1 else (conf <= hi))
        if m.any():
            gap = abs((pred[m] == y[m]).mean() - conf[m].mean())
            total += m.mean() * gap
            worst = max(worst, gap)
    return total if norm == "l1" else worst


def random_probs(n=2000, c=5, seed=0, temp=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 3 / temp
    y = torch.randint(0, c, (n,), generator=g)
    return logits.softmax(1), y


def test_ece_and_mce_match_independent_implementation():
    for seed in range(5):
        p, y = random_probs(seed=seed)
        assert ece(p, y) == pytest.approx(ref_ece(p.double().numpy(), y.numpy()), abs=1e-9)
        assert mce(p, y) == pytest.approx(ref_ece(p.double().numpy(), y.numpy(), norm="max"), abs=1e-9)


def test_ece_equals_torchmetrics_without_saturated_confidences():
    p, y = random_probs(seed=11)
    assert (p.max(1).values < 1).all()
    assert ece(p, y) == pytest.approx(float(multiclass_calibration_error(p, y, 5, n_bins=15)), abs=1e-5)


def test_confidence_of_one_belongs_to_the_last_bin():
    # two items at confidence 1.0 (one right, one wrong), two at 0.95 (both right)
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.95, 0.05], [0.95, 0.05]])
    y = torch.tensor([0, 1, 0, 0])
    # last bin [14/15, 1]: mean confidence 0.975, accuracy 0.75 -> ECE = 0.225
    assert ece(p, y) == pytest.approx(0.225, abs=1e-6)
    assert mce(p, y) == pytest.approx(0.225, abs=1e-6)


def test_nll_and_brier_worked_example():
    assert nll(P, Y) == pytest.approx(-(math.log(.25) + math.log(.05) + math.log(.60) + math.log(.90)) / 4)
    rows = [(.75**2 + .2**2 + .55**2), (.55**2 + .95**2 + .4**2), (.1**2 + .3**2 + .4**2), (.1**2 + .05**2 + .05**2)]
    assert brier(P, Y) == pytest.approx(sum(rows) / 4)


def test_brier_range():
    y = torch.tensor([0, 1])
    assert brier(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), y) == pytest.approx(2.0)
    assert brier(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), y) == pytest.approx(0.0)


def test_adaptive_ece_uses_equal_mass_bins():
    p, y = random_probs(n=1500, seed=2)
    conf, pred = p.double().max(1)
    order = conf.argsort()
    ref = sum(len(ch) * abs(float((pred[ch] == y[ch]).double().mean() - conf[ch].mean()))
              for ch in np.array_split(order.numpy(), 15)) / len(y)
    assert ece_adaptive(p, y) == pytest.approx(ref, abs=1e-12)


def test_classwise_ece_independent():
    p, y = random_probs(n=800, c=3, seed=4)
    total = 0.0
    for k in range(3):
        pk, hk = p[:, k].double().numpy(), (y == k).numpy().astype(float)
        for b in range(15):
            lo, hi = b / 15, (b + 1) / 15
            m = (pk >= lo) & ((pk < hi) if b < 14 else (pk <= hi))
            total += abs((pk[m] - hk[m]).sum()) / len(pk)
    assert classwise_ece(p, y) == pytest.approx(total / 3, abs=1e-9)


@pytest.mark.parametrize("n", [2000, 20000, 200000])
def test_perfectly_calibrated_forecaster_ece_shrinks(n):
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(n, generator=g) * 0.5 + 0.5  # binary, top-label confidence in [0.5, 1)
    correct = torch.rand(n, generator=g) < conf
    probs = torch.stack([conf, 1 - conf], 1)
    labels = torch.where(correct, 0, 1)
    assert ece(probs, labels) < 3.0 / math.sqrt(n)


def test_per_class_recall_marks_absent_classes():
    p = torch.eye(3)[[0, 0, 1]]
    rec = per_class_recall(p, torch.tensor([0, 1, 1]))
    assert rec == [1.0, 0.5, None]
    assert classification_metrics(p, torch.tensor([0, 1, 1]))["worst_class_recall"] == 0.5

"""Splits: sizes, stratification, disjointness, determinism; planted ground truth; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlbench.data import (
    BreastCancer,
    Digits,
    NpzDataset,
    Synthetic,
    TorchvisionDataset,
    Wine,
)
from mlbench.errors import MlbenchError

EMBEDDED = [Digits, BreastCancer, Wine, lambda **k: Synthetic(n=1200, **k)]


@pytest.mark.parametrize("make", EMBEDDED)
def test_splits_are_disjoint_stratified_and_sized(make):
    d = make(val=0.1, calib=0.1, test=0.2, seed=3).load()
    idx = {s: set(d.index[s].tolist()) for s in d.index}
    n = sum(len(v) for v in idx.values())
    assert len(set().union(*idx.values())) == n, "splits overlap"
    assert abs(len(idx["test"]) - round(0.2 * n)) <= 1
    assert abs(len(idx["val"]) - round(0.1 * n)) <= 1
    overall = torch.bincount(torch.cat(list(d.y.values())), minlength=d.meta.num_classes).double() / n
    for s in ("train", "test"):
        share = torch.bincount(d.y[s], minlength=d.meta.num_classes).double() / len(d.y[s])
        assert (share - overall).abs().max() < 0.03, f"{s} is not stratified"
    assert d.x["train"].shape[1:] == torch.Size(d.meta.input_shape)


@pytest.mark.parametrize("make", EMBEDDED)
def test_splits_are_deterministic_by_seed(make):
    a, b, c = make(seed=1).load(), make(seed=1).load(), make(seed=2).load()
    assert torch.equal(a.index["test"], b.index["test"]) and torch.equal(a.x["test"], b.x["test"])
    assert not torch.equal(a.index["test"], c.index["test"])


def test_counts_as_sizes():
    d = Digits(val=100, calib=50, test=200).load()
    assert d.sizes() == {"train": 1797 - 350, "val": 100, "calib": 50, "test": 200}


def test_tabular_standardized_with_train_statistics_only():
    d = BreastCancer().load()
    mean, std = d.x["train"].mean(0), d.x["train"].std(0, unbiased=False)
    assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-3
    assert d.x["test"].mean(0).abs().max() > 1e-3  # test statistics were not used
    assert d.meta.normalization["kind"] == "standardize"


def test_digits_images_in_unit_range():
    d = Digits().load()
    assert d.meta.input_shape == (1, 8, 8) and d.meta.input_range == (0.0, 1.0)
    assert 0 <= d.x["train"].min() and d.x["train"].max() <= 1


def test_synthetic_label_noise_is_planted_exactly():
    d = Synthetic(n=2000, label_noise=0.2, seed=5).load()
    flipped, clean = d.extras["flipped"], torch.from_numpy(d.extras["clean_train_y"])
    assert flipped.sum() == round(0.2 * len(flipped))
    noisy = d.y["train"]
    assert torch.equal(noisy != clean, torch.from_numpy(flipped))


def test_synthetic_imbalance_and_group_structure():
    d = Synthetic(n=20000, classes=4, imbalance=8.0, group_correlation=0.8, group_difficulty=2.0).load()
    y = torch.cat(list(d.y.values()))
    g = torch.cat(list(d.group.values()))
    counts = torch.bincount(y).double()
    assert 6 < counts.max() / counts.min() < 10.5
    p1 = [float(g[y == c].double().mean()) for c in range(4)]
    assert p1[0] < 0.2 and p1[3] > 0.8, p1  # group follows the label
    assert Synthetic(n=100, seed=1).load().x["test"].equal(Synthetic(n=100, seed=1).load().x["test"])


def _npz(tmp_path, x, y):
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    return str(p)


def test_nan_features_are_rejected(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[7, 1] = np.nan
    with pytest.raises(MlbenchError, match="NaN/inf"):
        NpzDataset(_npz(tmp_path, x, np.arange(100) % 2)).load()


def test_labels_out_of_range_are_rejected(tmp_path):
    x = np.zeros((100, 3))
    y = np.arange(100) % 2
    y[3] = 5
    with pytest.raises(MlbenchError, match="outside"):
        NpzDataset(_npz(tmp_path, x, y), num_classes=2).load()


@pytest.mark.parametrize("size", [0, -0.1, -5])
def test_non_positive_sizes_are_rejected(size):
    with pytest.raises(MlbenchError, match="positive"):
        Digits(test=size).load()


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(MlbenchError, match="does not exist"):
        TorchvisionDataset("mnist", str(tmp_path / "nowhere")).load()

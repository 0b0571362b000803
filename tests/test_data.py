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
    VisionDataset,
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


# ------------------------------------------------------------------ the published file formats

def write_idx(path, arr: np.ndarray, gz: bool = False) -> None:
    """An IDX file as published: 0, 0, type 0x08, ndim, big-endian int32 dims, then the bytes."""
    import gzip
    raw = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes() + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist(root, n_train=120, n_test=40, gz=False, folder="MNIST/raw", seed=0):
    """MNIST-format files whose image i holds its own label in pixel (0, 0) and i % 251 in (27, 27)."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = y * 20
        write_idx(root / folder / f"{prefix}-images-idx3-ubyte{'.gz' if gz else ''}", x, gz)
        write_idx(root / folder / f"{prefix}-labels-idx1-ubyte{'.gz' if gz else ''}", y.astype(np.uint8), gz)
        out[prefix] = (x, y)
    return out


def write_cifar(root, per_batch=30, n_test=40, seed=0):
    """CIFAR-10's binary version: records of a label byte and 3,072 pixel bytes (R, G, B planes)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [*((f"data_batch_{i}.bin", per_batch) for i in range(1, 6)), ("test_batch.bin", n_test)]:
        y = rng.integers(0, 10, n).astype(np.uint8)
        y[:10] = np.arange(10)
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        x[:, 0, 0, 0], x[:, 1, 0, 0], x[:, 2, 0, 0] = 255, 128, 0  # the R, G, B planes in order
        (folder / name).write_bytes(np.concatenate([y[:, None], x.reshape(n, -1)], axis=1).tobytes())
        batches[name] = (x, y)
    return batches


@pytest.mark.parametrize("gz,folder", [(False, "MNIST/raw"), (True, "")])
def test_mnist_idx_files_are_read_exactly(tmp_path, gz, folder):
    files = write_mnist(tmp_path, gz=gz, folder=folder or ".")
    d = VisionDataset("mnist", str(tmp_path), val=10, calib=10, test=20, seed=0).load()
    assert d.meta.input_shape == (1, 28, 28) and d.meta.normalization["scale"] == 1 / 255
    assert {s: len(d.y[s]) for s in d.y} == {"train": 100, "val": 10, "calib": 10, "test": 20}
    x_all = np.concatenate([files["train"][0], files["t10k"][0]])
    y_all = np.concatenate([files["train"][1], files["t10k"][1]])
    for s in d.x:  # every item is its file's image / 255 with its file's label, at its index
        idx = d.index[s].numpy()
        assert np.array_equal(d.y[s].numpy(), y_all[idx])
        assert np.allclose(d.x[s][:, 0].numpy(), x_all[idx] / 255.0)
    assert d.index["test"].min() >= 120  # the test pool is the official test file


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST/raw", seed=1)
    d = VisionDataset("fashion_mnist", str(tmp_path), val=10, calib=10, test=20).load()
    assert d.meta.class_names[9] == "ankle-boot" and len(d.y["train"]) == 100


def test_cifar10_binary_batches_are_read_exactly(tmp_path):
    batches = write_cifar(tmp_path)
    d = VisionDataset("cifar10", str(tmp_path), val=20, calib=20, test=30).load()
    assert d.meta.input_shape == (3, 32, 32)
    assert {s: len(d.y[s]) for s in d.y} == {"train": 110, "val": 20, "calib": 20, "test": 30}
    x_all = np.concatenate([b[0] for b in batches.values()])
    y_all = np.concatenate([b[1] for b in batches.values()])
    for s in d.x:
        idx = d.index[s].numpy()
        assert np.array_equal(d.y[s].numpy(), y_all[idx])
        assert d.x[s].dtype == torch.float32  # 8-bit values divided split by split, exactly as a whole
        assert np.array_equal(d.x[s].numpy(), x_all.astype(np.float32)[idx] / 255.0)
    assert torch.allclose(d.x["train"][:, :, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))  # channel order


def test_damaged_or_missing_image_files_are_one_clear_error(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    good = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(good[:-5])  # cut short
    with pytest.raises(MlbenchError, match="IDX header says"):
        VisionDataset("mnist", str(tmp_path), val=10, calib=10, test=20).load()
    (raw / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04" + good[4:])  # not IDX at all
    with pytest.raises(MlbenchError, match="not an IDX file"):
        VisionDataset("mnist", str(tmp_path), val=10, calib=10, test=20).load()
    (raw / "train-images-idx3-ubyte").write_bytes(good)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MlbenchError, match="t10k-labels-idx1-ubyte not found under"):
        VisionDataset("mnist", str(tmp_path), val=10, calib=10, test=20).load()
    write_cifar(tmp_path / "c")
    with open(tmp_path / "c" / "cifar-10-batches-bin" / "test_batch.bin", "ab") as f:
        f.write(b"xyz")
    with pytest.raises(MlbenchError, match="not a whole number"):
        VisionDataset("cifar10", str(tmp_path / "c"), val=20, calib=20, test=30).load()
    with pytest.raises(MlbenchError, match="binary version"):
        VisionDataset("cifar10", str(tmp_path / "nothing_here"), download=True).load()


def test_npz_labels_far_past_the_classes_present_need_a_stated_class_count(tmp_path):
    # labels {0, 9}: an id-like column unless the user says there are 10 classes
    rng = np.random.default_rng(0)
    path = tmp_path / "gap.npz"
    np.savez(path, x=rng.normal(size=(300, 5)), y=np.where(rng.random(300) < 0.5, 0, 9))
    with pytest.raises(MlbenchError, match="labels run up to 9 but only 2 distinct values"):
        NpzDataset(str(path)).load()
    assert NpzDataset(str(path), num_classes=10).load().meta.num_classes == 10

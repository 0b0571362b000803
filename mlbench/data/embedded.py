"""Datasets bundled with scikit-learn: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import datasets as skd

from mlbench.data.base import Dataset, DataMeta
from mlbench.errors import MlbenchError


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images) as 1x8x8 images in [0, 1]."""

    modality = "image"

    def arrays(self):
        d = skd.load_digits()
        x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
        meta = DataMeta("digits", (1, 8, 8), 10, [str(c) for c in d.target_names],
                        "image", (0.0, 1.0), {"kind": "scale", "note": "pixel / 16, in [0, 1]"})
        return x, d.target, None, meta


class BreastCancer(Dataset):
    """Wisconsin breast cancer (569 x 30 features, 2 classes), standardized."""

    def arrays(self):
        d = skd.load_breast_cancer()
        meta = DataMeta("breast_cancer", (30,), 2, list(d.target_names), "tabular", None)
        return d.data, d.target, None, meta


class Wine(Dataset):
    """UCI wine (178 x 13 features, 3 classes), standardized."""

    def arrays(self):
        d = skd.load_wine()
        meta = DataMeta("wine", (13,), 3, list(d.target_names), "tabular", None)
        return d.data, d.target, None, meta


class NpzDataset(Dataset):
    """Your own data: an ``.npz`` with ``x`` (N, ...), ``y`` (N,) and optional ``group`` (N,)."""

    def __init__(self, path: str, num_classes: int = 0, modality: str = "tabular",
                 val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        super().__init__(val, calib, test, seed)
        if modality not in ("tabular", "image"):
            raise MlbenchError(f"data.modality must be tabular or image, got {modality!r}")
        self.path, self.num_classes, self.modality = Path(path), num_classes, modality

    def arrays(self):
        if not self.path.is_file():
            raise MlbenchError(f"data.path: no file at {self.path}")
        try:
            with np.load(self.path, allow_pickle=False) as f:
                x, y = f["x"].astype(np.float64), f["y"]
                group = f["group"] if "group" in f else None
        except (OSError, ValueError, KeyError) as e:
            raise MlbenchError(f"data.path {self.path}: cannot read x and y ({e})") from None
        k = self.num_classes or int(np.nanmax(y)) + 1
        lo_hi = (float(np.nanmin(x)), float(np.nanmax(x))) if self.modality == "image" else None
        meta = DataMeta(self.path.stem, tuple(x.shape[1:]), k, [str(i) for i in range(k)],
                        self.modality, lo_hi, group_name="group" if group is not None else None)
        return x, y, group, meta

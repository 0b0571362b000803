"""Gaussian-mixture data with planted ground truth: groups, imbalance, label noise."""

from __future__ import annotations

import numpy as np

from mlbench.data.base import DataBundle, DataMeta, Dataset, check_arrays
from mlbench.errors import MlbenchError


class Synthetic(Dataset):
    """Gaussian-mixture classification, deterministic by ``seed``.

    - ``imbalance``: ratio of the largest to the smallest class prior (geometric in between).
    - ``separation``: expected distance between two class means, in units of the noise std.
    - ``group_correlation``: P(group=1 | y=c) runs linearly from 0.5 - g/2 (first class)
      to 0.5 + g/2 (last class); 0 makes group independent of the label.
    - ``group_difficulty``: the noise std of group 1 relative to group 0 (> 1 makes
      group 1 harder).
    - ``label_noise``: fraction of *training* labels flipped to another class uniformly.
      ``extras['flipped']`` marks them (aligned with the train split) and
      ``extras['clean_train_y']`` keeps the true labels.
    """

    def __init__(self, n: int = 3000, dims: int = 16, classes: int = 4, imbalance: float = 1.0,
                 separation: float = 3.0, group_correlation: float = 0.3,
                 group_difficulty: float = 1.5, label_noise: float = 0.0,
                 val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        super().__init__(val, calib, test, seed)
        if n < 10 or dims < 1 or classes < 2:
            raise MlbenchError(f"synthetic data needs n >= 10, dims >= 1, classes >= 2 "
                               f"(got n={n}, dims={dims}, classes={classes})")
        if imbalance < 1:
            raise MlbenchError(f"data.imbalance must be >= 1, got {imbalance}")
        if not 0 <= label_noise < 1:
            raise MlbenchError(f"data.label_noise must be in [0, 1), got {label_noise}")
        if not 0 <= group_correlation <= 1:
            raise MlbenchError(f"data.group_correlation must be in [0, 1], got {group_correlation}")
        if group_difficulty <= 0:
            raise MlbenchError(f"data.group_difficulty must be > 0, got {group_difficulty}")
        self.n, self.dims, self.classes = n, dims, classes
        self.imbalance, self.separation = imbalance, separation
        self.group_correlation, self.group_difficulty = group_correlation, group_difficulty
        self.label_noise = label_noise

    def priors(self) -> np.ndarray:
        p = self.imbalance ** (-np.arange(self.classes) / (self.classes - 1))
        return p / p.sum()

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        c = self.classes
        y = rng.choice(c, size=self.n, p=self.priors())
        p_group = 0.5 + self.group_correlation * (np.arange(c) / (c - 1) - 0.5)
        group = (rng.random(self.n) < p_group[y]).astype(np.int64)
        means = rng.normal(size=(c, self.dims)) * self.separation / np.sqrt(2 * self.dims)
        sigma = np.where(group == 1, self.group_difficulty, 1.0)[:, None]
        x = means[y] + sigma * rng.normal(size=(self.n, self.dims))
        meta = DataMeta("synthetic", (self.dims,), c, [f"class_{i}" for i in range(c)],
                        "tabular", None, group_name="group")
        return x, y, group, meta

    def load(self) -> DataBundle:
        x, y, group, meta = self.arrays()
        check_arrays(x, y, meta.num_classes, meta.name)
        parts = self.split_positions(y)
        clean_train = y[parts["train"]].copy()
        noisy = clean_train.copy()
        flipped = np.zeros(len(noisy), dtype=bool)
        if self.label_noise > 0:
            rng = np.random.default_rng(self.seed + 1_000_003)
            k = int(round(self.label_noise * len(noisy)))
            pos = rng.choice(len(noisy), size=k, replace=False)
            shift = rng.integers(1, self.classes, size=k)  # never the true class
            noisy[pos] = (noisy[pos] + shift) % self.classes
            flipped[pos] = True
        y = y.copy()
        y[parts["train"]] = noisy
        return self.bundle(x, y, group, meta, parts,
                           extras={"flipped": flipped, "clean_train_y": clean_train})

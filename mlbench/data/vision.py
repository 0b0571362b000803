"""torchvision datasets read from a local root; nothing is downloaded unless asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlbench.data.base import DataMeta, Dataset, stratified_splits
from mlbench.errors import MlbenchError

_INFO = {
    "mnist": ("MNIST", (1, 28, 28), [str(i) for i in range(10)]),
    "fashion_mnist": ("FashionMNIST", (1, 28, 28),
                      ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                       "sneaker", "bag", "ankle-boot"]),
    "cifar10": ("CIFAR10", (3, 32, 32),
                ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]),
}


class TorchvisionDataset(Dataset):
    """MNIST, FashionMNIST or CIFAR-10 from ``root`` as images in [0, 1].

    The official test set is the test pool (``test`` examples drawn from it,
    stratified); val and calib come out of the official training set.
    ``max_train`` caps the training examples (0 = all).
    """

    modality = "image"

    def __init__(self, name: str, root: str, download: bool = False, max_train: int = 0,
                 val: float = 5000, calib: float = 5000, test: float = 10000, seed: int = 0):
        super().__init__(val, calib, test, seed)
        if name not in _INFO:
            raise MlbenchError(f"unknown torchvision dataset {name!r}; choose from {sorted(_INFO)}")
        self.name, self.root, self.download, self.max_train = name, Path(root), download, max_train

    def _load(self, train: bool):
        try:
            import torchvision  # optional: only the downloader needs it
        except ImportError:
            raise MlbenchError(
                f"data={self.name} needs torchvision: pip install torchvision "
                "(matching your torch build)") from None
        cls = getattr(torchvision.datasets, _INFO[self.name][0])
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except RuntimeError as e:
            raise MlbenchError(
                f"data={self.name}: not found under paths.data_root={self.root} "
                f"({str(e).splitlines()[0]}); put the files there or set data.download=true"
            ) from None
        x = np.asarray(ds.data)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return x.astype(np.float32) / 255.0, np.asarray(ds.targets, dtype=np.int64)

    def arrays(self):  # pragma: no cover - needs the files
        raise NotImplementedError("TorchvisionDataset.load() reads the two official splits")

    def load(self):
        if not self.root.exists() and not self.download:
            raise MlbenchError(
                f"data={self.name}: data root {self.root} does not exist; set paths.data_root "
                "to a folder holding the dataset, or data.download=true")
        xtr, ytr = self._load(True)
        xte, yte = self._load(False)
        shape = _INFO[self.name][1]
        meta = DataMeta(self.name, shape, 10, _INFO[self.name][2], "image", (0.0, 1.0),
                        {"kind": "scale", "note": "pixel / 255, in [0, 1]"})
        tr = stratified_splits(ytr, {"val": self.sizes["val"], "calib": self.sizes["calib"]},
                               self.seed)
        if self.max_train:
            tr["train"] = tr["train"][: self.max_train]
        te = stratified_splits(yte, {"test": self.sizes["test"]}, self.seed, min_train=0)["test"] \
            if self.sizes["test"] < len(yte) else np.arange(len(yte))
        x = np.concatenate([xtr, xte])
        y = np.concatenate([ytr, yte])
        parts = {**tr, "test": te + len(xtr)}
        return self.bundle(x, y, None, meta, parts)

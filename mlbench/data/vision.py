"""MNIST, FashionMNIST and CIFAR-10 read with numpy from their published file formats.

- MNIST / FashionMNIST: the four IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally ``.gz``). IDX: two zero bytes, a type code (0x08: unsigned byte), the
  number of dimensions, each dimension as a big-endian int32, then the values.
- CIFAR-10: the *binary* version (``cifar-10-batches-bin``: ``data_batch_1..5.bin``,
  ``test_batch.bin``): records of one label byte and 3,072 pixel bytes (1,024 red, then
  green, then blue, row-major 32×32). The pickled "python version" is not read: unpickling
  runs code.

Why by hand: torchvision reads these, but its wheels must match the installed torch build
exactly (it does not install beside a CPU-only torch wheel everywhere), and the formats are
a few lines of numpy. torchvision stays an optional *downloader* (``data.download=true``).
Files are looked up in ``root``, ``root/<Name>/raw`` (torchvision's layout) and ``root/<Name>``.
Nothing is downloaded unless asked.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mlbench.data.base import DataMeta, Dataset, scaled, stratified_splits
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
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR_DIR = "cifar-10-batches-bin"
CIFAR_FILES = {True: [f"data_batch_{i}.bin" for i in range(1, 6)], False: ["test_batch.bin"]}
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or not) as a numpy array of its stated shape.
    A file whose header or length does not match is one :class:`MlbenchError`."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise MlbenchError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MlbenchError(f"{path}: not an IDX file (the first two bytes must be zero)")
    if raw[2] != 0x08:
        raise MlbenchError(f"{path}: IDX type code 0x{raw[2]:02x}; only unsigned bytes (0x08) are read")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise MlbenchError(f"{path}: IDX header cut short ({len(raw)} bytes, {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise MlbenchError(f"{path}: IDX header says {shape} ({int(np.prod(shape))} values), the file holds "
                           f"{len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_cifar_batches(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batches as (N, 3, 32, 32) uint8 images and (N,) labels."""
    parts = []
    for p in paths:
        raw = np.fromfile(p, dtype=np.uint8)
        if raw.size == 0 or raw.size % CIFAR_RECORD:
            raise MlbenchError(f"{p}: {raw.size} bytes is not a whole number of {CIFAR_RECORD}-byte "
                               "CIFAR-10 records (is it the binary version?)")
        parts.append(raw.reshape(-1, CIFAR_RECORD))
    rec = np.concatenate(parts)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise MlbenchError(f"{paths[0].parent}: CIFAR-10 labels must be 0-9, found {int(labels.max())}")
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


class VisionDataset(Dataset):
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
            raise MlbenchError(f"unknown image dataset {name!r}; choose from {sorted(_INFO)}")
        self.name, self.root, self.download, self.max_train = name, Path(root), download, max_train

    # -- finding files -------------------------------------------------------------
    def _folders(self) -> list[Path]:
        sub = _INFO[self.name][0]
        return [self.root, self.root / sub / "raw", self.root / sub]

    def _find(self, filename: str) -> Path | None:
        for folder in self._folders():
            for candidate in (folder / filename, folder / f"{filename}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    def _missing(self, names: list[str]) -> MlbenchError:
        where = ", ".join(str(f) for f in self._folders())
        how = (f"the binary version ({CIFAR_BINARY_URL}), unpacked" if self.name == "cifar10"
               else "the four IDX files (optionally .gz)")
        return MlbenchError(f"data={self.name}: {', '.join(names)} not found under paths.data_root={self.root} "
                            f"(looked in {where}); put {how} there"
                            + ("" if self.name == "cifar10" else ", or set data.download=true"))

    def _fetch(self) -> None:
        """torchvision as an optional downloader of the IDX files (MNIST, FashionMNIST)."""
        if self.name == "cifar10":
            raise MlbenchError(f"data=cifar10: download the binary version yourself ({CIFAR_BINARY_URL}) "
                               f"and unpack it under {self.root}; torchvision's downloader fetches the "
                               "pickled version, which mlbench does not read")
        try:
            import torchvision  # optional: only the downloader needs it
        except ImportError:
            raise MlbenchError("data.download=true needs torchvision (pip install torchvision matching "
                               "your torch build); or put the IDX files under paths.data_root") from None
        cls = getattr(torchvision.datasets, _INFO[self.name][0])
        for train in (True, False):
            cls(str(self.root), train=train, download=True)

    # -- reading -------------------------------------------------------------------
    def _split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "cifar10":
            names = [f"{CIFAR_DIR}/{f}" for f in CIFAR_FILES[train]]
            found = [self._find(n) or self._find(Path(n).name) for n in names]
            if any(f is None for f in found):
                raise self._missing([n for n, f in zip(names, found) if f is None])
            x, y = read_cifar_batches(found)
        else:
            names = list(IDX_FILES[train])
            found = [self._find(n) for n in names]
            if any(f is None for f in found):
                raise self._missing([n for n, f in zip(names, found) if f is None])
            x, y = read_idx(found[0]), read_idx(found[1]).astype(np.int64)
            if x.ndim != 3 or x.shape[1:] != (28, 28):
                raise MlbenchError(f"{found[0]}: images of shape {x.shape[1:]}; {self.name} has 28x28")
            if y.ndim != 1 or len(y) != len(x):
                raise MlbenchError(f"{found[1]}: {len(y)} labels for {len(x)} images in {found[0].name}")
            if y.max() > 9:
                raise MlbenchError(f"{found[1]}: labels must be 0-9, found {int(y.max())}")
            x = x[:, None]
        return x, y  # 8-bit values: converted to [0, 1] floats split by split (bundle's divide)

    def arrays(self):  # pragma: no cover - load() reads the two official splits
        raise NotImplementedError("VisionDataset.load() reads the two official splits")

    def load(self):
        if self.download:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fetch()
        elif not self.root.exists():
            raise MlbenchError(
                f"data={self.name}: data root {self.root} does not exist; set paths.data_root "
                "to a folder holding the dataset's files")
        xtr, ytr = self._split(True)
        xte, yte = self._split(False)
        shape = _INFO[self.name][1]
        meta = DataMeta(self.name, shape, 10, _INFO[self.name][2], "image", (0.0, 1.0),
                        scaled(1 / 255, "8-bit pixel values 0-255"))
        tr = stratified_splits(ytr, {"val": self.sizes["val"], "calib": self.sizes["calib"]},
                               self.seed)
        if self.max_train:
            tr["train"] = tr["train"][: self.max_train]
        te = stratified_splits(yte, {"test": self.sizes["test"]}, self.seed, min_train=0)["test"] \
            if self.sizes["test"] < len(yte) else np.arange(len(yte))
        x = np.concatenate([xtr, xte])
        y = np.concatenate([ytr, yte])
        parts = {**tr, "test": te + len(xtr)}
        return self.bundle(x, y, None, meta, parts, divide=255.0)


TorchvisionDataset = VisionDataset  # the earlier name, kept for configs that use it

"""Datasets bundled with scikit-learn: nothing is downloaded."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from sklearn import datasets as skd

from mlbench.choices import Preprocess, choose
from mlbench.data.base import NO_NORMALIZATION, DataMeta, Dataset, scaled
from mlbench.errors import ZIP_READ_ERRORS, MlbenchError, first_line


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images) as 1x8x8 images in [0, 1]."""

    modality = "image"

    def arrays(self):
        d = skd.load_digits()
        x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
        meta = DataMeta("digits", (1, 8, 8), 10, [str(c) for c in d.target_names],
                        "image", (0.0, 1.0), scaled(1 / 16, "pixel values 0-16 (8x8, one channel)"))
        return x, d.target, None, meta


class BreastCancer(Dataset):
    """Wisconsin breast cancer (569 x 30 features, 2 classes), standardized."""

    def arrays(self):
        d = skd.load_breast_cancer()
        meta = DataMeta("breast_cancer", (30,), 2, list(d.target_names), "tabular", None,
                        feature_names=list(d.feature_names))
        return d.data, d.target, None, meta


class Wine(Dataset):
    """UCI wine (178 x 13 features, 3 classes), standardized."""

    def arrays(self):
        d = skd.load_wine()
        meta = DataMeta("wine", (13,), 3, list(d.target_names), "tabular", None,
                        feature_names=list(d.feature_names))
        return d.data, d.target, None, meta


MAX_CLASSES = 100_000  # a label beyond this is a mistake (an id column, a timestamp), not a class


class NpzDataset(Dataset):
    """Your own data: an ``.npz`` with ``x`` (N, ...), ``y`` (N,) and optional ``group`` (N,);
    ``unlabelled``: another ``.npz`` with ``x`` alone (evaluation items without labels)."""

    def __init__(self, path: str, num_classes: int = 0, modality: str = "tabular", preprocess: str = "standardize",
                 unlabelled: str | None = None,
                 val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        super().__init__(val, calib, test, seed)
        self.unlabelled = Path(unlabelled).expanduser() if unlabelled else None
        if modality not in ("tabular", "image"):
            raise MlbenchError(f"data.modality must be tabular or image, got {modality!r}")
        self.path, self.num_classes, self.modality = Path(path), num_classes, modality
        self.standardize = str(choose(Preprocess, preprocess, "data.preprocess")) == "standardize"

    def arrays(self):
        x, y, group = read_npz_dataset(self.path, self.num_classes or None)
        k = self.num_classes or int(y.max()) + 1
        if self.num_classes and int(y.max()) >= self.num_classes:
            raise MlbenchError(f"data.path {self.path}: labels outside [0, {self.num_classes}) "
                               f"(up to {int(y.max())}); data.num_classes is {self.num_classes}")
        lo_hi = (float(np.nanmin(x)), float(np.nanmax(x))) if self.modality == "image" else None
        if self.modality == "image" and x.ndim != 4:
            raise MlbenchError(f"data.path {self.path}: image data needs x of shape (N, C, H, W), got {x.shape}")
        meta = DataMeta(self.path.stem, tuple(x.shape[1:]), k, [str(i) for i in range(k)],
                        self.modality, lo_hi, dict(NO_NORMALIZATION) if self.modality == "image" else {},
                        group_name="group" if group is not None else None)
        return x, y, group, meta


    def unlabelled_items(self, meta: DataMeta) -> np.ndarray | None:
        if self.unlabelled is None:
            return None
        x = read_npz_x(self.unlabelled)
        self.record["unlabelled"] = {"path": str(self.unlabelled), "items": int(len(x))}
        return x


def read_npz_x(path: Path) -> np.ndarray:
    """``x`` alone from an ``.npz`` that holds no pickled objects (``data.unlabelled``)."""
    where = f"data.unlabelled {path}"
    if not path.is_file():
        raise MlbenchError(f"{where}: no such file")
    if not zipfile.is_zipfile(path):
        raise MlbenchError(f"{where}: not an .npz archive")
    try:
        _check_headers(path, where)
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise MlbenchError(f"{where}: no array x; it has {f.files}")
            x = f["x"]
    except MlbenchError:
        raise
    except (ValueError, OSError, KeyError, MemoryError, *ZIP_READ_ERRORS) as e:
        raise MlbenchError(f"{where}: cannot read x ({type(e).__name__}: {first_line(e)})") from None
    if x.dtype.kind not in "biuf":
        raise MlbenchError(f"{where}: x must be numeric, got dtype {x.dtype}")
    return x


def _check_headers(path: Path, where: str) -> None:
    """Each array's header must not claim more data than its member holds (a header that
    says 10^12 rows would otherwise make numpy try to allocate them)."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename not in ("x.npy", "y.npy", "group.npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise MlbenchError(f"{where}: {info.filename} has an unknown .npy version {version}")
                shape, _, dtype = reader(f)
            if dtype.hasobject:
                raise MlbenchError(f"{where}: {info.filename} holds Python objects (pickled data), which mlbench "
                                   "never loads")
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if need > info.file_size:
                raise MlbenchError(f"{where}: {info.filename} claims shape {shape} ({need} bytes) but holds "
                                   f"{info.file_size} bytes")


def read_npz_dataset(path: Path, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``x`` (N, ...) float features, ``y`` (N,) integer labels with at least two classes,
    optional ``group`` (N,) integers, from an ``.npz`` that holds no pickled objects.
    Anything else is one :class:`MlbenchError` naming the file and the problem. Without a
    stated ``num_classes``, labels must not run past twice the classes present (an id column
    is not a class)."""
    where = f"data.path {path}"
    if not path.is_file():
        raise MlbenchError(f"{where}: no such file")
    if path.stat().st_size == 0:
        raise MlbenchError(f"{where}: the file is empty")
    if not zipfile.is_zipfile(path):
        hint = " (a plain .npy: save x and y together with numpy.savez)" if path.suffix == ".npy" or \
            path.read_bytes()[:6] == b"\x93NUMPY" else ""
        raise MlbenchError(f"{where}: not an .npz archive{hint}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise MlbenchError(f"{where}: missing array(s) {missing}; it has {f.files}")
            _check_headers(path, where)
            x, y = f["x"], f["y"]
            group = f["group"] if "group" in f.files else None
    except MlbenchError:
        raise
    except ValueError as e:
        msg = str(e).splitlines()[0] if str(e) else "unreadable"
        if "pickle" in msg.lower():
            msg = "holds Python objects (pickled data), which mlbench never loads"
        raise MlbenchError(f"{where}: {msg}") from None
    except (OSError, KeyError, MemoryError, *ZIP_READ_ERRORS) as e:
        raise MlbenchError(f"{where}: cannot read x and y ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if x.dtype.kind not in "biuf":
        raise MlbenchError(f"{where}: x must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise MlbenchError(f"{where}: x must be (N, features...) with at least 2 dimensions, got shape {x.shape}")
    if any(d == 0 for d in x.shape[1:]):
        raise MlbenchError(f"{where}: x has no features (shape {x.shape})")
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        finite = np.isfinite(x)
        too_big = finite & (np.abs(x) > np.finfo(np.float32).max)
        if too_big.any():
            raise MlbenchError(f"{where}: {int(too_big.sum())} value(s) of x exceed float32's range "
                               f"(±{np.finfo(np.float32).max:.3g}; e.g. {x[too_big][0]:.3g}); mlbench computes "
                               "in float32: rescale the features")
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1}:
        raise MlbenchError(f"{where}: y looks one-hot {y.shape}; give class indices, e.g. y.argmax(1)")
    if y.ndim != 1:
        raise MlbenchError(f"{where}: y must be 1-D class indices, got shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise MlbenchError(f"{where}: y must be integer class indices, got dtype {y.dtype} "
                           "(map string labels to 0..K-1 first)")
    if len(x) == 0:
        raise MlbenchError(f"{where}: no examples (x has 0 rows)")
    if len(x) != len(y):
        raise MlbenchError(f"{where}: {len(x)} feature rows but {len(y)} labels")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and np.all(np.mod(y, 1) == 0)):
        raise MlbenchError(f"{where}: y must be whole numbers (class indices)")
    if (y < 0).any():
        raise MlbenchError(f"{where}: negative labels (e.g. {y[y < 0][:3].tolist()})")
    present = np.unique(y)
    if len(present) < 2:
        raise MlbenchError(f"{where}: every label is {y[0]}; a classifier needs at least two classes")
    top = int(present[-1])
    if top >= MAX_CLASSES or (num_classes is None and top + 1 > 2 * len(present)):
        raise MlbenchError(f"{where}: labels run up to {top} but only {len(present)} distinct values occur; "
                           f"classes are 0..K-1 (K at most {MAX_CLASSES:,}, and at most half of them absent "
                           "unless data.num_classes says K): map the labels to 0..K-1 first")
    if group is not None:
        if group.ndim != 1 or len(group) != len(y):
            raise MlbenchError(f"{where}: group must be 1-D with one value per example ({len(y)}), got shape "
                               f"{group.shape}")
        if group.dtype.kind not in "biu":
            raise MlbenchError(f"{where}: group must hold integer group ids, got dtype {group.dtype}")
    return x.astype(np.float64), y.astype(np.int64), group

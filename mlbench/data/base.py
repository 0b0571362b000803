"""Dataset contract: arrays in, stratified seeded splits and metadata out."""

from __future__ import annotations

import contextvars
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from mlbench.errors import MlbenchError

SPLITS = ("train", "val", "calib", "test")


@dataclass
class DataMeta:
    """What a model and an exported artifact need to know about the inputs."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    modality: str  # "image" or "tabular"
    input_range: tuple[float, float] | None  # valid range of model inputs, None if unbounded
    # how raw inputs become model inputs, as numbers: {"kind": "scale", "scale", "offset"} (images),
    # {"kind": "standardize", "mean", "std"} per feature (tabular), {"kind": "none"}; "formula" says it
    normalization: dict[str, Any] = field(default_factory=dict)
    group_name: str | None = None
    feature_names: list[str] | None = None  # tabular: the columns, in the model's input order
    # how a raw file or table row becomes the raw values above (decoding, resizing, column
    # encodings, imputation), each value with where it came from; {} for arrays given as numbers
    preprocessing: dict[str, Any] = field(default_factory=dict)


def scaled(scale: float, raw: str) -> dict[str, Any]:
    """The normalization record of images stored as ``raw * scale`` (no offset)."""
    return {"kind": "scale", "scale": scale, "offset": 0.0, "formula": "input = raw * scale + offset",
            "raw": raw}


NO_NORMALIZATION = {"kind": "none", "formula": "input = raw"}


@dataclass
class DataBundle:
    """Splits as tensors (on CPU) plus metadata.

    ``index[split]`` holds each example's position in the source dataset, so
    predictions of every variant line up item by item.
    """

    meta: DataMeta
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    index: dict[str, torch.Tensor]
    group: dict[str, torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # data.unlabelled: evaluation items without labels, preprocessed as the splits are (not part
    # of the content hash: they do not change the baseline)
    unlabelled: torch.Tensor | None = None

    def sizes(self) -> dict[str, int]:
        return {s: int(self.y[s].numel()) for s in SPLITS}

    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) of every split's inputs, labels, positions and groups as
        loaded, plus the metadata a model is built from. Part of the baseline cache key: the
        same config over changed data is a different baseline. Reads the arrays in place (no
        copy): about a second per GB."""
        h = hashlib.sha256(repr((self.meta.name, self.meta.input_shape, self.meta.num_classes)).encode())
        for s in SPLITS:
            tensors = [self.x[s], self.y[s], self.index[s]] + ([self.group[s]] if self.group else [])
            for t in tensors:
                a = np.ascontiguousarray(t.numpy())
                h.update(f"{s}:{a.dtype}:{a.shape}".encode())
                h.update(memoryview(a).cast("B"))
        return h.hexdigest()[:16]


def split_count(size: float, n: int, what: str) -> int:
    """A split size (a fraction of ``n`` below 1, else a count) as a count >= 1."""
    if size <= 0:
        raise MlbenchError(f"data.{what} must be positive, got {size}")
    count = int(round(size * n)) if size < 1 else int(size)
    if count < 1:
        raise MlbenchError(f"data.{what}={size} leaves no examples out of {n}")
    return count


def stratified_splits(
    y: np.ndarray, sizes: dict[str, float], seed: int, min_train: int = 1
) -> dict[str, np.ndarray]:
    """Split positions ``0..len(y)-1`` into stratified, disjoint, seeded parts.

    ``sizes`` maps a split name to a fraction of all examples (0 < f < 1) or a
    count (>= 1); whatever is left is ``train``.
    """
    n = len(y)
    counts = {name: split_count(size, n, name) for name, size in sizes.items()}
    if sum(counts.values()) > n - min_train:
        raise MlbenchError(
            f"split sizes {counts} leave fewer than {min_train} training examples out of {n}"
        )
    rest = np.arange(n)
    out: dict[str, np.ndarray] = {}
    for i, (name, count) in enumerate(counts.items()):
        labels = y[rest]
        _, class_counts = np.unique(labels, return_counts=True)
        stratify = labels if class_counts.min() >= 2 and count >= len(class_counts) else None
        rest, part = train_test_split(
            rest, test_size=count, random_state=seed + i, stratify=stratify
        )
        out[name] = np.sort(part)
    out["train"] = np.sort(rest)
    return out


def assigned_splits(assigned: np.ndarray | None, y: np.ndarray, sizes: dict[str, float], seed: int,
                    where: str) -> dict[str, np.ndarray]:
    """Splits the user fixed (``assigned[i]`` is ``train``, ``val``, ``calib``, ``test`` or empty),
    the absent ones split off ``train`` (stratified, seeded); without any, :func:`stratified_splits`.
    A class in an evaluation split that ``train`` never shows is an error: a model cannot learn
    it, and its items would count as errors of the model rather than of the data."""
    if assigned is None:
        return stratified_splits(y, sizes, seed)
    unknown = sorted(set(assigned.tolist()) - set(SPLITS) - {""})
    if unknown:
        raise MlbenchError(f"{where}: split values must be {', '.join(SPLITS)}; found {unknown[:5]}")
    out = {s: np.flatnonzero(assigned == s) for s in SPLITS if (assigned == s).any()}
    if "train" not in out:
        raise MlbenchError(f"{where}: no train split among the fixed splits {sorted(out)}")
    missing = {k: v for k, v in sizes.items() if k not in out}
    if missing:
        pos = out["train"]
        for name, part in stratified_splits(y[pos], missing, seed).items():
            out[name] = pos[part]
    return check_seen({s: np.sort(out[s]) for s in SPLITS}, y, where)


def check_seen(parts: dict[str, np.ndarray], y: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """``parts`` unchanged, or one error when an evaluation split holds a class train never shows."""
    seen = set(y[parts["train"]].tolist())
    for s in ("val", "calib", "test"):
        unseen = sorted(set(y[parts[s]].tolist()) - seen)
        if unseen:
            raise MlbenchError(f"{where}: {s} holds classes {unseen[:5]} that train never shows")
    return parts


# `mlbench datacheck` reads data with NaN/inf features (they are its findings); training does not
ALLOW_NONFINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_nonfinite", default=False)


def check_arrays(x: np.ndarray, y: np.ndarray, num_classes: int, name: str) -> None:
    """Reject NaN/inf features (unless ``ALLOW_NONFINITE`` is set) and labels outside
    [0, num_classes)."""
    if len(x) != len(y):
        raise MlbenchError(f"data '{name}': {len(x)} feature rows but {len(y)} labels")
    bad = ~np.isfinite(x)
    if bad.any() and not ALLOW_NONFINITE.get():
        rows = np.unique(np.nonzero(bad.reshape(len(x), -1))[0])
        raise MlbenchError(
            f"data '{name}': {int(bad.sum())} NaN/inf feature values in {len(rows)} rows "
            f"(first rows: {rows[:5].tolist()})"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise MlbenchError(f"data '{name}': labels must be integers")
    out = (y < 0) | (y >= num_classes)
    if out.any():
        raise MlbenchError(
            f"data '{name}': {int(out.sum())} labels outside [0, {num_classes}) "
            f"(e.g. {y[out][:3].tolist()})"
        )


def check_unlabelled(u: np.ndarray, meta: DataMeta) -> np.ndarray:
    """``data.unlabelled`` items as float32, or one error: the labelled items' shape, finite."""
    u = np.asarray(u, dtype=np.float32)
    if u.ndim < 2 or tuple(u.shape[1:]) != tuple(meta.input_shape):
        raise MlbenchError(f"data.unlabelled: items of shape {tuple(u.shape[1:])}, the labelled ones "
                           f"{tuple(meta.input_shape)}")
    if len(u) == 0:
        raise MlbenchError("data.unlabelled holds no item")
    if not np.isfinite(u).all():
        rows = np.flatnonzero(~np.isfinite(u.reshape(len(u), -1)).all(1))
        raise MlbenchError(f"data.unlabelled: {len(rows)} item(s) with NaN or infinite values "
                           f"(first: {rows[:5].tolist()})")
    return u


class Dataset:
    """Base of every dataset config target.

    Subclasses implement :meth:`arrays`; this class validates, splits,
    standardizes tabular features with train statistics only, and returns a
    :class:`DataBundle`.
    """

    modality: str = "tabular"
    standardize: bool = True  # tabular features standardized with train statistics

    def __init__(self, val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        self.sizes = {"val": val, "calib": calib, "test": test}
        self.seed = seed
        # what the source says of itself once loaded (files, manifest hash, vocabularies, fixed
        # splits): summary.json ``inputs.data``
        self.record: dict[str, Any] = {}

    # -- to implement -----------------------------------------------------------
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, DataMeta]:
        """Return features (N, *input_shape), labels (N,), optional group (N,), metadata."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------
    def split_positions(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return stratified_splits(y, self.sizes, self.seed)

    def load(self) -> DataBundle:
        x, y, group, meta = self.arrays()
        check_arrays(x, y, meta.num_classes, meta.name)
        y = y.astype(np.int64)
        parts = self.split_positions(y)
        return self.bundle(x, y, group, meta, parts, unlabelled=self.unlabelled_items(meta))

    def unlabelled_items(self, meta: DataMeta) -> np.ndarray | None:
        """``data.unlabelled``: evaluation items without labels, as raw as ``arrays`` gives the
        labelled ones (the sources that read one override this); None without."""
        return None

    def bundle(self, x, y, group, meta: DataMeta, parts: dict[str, np.ndarray], extras=None,
               unlabelled: np.ndarray | None = None, divide: float | None = None):
        """The splits as tensors. ``divide``: ``x`` holds raw 8-bit values, converted to float32
        and divided by it split by split (one float copy of the items used, never of the whole
        file)."""
        if divide is not None:
            return DataBundle(
                meta=meta, x={s: torch.from_numpy(_divided(x[p], divide)) for s, p in parts.items()},
                y={s: torch.from_numpy(y[p]) for s, p in parts.items()},
                index={s: torch.from_numpy(p.astype(np.int64)) for s, p in parts.items()},
                group=None, extras=extras or {},
                unlabelled=None if unlabelled is None else torch.from_numpy(check_unlabelled(unlabelled, meta)))
        x = x.astype(np.float32)
        if unlabelled is not None:
            unlabelled = check_unlabelled(unlabelled, meta)
        if self.modality == "tabular" and self.standardize:
            mean = np.nanmean(x[parts["train"]], axis=0)  # nan-aware: only `mlbench datacheck` sees NaN here
            std = np.nanstd(x[parts["train"]], axis=0)
            std = np.where(std < 1e-8, 1.0, std)
            x = (x - mean) / std
            if unlabelled is not None:
                unlabelled = ((unlabelled - mean) / std).astype(np.float32)
            meta.normalization = {
                "kind": "standardize", "mean": mean.tolist(), "std": std.tolist(),
                "formula": "input[:, j] = (raw[:, j] - mean[j]) / std[j], columns in feature_names order",
                "note": "statistics from the train split only",
            }
        if self.modality == "tabular" and meta.feature_names is None:
            meta.feature_names = [f"x{j}" for j in range(x.shape[1])]
        return DataBundle(
            meta=meta,
            x={s: torch.from_numpy(np.ascontiguousarray(x[p])) for s, p in parts.items()},
            y={s: torch.from_numpy(y[p]) for s, p in parts.items()},
            index={s: torch.from_numpy(p.astype(np.int64)) for s, p in parts.items()},
            group=None if group is None else {
                s: torch.from_numpy(group[p].astype(np.int64)) for s, p in parts.items()
            },
            extras=extras or {},
            unlabelled=None if unlabelled is None else torch.from_numpy(np.ascontiguousarray(unlabelled)),
        )


def _divided(raw: np.ndarray, divide: float) -> np.ndarray:
    """``raw`` as float32 divided by ``divide``, in place (one float copy: the same values as
    ``raw.astype(np.float32) / divide`` without a second one)."""
    out = raw.astype(np.float32)
    out /= np.float32(divide)
    return out

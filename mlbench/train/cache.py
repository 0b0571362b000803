"""Baseline cache: trained weights stored under a content hash of their recipe.

Concurrent jobs (joblib sweeps) coordinate through a file lock; entries are
written into a temporary folder and renamed into place, so a reader never sees
half an entry. A corrupt entry is reported in one line and retrained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


def content_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first ``length`` hex digits."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model: nn.Module, path: Path) -> None:
    """State dict as safetensors (tensors only: nothing in it can run code)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(load_file(str(path)))
    return model


class BaselineCache:
    """``root/<key>/{model.safetensors, meta.json}``; ``meta.json`` holds the weights' sha256."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / key

    def _read(self, key: str, model: nn.Module) -> dict | None:
        entry = self.entry(key)
        if not entry.exists():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            weights = entry / "model.safetensors"
            if meta.get("sha256") != file_sha256(weights):
                raise ValueError("checksum mismatch")
            load_weights(model, weights)
            return meta
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            log.warning("baseline cache entry %s is corrupt (%s); retraining", entry,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def load_or_train(
        self, key: str, model: nn.Module, train: Callable[[nn.Module], dict],
        recipe: dict | None = None,
    ) -> tuple[dict, bool]:
        """Fill ``model`` from the cache or by calling ``train(model)`` (which returns
        facts to keep in ``meta.json``). Returns (meta, hit)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock"), timeout=3600):
            meta = self._read(key, model)
            if meta is not None:
                return meta, True
            facts = train(model)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
            try:
                save_weights(model, tmp / "model.safetensors")
                meta = {"format": CACHE_FORMAT, "key": key, "created": time.time(),
                        "sha256": file_sha256(tmp / "model.safetensors"),
                        "recipe": recipe or {}, **facts}
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
                tmp.rename(self.entry(key))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return meta, False

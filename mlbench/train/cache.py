"""Baseline cache: trained weights stored under a content hash of their recipe.

Concurrent jobs (joblib sweeps) coordinate through a file lock; entries are
written into a temporary folder and renamed into place, so a reader never sees
half an entry. A corrupt entry is reported in one line and retrained.

Shared between users: entries and lock files get the permissions the umask allows
(with ``umask 002`` and a group-owned cache folder, the group reads and writes them).
A lock file the user cannot open is passed over with a warning (entries are
immutable once renamed into place, so reading without it is safe); an entry that
cannot be stored (read-only or full folder, another user's leftovers) is a warning
too: the trained weights are still used, and kept in the run directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mlbench.errors import MlbenchError, environment_error, first_line

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
    try:
        save_file(state, str(path))
    except Exception as e:  # safetensors reports I/O failures as SafetensorError, not OSError
        env = environment_error(e)
        if env is None:
            raise
        Path(path).unlink(missing_ok=True)
        raise OSError(env.errno, env.strerror, str(path)) from None
    os.chmod(path, 0o666 & ~umask())  # safetensors writes the file private; the umask decides


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(load_file(str(path)))
    return model


def publish(entry: Path, fill: Callable[[Path], None], marker: str) -> None:
    """Make the cache entry folder ``entry`` appear whole or not at all: ``fill(tmp)`` writes
    into a temporary folder beside it, whose files get the permissions the umask allows, and
    the folder is renamed into place. An entry that another process stored meanwhile (its
    ``marker`` file present) counts as stored. Raises OSError otherwise; the temporary folder
    never stays behind."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the umask decides
        fill(tmp)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask())
        tmp.rename(entry)
    except OSError:
        if not (entry / marker).is_file():
            raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


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
            if not isinstance(meta, dict):
                raise ValueError(f"meta.json holds a {type(meta).__name__}, not an object")
            weights = entry / "model.safetensors"
            if meta.get("sha256") != file_sha256(weights):
                raise ValueError("checksum mismatch")
            load_weights(model, weights)
            return meta
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, TypeError) as e:
            log.warning("baseline cache entry %s is corrupt (%s); retraining", entry,
                        first_line(e))
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def _lock(self, key: str) -> contextlib.AbstractContextManager:
        """The entry's file lock, or no lock (with a warning) when its file cannot be opened."""
        lock = FileLock(str(self.root / f"{key}.lock"), timeout=3600, mode=0o666 & ~umask())
        try:
            lock.acquire()
        except OSError as e:
            log.warning("cannot take the cache lock %s (%s); going on without it", lock.lock_file, e.strerror or e)
            return contextlib.nullcontext()
        return _Held(lock)

    def _store(self, key: str, model: nn.Module, meta: dict) -> bool:
        """Write the entry into a temporary folder and rename it into place; False (and a
        warning) when that cannot be done. Never raises: the caller still has the weights."""
        def fill(tmp: Path) -> None:
            save_weights(model, tmp / "model.safetensors")
            meta["sha256"] = file_sha256(tmp / "model.safetensors")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

        try:
            publish(self.entry(key), fill, marker="meta.json")
            return True
        except OSError as e:
            log.warning("baseline not stored in the cache %s (%s); the trained weights are used and kept "
                        "in the run directory", self.root, e.strerror or e)
            return False

    def load_or_train(
        self, key: str, model: nn.Module, train: Callable[[nn.Module], dict],
        recipe: dict | None = None,
    ) -> tuple[dict, bool]:
        """Fill ``model`` from the cache or by calling ``train(model)`` (which returns
        facts to keep in ``meta.json``). Returns (meta, hit)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MlbenchError(f"cache folder {self.root}: cannot create it ({e.strerror})") from None
        with self._lock(key):
            meta = self._read(key, model)
            if meta is not None:
                return meta, True
            facts = train(model)
            meta = {"format": CACHE_FORMAT, "key": key, "created": time.time(), "recipe": recipe or {}, **facts}
            meta["cache_stored"] = self._store(key, model, meta)
            return meta, False


class _Held(contextlib.AbstractContextManager):
    """A lock acquired already, released on exit."""

    def __init__(self, lock: FileLock):
        self.lock = lock

    def __exit__(self, *exc) -> None:
        self.lock.release()


def umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

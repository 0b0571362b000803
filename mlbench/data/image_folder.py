"""``data=image_folder``: images in torchvision's ImageFolder layout, decoded with Pillow.

``root/<class>/<file>`` (classes are the folder names, sorted, as torchvision's
``find_classes`` does), or ``root/{train,val,calib,test}/<class>/<file>`` for splits the user
fixed (those absent are split off ``train``, stratified and seeded). Files ending in .png,
.jpg, .jpeg, .webp, .bmp (any case) are read; others are ignored.

Decoding happens in worker processes (chunks of files; a small image's decode is mostly Python
work, so threads would wait on each other for the interpreter lock) and the decoded
pixels are cached as uint8 under a hash of the file manifest (relative path, size and
modification time of every file) and the decode settings, so the second run over unchanged
files reads no image. A file Pillow cannot decode is an error naming it, or with
``on_bad_file=skip`` left out and reported by the ``lint`` data check.

Why by hand rather than torchvision's ``ImageFolder``: torchvision must match the installed
torch build exactly (its wheel does not load beside every CPU build), and its dataset decodes
lazily per item; mlbench needs the whole split as one array, once.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.choices import ImageMode, Interpolation, WhenUnfit, choose
from mlbench.data.base import (
    SPLITS,
    DataMeta,
    Dataset,
    assigned_splits,
    check_arrays,
    scaled,
)
from mlbench.env import cpu_count
from mlbench.errors import MlbenchError, first_line
from mlbench.progress import progress

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_VERSION = 1
CHUNK = 512  # files per decoding task


def _image_files(folder: Path, rel: str) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of the image files under ``folder``, recursively, sorted."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if e.is_dir():
                out += _image_files(Path(e.path), f"{rel}/{e.name}")
            elif e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS:
                st = e.stat()
                out.append((f"{rel}/{e.name}", st.st_size, st.st_mtime_ns))
    return sorted(out)


def _context() -> multiprocessing.context.BaseContext:
    """fork where there is one (the workers only run Pillow and numpy), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _decode_chunk(paths: list[str], mode: str, size, interpolation: str) -> list[np.ndarray | str]:
    return [_decode(Path(p), mode, size, interpolation) for p in paths]


def _decode(path: Path, mode: str, size: tuple[int, int] | None, interpolation: str) -> np.ndarray | str:
    """(C, H, W) uint8 pixels of one file, or the reason Pillow could not read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), getattr(Image.Resampling, interpolation.upper()))
            a = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        return f"{type(e).__name__}: {first_line(e)}"
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class ImageFolder(Dataset):
    """Images per class folder, as ``(C, H, W)`` arrays in [0, 1] (raw pixel / 255).

    ``mode``: RGB (3 channels) or L (grey, 1 channel). ``image_size``: ``[H, W]`` (or one
    number for a square) to resize every image to with ``interpolation``; without it every
    image must already have the same size. ``on_bad_file``: ``error`` or ``skip``.
    ``workers``: decoding processes (0: one per CPU this process may use). ``cache_dir``: where decoded pixels are
    kept (empty: not cached)."""

    modality = "image"

    def __init__(self, root: str, mode: str = "RGB", image_size: Any = None, interpolation: str = "bilinear",
                 on_bad_file: str = "error", workers: int = 0, cache_dir: str = "", unlabelled: str | None = None,
                 val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        super().__init__(val, calib, test, seed)
        self.root = Path(root).expanduser()
        self.unlabelled = Path(unlabelled).expanduser() if unlabelled else None
        self.mode = str(choose(ImageMode, mode, "data.mode"))
        if image_size is not None:
            hw = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
            if len(hw) != 2 or any(int(v) < 1 for v in hw):
                raise MlbenchError(f"data.image_size must be [H, W] (or one number) >= 1, got {image_size}")
            image_size = (int(hw[0]), int(hw[1]))
        self.image_size = image_size
        self.interpolation = str(choose(Interpolation, interpolation, "data.interpolation"))
        self.on_bad_file = str(choose(WhenUnfit, on_bad_file, "data.on_bad_file"))
        self.workers = workers or cpu_count()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None

    # -- finding files -------------------------------------------------------------
    def manifest(self) -> tuple[list[str], list[tuple[str, str, str, int, int]]]:
        """(class names, [(split or "", class, relative path, size, mtime_ns)]) in a fixed order:
        classes sorted, then paths sorted. One ``stat`` per file (``os.scandir``)."""
        if not self.root.is_dir():
            raise MlbenchError(f"data.root: {self.root} is not a folder (expected root/<class>/<image files>)")
        split_dirs = [s for s in SPLITS if (self.root / s).is_dir()]
        if split_dirs and "train" not in split_dirs:
            raise MlbenchError(f"data.root: {self.root} has {split_dirs} folders but no train/")
        tops = [(s, self.root / s) for s in split_dirs] if split_dirs else [("", self.root)]
        found: dict[str, list[tuple[str, str, int, int]]] = {}
        for split, top in tops:
            for cdir in sorted(p for p in top.iterdir() if p.is_dir()):
                files = _image_files(cdir, str(cdir.relative_to(self.root)))
                found.setdefault(cdir.name, []).extend((split, *f) for f in files)
                if not files and split in ("", "train"):
                    raise MlbenchError(f"data.root: class folder {cdir} holds no image ({', '.join(EXTENSIONS)})")
        classes = sorted(found)
        if len(classes) < 2:
            raise MlbenchError(f"data.root: {self.root} has {len(classes)} class folder(s) {classes}; "
                               "a classifier needs at least two")
        items = [(split, c, f, size, mtime) for c in classes for split, f, size, mtime in found[c]]
        order = {c: i for i, c in enumerate(classes)}
        return classes, sorted(items, key=lambda t: (order[t[1]], t[2]))

    def _key(self, items: list[tuple[str, str, str, int, int]]) -> str:
        """Hash of the decode settings and every file's path, size and modification time."""
        h = hashlib.sha256(repr((CACHE_VERSION, self.mode, self.image_size, self.interpolation,
                                 self.on_bad_file)).encode())
        h.update("\n".join(f"{f}\0{size}\0{mtime}" for _, _, f, size, mtime in items).encode())
        return h.hexdigest()[:24]

    # -- decoding ------------------------------------------------------------------
    def _decode_all(self, items: list[tuple[str, str, str, int, int]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(pixels of the readable files, their positions in ``items``, bad files with reasons)."""
        paths = [str(self.root / f) for _, _, f, _, _ in items]
        args = (self.mode, self.image_size, self.interpolation)
        chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
        decoded: list[np.ndarray | str] = []
        with progress() as bar:
            task = bar.add_task("decode images", total=len(paths), info="")
            if self.workers == 1 or len(chunks) == 1:
                parts = (_decode_chunk(c, *args) for c in chunks)
                pool = None
            else:  # processes: decoding a small image is mostly Python, threads would wait on the GIL
                pool = ProcessPoolExecutor(min(self.workers, len(chunks)), mp_context=_context())
                parts = pool.map(_decode_chunk, chunks, *([a] * len(chunks) for a in args))
            try:
                for part in parts:
                    decoded.extend(part)
                    bar.advance(task, len(part))
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
        bad = [f"{items[i][2]} ({r})" for i, r in enumerate(decoded) if isinstance(r, str)]
        if bad and self.on_bad_file == "error":
            raise MlbenchError(f"data.root: {len(bad)} file(s) cannot be decoded: {bad[0]}"
                               + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "")
                               + "; data.on_bad_file=skip leaves them out")
        keep = np.array([i for i, r in enumerate(decoded) if not isinstance(r, str)], dtype=np.int64)
        shapes = {decoded[i].shape for i in keep}
        if len(shapes) > 1:
            first = {}
            for i in keep:
                first.setdefault(decoded[i].shape, items[i][2])
            eg = "; ".join(f"{s[1]}x{s[2]} ({f})" for s, f in list(first.items())[:3])
            raise MlbenchError(f"data.root: images of {len(shapes)} different sizes ({eg}); set data.image_size=[H,W] "
                               "to resize them")
        return np.stack([decoded[i] for i in keep]) if len(keep) else np.zeros((0, 1, 1, 1), np.uint8), keep, bad

    def _pixels(self, items, key: str) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
        """Decoded pixels (from the cache when the manifest is unchanged), kept positions, bad
        files, and whether the cache answered."""
        path = self.cache_dir / "images" / f"{key}.npz" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return z["x"], z["keep"], [str(b) for b in z["bad"]], True
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry: decode again and replace it
        x, keep, bad = self._decode_all(items)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, x=x, keep=keep, bad=np.array(bad, dtype=str))
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only cache: the run goes on without it
        return x, keep, bad, False

    def load(self):
        classes, items = self.manifest()
        key = self._key(items)
        pixels, keep, bad, hit = self._pixels(items, key)
        kept = [items[i] for i in keep]
        order = {c: i for i, c in enumerate(classes)}
        y = np.array([order[t[1]] for t in kept], dtype=np.int64)
        if len(set(y.tolist())) < 2:
            raise MlbenchError(f"data.root: fewer than two classes have a readable image ({classes})")
        assigned = np.array([t[0] for t in kept]) if kept and kept[0][0] else None
        parts = assigned_splits(assigned, y, self.sizes, self.seed, f"data.root {self.root}")
        x = pixels.astype(np.float32) / 255.0
        check_arrays(x, y, len(classes), "image_folder")
        shape = tuple(int(v) for v in pixels.shape[1:])
        meta = DataMeta(f"image_folder:{self.root.name}", shape, len(classes), classes, "image", (0.0, 1.0),
                        scaled(1 / 255, "8-bit pixel values 0-255 as decoded by Pillow"))
        meta.preprocessing = {
            "decoder": "Pillow", "mode": self.mode, "layout": "CHW",
            "image_size": list(self.image_size) if self.image_size else None,
            "resize": (f"{self.interpolation} to {self.image_size[0]}x{self.image_size[1]} (H x W)"
                       if self.image_size else "none: every image has this size"),
            "scale": "raw / 255", "from": "config (data.*)"}
        self.record = {"root": str(self.root), "files": len(items), "decoded": len(kept), "bad_files": bad,
                       "manifest_hash": key, "cache_hit": hit,
                       "fixed_splits": sorted({t[0] for t in items if t[0]}) or None}
        extras = {"source_findings": [("warn", f"{len(bad)} image file(s) could not be decoded and were left out "
                                       f"(e.g. {bad[0]})", len(bad))]} if bad else {}
        return self.bundle(x, y, None, meta, parts, extras, unlabelled=self._unlabelled_pixels(shape))

    def _unlabelled_pixels(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """``data.unlabelled``: every image under that folder (any layout; folder names are not
        labels), decoded and cached as the labelled ones are."""
        if self.unlabelled is None:
            return None
        if not self.unlabelled.is_dir():
            raise MlbenchError(f"data.unlabelled: {self.unlabelled} is not a folder of images")
        items = [("", "", str(self.unlabelled / f), size, mtime) for f, size, mtime in _image_files(self.unlabelled, ".")]
        if not items:
            raise MlbenchError(f"data.unlabelled: {self.unlabelled} holds no image ({', '.join(EXTENSIONS)})")
        pixels, keep, bad, hit = self._pixels(items, self._key(items))
        if tuple(pixels.shape[1:]) != shape:
            raise MlbenchError(f"data.unlabelled: images of {pixels.shape[2]}x{pixels.shape[3]}, the labelled ones "
                               f"{shape[1]}x{shape[2]}; set data.image_size=[H,W] to resize both")
        self.record["unlabelled"] = {"root": str(self.unlabelled), "files": len(items), "decoded": int(len(keep)),
                                     "bad_files": bad, "cache_hit": hit}
        return pixels.astype(np.float32) / 255.0

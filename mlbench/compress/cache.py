"""Built ONNX artifacts kept across runs, under their lineage id.

An artifact's id hashes its parent's id, the pass and its parameters, and the chain starts
at the baseline's cache key (data content, model, training recipe, seed, device), so two runs
that ask for the same id ask for the same model. ONNX artifacts are files, so they can be kept:
``<cache_dir>/artifacts/<key>/`` holds the model files and ``artifact.json`` (every field of
the :class:`Artifact` but the files, and each file's sha256). The key adds what the files
also depend on: the device type and the versions of torch, onnx, onnxscript, onnxruntime
and mlbench. Torch artifacts are not kept: rebuilding a module (a pruned architecture, a
quantized one) from weights alone is not possible in general.

Entries are written into a temporary folder and renamed into place (a reader never sees half
an entry); two processes building the same entry both build it and one rename wins. A corrupt
or unreadable entry is reported in one line, removed and rebuilt; an entry that cannot be
stored is a warning, never an error.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mlbench.compress.base import Artifact, Facts, Parity
from mlbench.errors import first_line
from mlbench.train.cache import content_hash, file_sha256, publish

log = logging.getLogger(__name__)
ARTIFACT_CACHE_FORMAT = 2  # 2: exports without the exporter's per-node debug metadata
_LIBRARIES = ("torch", "onnx", "onnxscript", "onnxruntime")


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    from mlbench.version import __version__
    out: dict[str, str | None] = {"mlbench": __version__}
    for lib in _LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def _to_json(art: Artifact) -> dict[str, Any]:
    return {"id": art.id, "format": art.format, "path": art.path.name if art.path else None,
            "files": [f.name for f in art.files], "parent": art.parent, "recipe": art.recipe,
            "records": art.records, "dtype": str(art.dtype).removeprefix("torch."), "cpu_only": art.cpu_only,
            "runner": art.runner, "flags": art.flags,
            "facts": {"params": art.facts.params, "nonzero_params": art.facts.nonzero_params,
                      "parity": art.facts.parity.as_dict() if art.facts.parity else None}}


def _from_json(meta: dict[str, Any], folder: Path) -> Artifact:
    facts = meta["facts"]
    return Artifact(id=meta["id"], format=meta["format"], path=folder / meta["path"] if meta["path"] else None,
                    files=[folder / f for f in meta["files"]], parent=meta["parent"], recipe=list(meta["recipe"]),
                    records=list(meta["records"]), dtype=getattr(torch, meta["dtype"]), cpu_only=bool(meta["cpu_only"]),
                    runner=dict(meta["runner"]), flags=list(meta["flags"]),
                    facts=Facts(facts["params"], facts["nonzero_params"],
                                Parity(**facts["parity"]) if facts["parity"] else None))


class ArtifactCache:
    """``root/artifacts/<key>/{files..., artifact.json}``, keyed by lineage id, device type
    and library versions."""

    def __init__(self, root: str | Path, device: torch.device | str = "cpu"):
        self.root = Path(root) / "artifacts"
        self.device = torch.device(device).type

    def key(self, lineage: str) -> str:
        return content_hash({"lineage": lineage, "device": self.device, "versions": _versions(),
                             "format": ARTIFACT_CACHE_FORMAT})

    def get(self, lineage: str, workdir: Path) -> Artifact | None:
        """The artifact ``lineage`` names, its files copied into ``workdir``; None when not kept
        (or when the entry is corrupt: then it is removed, with a warning)."""
        entry = self.root / self.key(lineage)
        if not entry.is_dir():
            return None
        try:
            meta = json.loads((entry / "artifact.json").read_text())
            if meta.get("id") != lineage:
                raise ValueError(f"entry holds {meta.get('id')!r}")
            for name, digest in meta["sha256"].items():
                if file_sha256(entry / name) != digest:
                    raise ValueError(f"checksum mismatch in {name}")
            workdir.mkdir(parents=True, exist_ok=True)
            for name in meta["sha256"]:
                shutil.copy2(entry / name, workdir / name)
            return _from_json(meta, workdir)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("artifact cache entry %s is corrupt (%s); rebuilding", entry,
                        first_line(e))
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def put(self, art: Artifact) -> bool:
        """Keep an artifact whose format is cacheable (its files are the whole artifact, e.g. ONNX);
        False (and a warning) when it cannot be stored. Never raises."""
        if not art.kind.cacheable or not art.files:
            return False
        entry = self.root / self.key(art.id)
        if entry.is_dir():
            return True

        def fill(tmp: Path) -> None:
            for f in art.files:
                shutil.copy2(f, tmp / f.name)
            meta = {**_to_json(art), "sha256": {f.name: file_sha256(tmp / f.name) for f in art.files},
                    "versions": _versions(), "device": self.device, "format_version": ARTIFACT_CACHE_FORMAT}
            (tmp / "artifact.json").write_text(json.dumps(meta, indent=1, default=str))

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            publish(entry, fill, marker="artifact.json")
            return True
        except OSError as e:
            log.warning("artifact %s not stored in the cache %s (%s)", art.id, self.root, e.strerror or e)
            return False

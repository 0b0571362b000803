"""Artifact formats: what each kind of stored model can do, in one place.

A :class:`Format` subclass is registered under its ``name`` when it is defined (inside
mlbench or in a user's module) and answers every question callers would otherwise ask with
``if art.format == ...``: the runner that executes it, the files a variant keeps, whether the
artifact cache keeps it, how weight faults reach its stored weights, how the update cycle
reloads it, whether ``mlbench-export`` ships it. An artifact whose format has no registered
class fails with one line naming the formats that have one.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
from pathlib import Path
from typing import Any, ClassVar

import torch

from mlbench.backends import OrtRunner, TorchRunner
from mlbench.compress.weights import onnx_with_faults, torch_with_faults
from mlbench.errors import MlbenchError, NotApplicable, first_line
from mlbench.train.cache import save_weights

_REGISTRY: dict[str, Format] = {}


class Format:
    """One artifact format. ``options_table``: the ``backend`` config table its runner options
    come from (None: no table; the artifact's and variant's own options only)."""

    name: ClassVar[str] = ""
    backend: ClassVar[str] = ""  # the runner family recorded per variant ("torch", "onnxruntime", ...)
    options_table: ClassVar[str | None] = None
    differentiable: ClassVar[bool] = False  # gradients flow to the inputs (white-box attacks, attributions)
    cacheable: ClassVar[bool] = False  # kept in the artifact cache (its files are the whole artifact)
    exportable: ClassVar[bool] = False  # a deployment file mlbench-export writes, with its sidecar JSON
    throwaway_options: ClassVar[dict[str, Any]] = {}  # runner options for a short-lived copy (fault trials)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            _REGISTRY[cls.name] = cls()

    def runner(self, art: Any, device: torch.device, threads: int, options: dict[str, Any]) -> Any:
        """The runner (``mlbench.backends.Runner``) that executes ``art``."""
        raise NotImplementedError

    def save(self, art: Any, workdir: Path) -> list[Path]:
        """Write what a variant keeps of ``art`` into ``workdir``; the files (size_bytes counts them)."""
        return list(art.files)

    def localize(self, art: Any, workdir: Path) -> Any:
        """``art`` with its files in ``workdir`` (a reused artifact moving into a variant's folder)."""
        return art

    def with_faults(self, art: Any, mode: str, rate: float, g: torch.Generator, workdir: Path) -> tuple[Any, int, str]:
        """A copy of ``art`` with faults in its stored weights: (artifact, bits flipped, weight
        format); :class:`NotApplicable` when this format's weights cannot be reached."""
        raise NotApplicable(f"weight faults are not implemented for {self.name} artifacts")

    def reload(self, record: dict[str, Any], root: Path) -> dict[str, Any] | None:
        """The artifact fields (``path``, ``files``) a saved record (paths relative to
        ``root``) names, or None when the artifact is rebuilt from its dense weights by its
        (deterministic) recipe."""
        return None


def format_of(name: str) -> Format:
    """The registered format ``name``; one error line naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MlbenchError(f"no artifact format {name!r} is registered (known: {', '.join(sorted(_REGISTRY))}); "
                           "a new format is a mlbench.compress.Format subclass with that name") from None


def known() -> tuple[str, ...]:
    return tuple(_REGISTRY)


class TorchFormat(Format):
    """An in-memory torch module; a variant keeps its weights as safetensors (``model.pt``, a
    plain state dict, for quantized modules whose packed weights safetensors cannot hold)."""

    name, backend, options_table, differentiable = "torch", "torch", "torch", True
    throwaway_options = {"compile": False, "cuda_graphs": False}

    def runner(self, art: Any, device: torch.device, threads: int, options: dict[str, Any]) -> Any:
        dev = device if device.type in art.devices else torch.device("cpu")
        return TorchRunner(art.model, dev, art.dtype, **options)

    def save(self, art: Any, workdir: Path) -> list[Path]:
        path = workdir / "model.safetensors"
        try:
            save_weights(art.model, path)
        except (TypeError, RuntimeError, AttributeError):  # quantized modules hold packed params
            path.unlink(missing_ok=True)
            path = workdir / "model.pt"
            try:
                torch.save(art.model.state_dict(), path)
            except RuntimeError as e:  # torch's zip writer reports a failed write without its errno
                path.unlink(missing_ok=True)
                raise OSError(errno.ENOSPC, f"write failed ({first_line(e)}); is the disk full?", str(path)) from None
        return [path]

    def with_faults(self, art: Any, mode: str, rate: float, g: torch.Generator, workdir: Path) -> tuple[Any, int, str]:
        if not art.differentiable:
            raise NotApplicable("quantized torch modules keep packed weights; fault injection is not supported")
        faulty, n = torch_with_faults(art.model, mode, rate, g)
        return (dataclasses.replace(art, id=f"{art.id}+faults", model=faulty, files=[], records=[], flags=[],
                                    runner={}),
                n, str(art.dtype).replace("torch.", ""))


class OnnxFormat(Format):
    """An ONNX file (and its external data) run by onnxruntime."""

    name, backend, options_table, cacheable, exportable = "onnx", "onnxruntime", "onnxruntime", True, True

    def runner(self, art: Any, device: torch.device, threads: int, options: dict[str, Any]) -> Any:
        return OrtRunner(art.path, threads=threads, **options)

    def localize(self, art: Any, workdir: Path) -> Any:
        """Copied, not hard-linked: passes write beside their input and find external data by
        its relative name, and onnx refuses external data with several links (a guard
        against link attacks)."""
        if art.path is None:
            return art
        files = []
        for f in art.files:
            dst = workdir / f.name
            if not dst.exists():
                shutil.copy2(f, dst)
            files.append(dst)
        return dataclasses.replace(art, path=workdir / art.path.name, files=files)

    def with_faults(self, art: Any, mode: str, rate: float, g: torch.Generator, workdir: Path) -> tuple[Any, int, str]:
        try:
            path, n, fmt = onnx_with_faults(art.path, mode, rate, g, workdir)
        except MlbenchError as e:  # e.g. gaussian noise on int8 weights
            raise NotApplicable(first_line(e)) from None
        return dataclasses.replace(art, id=f"{art.id}+faults", path=path, files=[path], records=[], flags=[],
                                   runner={}), n, fmt

    def reload(self, record: dict[str, Any], root: Path) -> dict[str, Any] | None:
        return {"path": root / record["path"], "files": [root / f for f in record["files"]]}

"""Model sources: a model the user already has, built and loaded the way they would load it.

``model=torch`` (:class:`TorchModel`): any importable class or factory (``arch``, optionally
from a loose ``script`` file) plus a weights file: ``.safetensors``, a ``.pt``/``.pth``/``.bin``
state dict read with ``torch.load(weights_only=True)``, or a ``.pt2`` program saved by
``torch.export`` (no source needed). A whole pickled module is refused unless
``trust_pickle=true``: unpickling runs code. Reading the file is ``checkpoints.py``'s.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mlbench.errors import MlbenchError, first_line
from mlbench.models.checkpoints import (
    check_head,
    class_names_of,
    find_state,
    listed,
    load_state,
    output_classes,
    read_checkpoint,
)
from mlbench.named import import_file, import_object
from mlbench.train.cache import file_sha256


class Preprocessed(nn.Module):
    """``model((x - mean) / std)``: the per-channel normalization a model was trained with, as the
    first layer, so that inputs stay in the data's range ([0, 1] for images: corruptions and
    attack budgets keep their meaning) and the exported graph carries the normalization."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], input_shape: tuple[int, ...]):
        super().__init__()
        shape = (1, -1) + (1,) * (len(input_shape) - 1)  # per channel (C, H, W) or per feature
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def check_channels(values: list[float], input_shape: tuple[int, ...], what: str = "model.mean") -> None:
    """One normalization value per input channel (or feature), or one for all."""
    if len(values) not in (1, input_shape[0]):
        raise MlbenchError(f"{what} has {len(values)} values; the inputs have {input_shape[0]} "
                           f"{'channels' if len(input_shape) == 3 else 'features'}")


# --------------------------------------------------------------------------- building

def import_script(script: str) -> Any:
    """``model.script``: a loose ``.py`` file as a module (``mlbench.named.import_file``)."""
    if not Path(script).expanduser().is_file():
        raise MlbenchError(f"model.script: {script} does not exist")
    try:
        return import_file(script)
    except Exception as e:
        raise MlbenchError(f"model.script: {script} fails on import ({type(e).__name__}: {first_line(e)})") from None


def resolve_arch(arch: Any, script: str | None) -> tuple[Any, dict[str, Any], str]:
    """(the class or factory, its keyword arguments, its dotted name) of ``model.arch``: a
    dotted name or a mapping with ``_target_`` and arguments; a bare name is looked up in
    ``model.script``."""
    if isinstance(arch, DictConfig):
        arch = OmegaConf.to_container(arch, resolve=True)
    kwargs: dict[str, Any] = {}
    if isinstance(arch, dict):
        kwargs = {k: v for k, v in arch.items() if k != "_target_"}
        arch = arch.get("_target_")
    if not isinstance(arch, str) or not arch:
        raise MlbenchError("model.arch must be a class or factory: a dotted name or {_target_: name, ...arguments}")
    module = import_script(script) if script else None
    try:
        target = getattr(module, arch) if module is not None and "." not in arch else import_object(arch)
    except Exception as e:  # ImportError, AttributeError, or whatever the module raises on import
        raise MlbenchError(f"model.arch: cannot import {arch!r} ({type(e).__name__}: {first_line(e)})") from None
    if not callable(target):
        raise MlbenchError(f"model.arch: {arch!r} is a {type(target).__name__}, not a class or factory")
    return target, kwargs, arch


class TorchModel:
    """``model=torch``: a user's classifier, built from ``arch`` and loaded from ``weights``.

    Called with the data's ``input_shape`` and ``num_classes`` (as the built-in models are), it
    returns the module with the weights in place; ``num_classes``/``input_shape`` are passed to
    ``arch`` when it takes them and the config does not set them. The head size and the class
    names are checked against the data: a mismatch is an error. ``mean``/``std`` (per channel,
    or per feature) put the model's input normalization in front of it (:class:`Preprocessed`).
    ``record`` says how the model was loaded (summary.json ``inputs.model``).
    """

    source = "torch"

    def __init__(self, arch: Any = None, weights: str | None = None, script: str | None = None,
                 trust_pickle: bool = False, strict: bool = True, class_names: list[str] | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None):
        self.arch, self.script, self.trust_pickle = arch, script, trust_pickle
        self._set_inputs(weights, strict, class_names, mean, std)
        if arch is None and (self.weights is None or self.weights.suffix not in (".pt2",)) and not trust_pickle:
            raise MlbenchError("model=torch needs model.arch (the class or factory) unless model.weights is a "
                               ".pt2 program (torch.export)")
        if arch is not None:
            resolve_arch(arch, script)  # an arch that cannot be imported fails at set-up, before any data is read

    def _set_inputs(self, weights: str | None, strict: bool, class_names: list[str] | None,
                    mean: list[float] | None, std: list[float] | None) -> None:
        """The checks every torch model source shares: the weights file exists, mean/std pair up."""
        self.strict = strict
        self.weights = Path(weights).expanduser() if weights else None
        self.class_names = list(class_names) if class_names else None
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise MlbenchError("model.mean and model.std go together, one value per channel each")
        if std is not None and any(s <= 0 for s in std):
            raise MlbenchError(f"model.std must be positive, got {list(std)}")
        self.mean, self.std = (list(mean), list(std)) if mean is not None else (None, None)
        if self.weights is not None and not self.weights.is_file():
            raise MlbenchError(f"model.weights: {self.weights} does not exist")
        self.trust_pickle = getattr(self, "trust_pickle", False)
        self.record: dict[str, Any] = {}

    @property
    def pretrained(self) -> bool:
        """Whether the model comes with weights (``train=none`` and ``train=finetune`` need them)."""
        return self.weights is not None

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights file (part of the baseline cache key)."""
        return file_sha256(self.weights) if self.weights is not None else None

    def _build(self, input_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, str | None]:
        if self.arch is None:
            return nn.Identity(), None
        target, kwargs, name = resolve_arch(self.arch, self.script)
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            params = {}
        for key, value in (("num_classes", num_classes), ("input_shape", tuple(input_shape))):
            if key in params and key not in kwargs:
                kwargs[key] = value
        try:
            model = target(**kwargs)
        except Exception as e:
            raise MlbenchError(f"model.arch: {name}({', '.join(kwargs)}) fails ({type(e).__name__}: {first_line(e)})") from None
        if not isinstance(model, nn.Module):
            raise MlbenchError(f"model.arch: {name} returned a {type(model).__name__}, not a torch.nn.Module")
        return model, name

    def preprocess(self, model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, Any]]:
        """The model with its input normalization in front (``model.mean``/``std``), and the
        record of it."""
        if self.mean is None:
            return model, {"mean": None, "std": None, "from": None, "where": None}
        check_channels(self.mean, input_shape)
        return (Preprocessed(model, self.mean, self.std, input_shape),
                {"mean": self.mean, "std": self.std, "from": "config", "where": "inside the model (first layer)"})

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        model, name = self._build(input_shape, num_classes)
        record: dict[str, Any] = {"source": self.source, "arch": name, "script": self.script}
        names, names_from = (self.class_names, "config") if self.class_names else (None, None)
        if self.weights is not None:
            obj, how = read_checkpoint(self.weights, self.trust_pickle)
            record.update(weights=str(self.weights), sha256=file_sha256(self.weights), format=how["format"],
                          weights_only=how["weights_only"])
            if isinstance(obj, nn.Module):  # a .pt2 program or a trusted pickle: the module itself
                model = obj
                record["arch"] = name or type(obj).__name__
            else:
                state, key, prefix = find_state(obj)
                record.update(key=key, prefix_stripped=prefix, **load_state(model, state, self.strict))
            if names is None:
                names, names_from = class_names_of(self.weights, how["metadata"])
        elif name is None:
            raise MlbenchError("model=torch: nothing to build (set model.arch, model.weights or both)")
        model, preprocessing = self.preprocess(model, tuple(input_shape))
        check_head(output_classes(model, tuple(input_shape)), num_classes)
        if names is not None and len(names) != num_classes:
            raise MlbenchError(f"model: {len(names)} class names from {names_from} but the data has {num_classes} classes")
        record.update(class_names=names, class_names_from=names_from, strict=self.strict,
                      preprocessing=preprocessing)
        self.record = record
        return model.cpu()


def check_class_names(record: dict[str, Any], data_names: list[str]) -> None:
    """The class names a model declares must be the data's, in the same order (a model that
    calls class 3 "cat" must see "cat" as class 3). Data without real names (``0..K-1``) is not
    compared."""
    names = record.get("class_names")
    if not names or data_names == [str(i) for i in range(len(data_names))]:
        return
    if list(names) != list(data_names):
        diff = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(names, data_names)) if a != b]
        raise MlbenchError(f"model: class names from {record.get('class_names_from')} differ from the data's "
                           f"(model vs data: {listed(diff)})")



"""Reading a user's weights file: safetensors, a torch checkpoint (``weights_only=True``), a
``torch.export`` program; the state dict found inside in timm's order; strict loading with one
error line for every mismatch; class names the file declares; the model's output width.

Why by hand: the checkpoint key search follows timm's ``load_state_dict`` (``state_dict_ema``,
``model_ema``, ``state_dict``, ``model``; a ``module.`` prefix stripped), but timm is an optional
dependency (it needs torchvision, which does not install beside every torch build), and torch's
own ``load_state_dict`` reports key and shape mismatches one exception at a time; a user wants
them all in one line.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlbench.errors import MlbenchError, first_line

STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")  # timm's order
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile
SHOWN = 4  # names listed per kind of mismatch in an error line


class Exported(nn.Module):
    """The module of a ``torch.export`` program. It runs as it was exported: its train/eval
    behaviour (dropout, batch-norm statistics) was fixed then, and it refuses ``.eval()``, so
    this wrapper's switch stops at itself."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> Exported:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def read_checkpoint(path: Path, trust_pickle: bool = False) -> tuple[Any, dict[str, Any]]:
    """The object stored in ``path`` (a state dict, a checkpoint dict, a module or an exported
    program's module) and how it was read (``format``, ``weights_only``, ``metadata``)."""
    if not path.is_file():
        raise MlbenchError(f"model.weights: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise MlbenchError(f"model.weights: {path} is not a readable safetensors file ({first_line(e)})") from None
        return state, {"format": "safetensors", "weights_only": True, "metadata": meta}
    if suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as e:  # torch.export raises many kinds on a bad archive
            raise MlbenchError(f"model.weights: {path} is not a readable torch.export program ({first_line(e)})") from None
        return Exported(program.module()), {"format": "pt2", "weights_only": True, "metadata": {}}
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        how = {"format": "state_dict", "weights_only": True, "metadata": {}}
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise MlbenchError(
                f"model.weights: {path} holds pickled objects, not only tensors (loading it can run code: "
                f"{first_line(e).split('.')[0]}); re-save model.state_dict() (or use safetensors), or set "
                "model.trust_pickle=true if you trust the file") from None
        # the one unpickling load in mlbench: reached only after the safe load refused the file and
        # the user said model.trust_pickle=true; the run records it (weights_only: false) and warns
        obj = torch.load(str(path), map_location="cpu", weights_only=False)  # noqa: S614
        how = {"format": "pickle", "weights_only": False, "metadata": {}}
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise MlbenchError(f"model.weights: {path} is not a readable torch checkpoint ({first_line(e)})") from None
    return obj, how


def find_state(obj: Any) -> tuple[dict[str, torch.Tensor], str | None, str | None]:
    """The state dict inside a checkpoint, searched in timm's order, with a ``module.`` (or
    ``_orig_mod.``) prefix stripped: (state, the key it was under, the prefix stripped)."""
    key = None
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in STATE_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            raise MlbenchError("model.weights: a checkpoint dict without tensors at the top and none of the keys "
                               f"{list(STATE_KEYS)} (found: {sorted(obj)[:SHOWN]})")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MlbenchError(f"model.weights: expected a state dict of tensors, found {type(obj).__name__}")
    stripped = None
    for prefix in PREFIXES:
        if obj and all(k.startswith(prefix) for k in obj):
            obj, stripped = {k[len(prefix):]: v for k, v in obj.items()}, prefix
    return obj, key, stripped


def listed(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def load_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> dict[str, Any]:
    """Copy ``state`` into ``model``. Strict: every key on both sides and every shape equal, or one
    error line listing the missing keys, the unexpected keys and the shape mismatches. Not
    strict: what matches is loaded and the rest recorded."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or shapes):
        parts = [f"{len(missing)} missing ({listed(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({listed(unexpected)})" if unexpected else "",
                 f"{len(shapes)} of another shape (file vs model: {listed(shapes)})" if shapes else ""]
        raise MlbenchError(f"model.weights do not fit model.arch {type(model).__name__}: "
                           + "; ".join(p for p in parts if p)
                           + " (model.strict=false loads what fits)")
    fits = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fits, strict=False)
    return {"strict": strict, "loaded_keys": len(fits), "missing": missing, "unexpected": unexpected,
            "shape_mismatch": shapes}


def sidecar_config(weights: Path | None) -> dict[str, Any]:
    """The ``config.json`` beside a weights file (as Hugging Face and timm's ``save_for_hf`` write
    it: ``architecture``, ``num_classes``, ``pretrained_cfg``, ``label_names``), or ``{}``."""
    path = weights.parent / "config.json" if weights is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        conf = json.loads(path.read_text())
    except ValueError as e:
        raise MlbenchError(f"{path}: not JSON ({first_line(e)})") from None
    if not isinstance(conf, dict):
        raise MlbenchError(f"{path}: not a JSON object")
    return conf


def class_names_of(weights: Path | None, metadata: dict[str, str]) -> tuple[list[str] | None, str | None]:
    """Class names a weights file declares: safetensors metadata ``class_names`` (a JSON list),
    else ``config.json`` beside it (``label_names`` as Hugging Face / timm write it, or
    ``class_names``). (names, where they came from)."""
    if "class_names" in metadata:
        try:
            return [str(n) for n in json.loads(metadata["class_names"])], "weights metadata"
        except (ValueError, TypeError):
            raise MlbenchError("model.weights: metadata class_names is not a JSON list") from None
    conf = sidecar_config(weights)
    for key in ("label_names", "class_names"):
        if isinstance(conf.get(key), list):
            return [str(n) for n in conf[key]], f"{weights.parent / 'config.json'} ({key})"
    return None, None


def output_classes(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The number of outputs of ``model`` on a batch of two zero inputs (eval mode)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as e:
        raise MlbenchError(f"model: a forward pass on inputs of shape (2, {', '.join(map(str, input_shape))}) "
                           f"fails ({type(e).__name__}: {first_line(e)})") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        what = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise MlbenchError(f"model: the forward pass returns {what}; mlbench needs logits of shape (batch, classes)")
    return int(out.shape[1])


def check_head(outputs: int, num_classes: int) -> None:
    """A model's output width must be the data's class count."""
    if outputs != num_classes:
        raise MlbenchError(f"model: the model has {outputs} outputs but the data has {num_classes} classes "
                           "(head size and class count must agree)")

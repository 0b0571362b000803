"""Model sources from the model zoos users already know, by name, with a local weights file.

``model=timm`` (:class:`TimmModel`) builds ``timm.create_model(name, pretrained=False)`` and
``model=torchvision`` (:class:`TorchvisionModel`) builds ``torchvision.models.get_model(name,
weights=None)``: nothing is downloaded, ever; the weights come from ``model.weights`` and are
read exactly as ``model=torch`` reads them (safetensors, or ``weights_only=True``; strict).

The preprocessing (input size, resize and crop, interpolation, mean/std) comes from the zoo's
own description of the model (timm's ``pretrained_cfg``, overlaid by a ``config.json`` beside
the weights as ``save_for_hf`` writes it; torchvision's weights-enum transforms) unless the
config sets it, and every value's origin is recorded. It runs inside the model, as its first
layers (:class:`ResizeCrop`, then the normalization), so that images stay in [0, 1] at the
data's size for corruptions and attack budgets and the exported graph carries it all.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mlbench.errors import MlbenchError, first_line
from mlbench.models.checkpoints import sidecar_config
from mlbench.models.sources import Preprocessed, TorchModel, check_channels

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def need(package: str, source: str, extra: str) -> Any:
    """Import an optional model-zoo package, or one error line saying how to install it."""
    try:
        return importlib.import_module(package)
    except Exception as e:  # ImportError, or a build that does not match the installed torch
        raise MlbenchError(f"model={source} needs the {package} package ({type(e).__name__}: {first_line(e)}); "
                           f"install it to match your torch build: pip install 'mlbench[{extra}]'") from None


class ResizeCrop(nn.Module):
    """Resize the shorter side to ``resize`` (``interpolation``, no antialiasing: the ONNX
    ``Resize`` op has none), then center-crop ``crop`` (H, W): the evaluation transform of timm
    and torchvision, on tensors. PIL's antialiased resize differs from it when shrinking; give
    the data the model's size (``data.image_size``) and this layer is not added."""

    def __init__(self, resize: int, crop: tuple[int, int], interpolation: str):
        super().__init__()
        self.resize, self.crop, self.mode = int(resize), (int(crop[0]), int(crop[1])), interpolation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        size_long = int(self.resize * long / short)
        size = (self.resize, size_long) if h <= w else (size_long, self.resize)
        kwargs = {"align_corners": False} if self.mode != "nearest" else {}
        x = F.interpolate(x, size=size, mode=self.mode, **kwargs)
        top, left = (size[0] - self.crop[0]) // 2, (size[1] - self.crop[1]) // 2
        return x[..., top:top + self.crop[0], left:left + self.crop[1]]


def _apply(model: nn.Module, input_shape: tuple[int, ...], pre: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Put the resolved preprocessing in front of ``model`` (resize and crop, then normalize, as
    the zoos' evaluation transforms do); record where each layer went."""
    layers: list[str] = []
    crop = tuple(pre["input_size"][-2:]) if pre.get("input_size") else None
    resize = crop is not None and tuple(input_shape[-2:]) != crop
    if pre["mean"] is not None:
        check_channels(pre["mean"], input_shape)
        shape = (input_shape[0], *crop) if resize else tuple(input_shape)
        model = Preprocessed(model, pre["mean"], pre["std"], shape)
        layers.append("normalize (x - mean) / std")
    if resize:
        if pre["interpolation"] not in INTERPOLATIONS:
            raise MlbenchError(f"model.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                               f"got {pre['interpolation']!r}")
        model = nn.Sequential(ResizeCrop(pre["resize"] or crop[-1], crop, pre["interpolation"]), model)
        layers.insert(0, f"resize {pre['resize'] or crop[-1]} ({pre['interpolation']}) and center-crop "
                         f"{crop[0]}x{crop[1]}")
    record = dict(pre, where=("inside the model (first layers: " + "; ".join(layers) + ")") if layers else None)
    return model, record


def _resolved(values: dict[str, Any], origin: str, config: dict[str, Any]) -> dict[str, Any]:
    """Zoo values overlaid by the config's non-null ones, with each value's origin in ``from``."""
    out = {k: v for k, v in values.items()}
    source = {k: origin for k, v in values.items() if v is not None}
    for k, v in config.items():
        if v is not None:
            out[k], source[k] = (list(v) if isinstance(v, (list, tuple)) else v), "config"
    out["from"] = source
    return out


class _ZooModel(TorchModel):
    """What the zoo sources share: a name, local weights, preprocessing overrides."""

    zoo = ""

    def __init__(self, name: str | None = None, weights: str | None = None, strict: bool = True,
                 class_names: list[str] | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, input_size: list[int] | None = None,
                 resize: int | None = None, interpolation: str | None = None, kwargs: Any = None):
        self.arch, self.script, self.trust_pickle = None, None, False
        self._set_inputs(weights, strict, class_names, mean, std)
        self.lib = need(self.zoo, self.source, self.extra)
        self.sidecar = sidecar_config(self.weights)
        self.name = name or self.sidecar.get("architecture")
        if not self.name:
            raise MlbenchError(f"model={self.source} needs model.name (the {self.zoo} model name)")
        if input_size is not None and len(input_size) not in (2, 3):
            raise MlbenchError(f"model.input_size is [C, H, W] or [H, W], got {list(input_size)}")
        if interpolation is not None and interpolation not in INTERPOLATIONS:
            raise MlbenchError(f"model.interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        self.overrides = {"mean": self.mean, "std": self.std, "resize": resize, "interpolation": interpolation,
                          "input_size": [int(v) for v in input_size] if input_size is not None else None}
        kwargs = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else kwargs
        self.kwargs = dict(kwargs or {})
        self._check_name()
        self.zoo_preprocessing: dict[str, Any] = {}

    def _check_name(self) -> None:
        raise NotImplementedError

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        model = super().__call__(input_shape, num_classes)
        self.record["library"] = {self.zoo: getattr(self.lib, "__version__", "unknown")}
        return model

    def preprocess(self, model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, Any]]:
        pre = dict(self.zoo_preprocessing)
        overrides = dict(self.overrides)
        derived = False
        if overrides["resize"] is None and overrides["input_size"] is not None:
            # a new input size keeps the zoo's resize-to-crop ratio
            ratio = pre["resize"] / pre["input_size"][-1] if pre.get("resize") and pre.get("input_size") else 1.0
            overrides["resize"], derived = int(math.floor(overrides["input_size"][-1] * ratio)), True
        resolved = _resolved(pre, self.zoo_origin, overrides)
        if derived:
            resolved["from"]["resize"] = f"config input_size x the resize/crop ratio of {self.zoo_origin}"
        return _apply(model, input_shape, resolved)


class TimmModel(_ZooModel):
    """``model=timm``: ``timm.create_model(name, pretrained=False, num_classes, in_chans)`` with
    ``model.weights`` loaded strictly; preprocessing from the model's ``pretrained_cfg`` (a tag,
    as in ``resnet18.a1_in1k``, picks it), overlaid by ``config.json``'s beside the weights."""

    source = "timm"
    zoo = "timm"
    extra = "timm"

    def _check_name(self) -> None:
        if not self.lib.is_model(self.name):
            raise MlbenchError(f"model.name: timm has no model {self.name!r} "
                               f"(timm.list_models('{self.name.split('.')[0][:4]}*') lists similar ones)")

    def _build(self, input_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, str | None]:
        if len(input_shape) != 3:
            raise MlbenchError(f"model=timm needs image inputs (C, H, W), got shape {tuple(input_shape)}")
        saved = self.sidecar.get("model_args") if isinstance(self.sidecar.get("model_args"), dict) else {}
        kwargs = {**saved, "num_classes": num_classes, "in_chans": input_shape[0], **self.kwargs}
        try:
            model = self.lib.create_model(self.name, pretrained=False, **kwargs)
        except Exception as e:
            raise MlbenchError(f"model=timm: create_model({self.name!r}) fails ({type(e).__name__}: {first_line(e)})") from None
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        origin = f"timm pretrained_cfg {cfg.get('architecture', self.name)}.{cfg.get('tag') or ''}".rstrip(".")
        if isinstance(self.sidecar.get("pretrained_cfg"), dict):
            cfg.update(self.sidecar["pretrained_cfg"])
            origin = f"{self.weights.parent / 'config.json'} pretrained_cfg"
        from timm.data import resolve_data_config
        data = resolve_data_config(pretrained_cfg=cfg, model=model)
        size = list(data["input_size"])
        crop_pct = float(data.get("crop_pct") or 1.0)
        self.zoo_origin = origin
        self.zoo_preprocessing = {"input_size": size, "resize": int(math.floor(size[-1] / crop_pct)),
                                  "interpolation": data.get("interpolation", "bilinear"),
                                  "mean": [float(v) for v in data["mean"]], "std": [float(v) for v in data["std"]]}
        if len(self.zoo_preprocessing["mean"]) != input_shape[0]:  # in_chans differs from the pretrained config's
            self.zoo_preprocessing.update(mean=[sum(data["mean"]) / len(data["mean"])] * input_shape[0],
                                          std=[sum(data["std"]) / len(data["std"])] * input_shape[0])
        return model, f"timm:{self.name}"


class TorchvisionModel(_ZooModel):
    """``model=torchvision``: ``torchvision.models.get_model(name, weights=None, num_classes)``
    with ``model.weights`` loaded strictly; preprocessing from the weights enum's evaluation
    transforms (``model.preset``: ``DEFAULT`` or a member such as ``IMAGENET1K_V2``; read from
    the enum, nothing downloaded)."""

    source = "torchvision"
    zoo = "torchvision"
    extra = "vision"

    def __init__(self, name: str | None = None, weights: str | None = None, preset: str | None = "DEFAULT",
                 strict: bool = True, class_names: list[str] | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, input_size: list[int] | None = None, resize: int | None = None,
                 interpolation: str | None = None, kwargs: Any = None):
        self.preset = preset
        super().__init__(name, weights, strict, class_names, mean, std, input_size, resize, interpolation, kwargs)

    def _check_name(self) -> None:
        names = self.lib.models.list_models()
        if self.name not in names:
            close = [n for n in names if n.startswith(self.name[:4])][:8]
            raise MlbenchError(f"model.name: torchvision has no model {self.name!r}"
                               + (f" (similar: {', '.join(close)})" if close else ""))

    def _build(self, input_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, str | None]:
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise MlbenchError(f"model=torchvision takes RGB images (3, H, W), got {tuple(input_shape)}; "
                               "for an image folder set data.mode=RGB")
        try:
            model = self.lib.models.get_model(self.name, weights=None, num_classes=num_classes, **self.kwargs)
        except Exception as e:
            raise MlbenchError(f"model=torchvision: get_model({self.name!r}) fails ({type(e).__name__}: {first_line(e)})") from None
        self.zoo_origin, self.zoo_preprocessing = "config", {"input_size": None, "resize": None,
                                                              "interpolation": None, "mean": None, "std": None}
        if self.preset:
            try:
                enum = self.lib.models.get_model_weights(self.name)
                member = enum[self.preset] if self.preset != "DEFAULT" else enum.DEFAULT
            except (KeyError, ValueError, AttributeError):
                raise MlbenchError(f"model.preset: torchvision has no weights {self.preset!r} for {self.name}") from None
            t = member.transforms()
            crop = list(t.crop_size) * (2 if len(t.crop_size) == 1 else 1)
            self.zoo_origin = f"torchvision {type(member).__name__}.{member.name} transforms"
            self.zoo_preprocessing = {"input_size": [3, *crop], "resize": int(t.resize_size[0]),
                                      "interpolation": t.interpolation.value, "mean": [float(v) for v in t.mean],
                                      "std": [float(v) for v in t.std]}
        return model, f"torchvision:{self.name}"

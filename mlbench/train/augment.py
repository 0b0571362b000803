"""Training-data augmentation of the baseline (``augment=<preset>``, conf/augment/).

Three kinds of operation, each from the library that does it well:

- images, per training item: any ``torchvision.transforms.v2`` transform (flips, affine crops,
  colour, noise, blur), drawn afresh for every item of every batch;
- images, per batch: MixUp / CutMix (``torchvision.transforms.v2.MixUp``/``CutMix``: soft labels,
  which ``nn.CrossEntropyLoss`` takes as class probabilities);
- tables: Gaussian feature noise per training item (``feature_noise``, in train-standard-deviation
  units: the inputs are standardized, so this is one ``randn_like``; no library needed) and
  oversampling of the training split once before training (``oversample``: an imbalanced-learn
  sampler such as SMOTE).

Augmentation applies to the baseline's training and every retrain of it (seeds, partition folds);
fine-tuning passes and the update cycle keep their own recipes. It is part of the baseline's
cache key. Randomness comes from the training seed: the same seed gives the same augmented batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mlbench.data import DataMeta
from mlbench.errors import MlbenchError

MIXES = ("mixup", "cutmix", "both")
MODALITIES = ("any", "image", "tabular")


def _torchvision_v2() -> Any:
    try:
        from torchvision.transforms import v2
    except Exception as e:  # ImportError, or a torchvision built for another torch (RuntimeError)
        raise MlbenchError("augment: image transforms and MixUp/CutMix need torchvision built for the installed "
                           f"torch ({type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}); "
                           "see the README's GPU and torchvision install notes") from None
    return v2


def active(cfg: DictConfig) -> bool:
    """Whether ``cfg.augment`` changes training at all."""
    a = cfg.get("augment")
    return bool(a) and bool(a.get("transforms") or a.get("mix") or a.get("feature_noise") or a.get("oversample"))


def recipe(cfg: DictConfig) -> dict[str, Any] | None:
    """What of ``cfg.augment`` determines the trained weights (for the cache key); None when off."""
    if not active(cfg):
        return None
    a = OmegaConf.to_container(cfg.augment, resolve=True)
    return {k: v for k, v in a.items() if k not in ("name", "compare", "modality")}


def without(cfg: DictConfig) -> DictConfig:
    """``cfg`` with augmentation off: the recipe the comparison trains beside it."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(plain, False)
    plain.augment = {"name": "none", "modality": "any", "transforms": [], "mix": None, "mix_alpha": 1.0,
                     "feature_noise": 0.0, "oversample": None, "compare": False}
    return plain


@dataclass
class Augmenter:
    """Applied by the training loop: ``resample`` once to the training split, then ``__call__``
    to every training batch (inputs, integer labels) -> (inputs, targets: labels or soft labels)."""

    num_classes: int
    transforms: list[Any] = field(default_factory=list)  # torchvision v2 transforms, per item
    mix: str | None = None
    mix_alpha: float = 1.0
    feature_noise: float = 0.0
    oversample: Any = None  # an imbalanced-learn sampler (fit_resample)
    input_range: tuple[float, float] | None = None
    _item: Callable | None = None
    _mix: Callable | None = None

    def __post_init__(self) -> None:
        if self.transforms or self.mix:
            v2 = _torchvision_v2()
            self._item = v2.Compose(list(self.transforms)) if self.transforms else None
            if self.mix:
                both = {"mixup": v2.MixUp(alpha=self.mix_alpha, num_classes=self.num_classes),
                        "cutmix": v2.CutMix(alpha=self.mix_alpha, num_classes=self.num_classes)}
                self._mix = both[self.mix] if self.mix != "both" else v2.RandomChoice(list(both.values()))

    def resample(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split after oversampling (the sampler seeded with ``seed``); unchanged
        without ``oversample``. New items are appended after the originals."""
        if self.oversample is None:
            return x, y
        sampler = self.oversample
        if "random_state" in sampler.get_params():
            sampler.set_params(random_state=seed)
        flat = x.reshape(len(x), -1).cpu().numpy()
        try:
            xs, ys = sampler.fit_resample(flat, y.cpu().numpy())
        except ValueError as e:
            raise MlbenchError(f"augment.oversample: {type(sampler).__name__}: {str(e).strip().splitlines()[0]}") from None
        return (torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)).reshape(-1, *x.shape[1:]).to(x.device),
                torch.from_numpy(np.asarray(ys, dtype=np.int64)).to(y.device))

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._item is not None:
            xb = torch.stack([self._item(item) for item in xb])
        if self.feature_noise:
            xb = xb + self.feature_noise * torch.randn_like(xb)
        if self.input_range is not None and (self._item is not None or self.feature_noise):
            xb = xb.clamp(*self.input_range)
        if self._mix is not None:
            xb, yb = self._mix(xb, yb)
        return xb, yb


def _sized(node: Any, meta: DataMeta) -> Any:
    """A transform's ``size: auto`` (v2.RandomCrop, v2.RandomResizedCrop) becomes the data's
    (height, width), so one preset fits every image size."""
    if node.get("size") == "auto":
        node = OmegaConf.merge(node, {"size": list(meta.input_shape[-2:])})
    return node


def build(cfg: DictConfig, meta: DataMeta) -> Augmenter | None:
    """The augmenter of ``cfg.augment`` for data described by ``meta`` (None when off); one error
    line for a preset made for the other modality or an unknown option."""
    if not active(cfg):
        return None
    a = cfg.augment
    name = a.get("name", "augment")
    modality = str(a.get("modality", "any"))
    if modality not in MODALITIES:
        raise MlbenchError(f"augment.modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if modality != "any" and modality != meta.modality:
        raise MlbenchError(f"augment={name} is for {modality} data, but {meta.name} is {meta.modality} "
                           f"(choose an augment preset for {meta.modality} data)")
    mix = a.get("mix")
    if mix is not None and mix not in MIXES:
        raise MlbenchError(f"augment.mix must be one of {', '.join(MIXES)} or null, got {mix!r}")
    if (a.get("transforms") or mix) and meta.modality != "image":
        raise MlbenchError(f"augment={name}: image transforms and MixUp/CutMix need image data; {meta.name} is "
                           f"{meta.modality}")
    if float(a.get("feature_noise", 0.0)) < 0:
        raise MlbenchError(f"augment.feature_noise must be >= 0, got {a.feature_noise}")
    if a.get("oversample") and meta.modality != "tabular":
        raise MlbenchError(f"augment.oversample (SMOTE and the like) is for tabular data; {meta.name} is "
                           f"{meta.modality}")
    from mlbench.components import instantiate_checked
    if a.get("transforms"):
        _torchvision_v2()  # the install hint, not Hydra's import error
    transforms = [instantiate_checked(_sized(t, meta), "augment.transforms") for t in (a.get("transforms") or [])]
    oversample = instantiate_checked(a.oversample, "augment.oversample") if a.get("oversample") else None
    if oversample is not None and not hasattr(oversample, "fit_resample"):
        raise MlbenchError(f"augment.oversample: {type(oversample).__name__} has no fit_resample (use an "
                           "imbalanced-learn over-sampler, e.g. imblearn.over_sampling.SMOTE)")
    return Augmenter(meta.num_classes, transforms, mix, float(a.get("mix_alpha", 1.0)),
                     float(a.get("feature_noise", 0.0)), oversample, meta.input_range)


def check(cfg: DictConfig, meta: DataMeta, counts: np.ndarray, trainable: bool) -> None:
    """Set-up checks: the preset fits the data, SMOTE has neighbours enough in every class it
    would oversample, and ``augment.compare`` has something to compare."""
    a = cfg.get("augment") or {}
    if a.get("compare"):
        if not active(cfg):
            raise MlbenchError("augment.compare=true needs an augmentation (e.g. augment=image_noise or "
                               "augment=table_noise); augment=none has nothing to compare")
        if not trainable or str(cfg.train.start) == "none":
            raise MlbenchError("augment.compare=true trains the baseline twice; this model is not trained "
                               "(model=onnx or train=none)")
    aug = build(cfg, meta)
    if aug is not None and aug.oversample is not None:
        k = aug.oversample.get_params().get("k_neighbors")
        k = k if isinstance(k, int) else None
        present = counts[counts > 0]
        if k is not None and present.min() <= k and present.min() < present.max():
            raise MlbenchError(f"augment.oversample: {type(aug.oversample).__name__} needs more than k_neighbors={k} "
                               f"training items in every class it oversamples; the smallest class has "
                               f"{int(present.min())} (lower k_neighbors)")

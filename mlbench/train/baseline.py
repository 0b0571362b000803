"""The baseline: trained once per (data content, model, training recipe, seed, device) and
kept in the content-addressed cache, so a sweep trains each baseline once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlbench.data import DataBundle
from mlbench.env import TORCH_DEFAULT_THREADS, seed_everything
from mlbench.errors import MlbenchError
from mlbench.train import augment
from mlbench.train.cache import BaselineCache, content_hash
from mlbench.train.fit import fit


def fit_kwargs(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """The training settings of ``cfg.train`` as keyword arguments of :func:`fit` (also used
    by passes that fine-tune)."""
    t = cfg.train
    return {"batch_size": t.batch_size, "optimizer": instantiate(t.optimizer),
            "scheduler": instantiate(t.scheduler) if t.scheduler else None, "patience": t.patience,
            "label_smoothing": t.label_smoothing, "amp": t.amp, "channels_last": t.channels_last,
            "device": device, "threads": t.get("threads", 0)}


# baseline_training of a model evaluated as given (train=none, model=onnx)
NOT_TRAINED = {"start": "none", "trained": False, "best_epoch": None, "best_val_loss": None, "train_s": 0.0,
               "history": [], "cache_hit": False}


def weights_hash(model_factory: Any) -> str | None:
    """sha256 of the weights a model source starts from (None: a model mlbench initializes)."""
    return getattr(model_factory, "weights_sha256", None)


def check_start(cfg: DictConfig, model_factory: Any) -> None:
    """``train=none`` and ``train=finetune`` need a model that comes with weights."""
    start = str(cfg.train.start)
    if getattr(model_factory, "onnx_only", False):  # the graph as given: nothing to train
        if start == "finetune":
            raise MlbenchError("train=finetune: model=onnx has no torch source to train; the ONNX graph is "
                               "evaluated as given")
        if cfg.get("seeds"):
            raise MlbenchError("seeds=[...] retrains the baseline under other seeds; model=onnx has nothing to train")
        return
    if start != "scratch" and not getattr(model_factory, "pretrained", False):
        raise MlbenchError(f"train={start} needs a model that comes with weights (model=torch "
                           "model.weights=...); the built-in models start from a random initialization")
    if start == "none" and cfg.get("seeds"):
        raise MlbenchError("seeds=[...] retrains the baseline under other seeds; with train=none nothing is "
                           "trained (drop seeds, or use train=finetune)")


def train_recipe(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.train`` as a plain dict (``start: scratch``, the default, left out so that keys of
    baselines trained before the option existed still match)."""
    t = OmegaConf.to_container(cfg.train, resolve=True, enum_to_str=True)
    if t.get("start") == "scratch":
        t.pop("start")
    return t


def baseline_key(cfg: DictConfig, device: torch.device, seed: int, data_hash: str,
                 weights: str | None = None) -> str:
    """Content hash of what determines the trained weights: the data as loaded (its content,
    not only its config: a file rewritten at the same path is new data), model (and the content
    of the weights it starts from), training, seed."""
    recipe = {"data": OmegaConf.to_container(cfg.data, resolve=True), "data_content": data_hash,
              "model": OmegaConf.to_container(cfg.model, resolve=True),
              "train": train_recipe(cfg),
              "seed": seed, "device": device.type, "mlbench_cache": 1,
              **({"weights_content": weights} if weights else {}),
              **({"augment": augment.recipe(cfg)} if augment.active(cfg) else {}),
              "train_threads": (cfg.train.get("threads", 0) or TORCH_DEFAULT_THREADS) if device.type == "cpu" else None}
    return content_hash(recipe)


def train_baseline(cfg: DictConfig, data: DataBundle, data_hash: str,
                   model_factory: Callable[..., torch.nn.Module], device: torch.device,
                   seed: int) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """Load the baseline for ``seed`` from the cache, or train and store it. Returns the model
    (on the CPU, in eval mode), its training facts (``cache_hit`` included) and its key."""
    key = baseline_key(cfg, device, seed, data_hash, weights_hash(model_factory))
    seed_everything(seed, deterministic=device.type == "cpu")
    model = model_factory(input_shape=data.meta.input_shape, num_classes=data.meta.num_classes)
    if str(cfg.train.start) == "none":  # the model as given: nothing to train or cache
        return model.cpu().eval(), dict(NOT_TRAINED), key

    def train(m: torch.nn.Module) -> dict:
        res = fit(m, data.x["train"], data.y["train"], data.x["val"], data.y["val"], epochs=cfg.train.epochs,
                  seed=seed, desc=f"train {type(m).__name__}", augment=augment.build(cfg, data.meta),
                  **fit_kwargs(cfg, device))
        return {"best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss, "train_s": res.train_s,
                "train_samples_per_s": res.samples_per_s, "history": res.history}

    cache = BaselineCache(cfg.paths.cache_dir)
    info, hit = cache.load_or_train(key, model, train, recipe={"seed": seed})
    info = {k: v for k, v in info.items() if k != "recipe"}
    info["cache_hit"] = hit
    if augment.active(cfg):
        info["augment"] = {"name": str(cfg.augment.get("name", "custom")), **augment.recipe(cfg)}
    return model.cpu().eval(), info, key

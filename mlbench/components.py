"""Everything a run builds from its config before any work: the variants' passes, the
stressors, the data checks, the monitor, and the optimizer and scheduler (tried on a dummy
parameter). Each constructor checks its own arguments, so a bad value is one line at set-up,
and before the first job of a sweep (``mlbench.preflight.check_sweep``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlbench.compress import Pass
from mlbench.datacheck import Check
from mlbench.errors import MlbenchError, first_line
from mlbench.evaluate.loop import Settings
from mlbench.monitor import Monitor
from mlbench.schema import VariantConf
from mlbench.stress.base import Stressor

BASELINE = "baseline"


@dataclass
class VariantSpec:
    name: str
    description: str
    passes: list[Pass]
    runner: dict[str, Any] = field(default_factory=dict)


def instantiate_checked(node: Any, what: str, recursive: bool = True) -> Any:
    """``hydra.utils.instantiate``; a constructor error becomes one MlbenchError naming ``what``.
    ``recursive=False`` leaves nested ``_target_`` nodes as config: the component builds them
    itself (``monitor.detectors``, ``cycle.policies``: fresh, with the run's shared values)."""
    try:
        return instantiate(node, _recursive_=recursive)
    except Exception as e:  # Hydra wraps constructor errors in InstantiationException
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, MlbenchError):  # already names its key (model.arch: ...) or not
            raise MlbenchError(str(cause) if str(cause).startswith(what) else f"{what}: {cause}") from None
        msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise MlbenchError(f"{what}: {msg}") from None


def _components(group: Any, where: str, kind: type, what: str) -> list:
    """The entries of a multi-select config group (``stress``, ``datacheck``), each built and
    named after its key."""
    out = []
    for name, node in (group or {}).items():
        obj = instantiate_checked(node, f"{where}.{name}")
        if not isinstance(obj, kind):
            raise MlbenchError(f"{where}.{name}: {type(obj).__name__} is not {what}")
        obj.name = name
        out.append(obj)
    return out


def check_training(cfg: DictConfig) -> None:
    """The optimizer and scheduler built once on a dummy parameter, so that a value torch
    refuses (a negative learning rate or weight decay) is one line before any work."""
    opt = instantiate_checked(cfg.train.optimizer, "train.optimizer")
    if not callable(opt):
        raise MlbenchError("train.optimizer must be a partial optimizer (_partial_: true)")
    try:
        built = opt([torch.nn.Parameter(torch.zeros(1))])
        if cfg.train.scheduler:
            instantiate_checked(cfg.train.scheduler, "train.scheduler")(built)
    except (ValueError, TypeError) as e:
        raise MlbenchError(f"train.optimizer: {first_line(e)}") from None


def components(cfg: DictConfig) -> tuple[list[VariantSpec], list[Stressor], list[Check], Monitor | None]:
    """The variants' passes, the stressors, the data checks and the monitor, built from the
    config (each constructor checks its own arguments): a bad value fails here, before any
    work, and before the first job of a sweep (``mlbench.preflight.check_sweep``)."""
    check_training(cfg)
    specs = []
    allowed = {f.name for f in fields(VariantConf)}
    for name, spec in (cfg.variants or {}).items():
        unknown = set(spec or {}) - allowed
        if unknown:
            raise MlbenchError(f"variants.{name}: unknown key(s) {sorted(unknown)}; a variant has {sorted(allowed)}")
        spec = OmegaConf.merge(OmegaConf.structured(VariantConf), spec)
        if name == BASELINE:
            raise MlbenchError(f"'{BASELINE}' is reserved for the trained model; rename that variant")
        passes = [instantiate_checked(p, f"variants.{name}.passes[{i}]") for i, p in enumerate(spec.passes)]
        for p in passes:
            if not isinstance(p, Pass):
                raise MlbenchError(f"variants.{name}: {type(p).__name__} is not a compression pass")
        specs.append(VariantSpec(name, spec.description, passes, OmegaConf.to_container(spec.runner, resolve=True)))
    stressors = _components(cfg.stress, "stress", Stressor, "a stressor")
    checks = _components(cfg.datacheck, "datacheck", Check, "a data check")
    monitor = None
    if cfg.monitor and "_target_" in cfg.monitor:
        monitor = instantiate_checked(cfg.monitor, "monitor", recursive=False)
        if not isinstance(monitor, Monitor):
            raise MlbenchError(f"monitor: {type(monitor).__name__} is not a mlbench.monitor.Monitor")
    return specs, stressors, checks, monitor


def settings_from(cfg: Any) -> Settings:
    """The measurement settings a composed config states (``deployment``, ``eval``)."""
    return Settings(serving=str(cfg.deployment.serving), batch_size=int(cfg.eval.batch_size),
                    invariance_items=int(cfg.deployment.invariance_items), calibration=str(cfg.eval.calibration),
                    memory=bool(cfg.eval.efficiency and cfg.eval.memory))

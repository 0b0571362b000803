"""The stages before the variants: set-up, data, baseline, data checks."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlbench.analysis.requirements import validate as validate_requirement
from mlbench.components import BASELINE, components, instantiate_checked, settings_from
from mlbench.compress import Artifact, Facts
from mlbench.compress.cache import ArtifactCache
from mlbench.datacheck import CheckContext
from mlbench.datacheck.stage import feature_source, print_findings, run_checks
from mlbench.datacheck.stage import select as select_checks
from mlbench.env import (
    TORCH_DEFAULT_THREADS,
    environment,
    resolve_device,
    resolve_threads,
    seed_everything,
    set_threads,
)
from mlbench.evaluate.augmentation import plain_spec
from mlbench.evaluate.extra import check as check_metrics
from mlbench.evaluate.extra import register as register_metrics
from mlbench.evaluate.partition import from_config as partition_from
from mlbench.inputs import data_inputs, model_inputs
from mlbench.models import count_params
from mlbench.named import import_plugins
from mlbench.pipeline.context import MIN_TEST_ITEMS, RunContext, RunSetup
from mlbench.progress import console
from mlbench.train import augment, save_weights
from mlbench.train.baseline import NOT_TRAINED, check_start, train_baseline
from mlbench.values import check_values

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- setup

def setup(ctx: RunContext) -> None:
    """Everything that can fail on a config value fails here, before any work."""
    cfg = ctx.cfg
    check_values(cfg)
    import_plugins(cfg.get("plugins"))
    register_metrics(list(cfg.metrics.extra))
    for req in OmegaConf.to_container(cfg.requirements.checks, resolve=True, enum_to_str=True):
        validate_requirement(req)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    threads, how = resolve_threads(cfg.backend.threads)
    set_threads(threads)
    seed_everything(cfg.seed, deterministic=device.type == "cpu")
    env = environment(device)
    env.update(threads_choice=how, train_threads=cfg.train.threads or TORCH_DEFAULT_THREADS)
    dataset = instantiate_checked(cfg.data, "data")
    model_factory = instantiate_checked(cfg.model, "model", recursive=False)
    check_start(cfg, model_factory)
    calibrator_factory = None
    if cfg.calibrate and "_target_" in cfg.calibrate:
        calibrator_factory = lambda node=cfg.calibrate: instantiate(node)  # noqa: E731
        calibrator_factory()  # fail now on bad arguments
    ctx.specs, ctx.stressors, ctx.checks, ctx.monitor = components(cfg)
    tracker = None
    if cfg.get("tracking") and "_target_" in cfg.tracking:  # fails here when MLflow is missing
        tracker = instantiate_checked(cfg.tracking, "tracking")
    ctx.setup = RunSetup(started=started, t0=t0, settings=settings_from(cfg), device=device,
                         artifacts=ArtifactCache(cfg.paths.cache_dir, device), env=env, dataset=dataset,
                         model_factory=model_factory, calibrator_factory=calibrator_factory, tracker=tracker)


# --------------------------------------------------------------------------- data

def load_data(ctx: RunContext) -> None:
    ctx.data = ctx.dataset.load()
    ctx.data_hash = ctx.data.content_hash()
    check_metrics(ctx.data.meta.num_classes)  # metrics.extra on a worked example of this many classes
    ctx.run.inputs["data"] = data_inputs(ctx.dataset, ctx.data, ctx.cfg.data, ctx.data_hash)
    sizes = ctx.data.sizes()
    for st in list(ctx.stressors):  # unfit stressors fail (or are skipped) now, not halfway
        if not st.check(ctx.data.meta):
            ctx.run.stress_skipped.append({"stressor": st.name, "reason": st.fits(ctx.data.meta)})
            ctx.stressors.remove(st)
    if ctx.checks:
        ctx.checks, ctx.check_skipped = select_checks(ctx.checks, ctx.data)
    trainable = not getattr(ctx.model_factory, "onnx_only", False)
    partition_from(ctx.cfg).check(ctx.data, trainable)  # one line now
    augment.check(ctx.cfg, ctx.data.meta, ctx.data.y["train"].bincount().numpy(), trainable)
    if ctx.monitor is not None:
        ctx.monitor.prepare(sizes["test"], ctx.data.group is not None)
    if sizes["test"] < MIN_TEST_ITEMS:
        half = 1.96 * math.sqrt(0.9 * 0.1 / sizes["test"])
        msg = (f"the test split has {sizes['test']} items (< {MIN_TEST_ITEMS}): at accuracy 0.9 a 95 % interval "
               f"is about ±{100 * half:.0f} points wide, so small differences mean little")
        ctx.run.warnings.append(msg)
        log.warning(msg)
    console.print(f"[bold]data[/] {ctx.data.meta.name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                  + f" · {ctx.data.meta.num_classes} classes · device {ctx.device}")


# --------------------------------------------------------------------------- baseline

def baseline(ctx: RunContext) -> None:
    if getattr(ctx.model_factory, "onnx_only", False):  # model=onnx: the graph as given
        ctx.baseline = ctx.model_factory.baseline(ctx.data, ctx.run_dir / "models" / BASELINE)
        ctx.baseline_info = dict(NOT_TRAINED)
        key, name = ctx.baseline.id, "ONNX graph"
    else:
        model, ctx.baseline_info, key = train_baseline(ctx.cfg, ctx.data, ctx.data_hash, ctx.model_factory,
                                                       ctx.device, ctx.cfg.seed)
        path = ctx.run_dir / "models" / BASELINE / "model.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model, path)
        ctx.baseline = Artifact(id=key, format="torch", model=model, files=[path], facts=Facts(*count_params(model)))
        name = type(model).__name__
    info = ctx.baseline_info
    start = "none" if not info.get("trained", True) else str(ctx.cfg.train.start)
    ctx.run.inputs["model"], warnings = model_inputs(ctx.model_factory, ctx.cfg.model, start, ctx.data.meta.class_names)
    for msg in warnings:
        ctx.run.warnings.append(msg)
        log.warning(msg)
    if ctx.run.inputs["model"].get("source") != "builtin":  # a user's model by its own name, not its wrapper's
        name = ctx.run.inputs["model"].get("arch") or name
    if not info.get("trained", True):
        verb = "as given, not trained"
    else:
        verb = ("loaded from cache" if info["cache_hit"] else f"trained in {info['train_s']:.1f} s") \
            + f", best epoch {info['best_epoch']}"
    console.print(f"[bold]baseline[/] {name} {verb} (id {key})")
    if ctx.cfg.augment.compare:  # the same recipe without augmentation joins the variants
        ctx.specs.insert(0, plain_spec(ctx))


# --------------------------------------------------------------------------- datacheck

def accuracy_target(cfg: DictConfig) -> float | None:
    """The strictest absolute accuracy requirement (``accuracy >= x``), if any."""
    values = [float(r.value) for r in cfg.requirements.checks
              if r.metric is not None and str(r.metric) == "accuracy" and r.op in (">=", ">") and r.value is not None]
    return max(values) if values else None


def datacheck(ctx: RunContext) -> None:
    """The configured data checks on the loaded splits (features for images: the baseline's
    penultimate-layer embeddings)."""
    if not ctx.checks:
        return
    model = ctx.baseline.model if ctx.baseline is not None else None
    features, space = feature_source(ctx.data, model, ctx.device)
    cctx = CheckContext(ctx.data, features, space, ctx.cfg.seed, ctx.device, ctx.run_dir / "plots",
                        accuracy_target(ctx.cfg), partition_from(ctx.cfg).strategy)
    section = run_checks(ctx.checks, cctx, ctx.check_skipped, ctx.run_dir)
    ctx.run.plots += section.pop("plots")
    ctx.run.datacheck = section
    print_findings(section, full=False)

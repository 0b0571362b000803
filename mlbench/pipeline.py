"""The run: stages in order over one context.

setup -> data -> baseline (train or cache) -> variants (build, evaluate) ->
compare (deltas, fairness, agreement) -> write (summary, predictions, report).

Each stage is a function ``stage(ctx) -> None`` that reads and fills the
:class:`RunContext`; stages never reach into each other's files.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlbench import __version__, SCHEMA_VERSION
from mlbench.backends import OrtRunner, TorchRunner
from mlbench.calibrate import Calibrator, check_view
from mlbench.compress import Artifact, Pass, PassContext
from mlbench.data import DataBundle, Dataset
from mlbench.env import environment, resolve_device, seed_everything, set_threads
from mlbench.errors import MlbenchError, VariantFailed
from mlbench.evaluate import classification_metrics, compare_efficiency, evaluate, peak_memory
from mlbench.evaluate.loop import Evaluation, serving_batch
from mlbench.evaluate.metrics import check_probs, per_class_recall
from mlbench.models import count_params
from mlbench.progress import console
from mlbench.schema import VariantConf, check_values
from mlbench.train import BaselineCache, content_hash, fit, save_weights

log = logging.getLogger(__name__)
BASELINE = "baseline"
MIN_TEST_ITEMS = 200  # fewer test items than this: a warning in the console, summary and report


@dataclass
class VariantSpec:
    name: str
    description: str
    passes: list[Pass]
    runner: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantResult:
    """Everything measured for one variant; ``summary()`` is its entry in summary.json."""

    name: str
    description: str = ""
    recipe: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    artifact: Artifact | None = None
    artifact_path: str | None = None
    backend: str = "torch"
    runner: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    calibrator: dict[str, Any] | None = None
    per_class_recall: list[float | None] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, dict] = field(default_factory=dict)
    per_class_recall_delta: list[float | None] = field(default_factory=list)
    groups: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None  # the batch-invariance check
    timing: dict[str, list[float]] = field(default_factory=dict)  # per-round timing figures
    flags: list[str] = field(default_factory=list)
    stress: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0
    runner_obj: Any = None  # the runner used for evaluation, reused by the stress stage
    evaluation: Evaluation | None = None  # test-split outputs in the chosen calibration view

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description, "recipe": self.recipe, "backend": self.backend,
            "status": self.status, "error": self.error, "artifact": self.artifact_path,
            "predictions": f"predictions/{self.name}.npz" if self.status == "ok" else None,
            "metrics": self.metrics, "deltas": self.deltas, "flags": self.flags,
        }
        if self.artifact is not None:
            out["lineage"] = {"id": self.artifact.id, "parent": self.artifact.parent,
                              "passes": self.artifact.records}
        if self.status == "ok":
            out.update({"runner": self.runner, "build_s": self.build_s,
                        "throughput_sps_by_batch": self.throughput,
                        "calibration": self.calibration, "calibrator": self.calibrator,
                        "per_class": {"recall": self.per_class_recall,
                                      "recall_delta": self.per_class_recall_delta},
                        "groups": self.groups, "agreement": self.agreement, "stress": self.stress,
                        "batch_invariance": self.serving, "timing_rounds": self.timing})
        return out


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    device: torch.device = torch.device("cpu")
    started: str = ""
    t0: float = 0.0
    env: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None
    model_factory: Callable[..., torch.nn.Module] | None = None
    calibrator_factory: Callable[[], Calibrator] | None = None
    specs: list[VariantSpec] = field(default_factory=list)
    stressors: list[tuple[str, Any]] = field(default_factory=list)
    data: DataBundle | None = None
    data_hash: str = ""
    baseline: Artifact | None = None
    baseline_info: dict[str, Any] = field(default_factory=dict)
    baseline_calibrator: Calibrator | None = None
    results: dict[str, VariantResult] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # run-level sections of summary.json

    @property
    def ok(self) -> dict[str, VariantResult]:
        return {k: v for k, v in self.results.items() if v.status == "ok"}


# --------------------------------------------------------------------------- setup

def _instantiate(node: Any, what: str):
    try:
        return instantiate(node)
    except Exception as e:  # Hydra wraps constructor errors in InstantiationException
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, MlbenchError):
            raise MlbenchError(f"{what}: {cause}") from None
        msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise MlbenchError(f"{what}: {msg}") from None


def setup(ctx: RunContext) -> None:
    """Everything that can fail on a config value fails here, before any work."""
    cfg = ctx.cfg
    check_values(cfg)
    ctx.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx.t0 = time.perf_counter()
    ctx.device = resolve_device(cfg.device)
    set_threads(cfg.backend.threads)
    seed_everything(cfg.seed, deterministic=ctx.device.type == "cpu")
    check_view(cfg.eval.calibration)
    ctx.env = environment(ctx.device)
    ctx.dataset = _instantiate(cfg.data, "data")
    ctx.model_factory = _instantiate(cfg.model, "model")
    if cfg.calibrate and "_target_" in cfg.calibrate:
        ctx.calibrator_factory = lambda node=cfg.calibrate: instantiate(node)
        ctx.calibrator_factory()  # fail now on bad arguments
    allowed = {f.name for f in fields(VariantConf)}
    for name, spec in (cfg.variants or {}).items():
        unknown = set(spec or {}) - allowed
        if unknown:
            raise MlbenchError(f"variants.{name}: unknown key(s) {sorted(unknown)}; a variant has {sorted(allowed)}")
        spec = OmegaConf.merge(OmegaConf.structured(VariantConf), spec)
        if name == BASELINE:
            raise MlbenchError(f"'{BASELINE}' is reserved for the trained model; rename that variant")
        passes = [_instantiate(p, f"variants.{name}.passes[{i}]") for i, p in enumerate(spec.passes)]
        for p in passes:
            if not isinstance(p, Pass):
                raise MlbenchError(f"variants.{name}: {type(p).__name__} is not a compression pass")
        ctx.specs.append(VariantSpec(name, spec.description, passes,
                                     OmegaConf.to_container(spec.runner, resolve=True)))
    for name, node in (cfg.stress or {}).items():
        st = _instantiate(node, f"stress.{name}")
        st.name = name
        ctx.stressors.append((name, st))


# --------------------------------------------------------------------------- data

def load_data(ctx: RunContext) -> None:
    ctx.data = ctx.dataset.load()
    ctx.data_hash = ctx.data.content_hash()
    sizes = ctx.data.sizes()
    skipped = []
    for name, st in list(ctx.stressors):  # unfit stressors fail (or are skipped) now, not halfway
        if not st.check(ctx.data.meta):
            skipped.append({"stressor": name, "reason": st.fits(ctx.data.meta)})
            ctx.stressors.remove((name, st))
    ctx.extra["stress_skipped"] = skipped
    if sizes["test"] < MIN_TEST_ITEMS:
        import math
        half = 1.96 * math.sqrt(0.9 * 0.1 / sizes["test"])
        msg = (f"the test split has {sizes['test']} items (< {MIN_TEST_ITEMS}): at accuracy 0.9 a 95 % interval "
               f"is about ±{100 * half:.0f} points wide, so small differences mean little")
        ctx.extra.setdefault("warnings", []).append(msg)
        log.warning(msg)
    console.print(f"[bold]data[/] {ctx.data.meta.name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                  + f" · {ctx.data.meta.num_classes} classes · device {ctx.device}")


# --------------------------------------------------------------------------- baseline

def fit_kwargs(ctx: RunContext) -> dict[str, Any]:
    t = ctx.cfg.train
    return {"batch_size": t.batch_size, "optimizer": instantiate(t.optimizer),
            "scheduler": instantiate(t.scheduler) if t.scheduler else None, "patience": t.patience,
            "label_smoothing": t.label_smoothing, "amp": t.amp, "channels_last": t.channels_last,
            "device": ctx.device}


def baseline_key(cfg: DictConfig, device: torch.device, seed: int, data_hash: str) -> str:
    """Content hash of what determines the trained weights: the data as loaded (its content,
    not only its config: a file rewritten at the same path is new data), model, training, seed."""
    recipe = {"data": OmegaConf.to_container(cfg.data, resolve=True), "data_content": data_hash,
              "model": OmegaConf.to_container(cfg.model, resolve=True),
              "train": OmegaConf.to_container(cfg.train, resolve=True),
              "seed": seed, "device": device.type, "mlbench_cache": 1}
    return content_hash(recipe)


def train_baseline(ctx: RunContext, seed: int | None = None) -> tuple[torch.nn.Module, dict, str]:
    """Load the baseline for ``seed`` from the cache, or train and store it."""
    seed = ctx.cfg.seed if seed is None else seed
    d = ctx.data
    key = baseline_key(ctx.cfg, ctx.device, seed, ctx.data_hash)
    seed_everything(seed, deterministic=ctx.device.type == "cpu")
    model = ctx.model_factory(input_shape=d.meta.input_shape, num_classes=d.meta.num_classes)

    def train(m: torch.nn.Module) -> dict:
        res = fit(m, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=ctx.cfg.train.epochs,
                  seed=seed, desc=f"train {type(m).__name__}", **fit_kwargs(ctx))
        return {"best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss, "train_s": res.train_s,
                "train_samples_per_s": res.samples_per_s, "history": res.history}

    cache = BaselineCache(ctx.cfg.paths.cache_dir)
    info, hit = cache.load_or_train(key, model, train, recipe={"seed": seed})
    info = {k: v for k, v in info.items() if k != "recipe"}
    info["cache_hit"] = hit
    return model.cpu().eval(), info, key


def baseline(ctx: RunContext) -> None:
    model, info, key = train_baseline(ctx)
    ctx.baseline_info = info
    path = ctx.run_dir / "models" / BASELINE / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, path)
    ctx.baseline = Artifact(id=key, format="torch", model=model, files=[path])
    verb = "loaded from cache" if info["cache_hit"] else f"trained in {info['train_s']:.1f} s"
    console.print(f"[bold]baseline[/] {type(model).__name__} {verb} (id {key}, best epoch {info['best_epoch']})")


# --------------------------------------------------------------------------- variants

def batch_invariance(runner, x: torch.Tensor, y: torch.Tensor, served: torch.Tensor, cfg: DictConfig,
                     index: torch.Tensor) -> dict[str, Any] | None:
    """Predictions on the first ``deployment.invariance_items`` test items at batch 1 against
    in batches of ``eval.batch_size``; ``served`` are the logits in the serving mode. A model
    whose outputs depend on the other items of its batch (dynamic quantization picks one
    activation scale per batch) changes predictions here."""
    n = min(cfg.deployment.invariance_items, len(y))
    if n == 0 or cfg.eval.batch_size == 1:
        return None
    online = cfg.deployment.serving == "online"
    other = evaluate(runner, x[:n], y[:n], batch_size=cfg.eval.batch_size if online else 1).logits
    at1, atn = (served[:n], other) if online else (other, served[:n])
    p1, pn = at1.argmax(1), atn.argmax(1)
    changed = (p1 != pn).nonzero().flatten()
    finite = torch.isfinite(at1).all() and torch.isfinite(atn).all()
    return {"items": n, "batch_size": cfg.eval.batch_size, "changed": len(changed),
            "changed_index": index[:n][changed].tolist()[:50],
            "accuracy_online": float((p1 == y[:n]).double().mean()),
            "accuracy_batch": float((pn == y[:n]).double().mean()),
            "max_abs_logit_diff": float((at1 - atn).abs().max()) if finite and n else None}

def make_runner(ctx: RunContext, art: Artifact, overrides: dict[str, Any] | None = None):
    b = ctx.cfg.backend
    opts = {**OmegaConf.to_container(b.torch if art.format == "torch" else b.onnxruntime, resolve=True),
            **art.runner, **(overrides or {})}
    if art.format == "torch":
        device = torch.device("cpu") if art.cpu_only else ctx.device
        return TorchRunner(art.model, device, art.dtype, compile=opts.get("compile", False),
                           cuda_graphs=opts.get("cuda_graphs", False),
                           channels_last=opts.get("channels_last", False))
    return OrtRunner(art.path, providers=opts.get("providers", ["CPUExecutionProvider"]),
                     threads=b.threads, strict=opts.get("strict", False),
                     graph_optimization=opts.get("graph_optimization", "all"))


def build(ctx: RunContext, spec: VariantSpec) -> Artifact:
    """Apply the recipe's passes in order to the baseline."""
    workdir = ctx.run_dir / "models" / spec.name
    workdir.mkdir(parents=True, exist_ok=True)
    art = ctx.baseline
    for step, p in enumerate(spec.passes):
        pctx = PassContext(data=ctx.data, device=ctx.device, workdir=workdir, seed=ctx.cfg.seed,
                           fit_kwargs=fit_kwargs(ctx), step=step)
        art = p(art, pctx)
    if art.format == "torch" and art is not ctx.baseline:
        art.files = [_save_torch(art.model, workdir)]
    return art


def _save_torch(model: torch.nn.Module, workdir: Path) -> Path:
    path = workdir / "model.safetensors"
    try:
        save_weights(model, path)
    except (TypeError, RuntimeError, AttributeError):  # quantized modules hold packed params
        path.unlink(missing_ok=True)
        path = workdir / "model.pt"
        torch.save(model.state_dict(), path)
    return path


def _source_params(art: Artifact, ctx: RunContext) -> tuple[int, int]:
    """Parameter counts: of the model itself (torch) or of the torch model an ONNX file
    came from (the last torch stage in its lineage)."""
    if art.model is not None:
        try:
            return count_params(art.model)
        except (RuntimeError, TypeError):
            pass
    for rec in reversed(art.records):
        info = rec["info"]
        if "params" in info:
            return info["params"], info.get("nonzero_params", info["params"])
        if "params_after" in info:
            return info["params_after"], info["params_after"]
    return count_params(ctx.baseline.model)


def measure(ctx: RunContext, res: VariantResult, art: Artifact, overrides: dict | None = None) -> None:
    """Evaluate one artifact: predictions in three calibration views, metrics, efficiency."""
    cfg, d = ctx.cfg, ctx.data
    t0 = time.perf_counter()
    runner = make_runner(ctx, art, overrides)
    load_s = time.perf_counter() - t0
    res.runner = runner.describe()
    res.runner_obj = runner
    res.backend = res.runner["backend"]
    bs, served = cfg.eval.batch_size, serving_batch(cfg)
    test = evaluate(runner, d.x["test"], d.y["test"], batch_size=served)
    if test.problem:
        raise VariantFailed(f"invalid outputs on the test split: {test.problem}")
    calib_logits = evaluate(runner, d.x["calib"], d.y["calib"], batch_size=served).logits
    train_eval = evaluate(runner, d.x["train"], d.y["train"], batch_size=bs)
    res.serving = batch_invariance(runner, d.x["test"], d.y["test"], test.logits, cfg, d.index["test"])
    if res.serving and res.serving["changed"]:
        inv = res.serving
        res.flags.append(f"predictions depend on the batch: {inv['changed']} of {inv['items']} test items "
                         f"change between batch 1 and batches of {inv['batch_size']} (accuracy "
                         f"{inv['accuracy_online']:.4f} online vs {inv['accuracy_batch']:.4f} in batches)")

    views = {"uncalibrated": test.logits.softmax(1)}
    fitted = None
    if ctx.calibrator_factory is not None:
        fitted = ctx.calibrator_factory().fit(calib_logits, d.y["calib"])
        if res.name == BASELINE:
            ctx.baseline_calibrator = fitted
        views["carried"] = ctx.baseline_calibrator(test.logits)
        views["refit"] = fitted(test.logits)
        res.calibrator = {"refit": fitted.state(), "carried": ctx.baseline_calibrator.state()}
        if getattr(fitted, "warning", None):
            res.flags.append(f"calibrator ({fitted.name}): {fitted.warning}")
    else:
        views["carried"] = views["refit"] = views["uncalibrated"]
    chosen = views[cfg.eval.calibration]
    bad = check_probs(chosen)
    if bad:
        raise VariantFailed(f"invalid probabilities after calibration: {bad}")
    per_view = {v: classification_metrics(p, test.labels) for v, p in views.items()}  # once per view
    res.evaluation = Evaluation(test.logits, chosen, test.labels, per_view[cfg.eval.calibration])
    keep = ("accuracy", "nll", "brier", "ece", "ece_adaptive", "mce", "classwise_ece")
    res.calibration = {v: {k: m[k] for k in keep} for v, m in per_view.items()}
    res.per_class_recall = per_class_recall(chosen, test.labels)
    params, nonzero = _source_params(art, ctx)
    m = dict(res.evaluation.metrics)
    m["train_accuracy"] = train_eval.metrics["accuracy"]
    m["generalization_gap"] = m["train_accuracy"] - m["accuracy"]
    m.update({"params": params, "nonzero_params": nonzero,
              "size_bytes": sum(p.stat().st_size for p in art.files), "load_s": load_s})
    if cfg.eval.efficiency and cfg.eval.memory:
        m.update(peak_memory(runner, d.x["test"], bs))
    res.metrics = m
    if d.group is not None:
        from mlbench.analysis.fairness import group_metrics
        res.groups = group_metrics(chosen.argmax(1), test.labels, d.group["test"], d.meta.num_classes)
        if "worst_group_accuracy" in res.groups:
            m["worst_group_accuracy"] = res.groups["worst_group_accuracy"]
            m["demographic_parity_difference"] = res.groups["demographic_parity_difference"]
            m["equalized_odds_difference"] = res.groups["equalized_odds_difference"]


def variants(ctx: RunContext) -> None:
    base = VariantResult(BASELINE, "trained model, torch fp32", [], artifact=ctx.baseline,
                         artifact_path=f"models/{BASELINE}/model.safetensors")
    measure(ctx, base, ctx.baseline)
    ctx.results[BASELINE] = base
    console.print(f"  [green]✓[/] {BASELINE}: accuracy {base.metrics['accuracy']:.4f}")
    for spec in ctx.specs:
        res = VariantResult(spec.name, spec.description, [p.name for p in spec.passes])
        t0 = time.perf_counter()
        try:
            art = build(ctx, spec)
            res.artifact = art
            res.build_s = time.perf_counter() - t0
            res.artifact_path = str(art.files[0].relative_to(ctx.run_dir))
            measure(ctx, res, art, spec.runner)
            drop = base.metrics["accuracy"] - res.metrics["accuracy"]
            if drop > ctx.cfg.eval.accuracy_drop_flag:
                res.flags.append(f"accuracy drops by {100 * drop:.1f} points against the baseline")
            if "prune_unstructured" in res.recipe:
                res.flags.append("unstructured sparsity: dense kernels, so no speedup is expected")
            shown = [f for f in res.flags if not f.startswith("calibrator")]  # those are in the report
            console.print(f"  [green]✓[/] {spec.name}: accuracy {res.metrics['accuracy']:.4f}"
                          + (f" [yellow]({'; '.join(shown)})[/]" if shown else ""))
        except Exception as e:  # one broken variant must not lose the others
            res.status, res.metrics = "failed", {}
            res.backend = "onnxruntime" if any(p.name.startswith(("onnx", "ort")) for p in spec.passes) else "torch"
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            res.error = first if isinstance(e, MlbenchError) else f"{type(e).__name__}: {first}"
            log.debug("variant %s failed", spec.name, exc_info=True)
            console.print(f"  [red]✗[/] {spec.name}: {res.error}")
        ctx.results[spec.name] = res
    for res in ctx.ok.values():
        if res.artifact is not None and res.artifact.format == "onnx":
            write_onnx_metadata(ctx, res)


def write_onnx_metadata(ctx: RunContext, res: VariantResult) -> Path:
    """``<model>.json`` beside an ONNX artifact: everything a deployer needs to use it."""
    from mlbench.export import onnx_metadata
    from mlbench.results import write_json
    art = res.artifact
    path = art.path.with_suffix(".json")
    write_json(path, onnx_metadata(art, ctx.data.meta, ctx.baseline.id, res.calibrator["refit"]
                                   if res.calibrator else None, ctx.cfg))
    return path


# --------------------------------------------------------------------------- compare

def compare(ctx: RunContext) -> None:
    """Paired deltas against the baseline, per-class changes, agreement and exemplars."""
    from mlbench.analysis.fairness import exemplars, flips
    from mlbench.analysis.stats import paired_deltas
    from mlbench.analysis.timing import round_ratio
    base = ctx.results[BASELINE]
    d = ctx.data
    group = d.group["test"] if d.group is not None else None
    bs = ctx.cfg.eval.bootstrap
    pb = base.evaluation.probs
    preds = {}
    for name, res in ctx.ok.items():
        pv = res.evaluation.probs
        preds[name] = pv.argmax(1)
        res.agreement = flips(pb.argmax(1), pv.argmax(1), d.y["test"], d.index["test"])
        res.metrics["disagreement"] = res.agreement["disagreement"]
        res.per_class_recall_delta = [None if a is None or b is None else a - b
                                      for a, b in zip(res.per_class_recall, base.per_class_recall)]
        if name == BASELINE:
            continue
        res.deltas = paired_deltas(pb, pv, d.y["test"], group if group is not None and
                                   base.groups and "error" not in base.groups else None,
                                   n_resamples=bs.resamples, seed=ctx.cfg.seed, level=bs.level,
                                   device=ctx.device)
        for k in ("latency_p50_ms", "throughput_sps", "size_bytes"):
            if k in res.metrics and k in base.metrics:
                res.deltas[k + "_ratio"] = {"value": res.metrics[k] / base.metrics[k] if base.metrics[k] else None,
                                            "ci_low": None, "ci_high": None}
                rounds_key = {"latency_p50_ms": "latency_p50_ms_by_round",
                              "throughput_sps": "throughput_sps_by_round"}.get(k)
                if rounds_key and res.timing.get(rounds_key) and base.timing.get(rounds_key):
                    res.deltas[k + "_ratio"].update(round_ratio(res.timing[rounds_key], base.timing[rounds_key]))
    ctx.extra["exemplars"] = exemplars(preds, BASELINE, d.y["test"], d.index["test"])
    ctx.extra["bootstrap"] = {"resamples": bs.resamples, "level": bs.level, "seed": ctx.cfg.seed,
                              "method": "paired percentile bootstrap over test items"}


def seeds(ctx: RunContext) -> None:
    """Optional: retrain the baseline under other seeds and report the spread of its metrics."""
    extra = list(ctx.cfg.get("seeds") or [])
    if not extra:
        return
    rows = {ctx.cfg.seed: ctx.results[BASELINE].metrics}
    for s in extra:
        if s in rows:
            continue
        model, _, _ = train_baseline(ctx, seed=int(s))
        runner = TorchRunner(model, ctx.device)
        ev = evaluate(runner, ctx.data.x["test"], ctx.data.y["test"], batch_size=ctx.cfg.eval.batch_size)
        rows[s] = ev.metrics
    keys = ("accuracy", "f1_macro", "nll", "brier", "ece")
    spread = {}
    for k in keys:
        vals = torch.tensor([r[k] for r in rows.values()], dtype=torch.float64)
        spread[k] = {"mean": float(vals.mean()), "std": float(vals.std()) if len(vals) > 1 else 0.0,
                     "min": float(vals.min()), "max": float(vals.max())}
    ctx.extra["seed_spread"] = {"seeds": list(rows), "metrics": spread,
                                "note": "uncalibrated test metrics of baselines retrained under each seed"}


# --------------------------------------------------------------------------- write

def summary(ctx: RunContext) -> dict[str, Any]:
    d = ctx.data
    sizes = d.sizes()
    return {
        "schema_version": SCHEMA_VERSION,
        "mlbench_version": __version__,
        "run": {"id": ctx.run_dir.name, "started": ctx.started, "wall_s": time.perf_counter() - ctx.t0,
                "config": OmegaConf.to_container(ctx.cfg, resolve=True), "env": ctx.env,
                "config_hash": content_hash(OmegaConf.to_container(ctx.cfg, resolve=True))},
        "data": {"name": d.meta.name, "num_classes": d.meta.num_classes, "n_train": sizes["train"],
                 "n_val": sizes["val"], "n_calib": sizes["calib"], "n_test": sizes["test"],
                 "input_shape": list(d.meta.input_shape), "modality": d.meta.modality,
                 "class_names": d.meta.class_names, "group": d.meta.group_name,
                 "content_hash": ctx.data_hash},
        "baseline": BASELINE,
        "baseline_training": {k: v for k, v in ctx.baseline_info.items() if k != "history"},
        "calibration_view": ctx.cfg.eval.calibration,
        "serving": {"mode": ctx.cfg.deployment.serving, "batch_size": serving_batch(ctx.cfg),
                    "note": "quality metrics (test and calib splits, stress) are measured at this batch size; "
                            "train accuracy at eval.batch_size"},
        "variants": {name: res.summary() for name, res in ctx.results.items()},
        **{k: v for k, v in ctx.extra.items() if not k.startswith("_") and k != "stress_skipped"},
    }


def write(ctx: RunContext) -> dict[str, Any]:
    from mlbench.analysis.report import write_report
    from mlbench.results import save_predictions, write_json
    d = ctx.data
    for name, res in ctx.ok.items():
        save_predictions(ctx.run_dir / "predictions" / f"{name}.npz", res.evaluation.probs,
                         res.evaluation.labels, d.index["test"], res.evaluation.logits,
                         d.group["test"] if d.group is not None else None)
    s = summary(ctx)
    analyze(s, ctx.cfg, ctx.run_dir)
    if (ctx.run_dir / "plots" / "pareto.png").is_file():
        ctx.extra.setdefault("plots", []).append("plots/pareto.png")
    write_report(ctx, s)
    s["run"]["wall_s"] = time.perf_counter() - ctx.t0
    write_json(ctx.run_dir / "summary.json", s)
    if ctx.cfg.analysis.history:
        import sqlite3

        from mlbench.analysis.history import record
        db = Path(ctx.cfg.paths.history_db)
        try:
            record(db, s, ctx.run_dir)
        except (sqlite3.Error, OSError, RuntimeError) as e:  # history is secondary: the run stands
            log.warning("run history not recorded in %s (%s); the run's results are complete", db,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
    return s


def stress(ctx: RunContext) -> None:
    from mlbench.stress.stage import stress as run_stress
    run_stress(ctx)


def analyze(summary: dict, cfg: DictConfig, run_dir: Path) -> None:
    """Requirements pass/fail per variant, the recommended variant, and the Pareto front."""
    from mlbench.analysis.pareto import pareto_front, pareto_plot
    from mlbench.analysis.requirements import check_requirements, recommend
    r = cfg.requirements
    checks = OmegaConf.to_container(r.checks, resolve=True, enum_to_str=True)
    results = check_requirements(summary, checks, r.use_bound)
    for name, res in results.items():
        summary["variants"][name]["requirements"] = res
    breakers = [(a.metric.value, a.mode) for a in r.tie_breakers]
    summary["recommended"] = recommend(summary, results, r.objective.value, r.objective_mode, breakers)
    axes = [(a.metric.value, a.mode) for a in cfg.analysis.pareto_axes]
    points = {n: v["metrics"] for n, v in summary["variants"].items() if v["status"] == "ok"}
    front = pareto_front(points, axes)
    summary["pareto"] = {"axes": [{"metric": m, "mode": md} for m, md in axes], "front": front}
    if len(axes) >= 2 and points:
        pareto_plot(points, axes, front, run_dir / "plots" / "pareto.png")


def objective(summary: dict, cfg: DictConfig) -> float | None:
    """The number a sweeper optimises (see ``analysis.objective``)."""
    o = cfg.analysis.objective
    v = summary["variants"].get(o.variant)
    if v is None or v["status"] != "ok":
        return float(o.penalty)
    value = v["metrics"].get(o.metric.value)
    if o.max_degradation is not None and o.variant != summary["baseline"]:
        from mlbench.analysis.vocabulary import HIGHER_IS_BETTER
        key = o.constraint_metric.value
        b, x = summary["variants"][summary["baseline"]]["metrics"][key], v["metrics"][key]
        degradation = b - x if HIGHER_IS_BETTER[key] else x - b
        if degradation > o.max_degradation:
            return float(o.penalty)
    return None if value is None else float(value)


def efficiency(ctx: RunContext) -> None:
    """Latency and throughput of every variant, timed in interleaved rounds (see
    ``compare_efficiency``) so that they are compared under the same machine conditions."""
    cfg = ctx.cfg
    if not cfg.eval.efficiency:
        return
    bs = cfg.eval.batch_size
    lat, tp = cfg.eval.latency, cfg.eval.throughput
    runners = {n: r.runner_obj for n, r in ctx.ok.items()}
    figures = compare_efficiency(runners, ctx.data.x["test"], sorted({*tp.batch_sizes, bs}), warmup=lat.warmup,
                                 min_calls=lat.min_calls, min_time_s=lat.min_time_s,
                                 throughput_time_s=tp.min_time_s, rounds=cfg.eval.timing.rounds,
                                 latency_threads=lat.threads, throughput_threads=cfg.backend.threads,
                                 tolerance=cfg.eval.timing.tolerance, ratio_batch=bs)
    for name, f in figures["runners"].items():
        res = ctx.results[name]
        res.throughput = f.pop("throughput_sps_by_batch")
        res.timing = {k: f.pop(k) for k in ("latency_p50_ms_by_round", "throughput_sps_by_round")}
        res.metrics.update(f)
        res.metrics["throughput_sps"] = res.throughput[str(bs)]
        res.metrics["throughput_batch_size"] = bs
    ctx.extra["timing"] = figures["timing"]


STAGES: list[Callable[[RunContext], None]] = [setup, load_data, baseline, variants, efficiency, compare, stress,
                                              seeds]


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run every stage and write the run directory; returns the summary."""
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    for stage in STAGES:
        stage(ctx)
    return write(ctx)

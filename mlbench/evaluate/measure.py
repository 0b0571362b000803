"""Measuring one variant: predictions in three calibration views, the metric table's
quality metrics, the batch-invariance check, model facts and memory. Timing is separate
(``efficiency.compare_efficiency``) because variants are timed together, interleaved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mlbench.data import DataBundle
from mlbench.errors import VariantFailed
from mlbench.evaluate import registry
from mlbench.evaluate.efficiency import peak_memory
from mlbench.evaluate.fairness import group_metrics
from mlbench.evaluate.loop import Evaluation, Settings, evaluate
from mlbench.evaluate.metrics import (
    accuracy,
    check_probs,
    classification_metrics,
    per_class_recall,
)
from mlbench.models import count_params
from mlbench.records import VariantRecord


def batch_invariance(runner, x: torch.Tensor, y: torch.Tensor, served: torch.Tensor, settings: Settings,
                     index: torch.Tensor) -> dict[str, Any] | None:
    """Predictions on the first ``deployment.invariance_items`` test items at batch 1 against
    in batches of ``eval.batch_size``; ``served`` are the logits in the serving mode. A model
    whose outputs depend on the other items of its batch (dynamic quantization picks one
    activation scale per batch) changes predictions here."""
    n = min(settings.invariance_items, len(y))
    if n == 0 or settings.batch_size == 1:
        return None
    online = settings.serving == "online"
    other = evaluate(runner, x[:n], y[:n], batch_size=settings.batch_size if online else 1, metrics=False).logits
    at1, atn = (served[:n], other) if online else (other, served[:n])
    p1, pn = at1.argmax(1), atn.argmax(1)
    changed = (p1 != pn).nonzero().flatten()
    finite = torch.isfinite(at1).all() and torch.isfinite(atn).all()
    return {"items": n, "batch_size": settings.batch_size, "changed": len(changed),
            "changed_index": index[:n][changed].tolist()[:50],
            "accuracy_online": float((p1 == y[:n]).double().mean()),
            "accuracy_batch": float((pn == y[:n]).double().mean()),
            "max_abs_logit_diff": float((at1 - atn).abs().max()) if finite and n else None}


def model_params(art: Any) -> tuple[int, int]:
    """Parameter counts: of the torch model itself, or the artifact's recorded facts (an
    ONNX file's torch source; a quantized module whose packed weights cannot be counted)."""
    if art.model is not None:
        try:
            return count_params(art.model)
        except (RuntimeError, TypeError):
            pass
    if art.facts.params is None:
        raise VariantFailed("the artifact records no parameter count")
    return art.facts.params, art.facts.nonzero_params if art.facts.nonzero_params is not None else art.facts.params


def measure(rec: VariantRecord, art: Any, runner: Any, data: DataBundle, settings: Settings,
            calibrator_factory: Callable[[], Any] | None, carried: Any | None) -> tuple[Evaluation, Any | None]:
    """Evaluate one artifact with ``runner`` and fill ``rec``. ``carried`` is the baseline's
    fitted calibrator (None while measuring the baseline itself). Returns the test outputs in
    the chosen calibration view and this variant's own fitted calibrator."""
    d = data
    bs, served = settings.batch_size, settings.quality_batch
    test = evaluate(runner, d.x["test"], d.y["test"], batch_size=served)
    if test.problem:
        raise VariantFailed(f"invalid outputs on the test split: {test.problem}")
    calib_logits = evaluate(runner, d.x["calib"], d.y["calib"], batch_size=served, metrics=False).logits
    train_eval = evaluate(runner, d.x["train"], d.y["train"], batch_size=bs, metrics=False)  # accuracy only
    rec.serving = batch_invariance(runner, d.x["test"], d.y["test"], test.logits, settings, d.index["test"])
    if rec.serving and rec.serving["changed"]:
        inv = rec.serving
        rec.flags.append(f"predictions depend on the batch: {inv['changed']} of {inv['items']} test items "
                         f"change between batch 1 and batches of {inv['batch_size']} (accuracy "
                         f"{inv['accuracy_online']:.4f} online vs {inv['accuracy_batch']:.4f} in batches)")

    views = {"uncalibrated": test.logits.softmax(1)}
    fitted = None
    if calibrator_factory is not None:
        fitted = calibrator_factory().fit(calib_logits, d.y["calib"])
        carried = carried or fitted
        views["carried"] = carried(test.logits)
        views["refit"] = fitted(test.logits)
        rec.calibrator = {"refit": fitted.state(), "carried": carried.state()}
        if getattr(fitted, "warning", None):
            rec.flags.append(f"calibrator ({fitted.name}): {fitted.warning}")
    else:
        views["carried"] = views["refit"] = views["uncalibrated"]
    chosen = views[settings.calibration]
    bad = check_probs(chosen)
    if bad:
        raise VariantFailed(f"invalid probabilities after calibration: {bad}")
    per_view = {v: classification_metrics(p, test.labels) for v, p in views.items()}  # once per view
    evaluation = Evaluation(test.logits, chosen, test.labels, per_view[settings.calibration])
    keep = registry.names(tag=registry.CALIBRATION)
    rec.calibration = {v: {k: m[k] for k in keep} for v, m in per_view.items()}
    rec.per_class_recall = per_class_recall(chosen, test.labels)
    params, nonzero = model_params(art)
    m = dict(evaluation.metrics)
    if train_eval.problem:
        raise VariantFailed(f"invalid outputs on the train split: {train_eval.problem}")
    m["train_accuracy"] = accuracy(train_eval.probs, train_eval.labels)
    m["generalization_gap"] = m["train_accuracy"] - m["accuracy"]
    m.update({"params": params, "nonzero_params": nonzero, "size_bytes": sum(p.stat().st_size for p in art.files)})
    if settings.memory:
        m.update(peak_memory(runner, d.x["test"], bs))
    rec.metrics = m
    if d.group is not None:
        rec.groups = group_metrics(chosen.argmax(1), test.labels, d.group["test"], d.meta.num_classes)
        for k in registry.names(source=registry.GROUPS):
            if k in rec.groups:
                m[k] = rec.groups[k]
    return evaluation, fitted

"""The one evaluation loop: every variant, clean or perturbed, goes through here."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mlbench.backends import Runner
from mlbench.evaluate.metrics import check_probs, classification_metrics
from mlbench.process import release_memory

Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Calibrator = Callable[[torch.Tensor], torch.Tensor]  # logits -> probabilities


@dataclass
class Evaluation:
    """Per-example outputs (CPU, float32, in split order) and the metrics computed from them."""

    logits: torch.Tensor
    probs: torch.Tensor
    labels: torch.Tensor
    metrics: dict[str, float]
    problem: str | None = None  # set when the outputs are not valid probabilities


def predict_all(runner: Runner, x: torch.Tensor, batch_size: int,
                perturbation: Perturbation | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
    """Logits for every row of ``x``, batched, on the CPU. Inputs are staged once on the
    runner's device; a perturbation, if any, is applied per batch there."""
    x = x.to(runner.input_device)
    if y is not None:
        y = y.to(runner.input_device)
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if perturbation is not None:
            xb = perturbation(xb, y[i:i + batch_size])
        outs.append(runner.predict(xb))
    if len(outs) > 1:  # the batches' freed buffers back to the system (~1 ms), so that the next
        release_memory()  # pass's peak does not stack on them (figures unchanged)
    return torch.cat(outs).cpu() if outs else torch.empty(0)


def evaluate(runner: Runner, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             perturbation: Perturbation | None = None, calibrator: Calibrator | None = None,
             metrics: bool = True) -> Evaluation:
    """Run ``runner`` over a split and compute the core metrics.

    ``calibrator`` maps logits to probabilities (softmax when None). Metrics are
    computed from the float32 probabilities that are saved, so they can be
    recomputed from ``predictions/*.npz`` exactly; ``metrics=False`` skips them (callers that
    read only the outputs).
    """
    logits = predict_all(runner, x, batch_size, perturbation, y).float()
    probs = (calibrator(logits) if calibrator is not None else logits.softmax(1)).float()
    labels = y.cpu().long()
    problem = check_probs(probs)
    found = {} if problem or not metrics else classification_metrics(probs, labels)
    return Evaluation(logits=logits, probs=probs, labels=labels, metrics=found, problem=problem)


@dataclass(frozen=True)
class Settings:
    """How every variant is measured, resolved once from the config at set-up
    (``mlbench.components.settings_from``): evaluation code reads this, never the config.

    ``serving``: ``online`` (one request at a time) or ``batch``; ``batch_size``: the batch of
    ``batch`` serving, of throughput and of the train-split pass; ``invariance_items``: test
    items of the batch-invariance check (0: off); ``calibration``: the view that fills the
    metrics; ``memory``: peak memory measured."""

    serving: str = "batch"
    batch_size: int = 256
    invariance_items: int = 2000
    calibration: str = "uncalibrated"
    memory: bool = True

    @property
    def quality_batch(self) -> int:
        """The batch quality metrics are measured at: 1 online, ``batch_size`` in batches."""
        return 1 if self.serving == "online" else self.batch_size


def robust_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy where a prediction with any non-finite logit counts as wrong."""
    finite = torch.isfinite(logits).all(1)
    pred = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -math.inf)).argmax(1)
    return float(((pred == y) & finite).double().mean())

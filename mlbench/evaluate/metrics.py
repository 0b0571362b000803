"""Classification and calibration metrics: the definitions mlbench reports.

Every number here can be recomputed from ``predictions/<variant>.npz``
(``probs``, ``labels``). torchmetrics computes accuracy, macro F1 and per-class
recall. The calibration numbers are written here, each in a few lines:
torchmetrics has no multiclass NLL or Brier on probabilities, no equal-mass or
class-wise ECE, and its equal-width ECE puts confidences of exactly 1.0 in a
bin of their own where our definition (docs/metrics.md) puts them in the last bin.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_recall,
)

from mlbench.evaluate.registry import METRICS, PREDICTIONS, names

N_BINS = 15
PROB_FLOOR = 1e-12  # NLL clamps the true-class probability here so a hard zero stays finite


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (natural log) of the true class, p clamped at 1e-12."""
    p = probs.double().gather(1, labels[:, None]).squeeze(1).clamp_min(PROB_FLOOR)
    return float(-p.log().mean())


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over examples of the squared error summed over classes; range [0, 2]."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return float(((probs.double() - onehot) ** 2).sum(1).mean())


def confidence_bins(conf: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """Bin index of each confidence: equal-width bins [k/B, (k+1)/B), the last one closed,
    so a confidence of exactly 1.0 belongs to the last bin."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    return torch.bucketize(conf.contiguous(), edges[1:-1].contiguous(), right=True)


def _bin_gaps(probs: torch.Tensor, labels: torch.Tensor, n_bins: int):
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    bins = confidence_bins(conf, n_bins)
    count = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, torch.ones_like(conf))
    gap = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, conf - correct)
    return gap, count


def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Top-label ECE: 15 equal-width bins on [0, 1], L1, weighted by bin mass (Guo et al.
    2017): sum over bins of |sum(confidence - correct)| / N.

    Same as torchmetrics' ``MulticlassCalibrationError(norm='l1')`` except that
    torchmetrics gives confidences of exactly 1.0 a bin of their own; here they
    belong to the last bin, as our definition says (saturated softmax outputs
    make this matter)."""
    gap, _ = _bin_gaps(probs, labels, n_bins)
    return float(gap.abs().sum() / len(labels))


def mce(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Maximum calibration error: the largest |accuracy - confidence| over non-empty bins
    (bins as in :func:`ece`)."""
    gap, count = _bin_gaps(probs, labels, n_bins)
    nonempty = count > 0
    return float((gap[nonempty].abs() / count[nonempty]).max()) if nonempty.any() else 0.0


def ece_adaptive(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Top-label ECE with equal-mass bins: examples sorted by confidence and cut into
    ``n_bins`` groups whose sizes differ by at most one; L1, weighted by bin mass."""
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    order = conf.argsort()
    total = 0.0
    for chunk in torch.tensor_split(order, min(n_bins, len(order))):
        if len(chunk):
            total += len(chunk) * abs(float(correct[chunk].mean() - conf[chunk].mean()))
    return total / len(labels)


def classwise_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Class-wise ECE (Kull et al. 2019): for each class k, the equal-width-binned L1
    calibration error of p_k against 1[y = k]; averaged over classes."""
    probs = probs.double()
    total = 0.0
    for k in range(probs.shape[1]):
        p = probs[:, k]
        hit = (labels == k).double()
        bins = confidence_bins(p, n_bins)
        gap = torch.zeros(n_bins, dtype=p.dtype).index_add_(0, bins, p - hit)
        total += float(gap.abs().sum()) / len(p)
    return total / probs.shape[1]


def per_class_recall(probs: torch.Tensor, labels: torch.Tensor) -> list[float | None]:
    """Recall of each class; ``None`` for a class with no example in ``labels``."""
    c = probs.shape[1]
    rec = multiclass_recall(probs.argmax(1), labels, c, average=None)
    present = torch.bincount(labels, minlength=c) > 0
    return [float(r) if ok else None for r, ok in zip(rec, present)]


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of items whose top class is the label (torchmetrics, micro average)."""
    return float(multiclass_accuracy(probs.argmax(1), labels, probs.shape[1], average="micro"))


def f1_macro(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Unweighted mean over classes of per-class F1 (torchmetrics)."""
    return float(multiclass_f1_score(probs.argmax(1), labels, probs.shape[1], average="macro"))


def worst_class_recall(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Lowest recall over the classes present in ``labels``."""
    rec = [r for r in per_class_recall(probs, labels) if r is not None]
    return min(rec) if rec else math.nan


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Every metric of the table computed from predictions (``source=predictions``)."""
    return {n: METRICS[n].function(probs, labels) for n in names(source=PREDICTIONS)}


def check_probs(probs: torch.Tensor, atol: float = 1e-3) -> str | None:
    """Why ``probs`` is not a valid probability table (NaN, negative, rows not summing
    to one), or None when it is."""
    if not torch.isfinite(probs).all():
        return f"{int((~torch.isfinite(probs)).any(1).sum())} rows with NaN/inf probabilities"
    if (probs < 0).any():
        return "negative probabilities"
    worst = float((probs.double().sum(1) - 1).abs().max()) if len(probs) else 0.0
    if worst > atol:
        return f"probability rows do not sum to one (worst off by {worst:.3g})"
    return None

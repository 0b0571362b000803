"""Post-hoc calibrators: ``fit(logits, labels)`` on the calib split, then ``calibrator(logits) -> probs``.

Temperature and vector scaling minimise NLL with L-BFGS (float64). Isotonic
regression is scikit-learn's, fitted one-vs-rest on softmax probabilities and
renormalised per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mlbench.errors import MlbenchError


class Calibrator:
    name = "calibrator"

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> "Calibrator":
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Fitted parameters, as JSON-friendly values (they go into model metadata)."""
        raise NotImplementedError


def _lbfgs(params: list[torch.Tensor], loss_fn, max_iter: int) -> None:
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def _ill_posed(logits: torch.Tensor, labels: torch.Tensor, min_errors: int = 2) -> str | None:
    errors = int((logits.argmax(1) != labels.cpu()).sum())
    if errors < min_errors:
        # with (almost) no errors the NLL keeps falling as confidence grows: no useful minimum
        return f"fit unreliable: {errors} error(s) in {len(labels)} calib examples"
    return None


class TemperatureScaling(Calibrator):
    """One scalar T > 0: probs = softmax(logits / T), T minimising calib NLL (Guo et al. 2017).
    Top-1 predictions, hence accuracy, do not change. T is kept in [min_t, max_t]
    for numerical safety; ``warning`` is set when the calib split has fewer than two
    errors (the NLL then has no useful minimum and T runs toward ``min_t``)."""

    name = "temperature"

    def __init__(self, max_iter: int = 100, min_t: float = 0.01, max_t: float = 100.0):
        if not 0 < min_t < max_t:
            raise MlbenchError(f"temperature bounds must satisfy 0 < min_t < max_t, got {min_t}, {max_t}")
        self.max_iter, self.min_t, self.max_t = max_iter, min_t, max_t
        self.temperature = 1.0
        self.warning: str | None = None

    def fit(self, logits, labels):
        z, y = logits.double().cpu(), labels.cpu()
        lo, hi = np.log(self.min_t), np.log(self.max_t)
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        _lbfgs([log_t], lambda: nn.functional.cross_entropy(z / log_t.clamp(lo, hi).exp(), y), self.max_iter)
        self.temperature = float(log_t.detach().clamp(lo, hi).exp())
        self.warning = _ill_posed(z, y)
        return self

    def __call__(self, logits):
        return (logits.float() / self.temperature).softmax(1)

    def state(self):
        return {"method": self.name, "temperature": self.temperature,
                "formula": "probs = softmax(logits / temperature)", "warning": self.warning}


class VectorScaling(Calibrator):
    """Per-class scale and bias: probs = softmax(logits * w + b), fitted by NLL
    (Guo et al. 2017). May change top-1 predictions."""

    name = "vector"

    def __init__(self, max_iter: int = 200, l2: float = 1e-4):
        self.max_iter, self.l2 = max_iter, l2
        self.w: torch.Tensor | None = None
        self.b: torch.Tensor | None = None
        self.warning: str | None = None

    def fit(self, logits, labels):
        z, y = logits.double().cpu(), labels.cpu()
        c = z.shape[1]
        w = torch.ones(c, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
        _lbfgs([w, b], lambda: nn.functional.cross_entropy(z * w + b, y)
               + self.l2 * ((w - 1) ** 2).sum() + self.l2 * (b ** 2).sum(), self.max_iter)
        self.w, self.b = w.detach().float(), b.detach().float()
        self.warning = _ill_posed(z, y)
        return self

    def __call__(self, logits):
        return (logits.float() * self.w + self.b).softmax(1)

    def state(self):
        return {"method": self.name, "scale": self.w.tolist(), "bias": self.b.tolist(),
                "formula": "probs = softmax(logits * scale + bias), per class", "warning": self.warning}


class IsotonicCalibration(Calibrator):
    """One-vs-rest isotonic regression (scikit-learn) on each class's softmax probability,
    then each row renormalised to sum to one (a row of zeros becomes uniform)."""

    name = "isotonic"

    def __init__(self):
        self.models: list[Any] = []

    def fit(self, logits, labels):
        from sklearn.isotonic import (
            IsotonicRegression,  # scikit-learn only for isotonic calibration
        )
        p = logits.double().softmax(1).numpy()
        y = labels.cpu().numpy()
        self.models = [IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                       .fit(p[:, k], (y == k).astype(np.float64)) for k in range(p.shape[1])]
        return self

    def __call__(self, logits):
        p = logits.double().softmax(1).numpy()
        q = np.stack([m.predict(p[:, k]) for k, m in enumerate(self.models)], axis=1)
        s = q.sum(1, keepdims=True)
        q = np.where(s > 0, q / np.where(s > 0, s, 1), 1.0 / q.shape[1])
        return torch.from_numpy(q).float()

    def state(self):
        return {"method": self.name, "classes": len(self.models),
                "formula": "p = softmax(logits); q[k] = interp(p[k], thresholds[k][0], thresholds[k][1]); "
                           "probs = q / sum(q) (uniform where sum(q) = 0)",
                "thresholds": [[m.X_thresholds_.tolist(), m.y_thresholds_.tolist()] for m in self.models]}


__all__ = ["Calibrator", "TemperatureScaling", "VectorScaling", "IsotonicCalibration"]

"""Adversarial examples with captum's FGSM and PGD (L-inf and L2), in the model's input space.

White-box on differentiable torch variants; every other variant (ONNX, int8) is
evaluated on the examples crafted on the float baseline (transfer), labelled so.
The baseline's examples are crafted once per eps and reused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mlbench.data import DataMeta
from mlbench.errors import MlbenchError
from mlbench.stress.base import Stressor


def _pgd_class():
    """captum's PGD with its L2 random start fixed: captum 0.9 draws the radii on the CPU and
    broadcasts them over the last input dimension instead of the batch, which fails for
    image batches. The override draws one radius per example, on the input's device."""
    import torch.nn.functional as F
    from captum.robust import PGD

    class FixedPGD(PGD):
        def _random_point(self, center, radius, norm, mask):
            if norm != "L2":
                return super()._random_point(center, radius, norm, mask)
            u = torch.randn_like(center)
            unit = F.normalize(u.view(u.size(0), -1)).view(u.size())
            d = center[0].numel()
            r = torch.rand(u.size(0), device=center.device, dtype=center.dtype) ** (1.0 / d) * radius
            return center + r.view(-1, *([1] * (center.dim() - 1))) * unit * mask

    return FixedPGD


class Attack(Stressor):
    """``method``: ``fgsm`` (one signed-gradient step; for L2 one normalised-gradient step)
    or ``pgd`` (``steps`` projected steps of ``step_ratio * eps``, optional ``random_start``).
    ``norm``: ``Linf`` or ``L2``. ``eps``: radii in input units (pixels in [0, 1]; train-std
    units for tabular data)."""

    kind = "adversarial"

    def __init__(self, method: str = "fgsm", norm: str = "Linf", eps: Sequence[float] = (0.02, 0.05),
                 steps: int = 10, step_ratio: float = 0.25, random_start: bool = False,
                 batch_size: int = 256, when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        if method not in ("fgsm", "pgd"):
            raise MlbenchError(f"attack method must be fgsm or pgd, got {method!r}")
        if norm not in ("Linf", "L2"):
            raise MlbenchError(f"attack norm must be Linf or L2, got {norm!r}")
        if any(e < 0 for e in eps):
            raise MlbenchError(f"attack eps must be >= 0, got {list(eps)}")
        if steps < 1 or step_ratio <= 0:
            raise MlbenchError("attack needs steps >= 1 and step_ratio > 0")
        self.method, self.norm, self.eps = method, norm, [float(e) for e in eps]
        self.steps, self.step_ratio, self.random_start = steps, step_ratio, random_start
        self.batch_size = batch_size
        self.bounds = (-math.inf, math.inf)

    def describe(self) -> dict:
        return {"method": self.method, "norm": self.norm, "eps": self.eps,
                "steps": 1 if self.method == "fgsm" else self.steps,
                "step_size": "eps" if self.method == "fgsm" else f"{self.step_ratio} * eps",
                "random_start": self.random_start and self.method == "pgd",
                "bounds": list(self.bounds), "library": "captum.robust"}

    def fits(self, meta: DataMeta) -> str | None:
        if meta.input_range is None:
            return None
        lo, hi = meta.input_range
        limit = (hi - lo) if self.norm == "Linf" else (hi - lo) * math.sqrt(math.prod(meta.input_shape))
        too_big = [e for e in self.eps if e > limit]
        if too_big:
            return (f"eps {too_big} outside the input range [{lo}, {hi}] "
                    f"(largest meaningful {self.norm} radius: {limit:.4g})")
        return None

    def check(self, meta: DataMeta) -> bool:
        if meta.input_range is not None:
            self.bounds = meta.input_range
        why = self.fits(meta)
        if why is not None and "eps" in why:
            raise MlbenchError(f"stress.{self.name}: {why}")  # an eps error is never skipped
        return super().check(meta)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Adversarial inputs for ``model`` (on ``x``'s device), batch by batch."""
        from captum.robust import FGSM
        PGD = _pgd_class()

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return model(inp.to(dtype)).float()

        lo, hi = self.bounds
        out = []
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            for i in range(0, len(x), self.batch_size):
                xb, yb = x[i:i + self.batch_size].float().requires_grad_(), y[i:i + self.batch_size]
                if eps == 0:
                    out.append(xb.detach().clone())
                    continue
                if self.method == "fgsm" and self.norm == "Linf":
                    adv = FGSM(forward, lower_bound=lo, upper_bound=hi).perturb(xb, eps, yb)
                elif self.method == "fgsm":
                    adv = PGD(forward, lower_bound=lo, upper_bound=hi).perturb(
                        xb, eps, eps, 1, yb, random_start=False, norm="L2")
                else:
                    adv = PGD(forward, lower_bound=lo, upper_bound=hi).perturb(
                        xb, eps, self.step_ratio * eps, self.steps, yb,
                        random_start=self.random_start, norm=self.norm)
                out.append(adv.detach())
        return torch.cat(out)

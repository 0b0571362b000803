"""Adversarial examples with captum's FGSM and PGD (L-inf and L2), in the model's input space.

White-box on differentiable torch variants; every other variant (ONNX, int8) is
evaluated on the examples crafted on the float baseline (transfer), labelled so.
The baseline's examples are crafted once per eps and reused.

The loss is always stated (``loss``): ``ce``, cross-entropy on the logits (the
default), or ``margin``, the Carlini-Wagner margin ``max_{j != y} z_j - z_y``. captum's
own default, ``-log(output[y])``, assumes probabilities; applied to logits its gradient
flips sign once the true-class logit goes negative, the ascent stalls and robust
accuracy is overstated, so mlbench never uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlbench.data import DataMeta
from mlbench.errors import MlbenchError
from mlbench.models import batch_within
from mlbench.stress.base import InputStressor, condition_rows
from mlbench.text import Doc, delta_text

LOSSES = ("ce", "margin")
# an attack batch's activations at most this many bytes (a ResNet-18 of width 16 on 32×32 inputs
# keeps ~1.9 MB per item for its backward pass: 256 items were ~500 MB above the test set)
BATCH_ACTIVATION_BYTES = 96 << 20


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item cross-entropy of the logits (the attack ascends it)."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item Carlini-Wagner margin: the best wrong logit minus the true one (> 0: misclassified)."""
    z = logits.float()
    true = z.gather(1, y[:, None]).squeeze(1)
    wrong = z.scatter(1, y[:, None], -math.inf).amax(1)
    return wrong - true


def _captum_classes():
    """captum's FGSM and PGD with two fixes, kept here so that they are visible:

    - gradients of any size count: captum skips coordinates whose |gradient| is below
      1e-6 (``zero_thresh``), which leaves confidently classified items unattacked under
      cross-entropy (their gradients are tiny but point the right way);
    - L2 steps move along the normalised gradient (steepest ascent under L2); captum 0.9's
      PGD takes a signed (L-inf) step for L2 too. Its L2 random start also draws the radii
      on the CPU and broadcasts them over the last input dimension instead of the batch;
      the override draws one radius per example, on the input's device.
    """
    from captum.robust import FGSM, PGD  # captum is slow to import: on use

    class SignStep(FGSM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.zero_thresh = 0.0

    class L2Step(SignStep):
        def _perturb(self, inputs, grads, epsilon, targeted, masks):
            sign = -1 if targeted else 1
            out = []
            for g, inp, mask in zip(grads, inputs, masks):
                unit = F.normalize(g.reshape(g.size(0), -1), dim=1).view_as(g)
                out.append(inp + sign * epsilon * unit * mask)
            return tuple(out)

    class StatedPGD(PGD):
        def __init__(self, forward_func, loss_func, norm: str, lower_bound: float, upper_bound: float):
            super().__init__(forward_func, loss_func, lower_bound, upper_bound)
            self.fgsm = (L2Step if norm == "L2" else SignStep)(forward_func, loss_func)

        def _random_point(self, center, radius, norm, mask):
            if norm != "L2":
                return super()._random_point(center, radius, norm, mask)
            u = torch.randn_like(center)
            unit = F.normalize(u.view(u.size(0), -1)).view(u.size())
            d = center[0].numel()
            r = torch.rand(u.size(0), device=center.device, dtype=center.dtype) ** (1.0 / d) * radius
            return center + r.view(-1, *([1] * (center.dim() - 1))) * unit * mask

    return SignStep, StatedPGD


class Attack(InputStressor):
    """``method``: ``fgsm`` (one signed-gradient step; for L2 one normalised-gradient step)
    or ``pgd`` (``steps`` projected steps of ``step_ratio * eps``, optional ``random_start``).
    ``norm``: ``Linf`` or ``L2``. ``eps``: radii in input units (pixels in [0, 1]; train-std
    units for tabular data). ``loss``: ``ce`` (cross-entropy on logits) or ``margin``
    (Carlini-Wagner margin, the stronger choice for robust accuracy)."""

    kind = "adversarial"
    condition_key = "eps"
    crafted = True
    needs_gradients = True
    figure = ("robust_accuracy_vs_eps.png", "eps", False)

    def __init__(self, method: str = "fgsm", norm: str = "Linf", eps: Sequence[float] = (0.02, 0.05),
                 steps: int = 10, step_ratio: float = 0.25, random_start: bool = False,
                 loss: str = "ce", batch_size: int = 256, when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        if loss not in LOSSES:
            raise MlbenchError(f"attack loss must be one of {list(LOSSES)}, got {loss!r}")
        if method not in ("fgsm", "pgd"):
            raise MlbenchError(f"attack method must be fgsm or pgd, got {method!r}")
        if norm not in ("Linf", "L2"):
            raise MlbenchError(f"attack norm must be Linf or L2, got {norm!r}")
        if any(e < 0 for e in eps):
            raise MlbenchError(f"attack eps must be >= 0, got {list(eps)}")
        if steps < 1 or step_ratio <= 0:
            raise MlbenchError("attack needs steps >= 1 and step_ratio > 0")
        if batch_size < 1:
            raise MlbenchError(f"attack batch_size must be >= 1, got {batch_size}")
        self.method, self.norm, self.eps = method, norm, [float(e) for e in eps]
        self.steps, self.step_ratio, self.random_start = steps, step_ratio, random_start
        self.loss, self.batch_size = loss, batch_size
        self.bounds = (-math.inf, math.inf)

    def work(self, n: int, differentiable: bool) -> tuple[int, int]:
        """Scoring, plus each step's gradient where the attack is crafted on the variant itself."""
        steps = 1 if self.method == "fgsm" else self.steps
        k = len(self.conditions()) * n
        return k, k * steps if differentiable else 0

    def conditions(self) -> list[float]:
        return self.eps

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float, model: nn.Module | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.craft(model, x, y, eps, dtype)

    def describe(self) -> dict:
        return {"method": self.method, "norm": self.norm, "eps": self.eps,
                "steps": 1 if self.method == "fgsm" else self.steps,
                "step_size": "eps" if self.method == "fgsm" else f"{self.step_ratio} * eps",
                "random_start": self.random_start and self.method == "pgd",
                "loss": {"ce": "cross-entropy on logits", "margin": "margin max_{j!=y} z_j - z_y"}[self.loss],
                "bounds": list(self.bounds), "library": "captum.robust"}

    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict]], variants: dict[str, dict]) -> None:
        """Per attack: accuracy per eps with its paired change, white-box or transferred."""
        def cell(k: str, r: dict) -> str:
            d = r.get("delta_accuracy")
            mode = "" if r["mode"] == "white-box" else " (transfer)"
            return f"{k}: {r['accuracy']:.3f}{mode}" + (f" Δ {delta_text(d, 3)}" if d else "")

        for name, per_variant in sections.items():
            s0 = next(iter(per_variant.values()))
            doc.h3(f"{name} — {s0['method'].upper()} {s0['norm']}, {s0['steps']} step(s), step {s0['step_size']}, "
                   f"random start {s0['random_start']}, loss: {s0.get('loss', 'n/a')}")
            doc.table(["variant", "accuracy by eps"], condition_rows(per_variant, "eps", cell, numeric=True))

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
        """Adversarial inputs for ``model`` (on ``x``'s device), the whole of ``x``."""
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)  # filled batch by batch: no second copy
        i = 0
        for adv in self.batches(x, y, eps, model, dtype):
            out[i:i + len(adv)] = adv
            i += len(adv)
        return out

    def batches(self, x: torch.Tensor, y: torch.Tensor, eps: float, model: nn.Module | None = None,
                dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """Adversarial inputs for ``model`` (on ``x``'s device), one attack batch at a time, in
        order. The attack's random stream is seeded once and carried from batch to batch,
        apart from the caller's, so the batches are the same whether kept or scored as they come."""
        FGSM, PGD = _captum_classes()
        loss = cross_entropy_loss if self.loss == "ce" else margin_loss

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return model(inp.to(dtype)).float()

        lo, hi = self.bounds
        if len(x) == 0:
            return
        bs = self.batch_for(model, x[:1].to(dtype))
        cuda = [x.device] if x.device.type == "cuda" else []
        state: tuple | None = None  # the attack's generators between batches (CPU, and the CUDA device)
        for i in range(0, len(x), bs):
            xb, yb = x[i:i + bs].float().requires_grad_(), y[i:i + bs]
            if eps == 0:
                yield xb.detach()
                continue
            with torch.random.fork_rng(devices=cuda):
                if state is None:
                    torch.manual_seed(self.seed)
                else:
                    torch.set_rng_state(state[0])
                    if cuda:
                        torch.cuda.set_rng_state(state[1], cuda[0])
                if self.method == "fgsm" and self.norm == "Linf":
                    adv = FGSM(forward, loss, lower_bound=lo, upper_bound=hi).perturb(xb, eps, yb)
                elif self.method == "fgsm":
                    adv = PGD(forward, loss, "L2", lo, hi).perturb(xb, eps, eps, 1, yb, random_start=False, norm="L2")
                else:
                    adv = PGD(forward, loss, self.norm, lo, hi).perturb(
                        xb, eps, self.step_ratio * eps, self.steps, yb,
                        random_start=self.random_start, norm=self.norm)
                state = (torch.get_rng_state(), torch.cuda.get_rng_state(cuda[0]) if cuda else None)
            yield adv.detach()

    def batch_for(self, model: nn.Module, one: torch.Tensor) -> int:
        """Items per attack batch: ``batch_size``, or fewer where one item's activations (kept
        for the backward pass) would put a batch above ``BATCH_ACTIVATION_BYTES``. It depends
        only on the model and the input shape, so a config gives the same batches everywhere."""
        return batch_within(model, one, BATCH_ACTIVATION_BYTES, self.batch_size)

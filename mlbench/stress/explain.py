"""Explanation shift with captum: do compressed models look at the same evidence?

For each attribution method, attributions of the baseline and of each differentiable
variant on the same test items (target: the true label) are compared per item by the
Spearman rank correlation and the top-k overlap of their absolute values. captum's
``infidelity`` and ``sensitivity_max`` are reported per variant as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mlbench.errors import MlbenchError
from mlbench.stress.base import Comparison, StressEnv, StressRow, generator
from mlbench.stress.plots import attribution_maps
from mlbench.text import Doc, fmt

METHODS = ("integrated_gradients", "saliency")


def _ranks(a: torch.Tensor) -> torch.Tensor:
    return a.argsort(1).argsort(1).double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman rank correlation of two (n, d) tensors (ties broken by position)."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row share of the k largest entries of ``a`` that are among the k largest of ``b``."""
    ia, ib = a.topk(k, dim=1).indices, b.topk(k, dim=1).indices
    ma = torch.zeros_like(a, dtype=torch.bool).scatter_(1, ia, True)
    mb = torch.zeros_like(b, dtype=torch.bool).scatter_(1, ib, True)
    return (ma & mb).sum(1).double() / k


class Explanations(Comparison):
    """Attributions of each differentiable variant against the baseline's on the first
    ``n_items`` test items; one row per variant and method."""

    kind = "explanation"
    condition_key = "methods"
    needs_gradients = True
    headline = "spearman_mean"
    headline_name = "spearman"

    def work(self, n: int, differentiable: bool) -> tuple[int, int]:
        """Attributions of ``n_items`` per method (integrated gradients: ``ig_steps`` gradients each)."""
        k = min(self.n_items, n)
        return 0, k * sum(self.ig_steps if m == "integrated_gradients" else 2 for m in self.methods) if differentiable else 0

    def __init__(self, methods: Sequence[str] = METHODS, n_items: int = 64, ig_steps: int = 32,
                 topk: float = 0.1, infidelity_samples: int = 10, sensitivity_samples: int = 10,
                 when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        bad = set(methods) - set(METHODS)
        if bad:
            raise MlbenchError(f"explanation methods must be among {METHODS}, got {sorted(bad)}")
        if not 0 < topk <= 1:
            raise MlbenchError(f"explanations.topk must be in (0, 1], got {topk}")
        self.methods, self.n_items, self.ig_steps, self.topk = list(methods), n_items, ig_steps, topk
        self.infidelity_samples, self.sensitivity_samples = infidelity_samples, sensitivity_samples
        self._shape: dict[str, int] = {}  # items and top-k, known once the data is seen
        self._maps: dict[str, dict[str, torch.Tensor]] = {}  # method -> variant -> first attributions

    def conditions(self) -> list[str]:
        return self.methods

    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict]], variants: dict[str, dict]) -> None:
        """Per variant and method: rank agreement and top-k overlap with the baseline's
        attributions, infidelity and max-sensitivity."""
        for name, per_variant in sections.items():
            rows = []
            for n, sec in per_variant.items():
                if sec.get("skipped"):
                    rows.append([n, f"skipped: {sec['skipped']}", "", "", ""])
                    continue
                for meth, r in sec.get("methods", {}).items():
                    rows.append([n + f" · {meth}", fmt(r["spearman_mean"], 3), fmt(r["topk_overlap_mean"], 3),
                                 fmt(r["infidelity"], 4), fmt(r["sensitivity_max"], 4)])
            doc.h3(f"Explanation shift ({name}, against the baseline's attributions)")
            doc.table(["variant · method", "Spearman (mean)", "top-k overlap", "infidelity", "sensitivity max"], rows)

    def describe(self) -> dict:
        return dict(self._shape)

    def rows(self, env: StressEnv):
        n = min(self.n_items, len(env.y))
        base = env.baseline
        dev = base.runner.input_device
        x, y = env.x[:n].to(dev), env.y[:n].to(dev)
        k = self.k(x[0].numel())
        self._shape = {"items": n, "topk": k}
        base_attr = {m: self.attribute(base.artifact.model, x, y, m) for m in self.methods}
        for v in env.variants:
            if not v.artifact.differentiable:
                yield StressRow(self.name, v.name, None,
                                skipped="not differentiable (ONNX or quantized): no gradients for attributions")
                continue
            model, dtype, dev = v.artifact.model, v.artifact.dtype, v.runner.input_device
            xv, yv = x.to(dev), y.to(dev)
            for m in self.methods:
                a = base_attr[m] if v is env.baseline else self.attribute(model, xv, yv, m, dtype)
                rho = spearman(base_attr[m].cpu(), a.cpu())
                ov = topk_overlap(base_attr[m].cpu(), a.cpu(), k)
                self._maps.setdefault(m, {})[v.name] = a[:6].float().cpu()
                yield StressRow(self.name, v.name, m, {
                    "spearman_mean": float(rho.mean()), "spearman_median": float(rho.median()),
                    "topk_overlap_mean": float(ov.mean()), **self.scores(model, xv, yv, m, a, dtype)})

    def plot(self, sections: dict, env: StressEnv) -> list:
        if env.meta.modality != "image":
            return []
        return [attribution_maps(self.name, m, per_variant, env.x, env.meta.input_shape, env.plots_dir)
                for m, per_variant in self._maps.items()]

    def _method(self, name: str, model: nn.Module, dtype: torch.dtype):
        from captum.attr import (  # captum is slow to import: on use
            IntegratedGradients,
            Saliency,
        )

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return model(inp.to(dtype)).float()

        if name == "saliency":
            return Saliency(forward), {}
        return IntegratedGradients(forward), {"n_steps": self.ig_steps}

    def attribute(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Absolute attributions, flattened to (n, features)."""
        m, kw = self._method(method, model, dtype)
        return m.attribute(x.float().requires_grad_(), target=y, **kw).detach().abs().flatten(1).double()

    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str,
               attributions: torch.Tensor, dtype: torch.dtype = torch.float32) -> dict[str, float]:
        """captum's infidelity (Gaussian input noise, std 0.003) and sensitivity_max
        (radius 0.02), averaged over items."""
        from captum.metrics import infidelity, sensitivity_max  # on use
        m, kw = self._method(method, model, dtype)
        g = generator(self.seed, "infidelity", method, device=x.device)

        def perturb(inputs: torch.Tensor):
            noise = 0.003 * torch.randn(inputs.shape, generator=g, device=inputs.device)
            return noise, inputs - noise

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return model(inp.to(dtype)).float()

        xs = x.float()
        attr = attributions.float().view_as(xs)
        infid = infidelity(forward, perturb, xs, attr, target=y, n_perturb_samples=self.infidelity_samples)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            sens = sensitivity_max(lambda inp, target: m.attribute(inp, target=target, **kw), xs,
                                   target=y, n_perturb_samples=self.sensitivity_samples)
        return {"infidelity": float(infid.mean()), "sensitivity_max": float(sens.mean())}

    def k(self, features: int) -> int:
        return max(1, math.ceil(self.topk * features))

"""Common corruptions as batched tensor operations, severities 1-5 (0 = none).

Image corruptions follow the CIFAR-10-C recipes of Hendrycks & Dietterich (2019),
re-implemented in torch so they run batched on the GPU and on any image size;
outputs are clamped to the data's input range. Tabular corruptions work in
train-standard-deviation units (the features are standardized with train
statistics, so one unit is one train std).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from mlbench.data import DataMeta
from mlbench.errors import MlbenchError
from mlbench.stress.base import InputStressor, generator
from mlbench.text import Doc, fmt

CHUNK_BYTES = 2 << 20  # input bytes per chunk for the corruptions that draw no random numbers


class Corruption(InputStressor):
    """Base: ``levels[s - 1]`` is the strength at severity ``s``. Summary: accuracy per
    severity and the corruption error against this run's baseline."""

    kind = "corruption"
    condition_key = "severities"
    aggregate = "corruption"
    figure = ("accuracy_vs_severity.png", "severity", False)
    modalities = ("image",)
    levels: tuple[float, ...] = ()
    draws_random: ClassVar[bool] = True  # False: a deterministic function of each item alone

    def __init__(self, severities: Sequence[int] = (1, 3, 5), when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        bad = [s for s in severities if not 0 <= s <= 5]
        if bad:
            raise MlbenchError(f"severities must be in 0..5, got {bad}")
        self.severities = [int(s) for s in severities]
        self.range: tuple[float, float] | None = None

    def check(self, meta: DataMeta) -> bool:
        self.range = meta.input_range
        return super().check(meta)

    def conditions(self) -> list[int]:
        return self.severities

    def summarize(self, section: dict, base_section: dict) -> None:
        """``corruption_error``: the variant's error summed over the severities > 0 divided by
        the baseline's (1.0 = as robust as the baseline; None when the baseline makes no error)."""
        rows = {s: r for s, r in section["severities"].items() if s != "0"}
        err_v = sum(1 - r["accuracy"] for r in rows.values())
        err_b = sum(1 - base_section["severities"][s]["accuracy"] for s in rows)
        section["corruption_error"] = err_v / err_b if err_b > 0 else None

    def input_cost(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Each severity's corrupted copy of ``x``, timed (``perturb`` is deterministic, so
        timing it changes nothing)."""
        if len(x) == 0:
            return 0.0
        t0 = time.perf_counter()
        for c in self.conditions():
            self.perturb(x, y, c)
        return (time.perf_counter() - t0) / len(x)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, severity: int, model=None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The corrupted batch; deterministic for (seed, corruption, severity). A corruption
        that draws no random numbers runs in chunks of about ``CHUNK_BYTES`` of input (the same
        values as one call: each item is corrupted on its own), so its intermediate buffers
        (a blur's padded copies) stay small whatever the test set's size."""
        if severity == 0:
            return x.clone()
        level = self.levels[severity - 1]
        xf = x.float()
        if self.draws_random or len(xf) < 2:
            out = self._clamped(self.apply(xf, level, generator(self.seed, self.name, severity, device=x.device)), xf)
        else:
            step = max(1, CHUNK_BYTES // max(1, xf[0].numel() * xf.element_size()))
            out = torch.empty_like(xf)
            for i in range(0, len(xf), step):
                out[i:i + step] = self._clamped(self.apply(xf[i:i + step], level, None), xf)
        return out.to(x.dtype)

    def _clamped(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.range is None:
            return out
        return out.clamp(*self.range) if out.data_ptr() == x.data_ptr() else out.clamp_(*self.range)

    def apply(self, x: torch.Tensor, level: float, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict]], variants: dict[str, dict]) -> None:
        """Every corruption in one table: accuracy per severity and the corruption error."""
        rows = []
        for n, v in variants.items():
            cells = []
            for c, per_variant in sections.items():
                sec = per_variant[n]
                accs = " / ".join(f"{r['accuracy']:.3f}" for _, r in sorted(sec["severities"].items(),
                                                                          key=lambda kv: int(kv[0])))
                cells.append(f"{accs} (CE {fmt(sec.get('corruption_error'), 2)})")
            rows.append([n, fmt(v["metrics"].get("mean_corruption_accuracy")), *cells])
        first = next(iter(sections.values()))
        sev = ", ".join(sorted(next(iter(first.values()))["severities"], key=int))
        doc.p(f"Accuracy per corruption at severities {sev}; CE = Σ errors / Σ baseline errors.")
        doc.table(["variant", "mCA", *sections], rows)


def _noise_like(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


class GaussianNoise(Corruption):
    """x + N(0, c^2), c = 0.04 ... 0.10."""

    levels = (0.04, 0.06, 0.08, 0.09, 0.10)

    def apply(self, x, level, g):
        return _noise_like(x, g).mul_(level).add_(x)  # = x + level * noise, without temporaries


class ShotNoise(Corruption):
    """Poisson photon noise: Poisson(x * c) / c, c = 500 ... 50 (fewer photons is worse)."""

    levels = (500.0, 250.0, 100.0, 75.0, 50.0)

    def apply(self, x, level, g):
        return torch.poisson(x.clamp_min(0).mul_(level), generator=g).div_(level)


class ImpulseNoise(Corruption):
    """Salt-and-pepper: a share c of values set to the range's min or max, c = 0.01 ... 0.07."""

    levels = (0.01, 0.02, 0.03, 0.05, 0.07)

    def apply(self, x, level, g):
        lo, hi = self.range or (float(x.min()), float(x.max()))
        u = torch.rand(x.shape, generator=g, device=x.device)
        salt = torch.rand(x.shape, generator=g, device=x.device) < 0.5
        hit = u < level
        return torch.where(hit, torch.where(salt, torch.full_like(x, hi), torch.full_like(x, lo)), x)


class GaussianBlur(Corruption):
    """Depthwise Gaussian blur with std c pixels, c = 0.4 ... 1.0 (kernel radius ceil(3c))."""

    levels = (0.4, 0.6, 0.7, 0.8, 1.0)
    draws_random = False

    def apply(self, x, level, g):
        r = max(1, math.ceil(3 * level))
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-(t ** 2) / (2 * level ** 2))
        k = k / k.sum()
        c = x.shape[1]
        xp = F.pad(x, (r, r, r, r), mode="replicate")
        xp = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(xp, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Contrast(Corruption):
    """(x - mean) * c + mean per image, c = 0.75 ... 0.15 (lower is worse)."""

    levels = (0.75, 0.5, 0.4, 0.3, 0.15)
    draws_random = False

    def apply(self, x, level, g):
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        return (x - mean) * level + mean


class Brightness(Corruption):
    """x + c, c = 0.1 ... 0.5 (in input units; then clamped to the range)."""

    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    draws_random = False

    def apply(self, x, level, g):
        return x + level


class Pixelate(Corruption):
    """Area-downsample to c x the size, then nearest-upsample back, c = 0.95 ... 0.5."""

    levels = (0.95, 0.9, 0.85, 0.75, 0.5)
    draws_random = False

    def apply(self, x, level, g):
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, int(h * level)), max(1, int(w * level))), mode="area")
        return F.interpolate(small, size=(h, w), mode="nearest")


class Occlusion(Corruption):
    """A square patch of side c x the image side, at a random place per image, set to
    the range's minimum; c = 0.1 ... 0.5."""

    levels = (0.1, 0.2, 0.3, 0.4, 0.5)

    def apply(self, x, level, g):
        n, _, h, w = x.shape
        side = max(1, round(level * min(h, w)))
        top = torch.randint(0, h - side + 1, (n,), generator=g, device=x.device)
        left = torch.randint(0, w - side + 1, (n,), generator=g, device=x.device)
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        mask = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
                & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))
        fill = self.range[0] if self.range else 0.0
        return x.masked_fill(mask[:, None], fill)


class FeatureNoise(Corruption):
    """Tabular: x + N(0, c^2) in train-std units, c = 0.1, 0.25, 0.5, 0.75, 1.0."""

    modalities = ("tabular",)
    levels = (0.1, 0.25, 0.5, 0.75, 1.0)

    def apply(self, x, level, g):
        return _noise_like(x, g).mul_(level).add_(x)


class MissingFeatures(Corruption):
    """Tabular: a share c of feature values replaced by the train mean (0 after
    standardization), c = 0.1 ... 0.5."""

    modalities = ("tabular",)
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)

    def apply(self, x, level, g):
        drop = torch.rand(x.shape, generator=g, device=x.device) < level
        return x.masked_fill(drop, 0.0)


class ScalingDrift(Corruption):
    """Tabular: each raw feature rescaled by (1 + c * u), u uniform in [-1, 1] per feature
    (a sensor or unit drift), c = 0.1 ... 0.5; applied in raw units, then re-standardized
    with the train statistics."""

    modalities = ("tabular",)
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)

    def check(self, meta):
        ok = super().check(meta)
        norm = meta.normalization or {}
        self.mean = torch.tensor(norm.get("mean", 0.0))
        self.std = torch.tensor(norm.get("std", 1.0))
        return ok

    def apply(self, x, level, g):
        u = torch.rand(x.shape[1:], generator=g, device=x.device) * 2 - 1
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        raw = x * std + mean
        return (raw * (1 + level * u) - mean) / std

"""Shift scenarios built from held-out data: each draws windows of n items (indices into a
pool, the test split) with a seed, optionally from a perturbed copy of the pool.

- ``none``: uniform draws (the null: false-positive rates);
- ``covariate``: the pool perturbed by a stress corruption at a severity (images: the image
  corruptions; tabular: feature noise, missingness, scaling drift);
- ``dirichlet`` / ``tweak_one`` / ``knock_out``: label shift, classes drawn with new priors;
- ``subpopulation``: items of group 1 drawn with probability ``weight`` (needs a group attribute);
- ``concept``: the labels of two classes swapped, inputs unchanged (only label-based monitors
  can see it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlbench.errors import MlbenchError

KINDS = ("none", "covariate", "dirichlet", "tweak_one", "knock_out", "subpopulation", "concept")


@dataclass
class Scenario:
    """One shift: ``kind``, its parameter (``severity`` for covariate, ``alpha`` for dirichlet,
    ``p`` for tweak_one, ``weight`` for subpopulation), and for covariate shift the stress
    corruption used (``corruption``)."""

    kind: str
    param: float | None = None
    corruption: str | None = None
    classes: tuple[int, int] = (0, 1)  # concept drift: the swapped pair; tweak_one/knock_out: the first
    label: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise MlbenchError(f"monitor scenario kind must be one of {KINDS}, got {self.kind!r}")
        p = self.param
        if self.kind == "dirichlet" and (p is None or p <= 0):
            raise MlbenchError(f"monitor dirichlet scenario: alpha must be > 0, got {p}")
        if self.kind in ("tweak_one", "subpopulation") and (p is None or not 0 <= p <= 1):
            raise MlbenchError(f"monitor {self.kind} scenario: the probability must be in [0, 1], got {p}")
        if self.kind == "covariate" and (p is None or not 1 <= p <= 5 or not self.corruption):
            raise MlbenchError("monitor covariate scenario needs a corruption and a severity in 1..5")
        if not self.label:
            self.label = self.kind if p is None else f"{self.kind}:{self.corruption + ':' if self.corruption else ''}{p:g}"

    def priors(self, classes: int, rng: np.random.Generator) -> np.ndarray | None:
        """The class priors of a window (None: draw uniformly over items)."""
        if self.kind == "dirichlet":
            return rng.dirichlet(np.full(classes, self.param))
        if self.kind == "tweak_one":
            q = np.full(classes, (1 - self.param) / (classes - 1))
            q[self.classes[0]] = self.param
            return q
        if self.kind == "knock_out":
            q = np.ones(classes)
            q[self.classes[0]] = 0
            return q / q.sum()
        return None

    def draw(self, n: int, y: np.ndarray, group: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Indices of one window (with replacement when a class or group runs short)."""
        classes = int(y.max()) + 1
        if self.kind == "subpopulation":
            if group is None:
                raise MlbenchError("subpopulation shift needs a dataset with a group attribute")
            g1 = rng.random(n) < self.param
            pools = [np.flatnonzero(group == 0), np.flatnonzero(group == 1)]
            return np.where(g1, rng.choice(pools[1], n), rng.choice(pools[0], n))
        q = self.priors(classes, rng)
        if q is None:
            return rng.choice(len(y), n, replace=n > len(y))
        counts = rng.multinomial(n, q)
        out = [rng.choice(np.flatnonzero(y == c), k, replace=True) for c, k in enumerate(counts) if k]
        idx = np.concatenate(out) if out else np.empty(0, dtype=np.int64)
        return rng.permutation(idx)

    def labels(self, y: np.ndarray) -> np.ndarray:
        """The labels the world now gives (concept drift swaps two classes)."""
        if self.kind != "concept":
            return y
        a, b = self.classes
        out = y.copy()
        out[y == a], out[y == b] = b, a
        return out


def parse(spec: dict[str, Any]) -> Scenario:
    return Scenario(kind=spec["kind"], param=spec.get("param"), corruption=spec.get("corruption"),
                    classes=tuple(spec.get("classes", (0, 1))))


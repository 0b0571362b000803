"""Shift scenarios built from held-out data: each draws windows of n items (indices into a
pool, the test split) with a seed, optionally from a perturbed copy of the pool.

- ``none``: uniform draws (the null: false-positive rates);
- ``covariate``: the pool perturbed by a stress corruption at a severity (images: the image
  corruptions; tabular: feature noise, missingness, scaling drift);
- ``dirichlet`` / ``tweak_one`` / ``knock_out``: label shift, classes drawn with new priors;
- ``subpopulation``: items of group 1 drawn with probability ``weight`` (needs a group attribute);
- ``concept``: the labels of two classes swapped, inputs unchanged (only label-based monitors
  can see it).

Each kind is a :class:`Scenario` subclass that declares its ``kind`` and what it does (flags
the monitoring stage and the update cycle read instead of the kind's name); a config entry
``{kind: ...}`` builds the class of that kind, ``{_target_: ...}`` any subclass.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mlbench.errors import MlbenchError
from mlbench.named import subclasses


class Scenario:
    """One shift: its parameter (``severity`` for covariate, ``alpha`` for dirichlet, ``p`` for
    tweak_one, ``weight`` for subpopulation), for covariate shift the stress corruption used
    (``corruption``), and the classes it acts on. ``Scenario("knock_out", ...)`` builds the
    subclass of that kind."""

    kind: ClassVar[str] = ""
    null: ClassVar[bool] = False  # no shift: its detection rates are false-positive rates
    perturbs_inputs: ClassVar[bool] = False  # windows come from the pool perturbed by ``corruption``
    changes_labels: ClassVar[bool] = False  # the world's labels change, inputs do not (no output detector sees it)
    needs_group: ClassVar[bool] = False  # needs the data's group attribute

    def __new__(cls, kind: str | None = None, *args: Any, **kwargs: Any) -> Scenario:
        if cls is Scenario:  # the base builds the subclass the kind names
            cls = kind_class(kind)
        return super().__new__(cls)

    def __init__(self, kind: str | None = None, param: float | None = None, corruption: str | None = None,
                 classes: tuple[int, int] = (0, 1), label: str = ""):
        self.param, self.corruption, self.classes = param, corruption, tuple(classes)
        self.check()
        p = param
        self.label = label or (self.kind if p is None else
                               f"{self.kind}:{self.corruption + ':' if self.corruption else ''}{p:g}")

    def __repr__(self) -> str:
        return f"Scenario({self.label!r})"

    def check(self) -> None:
        """Raise :class:`MlbenchError` for parameters this kind cannot use."""

    def priors(self, classes: int, rng: np.random.Generator) -> np.ndarray | None:
        """The class priors of a window (None: draw uniformly over items)."""
        return None

    def draw(self, n: int, y: np.ndarray, group: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Indices of one window (with replacement when a class or group runs short)."""
        q = self.priors(int(y.max()) + 1, rng)
        if q is None:
            return rng.choice(len(y), n, replace=n > len(y))
        counts = rng.multinomial(n, q)
        out = [rng.choice(np.flatnonzero(y == c), k, replace=True) for c, k in enumerate(counts) if k]
        idx = np.concatenate(out) if out else np.empty(0, dtype=np.int64)
        return rng.permutation(idx)

    def labels(self, y: np.ndarray) -> np.ndarray:
        """The labels the world now gives."""
        return y


class NoShift(Scenario):
    kind, null = "none", True


class Covariate(Scenario):
    kind, perturbs_inputs = "covariate", True

    def check(self) -> None:
        if self.param is None or not 1 <= self.param <= 5 or not self.corruption:
            raise MlbenchError("monitor covariate scenario needs a corruption and a severity in 1..5")


class Dirichlet(Scenario):
    kind = "dirichlet"

    def check(self) -> None:
        if self.param is None or self.param <= 0:
            raise MlbenchError(f"monitor dirichlet scenario: alpha must be > 0, got {self.param}")

    def priors(self, classes: int, rng: np.random.Generator) -> np.ndarray:
        return rng.dirichlet(np.full(classes, self.param))


def _probability(s: Scenario) -> None:
    if s.param is None or not 0 <= s.param <= 1:
        raise MlbenchError(f"monitor {s.kind} scenario: the probability must be in [0, 1], got {s.param}")


class TweakOne(Scenario):
    kind = "tweak_one"
    check = _probability

    def priors(self, classes: int, rng: np.random.Generator) -> np.ndarray:
        q = np.full(classes, (1 - self.param) / (classes - 1))
        q[self.classes[0]] = self.param
        return q


class KnockOut(Scenario):
    kind = "knock_out"

    def priors(self, classes: int, rng: np.random.Generator) -> np.ndarray:
        q = np.ones(classes)
        q[self.classes[0]] = 0
        return q / q.sum()


class Subpopulation(Scenario):
    kind, needs_group = "subpopulation", True
    check = _probability

    def draw(self, n: int, y: np.ndarray, group: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        if group is None:
            raise MlbenchError("subpopulation shift needs a dataset with a group attribute")
        g1 = rng.random(n) < self.param
        pools = [np.flatnonzero(group == 0), np.flatnonzero(group == 1)]
        return np.where(g1, rng.choice(pools[1], n), rng.choice(pools[0], n))


class Concept(Scenario):
    kind, changes_labels = "concept", True

    def labels(self, y: np.ndarray) -> np.ndarray:
        """Concept drift: two classes' labels swapped."""
        a, b = self.classes
        out = y.copy()
        out[y == a], out[y == b] = b, a
        return out


def kinds() -> dict[str, type[Scenario]]:
    """Every scenario kind defined so far (subclasses of :class:`Scenario` with a ``kind``)."""
    return {c.kind: c for c in subclasses(Scenario) if c.kind}


def shows_shift(kind: str) -> bool:
    """Whether a scenario of this kind shifts what a model sees (not the null, not a label-only
    change): the scenarios power is averaged over. Unknown kinds (a plugin not imported) count."""
    cls = kinds().get(kind)
    return cls is None or not (cls.null or cls.changes_labels)


def kind_class(kind: str | None) -> type[Scenario]:
    known = kinds()
    if kind not in known:
        raise MlbenchError(f"monitor scenario kind must be one of {tuple(known)}, got {kind!r}")
    return known[kind]


def parse(spec: dict[str, Any]) -> Scenario:
    """A scenario from its config entry: ``kind`` (or ``_target_``: a Scenario subclass), and
    ``param``, ``corruption``, ``classes``."""
    args = {"param": spec.get("param"), "corruption": spec.get("corruption"),
            "classes": tuple(spec.get("classes", (0, 1)))}
    if "_target_" in spec:
        from hydra.utils import (
            get_class,  # Hydra's locator: the same resolution as every _target_
        )
        cls = get_class(str(spec["_target_"]))
        if not (isinstance(cls, type) and issubclass(cls, Scenario)):
            raise MlbenchError(f"monitor scenario: {spec['_target_']} is not a mlbench.monitor.Scenario")
        return cls(cls.kind, **args)
    return Scenario(spec.get("kind"), **args)

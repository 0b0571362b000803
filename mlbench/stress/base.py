"""The stressor contract.

A stressor is one entry of the multi-select ``stress`` config group. It declares
the data it fits (``modalities``; ``check(meta)`` runs at set-up, before any
training), its conditions (severities, radii, rates), and how it reaches a model:

- :class:`InputStressor` perturbs the test inputs, ``perturb(x, y, condition, model)``.
  ``crafted = True`` (attacks) means white-box: crafted on each differentiable variant,
  and on the baseline and transferred for the others.
- :class:`ModelStressor` perturbs the model, ``perturb(artifact, condition, trial, env)``,
  repeated over ``trials``.
- :class:`Comparison` compares something computed on each variant with the baseline's
  (explanations); it perturbs nothing.

Each yields :class:`StressRow` s from ``rows(env)``; the stage (``stress/stage.py``) is one
loop over stressors that collects them. Each stressor also declares its summary
(``summarize``), its headline figure per condition (the flat metric
``stress/<name>/<condition>/accuracy``) and its plot. Presets (``light``, ``full``) set
``when_unfit: skip`` so one preset serves image and tabular data; a stressor picked by
name fails instead.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats as sps

from mlbench.choices import WhenUnfit, choose
from mlbench.data import DataMeta
from mlbench.errors import MlbenchError, NotApplicable
from mlbench.named import recorded_class
from mlbench.process import release_memory
from mlbench.text import Doc, delta_text, fmt, interval_text


@dataclass
class StressVariant:
    """What a stressor may use of one variant: its artifact (format, capabilities) and runner."""

    name: str
    artifact: Any  # mlbench.compress.Artifact
    runner: Any  # mlbench.backends.Runner


@dataclass
class StressEnv:
    """What a stressor may use of the run: the test split, the variants (baseline first),
    how to score a runner on inputs (``score`` returns the row and the probabilities; a
    ``perturbation(xb, yb)`` is applied per evaluation batch), how to build a runner for a
    perturbed artifact, and a scratch folder."""

    x: torch.Tensor
    y: torch.Tensor
    meta: DataMeta
    device: torch.device
    variants: list[StressVariant]
    score: Callable[..., tuple[dict[str, Any], torch.Tensor]]  # (runner, x, base_probs=None, perturbation=None)
    accuracy: Callable[[Any], float]  # runner -> accuracy on the clean test split (non-finite = wrong)
    runner_for: Callable[[Any], Any]  # artifact -> runner
    workdir: Path
    plots_dir: Path

    @property
    def baseline(self) -> StressVariant:
        return self.variants[0]


@dataclass
class StressRow:
    """One stressor × condition × variant: ``values`` are its figures as they appear in
    summary.json (``accuracy``, ``ece``, paired ``delta_*`` with intervals, or a trial mean
    with its t-interval). A row with ``skipped`` set says why the variant was not stressed."""

    stressor: str
    variant: str
    condition: str | None
    values: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


class Stressor:
    kind: ClassVar[str] = "stressor"
    condition_key: ClassVar[str] = "conditions"  # the key of the per-condition table in summary.json
    modalities: ClassVar[tuple[str, ...]] = ("image", "tabular")
    headline: ClassVar[str] = "accuracy"  # the figure a condition's flat metric reports ...
    headline_name: ClassVar[str] = "accuracy"  # ... as metrics["stress/<name>/<condition>/<headline_name>"]
    aggregate: ClassVar[str | None] = None  # "corruption": counts toward mean corruption accuracy/error
    # a plot shared by every stressor of this class: file name, x label, log x axis
    figure: ClassVar[tuple[str, str, bool] | None] = None
    # it needs gradients of the baseline (white-box attacks, attributions): skipped, with the
    # reason recorded, when the baseline has none (an ONNX-only model)
    needs_gradients: ClassVar[bool] = False

    def __init__(self, when_unfit: str = "error", seed: int = 0):
        self.when_unfit, self.seed = choose(WhenUnfit, when_unfit, "stress when_unfit"), seed
        self.name = type(self).__name__

    # -- set-up ---------------------------------------------------------------------
    def fits(self, meta: DataMeta) -> str | None:
        """Why this stressor does not fit the data, or None."""
        if meta.modality not in self.modalities:
            return f"{self.name} needs {' or '.join(self.modalities)} data, but {meta.name} is {meta.modality}"
        return None

    def check(self, meta: DataMeta) -> bool:
        """True if it will run; False if skipped; MlbenchError if unfit and not skippable."""
        why = self.fits(meta)
        if why is None:
            return True
        if self.when_unfit == "skip":
            return False
        raise MlbenchError(f"stress.{self.name}: {why}")

    # -- what it declares -------------------------------------------------------------
    def conditions(self) -> list[Any]:
        return []

    def work(self, n: int, differentiable: bool) -> tuple[int, int]:
        """Item evaluations it makes on one variant with ``n`` test items: (forward passes,
        forward+backward passes). The run's plan multiplies them by measured per-item costs."""
        return len(self.conditions()) * n, 0

    def input_cost(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Seconds per test item to make its perturbed inputs, every condition, once for all
        variants (timed by the plan on the batch ``x``); 0 for a stressor that makes none."""
        return 0.0

    @staticmethod
    def label(condition: Any) -> str:
        """A condition as written in summary.json keys."""
        return f"{condition:g}" if isinstance(condition, float) else str(condition)

    def describe(self) -> dict[str, Any]:
        """Fixed facts about the stressor, written into each variant's section."""
        return {}

    def rows(self, env: StressEnv) -> Iterator[StressRow]:
        raise NotImplementedError

    def summarize(self, section: dict[str, Any], base_section: dict[str, Any]) -> None:
        """Add summary figures to a variant's section (in place), given the baseline's."""

    def plot(self, sections: dict[str, dict[str, Any]], env: StressEnv) -> list[Path]:
        """Plots of its own (beyond the shared ``figure``); ``sections`` by variant."""
        return []

    # -- how it reads (report.md/html); called on the class with summary.json's sections --------
    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict[str, Any]]], variants: dict[str, dict]) -> None:
        """Its report section: ``sections`` holds every stressor of this family (stressor name
        → variant → its section in summary.json), ``variants`` each variant's summary entry.
        The default: per stressor, each condition's headline figure with its interval."""
        for name, per_variant in sections.items():
            doc.h3(f"{name} ({next(iter(per_variant.values())).get('kind', cls.kind)})")
            doc.table(["variant", f"by {cls.condition_key}"],
                      condition_rows(per_variant, cls.condition_key, lambda c, r: f"{c}: {_headline_text(r)}"))


def condition_rows(per_variant: dict[str, dict[str, Any]], key: str, cell: Callable[[str, dict], str],
                   numeric: bool = False) -> list[list[str]]:
    """One report row per variant: ``cell(condition, row)`` for each condition of its ``key``
    table (sorted by value when ``numeric``), joined by "; "; or why it was skipped."""
    rows = []
    for n, sec in per_variant.items():
        if sec.get("skipped"):
            rows.append([n, f"skipped: {sec['skipped']}"])
            continue
        items = (sec.get(key) or {}).items()
        rows.append([n, "; ".join(cell(c, r) for c, r in (sorted(items, key=lambda kv: float(kv[0])) if numeric
                                                           else items))])
    return rows


class InputStressor(Stressor):
    """Perturbs test inputs; every variant is scored on the same perturbed items (or, for a
    crafted stressor, on items crafted against it where it is differentiable)."""

    crafted: ClassVar[bool] = False

    def perturb(self, x: torch.Tensor, y: torch.Tensor, condition: Any, model: torch.nn.Module | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise NotImplementedError

    def batches(self, x: torch.Tensor, y: torch.Tensor, condition: Any, model: torch.nn.Module | None = None,
                dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """The perturbed inputs in consecutive batches, in order; a white-box variant is scored
        on them as they come (a stressor that crafts batch by batch overrides it, so that its
        crafted test set is never held whole). The default: ``perturb`` in one batch."""
        yield self.perturb(x, y, condition, model, dtype)

    def rows(self, env: StressEnv) -> Iterator[StressRow]:
        x, y = env.x, env.y
        base = env.baseline
        for c in self.conditions():
            label = self.label(c)
            if self.crafted:
                dev, art = base.runner.input_device, base.artifact
                base_x = self.perturb(x.to(dev), y.to(dev), c, art.model, art.dtype).cpu()
                release_memory()  # the attack's freed activations, before the copy is scored
            else:
                base_x = self.perturb(x.to(env.device), y.to(env.device), c).cpu()
            row, base_probs = env.score(base.runner, base_x)
            if self.crafted:
                row["mode"] = "white-box"
            yield StressRow(self.name, base.name, label, row)
            # variants scored on the baseline's copy first; white-box variants craft their own after
            # it is freed (two crafted test sets are never held at once)
            own = [v for v in env.variants[1:] if self.crafted and v.artifact.differentiable]
            for v in env.variants[1:]:
                if all(v is not o for o in own):
                    row, _ = env.score(v.runner, base_x, base_probs)
                    if self.crafted:
                        row["mode"] = "transfer (crafted on the float baseline)"
                    yield StressRow(self.name, v.name, label, row)
            del base_x
            release_memory()  # the copy's pages back to the system before the next one is made
            for v in own:  # crafted batch by batch as the scoring asks for them
                dev, art = v.runner.input_device, v.artifact
                made = Refill(self.batches(x.to(dev), y.to(dev), c, art.model, art.dtype))
                row, _ = env.score(v.runner, x, base_probs, made)  # the scorer hands freed memory back
                row["mode"] = "white-box"
                yield StressRow(self.name, v.name, label, row)


class Refill:
    """``perturbation(xb, yb)`` for the evaluation loop that hands out consecutive items of a
    stream of batches, whatever their size: the loop's batch ``i`` gets the stream's items
    ``i * len(xb)`` onward. The loop's own ``xb`` only sets how many (it is the clean batch)."""

    def __init__(self, batches: Iterator[torch.Tensor]):
        self.batches, self.rest = batches, None

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        parts, have = ([self.rest] if self.rest is not None else []), 0 if self.rest is None else len(self.rest)
        while have < len(xb):
            b = next(self.batches, None)
            if b is None:
                raise MlbenchError("a stressor's batches() ended before the test split did")
            parts.append(b)
            have += len(b)
        joined = parts[0] if len(parts) == 1 else torch.cat(parts)
        out, rest = joined[:len(xb)], joined[len(xb):]
        self.rest = rest if len(rest) else None
        return out


Unsupported = NotApplicable  # a model stressor cannot perturb this artifact (the reason is recorded)


class ModelStressor(Stressor):
    """Perturbs the model (its stored weights); each condition is tried ``trials`` times and
    reported as the mean accuracy with a 95 % t-interval over trials."""

    headline = "mean"
    per_trial: ClassVar[tuple[str, ...]] = ()  # facts kept as one value per trial (others: the first)
    trials: int = 1

    def work(self, n: int, differentiable: bool) -> tuple[int, int]:
        return self.trials * len(self.conditions()) * n, 0

    def perturb(self, variant: StressVariant, condition: Any, trial: int, env: StressEnv
                ) -> tuple[Any, dict[str, Any]]:
        """A perturbed copy of the variant's artifact and facts about the perturbation;
        raises :class:`Unsupported` when it cannot perturb this artifact."""
        raise NotImplementedError

    def rows(self, env: StressEnv) -> Iterator[StressRow]:
        for v in env.variants:
            try:
                for c in self.conditions():
                    accs, facts = [], []
                    for trial in range(self.trials):
                        faulty, info = self.perturb(v, c, trial, env)
                        accs.append(env.accuracy(env.runner_for(faulty)))
                        facts.append(info)
                    merged = {k: [f[k] for f in facts] if k in self.per_trial else facts[0][k] for k in facts[0]}
                    yield StressRow(self.name, v.name, self.label(c), {**trial_interval(accs), **merged})
            except Unsupported as e:
                yield StressRow(self.name, v.name, None, skipped=str(e))


class Comparison(Stressor):
    """Compares a per-variant computation with the baseline's; ``rows`` yields one row per
    variant and measure (its ``condition_key`` table)."""


def family(section: dict[str, Any]) -> type[Stressor]:
    """The class whose :meth:`Stressor.report` renders a section of summary.json: the class
    that defines ``report`` for the recorded ``target`` (every corruption shares
    :class:`~mlbench.stress.corruptions.Corruption`'s table); by ``kind`` for a section without
    a usable target; the generic table otherwise."""
    cls = recorded_class(section, Stressor, "kind", Stressor)
    return next(c for c in cls.__mro__ if "report" in c.__dict__)


def _headline_text(r: dict[str, Any]) -> str:
    """A condition's row as one cell: a trial mean with its interval, or accuracy with its
    paired change against the baseline."""
    if "mean" in r:
        return interval_text(r["mean"], r.get("ci_low"), r.get("ci_high"))
    text = fmt(r.get("accuracy"), 3)
    d = r.get("delta_accuracy")
    return text + (f" Δ {delta_text(d, 3)}" if d else "")


def trial_interval(values: list[float]) -> dict[str, Any]:
    """Mean of per-trial accuracies with a 95 % t-interval, clipped to [0, 1]."""
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) > 1 and arr.std(ddof=1) > 0:
        half = float(sps.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    else:
        half = 0.0
    return {"mean": mean, "ci_low": max(0.0, mean - half), "ci_high": min(1.0, mean + half), "trials": values,
            "interval": "95% t-interval over trials, clipped to [0, 1]"}


def generator(seed: int, *parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded from the run seed and a condition's name."""
    key = zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + key) % (2**63))

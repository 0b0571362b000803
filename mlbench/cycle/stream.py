"""The stream a simulated deployment sees: T periods drawn from held-out data, each under a
shift scenario of the monitoring stage (``mlbench.monitor.scenarios``), labels arriving
``label_delay`` periods late.

Items are drawn *without replacement* across the whole stream from the calib and test splits
(never trained on by the initial model; its validation split is the monitor's first
reference), so no item is scored after a model has been trained on it. Every period's items,
labels and perturbations are fixed at set-up from the seed: policies see the same stream, and a
resumed cycle sees the stream it was interrupted in.

A seeded share of every period (``gate_holdout``) is never trained on by any update: the
gate's evidence accumulates over those held-out parts, so a candidate and the model deployed
now are compared on items neither has seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlbench.data import DataBundle
from mlbench.errors import MlbenchError
from mlbench.monitor.scenarios import Scenario, parse

POOL_SPLITS = ("calib", "test")


@dataclass
class Segment:
    """From period ``start`` on (until the next segment), windows are drawn under ``scenario``."""

    start: int
    scenario: Scenario


def schedule(entries: list[dict[str, Any]], periods: int) -> list[Scenario]:
    """One scenario per period from a list of ``{from: period, kind: ..., param: ...}`` entries
    (a scenario of the monitoring stage each); periods before the first entry have no shift."""
    segs = []
    for i, e in enumerate(entries):
        e = dict(e)
        if "from" not in e:
            raise MlbenchError(f"cycle.schedule[{i}]: give the period it starts at (from: N)")
        start = int(e.pop("from"))
        if not 0 <= start < periods:
            raise MlbenchError(f"cycle.schedule[{i}]: from {start} is outside the stream's periods 0..{periods - 1}")
        sc = parse(e)
        if sc.needs_group:
            raise MlbenchError(f"cycle.schedule: {sc.kind} shift is not a stream schedule (use the monitor stage)")
        segs.append(Segment(start, sc))
    starts = [s.start for s in segs]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise MlbenchError(f"cycle.schedule: the periods entries start at must increase, got {starts}")
    out, cur = [], Scenario("none")
    for t in range(periods):
        for s in segs:
            if s.start == t:
                cur = s.scenario
        out.append(cur)
    return out


@dataclass
class Period:
    """One period of the stream: its items (positions in the pool), their inputs as the world
    shows them (perturbed under covariate shift), the labels the world gives them, and the
    scenario it was drawn under; ``gate`` marks the items no update trains on."""

    t: int
    idx: np.ndarray
    scenario: Scenario
    x: torch.Tensor
    labels: torch.Tensor
    gate: np.ndarray


class Stream:
    """The pool (calib + test splits) and the draw of every period, fixed at construction."""

    def __init__(self, data: DataBundle, scenarios: list[Scenario], period_size: int, seed: int,
                 perturb: Callable[[Scenario, torch.Tensor, torch.Tensor, int], torch.Tensor],
                 gate_holdout: float = 0.3):
        self.data = data
        self.x = torch.cat([data.x[s] for s in POOL_SPLITS])
        self.y = torch.cat([data.y[s] for s in POOL_SPLITS])
        self.index = torch.cat([data.index[s] for s in POOL_SPLITS])
        n, T, c = len(self.y), len(scenarios), data.meta.num_classes
        need = T * period_size
        if need > n:
            raise MlbenchError(f"cycle: {T} periods of {period_size} items need {need} items; the calib and test "
                               f"splits of {data.meta.name} hold {n} (lower cycle.periods or cycle.period_size)")
        rng = np.random.default_rng([seed, 31337])
        order = rng.permutation(n)
        y = self.y.numpy()[order]
        used = np.zeros(n, dtype=bool)
        self.periods: list[Period] = []
        for t, sc in enumerate(scenarios):
            q = sc.priors(c, rng)
            if q is None:
                take = np.flatnonzero(~used)[:period_size]
            else:
                counts = rng.multinomial(period_size, q)
                take = []
                for k, m in enumerate(counts):
                    free = np.flatnonzero(~used & (y == k))
                    if m > len(free):
                        raise MlbenchError(
                            f"cycle: period {t} ({sc.label}) needs {m} items of class {k}; only {len(free)} are "
                            "left in the calib and test splits (lower cycle.periods or cycle.period_size)")
                    take.append(free[:m])
                take = rng.permutation(np.concatenate(take))
            used[take] = True
            idx = order[take]
            x = self.x[idx]
            if sc.perturbs_inputs:
                x = perturb(sc, x, self.y[idx], t)
            gate = np.zeros(len(idx), dtype=bool)
            gate[np.random.default_rng([seed, 4242, t]).permutation(len(idx))[:round(gate_holdout * len(idx))]] = True
            self.periods.append(Period(t, idx, sc, x, torch.as_tensor(sc.labels(self.y.numpy()[idx])), gate))

    def items(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and the world's labels of period ``t``."""
        p = self.periods[t]
        return p.x, p.labels

    def part(self, periods: list[int], gate: bool, labelled: dict[int, list[int]] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, labels and dataset indices of the gate's (``gate=True``) or the training part
        of ``periods``; with ``labelled`` (period → positions), only the items labelled."""
        xs, ys, ids = [], [], []
        for t in periods:
            p = self.periods[t]
            keep = p.gate == gate
            if labelled is not None:
                bought = np.zeros(len(keep), dtype=bool)
                bought[np.asarray(labelled.get(t, []), dtype=np.int64)] = True
                keep &= bought
            m = torch.as_tensor(keep)
            xs.append(p.x[m])
            ys.append(p.labels[m])
            ids.append(self.index[p.idx][m])
        return torch.cat(xs), torch.cat(ys), torch.cat(ids)

    def bundle(self, train_periods: list[int], gate_periods: list[int], meta: Any, replay: float = 0.0,
               seed: int = 0, labelled: dict[int, list[int]] | None = None) -> DataBundle:
        """The update's data: train = the training part of ``train_periods`` plus, with
        ``replay`` > 0, ``replay`` × as many items of the original training split (a seeded
        sample, at most all of it); test = the held-out part of ``gate_periods``, which only the
        gate, the parity check and the monitor's reference read, so the gate's figures are not
        biased by model selection; val = the training items (training keeps its last-best weights
        on them: no selection on the gate's items); calib = the training inputs (static
        quantization's calibration). ``labelled``: only the items whose labels were bought."""
        x_tr, y_tr, idx_tr = self.part(train_periods, False, labelled)
        if replay > 0:
            n = len(self.data.y["train"])
            take = torch.as_tensor(np.random.default_rng([seed, 777]).permutation(n)[:min(n, round(replay * len(y_tr)))])
            x_tr = torch.cat([x_tr, self.data.x["train"][take]])
            y_tr = torch.cat([y_tr, self.data.y["train"][take]])
            idx_tr = torch.cat([idx_tr, self.data.index["train"][take]])
        x_ho, y_ho, idx_ho = self.part(gate_periods, True, labelled)
        return DataBundle(meta=meta, x={"train": x_tr, "val": x_tr, "calib": x_tr, "test": x_ho},
                          y={"train": y_tr, "val": y_tr, "calib": y_tr, "test": y_ho},
                          index={"train": idx_tr, "val": idx_tr, "calib": idx_tr, "test": idx_ho})

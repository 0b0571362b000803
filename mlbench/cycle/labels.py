"""Access to labels in the update cycle, and which items get labelled when labels are bought.

``cycle.labels.access`` states the constraint: ``delayed`` (every item's label arrives
``label_delay`` periods late: the default), ``budgeted`` (``budget`` labels are bought per
period, after the same delay) or ``none`` (no label ever arrives: only ``never`` can run).

Under a budget, each period's labels are split as its items are: a random ``gate_holdout``
share of the budget is drawn from the period's gate items (so the gate's evidence stays an
unbiased sample), the rest is chosen among its training items by an acquisition strategy —
``random``, ``least_confidence`` (1 − max p), ``margin`` (smallest gap between the two most
probable classes), ``entropy`` (of the predicted distribution) or ``kcenter`` (greedy
k-center on the items' inputs: each pick the item farthest from the period's earlier picks)
— reading the deployed model's outputs on the period. The oracle ignores the budget (it is
the reference that sees every label).
Each strategy named in ``strategies`` is a timeline of its own per policy that buys labels, so
the report compares them at equal label spend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlbench.errors import MlbenchError

ACCESS = ("delayed", "budgeted", "none")


def least_confidence(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 - probs.max(1)


def margin(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=1)
    return -(top[:, -1] - top[:, -2]) if probs.shape[1] > 1 else np.zeros(len(probs))


def entropy(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence, "margin": margin, "entropy": entropy}
STRATEGIES = ("random", *SCORES, "kcenter")


def kcenter(x: np.ndarray, k: int, labelled: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Greedy k-center: ``k`` rows of ``x``, each the farthest (Euclidean) from the rows chosen
    so far and from ``labelled`` (rows of the same space already labelled); with nothing
    labelled the first pick is a seeded random row."""
    k = min(k, len(x))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    x = x.reshape(len(x), -1).astype(np.float64)
    if labelled is not None and len(labelled):
        ref = labelled.reshape(len(labelled), -1).astype(np.float64)
        d = np.min(((x[:, None, :] - ref[None, :, :]) ** 2).sum(-1), axis=1)
        picks: list[int] = []
    else:
        first = int(np.random.default_rng(seed).integers(len(x)))
        picks = [first]
        d = ((x - x[first]) ** 2).sum(1)
    while len(picks) < k:
        d[picks] = -1.0
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, ((x - x[i]) ** 2).sum(1))
    return np.asarray(picks, dtype=np.int64)


def acquire(strategy: str, k: int, probs: np.ndarray, x: np.ndarray, seed: int,
            labelled_x: np.ndarray | None = None) -> np.ndarray:
    """Positions (into ``probs``/``x``) of the ``k`` items ``strategy`` labels; ties broken by
    position (stable), so the choice is deterministic for a seed."""
    k = min(k, len(probs))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == "random":
        return np.sort(np.random.default_rng(seed).permutation(len(probs))[:k])
    if strategy == "kcenter":
        return np.sort(kcenter(x, k, labelled_x, seed))
    if strategy not in SCORES:
        raise MlbenchError(f"cycle.labels.strategies: unknown {strategy!r}; one of {', '.join(STRATEGIES)}")
    score = SCORES[strategy](probs, x)
    return np.sort(np.argsort(-score, kind="stable")[:k])


class LabelAccess:
    """The ``cycle.labels`` settings, checked at set-up."""

    def __init__(self, access: str = "delayed", budget: int | None = None, strategies: list[str] | None = None):
        if access not in ACCESS:
            raise MlbenchError(f"cycle.labels.access must be one of {', '.join(ACCESS)}, got {access!r}")
        strategies = list(strategies or ["random"])
        bad = [s for s in strategies if s not in STRATEGIES]
        if bad:
            raise MlbenchError(f"cycle.labels.strategies: unknown {bad[0]!r}; one of {', '.join(STRATEGIES)}")
        if len(set(strategies)) != len(strategies):
            raise MlbenchError("cycle.labels.strategies: a strategy is named more than once")
        if access == "budgeted" and (budget is None or budget < 1):
            raise MlbenchError(f"cycle.labels.budget must be >= 1 label per period with access=budgeted, got {budget}")
        self.access, self.budget = access, budget
        self.strategies = strategies if access == "budgeted" else [None]

    def check_policies(self, policies: list) -> None:
        """A policy that retrains needs labels: with access=none only ``never`` can run."""
        if self.access != "none":
            return
        from mlbench.cycle.policies import Never
        needy = [p.name for p in policies if not isinstance(p, Never)]
        if needy:
            raise MlbenchError(f"cycle.labels.access=none: no label ever arrives, but {', '.join(needy)} retrain(s) "
                               "on labels; use cycle.policies=[never] or give access to labels")

    def pick(self, strategy: str | None, oracle: bool, probs: np.ndarray, x: np.ndarray, gate: np.ndarray,
             share: float, seed: int) -> np.ndarray:
        """The positions of a period's items whose labels arrive (sorted): all of them with
        delayed access and for the oracle; none with no access, or under a budget for a timeline
        that buys none (``strategy`` None: ``never``); else the budget's picks."""
        n = len(probs)
        if oracle or self.access == "delayed":
            return np.arange(n)
        if self.access == "none" or strategy is None:
            return np.zeros(0, dtype=np.int64)
        b = min(self.budget, n)
        g_pos, t_pos = np.flatnonzero(gate), np.flatnonzero(~gate)
        n_gate = min(len(g_pos), round(share * b))
        rng = np.random.default_rng([seed, 99])
        from_gate = np.sort(rng.permutation(g_pos)[:n_gate])
        chosen = t_pos[acquire(strategy, b - n_gate, probs[t_pos], x[t_pos], seed)]
        return np.sort(np.concatenate([from_gate, chosen]))

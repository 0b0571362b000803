"""When to retrain: each policy reads what the deployment knows at the end of a period (the
monitor's alarm, the error stream of the labels that have arrived, the label-free accuracy
estimate) and returns why it retrains, or None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mlbench.errors import MlbenchError


@dataclass
class Signals:
    """What the deployment knows at the end of period ``t``."""

    t: int
    alarm: list[str]  # output detectors that fired on this period's window
    error_alarm: bool  # the delayed-label error stream's detector fired this period
    estimate: float | None  # label-free accuracy estimate (ATC) of this period


class Policy:
    name: ClassVar[str] = "policy"
    oracle: ClassVar[bool] = False  # sees every label at once, trains on all of them

    def decide(self, s: Signals) -> str | None:
        raise NotImplementedError


class Never(Policy):
    """Keep the initial model for the whole stream (the lower reference)."""

    name = "never"

    def decide(self, s: Signals) -> str | None:
        return None


class Every(Policy):
    """Retrain every ``k`` periods, whatever the monitor says."""

    name = "every_k"

    def __init__(self, k: int):
        if k < 1:
            raise MlbenchError(f"cycle.every must be >= 1, got {k}")
        self.k = k

    def decide(self, s: Signals) -> str | None:
        return f"every {self.k} periods" if (s.t + 1) % self.k == 0 else None


class OnDrift(Policy):
    """Retrain when an output detector fires on the period's window, or when the error stream
    of the labels that have arrived drifts (river's detector: concept drift is invisible to
    output detectors)."""

    name = "drift"

    def decide(self, s: Signals) -> str | None:
        why = []
        if s.alarm:
            why.append("drift alarm: " + ", ".join(s.alarm))
        if s.error_alarm:
            why.append("error-rate drift on the delayed labels")
        return "; ".join(why) or None


class OnEstimate(Policy):
    """Retrain when the label-free accuracy estimate (ATC) falls below the accuracy target."""

    name = "estimate"

    def __init__(self, target: float):
        self.target = target

    def decide(self, s: Signals) -> str | None:
        if s.estimate is not None and s.estimate < self.target:
            return f"estimated accuracy {s.estimate:.3f} < {self.target:g}"
        return None


class Oracle(Policy):
    """Retrain every period on every label so far, with no label delay (the upper reference:
    what a deployment could reach if labels were free and immediate)."""

    name = "oracle"
    oracle = True

    def decide(self, s: Signals) -> str | None:
        return "every period, all labels, no delay"


NAMES = ("never", "every_k", "drift", "estimate", "oracle")


def make(name: str, every: int, target: float | None) -> Policy:
    if name == "never":
        return Never()
    if name == "every_k":
        return Every(every)
    if name == "drift":
        return OnDrift()
    if name == "estimate":
        if target is None:
            raise MlbenchError("the estimate policy needs an accuracy target (cycle.accuracy_target, or an "
                               "'accuracy >= x' gate requirement)")
        return OnEstimate(target)
    if name == "oracle":
        return Oracle()
    raise MlbenchError(f"cycle.policies: unknown policy {name!r}; one of {', '.join(NAMES)}")

"""When to retrain: each policy reads what the deployment knows at the end of a period (the
monitor's alarm, the error stream of the labels that have arrived, the label-free accuracy
estimate) and returns why it retrains, or None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mlbench.errors import MlbenchError
from mlbench.named import build_all


@dataclass
class Signals:
    """What the deployment knows at the end of period ``t``."""

    t: int
    alarm: list[str]  # output detectors that fired on this period's window
    error_alarm: bool  # the delayed-label error stream's detector fired this period
    estimate: float | None  # label-free accuracy estimate (ATC) of this period


UPDATE_MARKS = {"deployed": " [green]↻ deployed[/]", "refused": " [yellow]↻ refused[/]", "failed": " [red]↻ failed[/]",
                "skipped": " [dim]↻ no labels yet[/]"}


class Policy:
    """An update policy of ``mlbench cycle``. Subclasses declare ``presets`` (name →
    constructor arguments) for ``cycle.policies`` (or are named there by ``_target_``);
    ``every`` and ``target`` (the accuracy target) reach constructors that declare them."""

    name: ClassVar[str] = "policy"
    oracle: ClassVar[bool] = False  # sees every label at once, trains on all of them
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def decide(self, s: Signals) -> str | None:
        raise NotImplementedError

    @classmethod
    def report_line(cls, name: str, note: str, rows: list[dict[str, Any]]) -> str:
        """Its line in the cycle report: what it does, and what it did over the stream."""
        updates = [r["update"] for r in rows if r.get("update")]
        done = {k: sum(u["status"] == k for u in updates) for k in ("deployed", "refused", "failed")}
        acc = [r["accuracy"] for r in rows]
        mean = f"mean accuracy {sum(acc) / len(acc):.3f}, " if acc else ""
        return (f"**{name}**{' (sees every label at once: the upper reference)' if cls.oracle else ''}: {note} — "
                f"{mean}{done['deployed']} deployed, {done['refused']} refused, {done['failed']} failed updates")

    @classmethod
    def console_cell(cls, name: str, row: dict[str, Any]) -> str:
        """This policy's part of a period's console line: the period's accuracy with the
        deployed model, an alarm mark, and what an update did."""
        u = row["update"]
        alarm = " [magenta]![/]" if row["alarm"] or row["error_alarm"] else ""
        return f"{name} {row['accuracy']:.3f}{alarm}{'' if u is None else UPDATE_MARKS[u['status']]}"


class Never(Policy):
    """Keep the initial model for the whole stream (the lower reference)."""

    presets = {"never": {}}

    def decide(self, s: Signals) -> str | None:
        return None


class Every(Policy):
    """Retrain every ``k`` periods, whatever the monitor says."""

    presets = {"every_k": {}}

    def __init__(self, every: int):
        if every < 1:
            raise MlbenchError(f"cycle.every must be >= 1, got {every}")
        self.k = every

    def decide(self, s: Signals) -> str | None:
        return f"every {self.k} periods" if (s.t + 1) % self.k == 0 else None


class OnDrift(Policy):
    """Retrain when an output detector fires on the period's window, or when the error stream
    of the labels that have arrived drifts (river's detector: concept drift is invisible to
    output detectors)."""

    presets = {"drift": {}}

    def decide(self, s: Signals) -> str | None:
        why = []
        if s.alarm:
            why.append("drift alarm: " + ", ".join(s.alarm))
        if s.error_alarm:
            why.append("error-rate drift on the delayed labels")
        return "; ".join(why) or None


class OnEstimate(Policy):
    """Retrain when the label-free accuracy estimate (ATC) falls below the accuracy target."""

    presets = {"estimate": {}}

    def __init__(self, target: float | None):
        if target is None:
            raise MlbenchError("the estimate policy needs an accuracy target (cycle.accuracy_target, or an "
                               "'accuracy >= x' gate requirement)")
        self.target = target

    def decide(self, s: Signals) -> str | None:
        if s.estimate is not None and s.estimate < self.target:
            return f"estimated accuracy {s.estimate:.3f} < {self.target:g}"
        return None


class Oracle(Policy):
    """Retrain every period on every label so far, with no label delay (the upper reference:
    what a deployment could reach if labels were free and immediate)."""

    presets = {"oracle": {}}
    oracle = True

    def decide(self, s: Signals) -> str | None:
        return "every period, all labels, no delay"


def build_policies(entries: Any, every: int, target: float | None) -> list[Policy]:
    """The policies ``cycle.policies`` names (presets or ``_target_`` mappings); ``every`` and
    the accuracy ``target`` are offered to each constructor that declares them."""
    return build_all(entries, Policy, "cycle.policies", every=every, target=target)

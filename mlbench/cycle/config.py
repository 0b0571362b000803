"""The ``cycle`` config group: the stream, the policies, the update and its gate, checked
before any work."""

from __future__ import annotations

from typing import Any

from mlbench.analysis.requirements import validate as validate_requirement
from mlbench.cycle.labels import LabelAccess
from mlbench.cycle.policies import Never, Policy, build_policies
from mlbench.cycle.stream import schedule as build_schedule
from mlbench.errors import MlbenchError
from mlbench.monitor.detectors import build_detectors

# what an update trains on: the window's periods, every labelled period so far, or the window
# with items of the original training split replayed beside it
TRAIN_DATA = ("window", "cumulative", "replay")


class Cycle:
    """The ``cycle`` config group: the stream (periods, items per period, label delay, drift
    schedule), the policies, the update (window, warm start, epochs, recipe) and its gate
    (requirements judged on the gate's held-out evidence against the model deployed now). Every
    parameter's default is in ``conf/cycle/default.yaml`` (the default option), nowhere else."""

    def __init__(self, *, periods: int, period_size: int, label_delay: int, window: int, schedule: list[dict],
                 train_data: str, replay: float, gate_holdout: float, gate_periods: int, labels: dict,
                 policies: list[Any], every: int, detectors: list[Any], error_detector: str | None, alpha: float,
                 warm_start: bool, epochs: int, batch_size: int, auto_corruption: dict[str, str], recipe: str | None,
                 requirements: list[dict], use_bound: bool, accuracy_target: float | None, recovery_tolerance: float,
                 scaling: list[int], latency_calls: int, resume: bool, seed: int):
        if periods < 2 or period_size < 10:
            raise MlbenchError(f"cycle needs periods >= 2 and period_size >= 10, got {periods} and {period_size}")
        if not 0 <= label_delay < periods:
            raise MlbenchError(f"cycle.label_delay {label_delay}: labels of period t arrive at the end of period "
                               f"t + delay, so a delay of {periods} or more periods never delivers a label "
                               f"within the {periods}-period stream")
        if window < 1:
            raise MlbenchError(f"cycle.window must be >= 1 labelled period, got {window}")
        if train_data not in TRAIN_DATA:
            raise MlbenchError(f"cycle.train_data must be one of {', '.join(TRAIN_DATA)}, got {train_data!r}")
        if not replay > 0 and train_data == "replay":
            raise MlbenchError(f"cycle.replay must be > 0 with train_data=replay (original items per new one), got {replay}")
        if not 0 < gate_holdout < 1 or round(gate_holdout * period_size) < 1 or round(gate_holdout * period_size) >= period_size:
            raise MlbenchError(f"cycle.gate_holdout must leave at least one item of each period to the gate and one to "
                               f"training (0 < share < 1 of {period_size} items), got {gate_holdout}")
        if gate_periods < 1:
            raise MlbenchError(f"cycle.gate_periods must be >= 1 labelled period, got {gate_periods}")
        if not policies:
            raise MlbenchError("cycle.policies must name at least one policy")
        detectors = [e if isinstance(e, str) else dict(e) for e in detectors]
        built = build_detectors(detectors, "cycle.detectors", alpha, seed)
        bad = [d.name for d in built if d.needs == "embeddings"]
        if bad:
            raise MlbenchError(f"cycle.detectors: {', '.join(bad)} need embeddings, which a deployed (compressed) "
                               "model does not have; use detectors that read its outputs or inputs")
        if error_detector not in (None, "adwin", "kswin", "page_hinkley"):
            raise MlbenchError(f"cycle.error_detector must be adwin, kswin, page_hinkley or null, got {error_detector!r}")
        if batch_size < 2:
            raise MlbenchError(f"cycle.batch_size must be >= 2, got {batch_size}")
        if epochs < 1 or not 0 < alpha < 1 or not 0 <= recovery_tolerance < 1:
            raise MlbenchError("cycle needs epochs >= 1, alpha in (0, 1) and recovery_tolerance in [0, 1)")
        if (scaling and min(scaling) < 1) or latency_calls < 10:
            raise MlbenchError("cycle.scaling needs window multiples >= 1 ([] skips the table), latency_calls >= 10")
        if accuracy_target is not None and not 0 < accuracy_target <= 1:
            raise MlbenchError(f"cycle.accuracy_target must be in (0, 1] (or null), got {accuracy_target}")
        if every < 1:
            raise MlbenchError(f"cycle.every must be >= 1 period, got {every}")
        self.requirements = [dict(r) for r in requirements]
        for r in self.requirements:
            validate_requirement(r)
        self.periods, self.period_size, self.label_delay, self.window = periods, period_size, label_delay, window
        self.train_data, self.replay, self.gate_holdout, self.gate_periods = train_data, replay, gate_holdout, gate_periods
        self.scenarios = build_schedule([dict(e) for e in schedule], periods)
        self.schedule = [dict(e) for e in schedule]
        self.accuracy_target = accuracy_target if accuracy_target is not None else gate_target(self.requirements)
        self.policies: list[Policy] = build_policies(policies, every, self.accuracy_target)
        self.labels = LabelAccess(**dict(labels))
        self.labels.check_policies(self.policies)
        # the timelines: one per policy, one per policy and acquisition strategy when labels are bought
        self.tracks: list[tuple[str, Policy, str | None]] = []
        for p in self.policies:
            reference = p.oracle or isinstance(p, Never)  # buys no label, or sees every one
            for strategy in [None] if reference else self.labels.strategies:
                self.tracks.append((p.name if strategy is None else f"{p.name}+{strategy}", p, strategy))
        self.every, self.detectors, self.error_detector, self.alpha = every, detectors, error_detector, alpha
        self.detector_names = [d.name for d in built]
        self.warm_start, self.epochs, self.batch_size, self.recipe = warm_start, epochs, batch_size, recipe
        self.auto_corruption = dict(auto_corruption)
        self.use_bound, self.recovery_tolerance = use_bound, recovery_tolerance
        self.scaling, self.latency_calls, self.resume, self.seed = sorted(set(scaling)), latency_calls, resume, seed


def gate_target(reqs: list[dict]) -> float | None:
    """The strictest ``accuracy >= x`` of the gate (the accuracy target of the timeline)."""
    vals = [float(r["value"]) for r in reqs if r.get("metric") == "accuracy" and r.get("op") in (">=", ">")]
    return max(vals) if vals else None

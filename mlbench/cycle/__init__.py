"""The update cycle: ``mlbench cycle`` simulates a deployment over a stream that changes and
times the loop (monitor → policy → data checks → retrain → recipe → gate → deploy)."""

from mlbench.cycle.loop import Cycle, Engine
from mlbench.cycle.policies import (
           Every,
           Never,
           OnDrift,
           OnEstimate,
           Oracle,
           Policy,
           Signals,
)
from mlbench.cycle.stream import Stream, schedule

__all__ = ["Cycle", "Engine", "Stream", "schedule", "Policy", "Signals", "Never", "Every", "OnDrift",
           "OnEstimate", "Oracle"]

"""Monitoring: shift scenarios, detectors and estimators, and the protocol that measures them."""

from mlbench.monitor.detectors import (
    ATC,
    BBSE,
    MMD,
    BBSDh,
    BBSDs,
    ConfidenceShift,
    Detector,
    DomainClassifier,
    EntropyShift,
    FeatureKS,
    View,
)
from mlbench.monitor.protocol import Monitor, failing_loudly, rate_ci
from mlbench.monitor.scenarios import Scenario

__all__ = ["ATC", "BBSE", "MMD", "BBSDh", "BBSDs", "ConfidenceShift", "Detector", "DomainClassifier",
           "EntropyShift", "FeatureKS", "View", "Monitor", "Scenario", "failing_loudly", "rate_ci"]

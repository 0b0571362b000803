"""Stress tests: corruptions, adversarial attacks, weight faults, explanation shift.

Each stressor is one entry of the multi-select ``stress`` config group.
"""

from mlbench.stress.adversarial import Attack
from mlbench.stress.base import Stressor
from mlbench.stress.blackbox import SquareAttack
from mlbench.stress.corruptions import (
    Brightness,
    Contrast,
    Corruption,
    FeatureNoise,
    GaussianBlur,
    GaussianNoise,
    ImpulseNoise,
    MissingFeatures,
    Occlusion,
    Pixelate,
    ScalingDrift,
    ShotNoise,
)
from mlbench.stress.explain import Explanations
from mlbench.stress.faults import WeightFaults

__all__ = ["Stressor", "Corruption", "GaussianNoise", "ShotNoise", "ImpulseNoise", "GaussianBlur",
           "Contrast", "Brightness", "Pixelate", "Occlusion", "FeatureNoise", "MissingFeatures",
           "ScalingDrift", "Attack", "SquareAttack", "WeightFaults", "Explanations"]

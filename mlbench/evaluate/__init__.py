"""Evaluation: the one loop, the metric table and definitions, and efficiency measurement.

Names are imported on first use (PEP 562) so that reading the metric table
(``mlbench.evaluate.registry``, needed to compose a config) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"evaluate": "loop", "predict_all": "loop", "Evaluation": "loop",
         "classification_metrics": "metrics", "latency": "efficiency", "throughput": "efficiency",
         "peak_memory": "efficiency", "compare_efficiency": "efficiency"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"mlbench.evaluate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mlbench.evaluate' has no attribute {name!r}")

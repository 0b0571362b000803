"""The closed sets of strings in the config (the schema's Enums): Hydra rejects any other value
while it composes the config. Imports nothing of mlbench, so anything may use them."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A closed set of strings: Hydra rejects any other value when it composes the config, and
    the code compares, prints and stores a member as its plain string."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Amp(Choice):
    """Mixed precision while training on CUDA."""
    bf16 = "bf16"
    fp16 = "fp16"
    none = "none"


class CalibrationView(Choice):
    """Which outputs fill a variant's metrics: the softmax of its logits, the baseline's
    calibrator applied to it, or a calibrator refitted to it on the calib split."""
    uncalibrated = "uncalibrated"
    carried = "carried"
    refit = "refit"


class ServingMode(Choice):
    """``online``: one request at a time (batch 1); ``batch``: batches of ``eval.batch_size``."""
    online = "online"
    batch = "batch"


class Output(Choice):
    text = "text"
    json = "json"


class TableStyle(Choice):
    auto = "auto"
    compact = "compact"
    full = "full"


class GraphOptimization(Choice):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


class Mode(Choice):
    """The better direction of an objective or axis."""
    max = "max"
    min = "min"

"""The closed sets of strings in the config (the schema's Enums): Hydra rejects any other value
while it composes the config; a component's constructor checks its own with ``choose``.
Imports only ``errors``, so anything may use them."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from mlbench.errors import MlbenchError

C = TypeVar("C", bound="Choice")


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


class WhenUnfit(Choice):
    """What a stressor, data check or the monitor does when the data does not fit it: fail the
    run at set-up (``error``), or skip it with the reason recorded (``skip``)."""
    error = "error"
    skip = "skip"


def choose(choice: type[C], value: object, where: str) -> C:
    """``value`` as a member of ``choice``, or one :class:`MlbenchError` naming ``where`` and
    the allowed values."""
    try:
        return choice(str(value))
    except ValueError:
        raise MlbenchError(f"{where} must be one of {', '.join(choice)}, got {value!r}") from None

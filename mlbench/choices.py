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


def _choice(name: str, values: str, doc: str) -> type[Choice]:
    """A :class:`Choice` whose members are ``values`` (space-separated), each named as its value
    (OmegaConf matches a config string to a member by name)."""
    cls = Choice(name, [(v, v) for v in values.split()], module=__name__, qualname=name)  # type: ignore[call-overload]
    cls.__doc__ = doc
    return cls


Amp = _choice("Amp", "bf16 fp16 none", "Mixed precision while training on CUDA.")
CalibrationView = _choice("CalibrationView", "uncalibrated carried refit",
                          "Which outputs fill a variant's metrics: the softmax of its logits, the baseline's calibrator "
                          "applied to it, or a calibrator refitted to it on the calib split.")
ServingMode = _choice("ServingMode", "online batch",
                      "``online``: one request at a time (batch 1); ``batch``: batches of ``eval.batch_size``.")
Output = _choice("Output", "text json", "What a run prints on stdout: the table and decision, or the key figures as JSON.")
TableStyle = _choice("TableStyle", "auto compact full", "The terminal table: full at >= 120 columns, compact, or full.")
GraphOptimization = _choice("GraphOptimization", "disable basic extended all", "onnxruntime's graph optimization level.")
Interpolation = _choice("Interpolation", "nearest bilinear bicubic lanczos box hamming",
                        "Pillow's resampling filter when images are resized.")
ImageMode = _choice("ImageMode", "RGB L", "Pillow's image mode: RGB (3 channels) or L (grey, 1 channel).")
Preprocess = _choice("Preprocess", "standardize none",
                     "Table features: standardized with train statistics, or given to the model exactly as read.")
OutputKind = _choice("OutputKind", "auto logits probabilities",
                     "What an ONNX model's output holds: detected, logits, or probabilities.")
TrainStart = _choice("TrainStart", "scratch none finetune",
                     "How the baseline comes to be: trained from scratch, the model as given (no training), or "
                     "fine-tuned from its weights.")
Mode = _choice("Mode", "max min", "The better direction of an objective or axis.")
WhenUnfit = _choice("WhenUnfit", "error skip",
                    "What a stressor, data check or the monitor does when the data does not fit it: fail the run "
                    "at set-up (``error``), or skip it with the reason recorded (``skip``).")


def choose(choice: type[C], value: object, where: str) -> C:
    """``value`` as a member of ``choice``, or one :class:`MlbenchError` naming ``where`` and
    the allowed values."""
    try:
        return choice(str(value))
    except ValueError:
        raise MlbenchError(f"{where} must be one of {', '.join(choice)}, got {value!r}") from None

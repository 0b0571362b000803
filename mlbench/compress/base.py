"""Artifacts and passes.

A pass turns one artifact into a new one and never changes its input. The new
artifact's id is ``hash(parent id, pass name, pass parameters)``: the same
recipe on the same baseline always gives the same id (lineage), and the
``records`` list says what every pass did.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mlbench.compress.formats import Format, format_of
from mlbench.data import DataBundle
from mlbench.errors import NotApplicable, VariantFailed
from mlbench.train.cache import content_hash


@dataclass
class Parity:
    """Agreement of an artifact's logits with a reference on real test inputs: the torch
    model it was exported from (``reference="torch"``) or the artifact it was made from
    (``reference="parent"``)."""

    reference: str
    max_abs_diff: float
    top1_agreement: float
    samples: int
    atol: float | None = None  # the tolerance |a - b| <= atol + rtol*|b| it was judged against
    rtol: float | None = None
    worst_excess: float | None = None  # max |a - b| / (atol + rtol*|b|): <= 1 within tolerance
    within_tolerance: float | None = None  # fraction of logits within it
    worst: dict[str, Any] | None = None  # the worst logit: item, class, reference, candidate, rel_diff

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Facts:
    """What is known about an artifact, typed: its parameter counts (of the torch model, or of
    the torch model an ONNX file came from) and its last parity check."""

    params: int | None = None
    nonzero_params: int | None = None
    parity: Parity | None = None


@dataclass
class Artifact:
    """A deployable model: an in-memory torch module or an ONNX file (with its external data),
    or any other registered format, and what it can do: the devices it runs on and whether
    gradients flow through it. What differs between formats lives in :attr:`kind`."""

    id: str
    format: str  # the name of a registered Format (compress/formats.py): torch, onnx, ...
    model: nn.Module | None = None
    path: Path | None = None
    files: list[Path] = field(default_factory=list)  # everything needed to load it
    parent: str | None = None
    recipe: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    dtype: torch.dtype = torch.float32
    cpu_only: bool = False  # e.g. torch int8 kernels exist only on the CPU
    runner: dict[str, Any] = field(default_factory=dict)  # runner options the pass asks for
    facts: Facts = field(default_factory=Facts)
    flags: list[str] = field(default_factory=list)  # honest warnings raised by the passes

    @property
    def kind(self) -> Format:
        """What this artifact's format can do (runner, files, cache, faults, reload, export)."""
        return format_of(self.format)

    @property
    def differentiable(self) -> bool:
        """Gradients flow to the inputs (white-box attacks, attributions, fault copies)."""
        return self.kind.differentiable and not self.cpu_only

    @property
    def devices(self) -> tuple[str, ...]:
        """Device types it can run on. ONNX files run on the providers onnxruntime offers."""
        return ("cpu",) if self.cpu_only else ("cpu", "cuda")


@dataclass
class PassContext:
    """What passes may use: the data (calib split for calibration, test split for parity),
    the device, a folder for files, and the training settings for fine-tuning."""

    data: DataBundle
    device: torch.device
    workdir: Path
    seed: int = 0
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    step: int = 0


def lineage_id(parent: str, name: str, params: dict[str, Any]) -> str:
    return content_hash({"parent": parent, "pass": name, "params": params}, length=12)


class Pass:
    """Base of every pass. Subclasses are dataclasses whose fields are the pass's
    typed, documented parameters, and implement :meth:`apply`."""

    name: ClassVar[str] = "pass"
    accepts: ClassVar[tuple[str, ...]] = ("torch",)
    produces: ClassVar[str] = "torch"  # the format of the artifact it returns

    def params(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))  # type: ignore[arg-type]

    def compute_scale(self) -> float:
        """Time per item of the artifact it returns, relative to the one it is given, as the
        plan assumes before the pass has run (1.0: unchanged)."""
        return 1.0

    def apply(self, art: Artifact, ctx: PassContext) -> tuple[Artifact, dict[str, Any]]:
        """Return the new artifact (id filled in by ``__call__``) and facts to record."""
        raise NotImplementedError

    def __call__(self, art: Artifact, ctx: PassContext) -> Artifact:
        if art.format not in self.accepts:
            if art.parent is None and art.format != "torch" and "torch" in self.accepts:
                raise NotApplicable(f"pass {self.name} needs the model's torch source; the model was given "
                                    f"only as {art.format}")
            raise VariantFailed(f"pass {self.name} needs a {' or '.join(self.accepts)} artifact, "
                                f"got {art.format} (reorder the recipe)")
        new, info = self.apply(art, ctx)
        if new.facts.params is None:  # a conversion keeps its source's parameter counts
            new.facts.params, new.facts.nonzero_params = art.facts.params, art.facts.nonzero_params
        new.flags = list(dict.fromkeys([*art.flags, *new.flags]))
        if new.facts.parity is not None:
            info = {**info, "parity": new.facts.parity.as_dict()}
        params = self.params()
        new.id = lineage_id(art.id, self.name, params)
        new.parent = art.id
        new.recipe = [*art.recipe, self.name]
        new.records = [*art.records, {"pass": self.name, "id": new.id, "parent": art.id,
                                      "params": params, "info": info}]
        return new


def copy_torch(art: Artifact, device: torch.device | str = "cpu") -> nn.Module:
    """A deep copy of a torch artifact's model, so a pass never mutates its input."""
    model = copy.deepcopy(art.model).to(device)
    # runners may have switched the source to channels_last; passes expect plain layouts
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return model


def modules_of(model: nn.Module, kinds: list[str]) -> list[tuple[str, nn.Module]]:
    names = set(kinds)
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in names]


def batches(x: torch.Tensor, size: int) -> Callable[[], Any]:
    return lambda: (x[i:i + size] for i in range(0, len(x), size))

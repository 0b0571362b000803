"""Test-only passes, importable by a CLI run when tests/ is on PYTHONPATH."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlbench.compress.base import Artifact, Pass, copy_torch


@dataclass
class Poison(Pass):
    """A broken compression: the head's bias becomes NaN, so every output is NaN."""

    name = "poison"

    def apply(self, art: Artifact, ctx):
        model = copy_torch(art)
        with torch.no_grad():
            list(model.parameters())[-1].fill_(float("nan"))
        return Artifact(id="", format="torch", model=model), {}

"""Stressor contract.

A stressor is built from the ``stress`` config group (a multi-select list) and
declares what it fits: ``modalities``. ``check(meta)`` runs when the run is set
up (after the data is read, before any training): a corruption that does not
fit the data, or an eps outside the input range, fails there with one line.
Presets (``light``, ``full``) set ``when_unfit: skip`` so one preset serves
image and tabular data; a stressor picked by name fails instead.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from mlbench.data import DataMeta
from mlbench.errors import MlbenchError


class Stressor:
    kind: ClassVar[str] = "stressor"
    modalities: ClassVar[tuple[str, ...]] = ("image", "tabular")

    def __init__(self, when_unfit: str = "error", seed: int = 0):
        if when_unfit not in ("error", "skip"):
            raise MlbenchError(f"stress when_unfit must be error or skip, got {when_unfit!r}")
        self.when_unfit, self.seed = when_unfit, seed
        self.name = type(self).__name__

    def fits(self, meta: DataMeta) -> str | None:
        """Why this stressor does not fit the data, or None."""
        if meta.modality not in self.modalities:
            return f"{self.name} needs {' or '.join(self.modalities)} data, but {meta.name} is {meta.modality}"
        return None

    def check(self, meta: DataMeta) -> bool:
        """True if it will run; False if skipped; MlbenchError if unfit and not skippable."""
        why = self.fits(meta)
        if why is None:
            return True
        if self.when_unfit == "skip":
            return False
        raise MlbenchError(f"stress.{self.name}: {why}")


def generator(seed: int, *parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded from the run seed and a condition's name."""
    import zlib
    key = zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + key) % (2**63))

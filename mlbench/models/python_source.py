"""``model=python``: a torch module handed over in Python (``mlbench.run(model=module)``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlbench.errors import MlbenchError
from mlbench.models.checkpoints import check_head, output_classes

OBJECTS: dict[str, nn.Module] = {}  # modules handed to mlbench.run(model=...), by key


def state_sha256(model: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, in order)."""
    import hashlib
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class PythonModel:
    """``model=python``: a module handed over in Python (``mlbench.run(model=module)``), used
    with its weights as they are (each call returns a deep copy, so no stage changes it). The
    class and the sha256 of its state dict are recorded; the head size and class names are
    checked as for ``model=torch``."""

    source = "python"
    pretrained = True

    def __init__(self, key: str, class_names: list[str] | None = None):
        if key not in OBJECTS:
            raise MlbenchError("model=python takes a module handed to mlbench.run(model=...); none is registered "
                               f"under {key!r}")
        self.key, self.class_names = key, list(class_names) if class_names else None
        self.weights_sha256 = state_sha256(OBJECTS[key])
        self.record: dict[str, Any] = {}

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        import copy
        model = copy.deepcopy(OBJECTS[self.key]).cpu()
        check_head(output_classes(model, tuple(input_shape)), num_classes)
        cls = type(model)
        self.record = {"source": self.source, "arch": f"{cls.__module__}.{cls.__qualname__}", "weights": None,
                       "sha256": self.weights_sha256, "format": "python object", "weights_only": True,
                       "class_names": self.class_names, "class_names_from": "config" if self.class_names else None}
        return model

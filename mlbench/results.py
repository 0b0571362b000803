"""Writing the results contract: summary.json, predictions/*.npz, atomic file writes."""

from __future__ import annotations

import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch


def jsonable(obj: Any) -> Any:
    """Plain JSON values: tensors and arrays become lists, NaN and inf become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; results are for everyone to read
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def save_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                     logits: torch.Tensor | None = None, group: torch.Tensor | None = None) -> None:
    """``predictions/<variant>.npz`` as in the results contract."""
    arrays = {"probs": probs.float().numpy(), "labels": labels.long().numpy(),
              "index": index.long().numpy()}
    if logits is not None:
        arrays["logits"] = logits.float().numpy()
    if group is not None:
        arrays["group"] = group.long().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def summary_schema() -> dict:
    return json.loads(resources.files("mlbench").joinpath("summary.schema.json").read_text())


def validate_summary(summary: dict) -> None:
    """Raise ``jsonschema.ValidationError`` if ``summary`` breaks the contract."""
    import jsonschema
    jsonschema.validate(summary, summary_schema())

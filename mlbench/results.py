"""Writing the results contract: summary.json, predictions/*.npz, atomic file writes."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbench.errors import ZIP_READ_ERRORS, MlbenchError
from mlbench.version import SCHEMA_VERSION

if TYPE_CHECKING:  # torch is not imported at run time here: `mlbench compare` starts without it
    import torch


def jsonable(obj: Any, keep_nonfinite: bool = False) -> Any:
    """Plain JSON values: tensors and arrays become lists, NaN and inf become null (or stay, with
    ``keep_nonfinite``, for state that is read back by mlbench itself)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, keep_nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, keep_nonfinite) for v in obj]
    if type(obj).__module__.startswith("torch") and hasattr(obj, "tolist"):  # a tensor
        return jsonable(obj.tolist(), keep_nonfinite)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), keep_nonfinite)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if keep_nonfinite or math.isfinite(f) else None
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


def write_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` (dicts with the same keys) as a CSV file with a header line, written whole or
    not at all; floats keep their full precision (``repr``)."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    atomic_write(path, buf.getvalue())
    return path


def save_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                     logits: torch.Tensor | None = None, group: torch.Tensor | None = None) -> None:
    """``predictions/<variant>.npz`` as in the results contract."""
    arrays = {"probs": probs.float().numpy(), "labels": labels.long().numpy(),
              "index": index.long().numpy()}
    if logits is not None:
        arrays["logits"] = logits.float().numpy()
    if group is not None:
        arrays["group"] = group.long().numpy()
    save_npz(path, arrays)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed ``.npz`` written whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_splits(path: Path, index: dict[str, "torch.Tensor"]) -> None:
    """``splits.npz``: for each split, the dataset indices of its items in the order the run
    used them (the test split's order is the row order of ``predictions/*.npz``)."""
    save_npz(path, {s: t.long().numpy() for s, t in index.items()})


def summary_schema() -> dict:
    return json.loads(resources.files("mlbench").joinpath("summary.schema.json").read_text())


@functools.lru_cache(maxsize=1)
def _validator():
    """The contract's validator, built (and the schema itself checked) once per process:
    ``jsonschema.validate`` checks the schema on every call, most of its cost per summary."""
    import jsonschema  # only when a summary is validated
    schema = summary_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_summary(summary: dict) -> None:
    """Raise ``jsonschema.ValidationError`` if ``summary`` breaks the contract (the error
    ``jsonschema.validate`` would raise)."""
    from jsonschema.exceptions import best_match
    err = best_match(_validator().iter_errors(summary))
    if err is not None:
        raise err


# -- readers of files that may come from anywhere: one MlbenchError, never a traceback ----------

def read_summary(path: Path) -> dict:
    """A run's summary.json, checked against the contract's JSON Schema. Raises
    :class:`~mlbench.errors.MlbenchError` (one line) for anything else: not UTF-8, not
    JSON, not an object, another ``schema_version`` (then ``.schema_version`` is set)."""
    import jsonschema  # only when a summary is validated

    try:
        text = Path(path).read_bytes().decode("utf-8")
        s = json.loads(text, parse_constant=_not_a_number)
    except UnicodeDecodeError:
        raise MlbenchError(f"{path}: not UTF-8 text") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, and NaN/Infinity (not JSON numbers)
        raise MlbenchError(f"{path}: not JSON ({str(e).splitlines()[0][:80]})") from None
    except OSError as e:
        raise MlbenchError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(s, dict):
        raise MlbenchError(f"{path}: a JSON {type(s).__name__}, not an object")
    if s.get("schema_version") != SCHEMA_VERSION:
        err = MlbenchError(f"{path}: schema_version {s.get('schema_version')!r}; this mlbench reads version "
                           f"{SCHEMA_VERSION}. Use the mlbench version that wrote it, or re-run.")
        err.schema_version = s.get("schema_version")  # type: ignore[attr-defined]
        raise err
    try:
        validate_summary(s)
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "top level"
        raise MlbenchError(f"{path}: breaks the results contract at {where}: {e.message[:120]}") from None
    except RecursionError:
        raise MlbenchError(f"{path}: nested too deeply") from None
    problem = out_of_bounds(s)
    if problem:
        raise MlbenchError(f"{path}: breaks the results contract at {problem}")
    return s


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def out_of_bounds(summary: dict) -> str | None:
    """The first metric or delta in ``summary`` outside what a correct run can report (the
    metric table's ``bounds``: an accuracy of 1.7, a negative size), as ``where: why``."""
    from mlbench.evaluate.registry import METRICS

    for name, v in summary.get("variants", {}).items():
        for key, value in (v.get("metrics") or {}).items():
            spec = METRICS.get(key)
            if spec is not None and value is not None and not spec.bounds[0] <= value <= spec.bounds[1]:
                return f"variants/{name}/metrics/{key}: {value} outside [{spec.bounds[0]}, {spec.bounds[1]}]"
        for key, d in (v.get("deltas") or {}).items():
            spec = METRICS.get(key)
            if spec is None or not isinstance(d, dict):
                continue
            lo, hi = spec.bounds
            for part in ("value", "ci_low", "ci_high"):
                x = d.get(part)
                if x is not None and not lo - hi <= x <= hi - lo:
                    return f"variants/{name}/deltas/{key}/{part}: {x} is not a difference of two values in [{lo}, {hi}]"
            p = d.get("p_value")
            if p is not None and not 0 <= p <= 1:
                return f"variants/{name}/deltas/{key}/p_value: {p} outside [0, 1]"
    return None


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """``predictions/<variant>.npz`` as the contract says (probs [N, C] float, labels and index
    [N] integers, no pickled objects), or one :class:`~mlbench.errors.MlbenchError`."""
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in ("probs", "labels", "index")}
    except KeyError as e:
        raise MlbenchError(f"{path}: missing array {e}") from None
    except (OSError, ValueError, MemoryError, TypeError, *ZIP_READ_ERRORS) as e:
        raise MlbenchError(f"{path}: not a predictions file ({type(e).__name__})") from None
    p, y, i = out["probs"], out["labels"], out["index"]
    if p.ndim != 2 or p.dtype.kind != "f" or y.ndim != 1 or i.ndim != 1 or not (len(p) == len(y) == len(i)):
        raise MlbenchError(f"{path}: expected probs [N, C] float, labels [N], index [N]; got {p.shape} "
                           f"{p.dtype}, {y.shape}, {i.shape}")
    if y.dtype.kind not in "iu" or i.dtype.kind not in "iu":
        raise MlbenchError(f"{path}: labels and index must be integers")
    if len(y) and ((y < 0).any() or (y >= p.shape[1]).any()):
        raise MlbenchError(f"{path}: labels outside [0, {p.shape[1]})")
    if not np.isfinite(p).all():
        raise MlbenchError(f"{path}: non-finite probabilities")
    if len(p) and (p.min() < -1e-6 or p.max() > 1 + 1e-6 or np.abs(p.sum(1) - 1).max() > 1e-3):
        raise MlbenchError(f"{path}: probs are not probabilities (each row must lie in [0, 1] and sum to 1)")
    return out


def results_root() -> Path:
    """Where runs go unless the command line says otherwise: ``$MLBENCH_RESULTS`` or ``results``
    (``conf/paths/default.yaml`` says the same to Hydra)."""
    return Path(os.environ.get("MLBENCH_RESULTS") or "results")


def write_rows(rows: list[dict], out: Path, name: str) -> list[Path]:
    """``out/<name>.csv``: one row per dict, the first row's keys as columns."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return [out / f"{name}.csv"]

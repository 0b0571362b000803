"""The Python API: the same runs as the command line, from a notebook or a script.

    import mlbench
    s = mlbench.run(["data=wine", "variants=[onnx_fp32,ort_int8_dynamic]"])
    s = mlbench.run(model=my_module, data=(x, y))   # your model and data (or a DataFrame, a path)
    s.recommended, s.decision                       # the choice and why
    s["ort_int8_dynamic"].accuracy, s["ort_int8_dynamic"].delta("accuracy")
    table = mlbench.compare([s.run_dir])             # one row per (run, variant)
    mlbench.export(["data=wine", "export.variant=ort_int8_dynamic", "export.output=dist/wine.onnx"])

Overrides are the command line's (``group=option``, ``key=value``); a mistake raises
:class:`mlbench.errors.MlbenchError` with the same one-line message the CLI prints. Runs
write the same run folder (summary.json, predictions, report) as ``mlbench``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError


@dataclass(frozen=True)
class Interval:
    """A figure with its confidence interval (None bounds: no interval was computed)."""

    value: float
    ci_low: float | None
    ci_high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)


class VariantResult:
    """One variant of a run, read from summary.json: ``metrics`` (every figure), typed
    accessors for the common ones, ``delta(metric)`` against the baseline, ``passed``."""

    def __init__(self, name: str, raw: dict[str, Any]):
        self.name, self.raw = name, raw

    @property
    def ok(self) -> bool:
        return self.raw.get("status") == "ok"

    @property
    def metrics(self) -> dict[str, Any]:
        return self.raw.get("metrics") or {}

    def _m(self, key: str) -> float | None:
        v = self.metrics.get(key)
        return None if v is None else float(v)

    @property
    def accuracy(self) -> float | None:
        return self._m("accuracy")

    @property
    def ece(self) -> float | None:
        return self._m("ece")

    @property
    def latency_p50_ms(self) -> float | None:
        return self._m("latency_p50_ms")

    @property
    def size_bytes(self) -> float | None:
        return self._m("size_bytes")

    @property
    def passed(self) -> bool | None:
        """Whether it meets every requirement (None when no requirements were checked)."""
        req = self.raw.get("requirements")
        return None if req is None else bool(req["passed"])

    def delta(self, metric: str = "accuracy") -> Interval | None:
        """Variant minus baseline on the same items, with the paired bootstrap interval."""
        d = (self.raw.get("deltas") or {}).get(metric)
        return None if not d else Interval(d["value"], d.get("ci_low"), d.get("ci_high"))

    def __repr__(self) -> str:
        if not self.ok:
            return f"VariantResult({self.name!r}, failed: {self.raw.get('error')})"
        return (f"VariantResult({self.name!r}, accuracy={self.accuracy:.4f}, "
                f"latency_p50_ms={self.latency_p50_ms}, size_bytes={self.size_bytes}, passed={self.passed})")


class Summary:
    """A run's summary.json with typed accessors. ``raw`` is the whole document."""

    def __init__(self, raw: dict[str, Any], run_dir: Path | None = None):
        self.raw, self.run_dir = raw, run_dir

    @classmethod
    def load(cls, run_dir: str | Path) -> Summary:
        """Read ``run_dir/summary.json`` as ``mlbench compare`` does: a damaged or missing file,
        one that breaks the results contract, or one of another ``schema_version`` is one
        MlbenchError."""
        from mlbench.results import read_summary

        folder = _path(run_dir, "run_dir")
        return cls(read_summary(folder / "summary.json"), folder)

    @property
    def baseline(self) -> str:
        return self.raw["baseline"]

    @property
    def variants(self) -> dict[str, VariantResult]:
        return {n: VariantResult(n, v) for n, v in self.raw["variants"].items()}

    def __getitem__(self, name: str) -> VariantResult:
        if name not in self.raw["variants"]:
            raise KeyError(f"no variant {name!r}; this run has {sorted(self.raw['variants'])}")
        return VariantResult(name, self.raw["variants"][name])

    @property
    def recommended(self) -> str | None:
        """The variant to ship (None when no variant meets every requirement)."""
        return (self.raw.get("recommended") or {}).get("variant")

    @property
    def decision(self) -> str:
        """The decision in one paragraph: figures, runner-up, closest call."""
        rec = self.raw.get("recommended") or {}
        return (rec.get("explanation") or {}).get("text") or rec.get("reason") or ""

    @property
    def timing_reliable(self) -> bool | None:
        return (self.raw.get("timing") or {}).get("reliable")

    def __repr__(self) -> str:
        return (f"Summary({self.raw['data']['name']}, {len(self.raw['variants'])} variants, "
                f"recommended={self.recommended!r}, run_dir={str(self.run_dir)!r})")


def _path(value: Any, what: str) -> Path:
    if isinstance(value, (str, Path)) and str(value).strip():
        return Path(value)
    raise MlbenchError(f"{what} must be a path (str or Path), got {value!r}")


def _overrides(overrides: Any) -> list[str]:
    """Overrides as a list of strings; a single string (one override, or the letters of one)
    or anything else is a mistake said in one line."""
    if overrides is None:
        return []
    if isinstance(overrides, (str, bytes)):
        raise MlbenchError(f"overrides must be a list of strings, e.g. [{overrides!r}], not a single string")
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise MlbenchError(f"overrides must be a list of strings like ['data=wine'], got {overrides!r}")
    for o in overrides:
        if o.lstrip("+~").startswith(("hydra.run.dir=", "hydra.sweep.dir=")):
            raise MlbenchError(f"{o}: the Python API writes to run_dir=...; pass the folder there")
    return list(overrides)


def _writable_run_dir(run_dir: Any, what: str) -> Path:
    out = _path(run_dir, what)
    if out.exists() and not out.is_dir():
        raise MlbenchError(f"{what} {out} is a file; give a folder")
    return out


def compose(overrides: list[str] | None = None) -> Any:
    """The run's config for ``overrides`` (what ``mlbench --cfg job`` prints), checked as the
    CLI checks it: an unknown option or key, or a wrong type, raises MlbenchError."""
    from mlbench.preflight import check_overrides, compose_or_problem

    overrides = _overrides(overrides)
    cfg, problem = None, check_overrides(overrides, compose=False)  # group options, with their choices
    if not problem:
        cfg, problem = compose_or_problem(overrides)  # composed once: checked and returned
    if problem:
        raise MlbenchError(problem)
    return cfg


def _run_dir(cfg: Any, run_dir: str | Path | None, tag: str) -> Path:
    if run_dir is not None:
        return _writable_run_dir(run_dir, "run_dir")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    return Path(cfg.paths.results_dir) / "runs" / f"{stamp}_{tag}"


def run(overrides: list[str] | None = None, run_dir: str | Path | None = None, *, model: Any = None,
        data: Any = None, target: str = "target") -> Summary:
    """One run (``mlbench <overrides>``): the baseline, the variants, timing, stress, data
    checks, monitoring, the decision; written to ``run_dir`` (default: a new folder under
    ``results/runs/``). Returns its summary.

    ``model``: a ``torch.nn.Module`` (evaluated with its weights as they are: ``model=python``,
    ``train=none``), or a path to an ``.onnx`` file or a ``.pt2`` program. ``data``: ``(x, y)``
    or ``(x, y, group)`` arrays or tensors (images when x has 4 dimensions), a torch
    ``Dataset`` of ``(x, y)`` items, a pandas DataFrame (label column ``target``), or a path (an
    image folder, a .csv/.parquet table, an .npz). In-memory inputs are written into the run
    folder (``inputs/``), so the run stays reproducible from its folder; with a model of your
    own, features go in as given (no standardization)."""
    from mlbench import pipeline
    from mlbench.process import quiet_libraries

    overrides = _overrides(overrides)
    out = None
    if model is not None or data is not None:  # staged into the run folder, then named as overrides
        out = _run_dir(compose(overrides), run_dir, "api")
        _check_empty(out)
        overrides = [*overrides, *_model_overrides(model, overrides),
                     *_data_overrides(data, out / "inputs", target, raw=model is not None)]
    cfg = compose(overrides)
    if out is None:
        data_name = str(cfg.data.get("name") or cfg.data._target_.rsplit(".", 1)[-1]).lower()
        out = _run_dir(cfg, run_dir, f"{data_name}_api")
        _check_empty(out)
    out.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    try:
        summary = pipeline.run(cfg, out)
    except BaseException:
        if not (out / "summary.json").exists():  # a failed run leaves no half-written folder
            import shutil
            shutil.rmtree(out, ignore_errors=True)
        raise
    return Summary(summary, out)


def _check_empty(out: Path) -> None:
    if out.exists() and any(p.name != "inputs" for p in out.iterdir()):
        raise MlbenchError(f"run_dir {out} exists and is not empty; give a new folder")


def _quoted(path: Path) -> str:
    """A path as a Hydra override value (quoted: spaces, commas and brackets survive)."""
    return "'" + str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _model_overrides(model: Any, overrides: list[str]) -> list[str]:
    if model is None:
        return []
    import torch

    from mlbench.models.python_source import OBJECTS
    given_train = any(o.lstrip("+~").startswith("train=") for o in overrides)
    if isinstance(model, torch.nn.Module):
        key = f"module-{id(model):x}"
        OBJECTS[key] = model
        return ["model=python", f"model.key={key}", *([] if given_train else ["train=none"])]
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            return ["model=onnx", f"model.path={_quoted(path)}"]
        if path.suffix.lower() == ".pt2":
            return ["model=torch", f"model.weights={_quoted(path)}", *([] if given_train else ["train=none"])]
        raise MlbenchError(f"model={str(model)!r}: a weights file needs its class; pass overrides "
                           "['model=torch', 'model.arch=pkg.Net', 'model.weights=...'] (or an .onnx / .pt2 file)")
    raise MlbenchError(f"model must be a torch.nn.Module or a path to an .onnx or .pt2 file, got {type(model).__name__}")


def _data_overrides(data: Any, folder: Path, target: str, raw: bool) -> list[str]:
    """``data`` written into ``folder`` when it lives in memory, as overrides naming it."""
    if data is None:
        return []
    import numpy as np
    pre = ["data.preprocess=none"] if raw else []
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            return ["data=image_folder", f"data.root={_quoted(path)}"]
        if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
            return ["data=table", f"data.path={_quoted(path)}", f"data.target={target}", *pre]
        if path.suffix.lower() == ".npz":
            return ["data=npz", f"data.path={_quoted(path)}", *pre]
        raise MlbenchError(f"data={str(data)!r}: expected an image folder, a .csv/.parquet table or an .npz file")
    folder.mkdir(parents=True, exist_ok=True)
    if type(data).__module__.startswith("pandas") and hasattr(data, "to_parquet"):
        path = folder / "data.parquet"
        data.to_parquet(path, index=False)
        return ["data=table", f"data.path={_quoted(path)}", f"data.target={target}", *pre]
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        arrays = [np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in data]
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):  # a torch Dataset of (x, y) items
        items = [data[i] for i in range(len(data))]
        arrays = [np.stack([np.asarray(it[0]) for it in items]), np.asarray([int(it[1]) for it in items])]
    else:
        raise MlbenchError(f"data must be (x, y) arrays, a torch Dataset, a pandas DataFrame or a path, "
                           f"got {type(data).__name__}")
    path = folder / "data.npz"
    names = ("x", "y", "group")
    np.savez(path, **{n: a for n, a in zip(names, arrays)})
    modality = "image" if arrays[0].ndim == 4 else "tabular"
    return ["data=npz", f"data.path={_quoted(path)}", f"data.modality={modality}", *pre]


def compare(paths: list[str | Path], metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (run, variant) over run or sweep folders: the metrics, the accuracy change
    with its interval, the requirements verdict, whether it was recommended (as in
    ``mlbench compare``, without writing files)."""
    from mlbench.analysis.compare import DEFAULT_METRICS, find_runs, rows_of

    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)):
        raise MlbenchError(f"paths must be a list of run or sweep folders, e.g. [{str(paths)!r}], got {paths!r}")
    if metrics is not None and (isinstance(metrics, str) or not isinstance(metrics, (list, tuple))
                                or not all(isinstance(m, str) for m in metrics)):
        raise MlbenchError(f"metrics must be a list of metric names, e.g. ['accuracy'], got {metrics!r}")
    roots = [_path(p, "each path") for p in paths]
    runs, _ = find_runs(roots)
    if not runs:
        raise MlbenchError(f"no runs with a readable summary.json under {', '.join(map(str, roots))}")
    return rows_of(runs, roots, metrics or DEFAULT_METRICS)


def export(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """``mlbench-export <overrides>``: build (or check) the ONNX model and write it with its
    metadata to ``export.output``. Returns the output paths and the fresh-session accuracy."""
    import tempfile

    from mlbench.export import export as do_export

    cfg = compose(_overrides(overrides))
    if run_dir is not None:  # where the recipe's intermediate files go (kept)
        out = _writable_run_dir(run_dir, "run_dir")
        out.mkdir(parents=True, exist_ok=True)
        return do_export(cfg, out)
    with tempfile.TemporaryDirectory(prefix="mlbench-export-") as work:  # only export.output is kept
        return do_export(cfg, Path(work))

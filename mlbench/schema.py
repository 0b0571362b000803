"""Structured-config schemas registered in Hydra's ConfigStore.

Two kinds:

- hand-written dataclasses for the sections mlbench reads itself (train, eval,
  backend, paths and the root), and
- schemas *derived from the signature* of every ``_target_`` class named in
  ``conf/{data,model,calibrate}``: they are stored as ``schema/<group>/<option>``
  and each option's YAML lists its schema first in its defaults list.

Either way a misspelt key or a wrongly typed value fails when Hydra composes
the config, with Hydra's own message, before any work starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import MISSING

from mlbench.choices import (
    Amp,
    CalibrationView,
    GraphOptimization,
    Mode,
    Output,
    ServingMode,
    TableStyle,
    TrainStart,
)
from mlbench.evaluate.registry import Metric

CONF_DIR = Path(__file__).resolve().parent / "conf"  # conf/ at the top of a checkout (linked), packaged in a wheel
SCHEMA_GROUPS = ("data", "model", "calibrate")
RUNTIME_ARGS = ("input_shape", "num_classes")  # a model's, filled in at run time from the data


@dataclass
class TrainConf:
    # scratch: train the model from its initialization; none: the model as given is the
    # baseline (it needs weights: model=torch ...); finetune: train starting from its weights
    start: TrainStart = TrainStart.scratch
    epochs: int = 30
    batch_size: int = 128
    patience: int = 8
    label_smoothing: float = 0.0
    amp: Amp = Amp.bf16  # CUDA only
    channels_last: bool = True  # CUDA only
    optimizer: Any = MISSING
    scheduler: Any = None
    # intra-op threads while training; 0 = the physical cores. Not load-dependent on purpose:
    # the trained weights depend on the thread count (CPU reductions split differently)
    threads: int = 0


@dataclass
class LatencyConf:
    warmup: int = 10
    min_calls: int = 600  # at least this many batch-1 calls per variant (100 per round: stable round p50s)
    min_time_s: float = 0.0  # and at least this long per variant
    target_ci: float = 0.02  # then stop once every p50's 95 % interval is within ±2 % of it ...
    max_time_s: float = 2.0  # ... or after this many seconds per variant on average
    threads: int = 1  # intra-op threads for batch-1 latency (single stream); 0 = the run's threads


@dataclass
class TimingConf:
    rounds: int = 6  # interleaved rounds; ratio intervals come from the per-round figures
    tolerance: float = 0.25  # rounds whose p50 spans more than 1 + tolerance: timings unreliable


@dataclass
class ThroughputConf:
    min_time_s: float = 0.1  # cap per variant and batch size (the rounds stop sooner when the median window is pinned to ±target_ci)
    target_ci: float = 0.05  # stop once every variant's median window is known to within ±5 %
    batch_sizes: List[int] = field(default_factory=lambda: [1, 64, 256])


@dataclass
class BootstrapConf:
    resamples: int = 2000
    level: float = 0.95


@dataclass
class EvalConf:
    batch_size: int = 256
    calibration: CalibrationView = CalibrationView.uncalibrated  # which view fills the metrics
    latency: LatencyConf = field(default_factory=LatencyConf)
    throughput: ThroughputConf = field(default_factory=ThroughputConf)
    timing: TimingConf = field(default_factory=TimingConf)
    memory: bool = True
    efficiency: bool = True
    bootstrap: BootstrapConf = field(default_factory=BootstrapConf)
    accuracy_drop_flag: float = 0.05  # flag a variant that loses more accuracy than this


@dataclass
class DeploymentConf:
    """How the model will serve: ``online`` (one request at a time, batch 1) or ``batch``
    (batches of ``eval.batch_size``). Quality metrics are measured in this mode."""

    serving: ServingMode = ServingMode.batch
    invariance_items: int = 2000  # batch-invariance check on the first N test items (0: off)


@dataclass
class TorchBackendConf:
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = True


@dataclass
class OrtBackendConf:
    providers: List[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    strict: bool = False
    graph_optimization: GraphOptimization = GraphOptimization.all
    # onnxruntime's worker threads busy-wait after each run when true (its own default): a
    # session alone answers back-to-back calls sooner, but in a process that times several
    # runners in turn the spinning threads of one take the cores from the next (torch at batch
    # 1 on 2 threads measured 12-30x slower beside spinning sessions); off by default
    spinning: bool = False


@dataclass
class BackendConf:
    # intra-op threads for batch inference, throughput and onnxruntime sessions: "auto" = the
    # physical cores other processes do not keep busy (measured at start-up), N = exactly N,
    # 0 = torch's default (all physical cores)
    threads: Any = "auto"
    torch: TorchBackendConf = field(default_factory=TorchBackendConf)
    onnxruntime: OrtBackendConf = field(default_factory=OrtBackendConf)


@dataclass
class PathsConf:
    results_dir: str = "results"
    cache_dir: str = "results/cache"
    data_root: str = "data"
    history_db: str = "results/history.sqlite"


@dataclass
class VariantConf:
    description: str = ""
    passes: List[Any] = field(default_factory=list)
    runner: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AxisConf:
    metric: Metric = MISSING  # type: ignore[valid-type]
    mode: Mode = Mode.max


@dataclass
class RequirementConf:
    """``metric op value`` (``of_baseline``: value × the baseline's figure, e.g. size <= 0.5 ×
    baseline), ``metric max_degradation [relative]`` against the baseline, ``metric min_gain``
(strictly better than the baseline by more than this), or
    ``data op value``: a condition on a data-check figure (``datacheck.figures`` in summary.json,
    e.g. ``cross_split_duplicates``, ``label_issue_rate``, ``accuracy_achievable``)."""

    # a metric of the table, or of metrics.extra (checked at set-up, after those are registered)
    metric: Optional[str] = None
    data: Optional[str] = None
    op: Optional[str] = None  # >= | <= | > | <
    value: Optional[float] = None
    max_degradation: Optional[float] = None
    min_gain: Optional[float] = None  # the variant must beat the baseline by more than this
    relative: bool = False
    of_baseline: bool = False  # with op/value: the threshold is value x the baseline's figure
    use_bound: Optional[bool] = None  # judge on the pessimistic CI bound (None: requirements.use_bound)
    stress: Optional[str] = None  # for stress_accuracy: a stressor name
    condition: Optional[str] = None  # and its severity / eps / rate, as written in summary.json


@dataclass
class RequirementsConf:
    checks: List[RequirementConf] = field(default_factory=list)
    use_bound: bool = False
    objective: Metric = Metric.latency_p50_ms  # type: ignore[attr-defined]
    objective_mode: Mode = Mode.min
    # when the objective is a timing whose ratio interval between two variants includes 1,
    # they tie on it and these decide, in order
    tie_breakers: List[AxisConf] = field(default_factory=lambda: [
        AxisConf(Metric.size_bytes, Mode.min), AxisConf(Metric.accuracy, Mode.max)])  # type: ignore[attr-defined]
    fail_if_none: bool = False  # exit with status 3 when no variant meets every requirement


@dataclass
class SweepObjectiveConf:
    """What the app returns to a sweeper (Optuna): ``metric`` of ``variant``; when the
    variant's ``constraint_metric`` degrades by more than ``max_degradation`` against the
    baseline, ``penalty`` instead (use with direction: minimize)."""

    variant: str = "baseline"
    metric: Metric = Metric.accuracy  # type: ignore[attr-defined]
    constraint_metric: Metric = Metric.accuracy  # type: ignore[attr-defined]
    max_degradation: Optional[float] = None
    penalty: float = 1e9


@dataclass
class AnalysisConf:
    pareto_axes: List[AxisConf] = field(default_factory=lambda: [
        AxisConf(Metric.accuracy, "max"), AxisConf(Metric.latency_p50_ms, "min"),  # type: ignore[attr-defined]
        AxisConf(Metric.size_bytes, "min")])  # type: ignore[attr-defined]
    history: bool = True  # record each run's key figures in paths.history_db
    objective: SweepObjectiveConf = field(default_factory=SweepObjectiveConf)


@dataclass
class ExportConf:
    variant: str = "onnx_fp32"  # a variant of conf/variants whose recipe ends in ONNX
    source: Optional[str] = None  # or an existing .onnx file to check and package
    output: str = "model.onnx"
    force: bool = False  # write even when the parity check fails (recorded in the metadata)


@dataclass
class MetricsConf:
    # your own metrics: "package.module:function" taking (probabilities, labels) numpy arrays
    # and returning a number (mlbench.evaluate.extra)
    extra: List[str] = field(default_factory=list)


@dataclass
class BudgetConf:
    """``budget.minutes``: size what can be sized (stress test items, bootstrap resamples,
    monitoring repetitions, timing calls) so the plan's estimate fits; null: nothing changes."""
    minutes: Optional[float] = None


@dataclass
class PartitionConf:
    """``partition.strategy``: retrain the baseline on k folds of the train and test splits and
    report each metric's spread (none | kfold | repeated | group | time)."""
    strategy: str = "none"
    k: int = 5
    repeats: int = 2  # repeated: how many times the k folds are drawn again


@dataclass
class AugmentConf:
    """``augment=<preset>`` (conf/augment/): training-data augmentation of the baseline
    (``mlbench/train/augment.py``); ``augment.compare=true`` also trains it without, same seed,
    and reports the paired effect of the augmentation."""
    name: str = "none"
    modality: str = "any"  # image | tabular | any: the data the preset is for
    transforms: List[Any] = field(default_factory=list)  # images, per training item: torchvision.transforms.v2
    mix: Optional[str] = None  # images, per batch: mixup | cutmix | both
    mix_alpha: float = 1.0
    feature_noise: float = 0.0  # tables: N(0, s^2) per training item, s in train-std units
    oversample: Any = None  # tables: an imbalanced-learn sampler (SMOTE), once before training
    compare: bool = False  # also train without augmentation and report the paired effect


@dataclass
class UnlabelledConf:
    """``data.unlabelled``'s figures: the shift detectors run on it (presets or ``_target_``
    mappings, as in ``monitor.detectors``) and their significance level."""
    detectors: List[Any] = field(default_factory=lambda: ["bbsd_soft", "bbsd_hard", "confidence", "entropy",
                                                          "ks_inputs"])
    alpha: float = 0.05


@dataclass
class RootConf:
    seed: int = 0  # one seed for data splits, training, bootstrap and stressors
    seeds: List[int] = field(default_factory=list)  # extra baseline seeds for the seed-to-seed spread
    resume: bool = False  # continue the interrupted run of this same config (its finished stages are kept)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True
    output: Output = Output.text  # text: table and decision on stdout | json: the key figures as JSON (--json)
    table: TableStyle = TableStyle.auto  # auto (full at >= 120 columns) | compact (fits 80) | full
    # modules imported at set-up, before anything is built: the artifact formats, detectors and
    # policies they define can then be named (a _target_ imports its own module anyway)
    plugins: List[str] = field(default_factory=list)
    data: Any = MISSING
    model: Any = MISSING
    train: TrainConf = field(default_factory=TrainConf)
    augment: AugmentConf = field(default_factory=AugmentConf)  # training-data augmentation (augment=...)
    calibrate: Any = None
    # Any (not VariantConf) so that a variant can be added on the command line
    # (+variants.mine={passes: [...]}); keys are checked against VariantConf at set-up.
    variants: Dict[str, Any] = field(default_factory=dict)
    backend: BackendConf = field(default_factory=BackendConf)
    stress: Any = None
    datacheck: Any = None
    monitor: Any = None
    cycle: Any = None  # read by `mlbench cycle` only
    select: Any = None  # read by `mlbench select` only (conf/select/default.yaml)
    tracking: Any = None  # tracking=mlflow: an experiment tracker (mlbench.tracking.MlflowTracker)
    requirements: RequirementsConf = field(default_factory=RequirementsConf)
    metrics: MetricsConf = field(default_factory=MetricsConf)
    analysis: AnalysisConf = field(default_factory=AnalysisConf)
    eval: EvalConf = field(default_factory=EvalConf)
    deployment: DeploymentConf = field(default_factory=DeploymentConf)
    paths: PathsConf = field(default_factory=PathsConf)
    export: ExportConf = field(default_factory=ExportConf)
    unlabelled: UnlabelledConf = field(default_factory=UnlabelledConf)  # data.unlabelled's figures
    budget: BudgetConf = field(default_factory=BudgetConf)  # fit the run into budget.minutes
    partition: PartitionConf = field(default_factory=PartitionConf)  # the metrics' spread over k folds


# -- schemas derived from target signatures -------------------------------------------

def _field_type(hint: Any) -> Any:
    """Map a Python type hint onto one OmegaConf can enforce (else ``Any``)."""
    if hint in (int, float, bool, str):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and type(None) in args:
            inner = _field_type(rest[0])
            return Optional[inner] if inner is not Any else Any
        return Any
    if origin in (list, tuple, typing.Sequence) or str(origin) == "<class 'collections.abc.Sequence'>":
        inner = _field_type(args[0]) if args else Any
        return List[inner] if inner in (int, float, bool, str) else List[Any]
    return Any


def builds(target: type, exclude: tuple[str, ...] = RUNTIME_ARGS) -> type:
    """A dataclass with ``_target_`` and one typed field per constructor argument."""
    hints = typing.get_type_hints(target.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, field(default=f"{target.__module__}.{target.__qualname__}"))]
    for p in list(inspect.signature(target.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in exclude:
            continue
        typ = _field_type(hints.get(p.name, Any))
        if p.default is inspect.Parameter.empty:
            default = field(default=MISSING)
        elif isinstance(p.default, (list, tuple)):
            default = field(default_factory=lambda d=p.default: list(d))
        else:
            default = field(default=p.default)
        fields.append((p.name, typ, default))
    fields.append(("_partial_", bool, field(default=False)))
    return dataclasses.make_dataclass(f"{target.__name__}Conf", fields)


def group_options(group: str, *dirs: Path, root: Path = CONF_DIR) -> dict[str, Path]:
    """A config group's options (name → YAML file) under ``root`` (``conf/``) and any further
    config folders (``--config-dir``), sorted by name; a later folder's file wins, as in Hydra."""
    found = {p.stem: p for d in (root, *dirs) for p in sorted((Path(d) / group).glob("*.yaml"))}
    return dict(sorted(found.items()))


def _targets(conf_dir: Path):
    for group in SCHEMA_GROUPS:
        for path in group_options(group, root=conf_dir).values():
            node = yaml.safe_load(path.read_text()) or {}
            node = node.get(group, node) if "_target_" not in node else node  # _global_ package files
            if isinstance(node, dict) and "_target_" in node:
                yield group, path.stem, node["_target_"]


def register(conf_dir: Path = CONF_DIR) -> None:
    """Store the root schema and one derived schema per targeted option."""
    cs = ConfigStore.instance()
    cs.store(name="mlbench_schema", node=RootConf)
    for group, name, target in _targets(conf_dir):
        exclude = RUNTIME_ARGS if group == "model" else ()
        cs.store(group=f"schema/{group}", name=name, node=builds(get_class(target), exclude))

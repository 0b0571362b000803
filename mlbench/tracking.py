"""Experiment tracking: each run (and each job of a sweep, nested under the sweep) in MLflow.

``tracking=mlflow`` logs, after the run's files are written: the overrides and the main
choices as parameters; per variant its key metrics, its accuracy change with the interval
bounds and its requirements verdict (as ``<variant>/<metric>``); the baseline's per-epoch
training curve as step metrics; the recommendation as tags; summary.json, report.html and
the plots as artifacts. Jobs of a multirun are nested under one parent run per sweep
folder. Uses the ``mlflow-skinny`` package (``pip install 'mlbench[tracking]'``); the store
is a local SQLite file by default (no server), any tracking URI MLflow knows works.

Tracking is secondary: a store that cannot be written warns and the run stands.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError, first_line

log = logging.getLogger(__name__)

VARIANT_METRICS = ("accuracy", "ece", "nll", "brier", "f1_macro", "latency_p50_ms", "latency_p99_ms",
                   "throughput_sps", "size_bytes", "mean_corruption_accuracy", "worst_group_accuracy")
PARENT_FILE = "mlflow_parent_run_id"


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise MlbenchError("tracking=mlflow needs MLflow: pip install 'mlbench[tracking]' "
                           "(mlflow-skinny, and sqlalchemy + alembic for the local SQLite store)") from None
    return mlflow


class MlflowTracker:
    """Logs a finished run to MLflow at ``uri`` under ``experiment``."""

    def __init__(self, uri: str, experiment: str = "mlbench", artifacts: bool = True):
        self.uri, self.experiment, self.artifacts = uri, experiment, artifacts
        _mlflow()  # fail at set-up, before any work, when MLflow is missing
        if uri.startswith("sqlite:"):
            try:
                import alembic  # noqa: F401 - MLflow's SQL store needs both
                import sqlalchemy  # noqa: F401
            except ImportError:
                raise MlbenchError(f"tracking.uri={uri}: MLflow's SQLite store needs sqlalchemy and alembic "
                                   "(pip install 'mlbench[tracking]')") from None

    def _client(self):
        mlflow = _mlflow()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, ...) stay out of the console
            logging.getLogger(name).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(self.uri)
        client = mlflow.tracking.MlflowClient(self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        return client, exp_id

    def _parent(self, client, exp_id: str, sweep_dir: Path) -> str:
        """The sweep's parent run, created by the first job that needs it (its id kept in the
        sweep folder, so every job of the sweep finds the same one)."""
        from filelock import FileLock
        marker = sweep_dir / PARENT_FILE
        with FileLock(str(marker) + ".lock"):
            if marker.is_file():
                return marker.read_text().strip()
            run = client.create_run(exp_id, run_name=f"sweep {sweep_dir.name}",
                                    tags={"mlbench.sweep_dir": str(sweep_dir)})
            marker.write_text(run.info.run_id)
            return run.info.run_id

    def log_run(self, summary: dict[str, Any], run_dir: Path, sweep_dir: Path | None = None) -> str:
        """Log one finished run; returns its MLflow run id."""
        client, exp_id = self._client()
        tags = {"mlbench.run_dir": str(run_dir), "mlbench.data": summary["data"]["name"],
                "mlbench.recommended": str((summary.get("recommended") or {}).get("variant")),
                "mlbench.version": summary.get("mlbench_version", ""),
                "mlbench.config_hash": summary["run"].get("config_hash", "")}
        if sweep_dir is not None:
            tags["mlflow.parentRunId"] = self._parent(client, exp_id, sweep_dir)
        run = client.create_run(exp_id, run_name=summary["run"]["id"], tags=tags)
        rid = run.info.run_id
        try:
            self._log(client, rid, summary, run_dir)
        except Exception:
            client.set_terminated(rid, status="FAILED")
            raise
        client.set_terminated(rid, status="FINISHED")
        return rid

    def _log(self, client, rid: str, summary: dict[str, Any], run_dir: Path) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from mlbench.evaluate.extra import user_metrics  # metrics.extra of this run
        cfg = summary["run"].get("config") or {}
        params = {"seed": cfg.get("seed"), "variants": ",".join(summary["variants"]),
                  "data": summary["data"]["name"], "model": (cfg.get("model") or {}).get("_target_"),
                  "device": summary["run"]["env"].get("device"), "threads": summary["run"]["env"].get("threads")}
        inputs = summary.get("inputs") or {}
        for side, keys in (("model", ("source", "arch", "weights", "path", "sha256")),
                           ("data", ("source", "name", "content_hash", "manifest_hash"))):
            for k in keys:
                if (inputs.get(side) or {}).get(k) is not None:
                    params[f"inputs.{side}.{k}"] = inputs[side][k]
        for o in summary["run"].get("overrides") or []:
            key, _, value = o.lstrip("+~").partition("=")
            params[f"override.{key}"] = value
        metrics = []
        for name, v in summary["variants"].items():
            if v.get("status") != "ok":
                continue
            m = v.get("metrics") or {}
            values = {k: m[k] for k in (*VARIANT_METRICS, *user_metrics()) if isinstance(m.get(k), (int, float))}
            d = (v.get("deltas") or {}).get("accuracy")
            if d:
                values["delta_accuracy"] = d["value"]
                if d.get("ci_low") is not None:
                    values["delta_accuracy_ci_low"], values["delta_accuracy_ci_high"] = d["ci_low"], d["ci_high"]
            if v.get("requirements") is not None:
                values["passed"] = float(v["requirements"]["passed"])
            metrics += [Metric(f"{name}/{k}", float(x), 0, 0) for k, x in values.items()]
        for h in (summary.get("baseline_training") or {}).get("history") or []:
            metrics += [Metric(f"baseline/{k}", float(h[k]), 0, int(h["epoch"]))
                        for k in ("train_loss", "val_loss", "val_accuracy") if k in h]
        rec = (summary.get("recommended") or {})
        tags = [RunTag("mlbench.decision", ((rec.get("explanation") or {}).get("text") or "")[:4900])]
        plist = [Param(k, str(val)[:6000]) for k, val in params.items() if val is not None]
        for i in range(0, max(len(metrics), len(plist), 1), 900):  # MLflow's batch limits
            client.log_batch(rid, metrics=metrics[i:i + 900], params=plist[i:i + 90] if i == 0 else [],
                             tags=tags if i == 0 else [])
        for j in range(90, len(plist), 90):
            client.log_batch(rid, params=plist[j:j + 90])
        if self.artifacts:
            for f in ("summary.json", "report.html"):
                if (run_dir / f).is_file():
                    client.log_artifact(rid, str(run_dir / f))
            for png in sorted((run_dir / "plots").glob("*.png")):
                client.log_artifact(rid, str(png), artifact_path="plots")


def track(tracker: Any, summary: dict[str, Any], run_dir: Path) -> None:
    """Log ``summary`` with ``tracker`` (None: no tracking); a failure warns and the run stands."""
    if tracker is None:
        return
    sweep_dir = None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            sweep_dir = Path(hc.sweep.dir)
    except (ValueError, ImportError):
        pass
    try:
        rid = tracker.log_run(summary, run_dir, sweep_dir)
        log.info("logged to MLflow at %s: run %s", tracker.uri, rid)
    except MlbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - tracking is secondary: the run's files are written
        log.warning("run not logged to MLflow at %s (%s); the run's results are complete", tracker.uri,
                    first_line(e))

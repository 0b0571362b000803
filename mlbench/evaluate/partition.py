"""How much the estimate depends on the split: the baseline retrained on k-fold partitions of the
labelled data, the spread of every headline metric over the folds, and where the run's own
split falls within it.

``partition.strategy``: ``kfold`` (stratified), ``repeated`` (repeated stratified k-fold),
``group`` (stratified, no group on both sides of a fold: the data's group column) or ``time``
(each fold tests on later items than it trains on: a table's ``data.time`` column). Folds come
from scikit-learn's splitters over the pool of the train and test splits; val keeps its role
(early stopping), calib is left out. Each fold trains the baseline with the run's own training
settings and seed (cached like the baseline) and evaluates it on the fold's held-out part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlbench.data import DataBundle
from mlbench.errors import MlbenchError
from mlbench.text import Doc, fmt

STRATEGIES = ("none", "kfold", "repeated", "group", "time")


@dataclass
class Partition:
    """The ``partition`` options, checked against the data before any training."""

    strategy: str = "none"
    k: int = 5
    repeats: int = 2
    seed: int = 0

    def check(self, data: DataBundle, trainable: bool = True) -> None:
        """One error line for a setting the data or model cannot meet (k above a class's items,
        no group or time column, fewer groups than folds, a model with nothing to retrain)."""
        if self.strategy not in STRATEGIES:
            raise MlbenchError(f"partition.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "none":
            return
        if not trainable:
            raise MlbenchError("partition retrains the model on each fold; model=onnx has no torch source to train")
        if self.k < 2 or self.repeats < 1:
            raise MlbenchError(f"partition needs k >= 2 and repeats >= 1, got k={self.k}, repeats={self.repeats}")
        y, group, rank = pool(data)[1:]
        if self.strategy in ("kfold", "repeated", "group"):
            counts = np.bincount(y, minlength=data.meta.num_classes)
            small = int(counts[counts > 0].min())
            if small < self.k:
                raise MlbenchError(f"partition.k={self.k} is larger than a class: class "
                                   f"{data.meta.class_names[int(np.flatnonzero(counts == small)[0])]} has {small} "
                                   "items in the train and test splits (stratified folds need one per fold)")
        if self.strategy == "group":
            if group is None:
                raise MlbenchError("partition.strategy=group needs a group column (data.group)")
            if len(np.unique(group)) < self.k:
                raise MlbenchError(f"partition.strategy=group: {len(np.unique(group))} groups cannot make "
                                   f"k={self.k} folds")
        if self.strategy == "time" and rank is None:
            raise MlbenchError("partition.strategy=time needs a time column (a table's data.time)")

    def folds(self, data: DataBundle) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train positions, test positions) into the pool, one pair per fold."""
        from sklearn.model_selection import (
            RepeatedStratifiedKFold,
            StratifiedGroupKFold,
            StratifiedKFold,
            TimeSeriesSplit,
        )

        _, y, group, rank = pool(data)
        dummy = np.zeros((len(y), 1))
        if self.strategy == "kfold":
            return list(StratifiedKFold(self.k, shuffle=True, random_state=self.seed).split(dummy, y))
        if self.strategy == "repeated":
            return list(RepeatedStratifiedKFold(n_splits=self.k, n_repeats=self.repeats,
                                                random_state=self.seed).split(dummy, y))
        if self.strategy == "group":
            return list(StratifiedGroupKFold(self.k, shuffle=True, random_state=self.seed).split(dummy, y, group))
        order = np.argsort(rank, kind="stable")  # time: oldest first; each fold tests on the next block
        return [(order[tr], order[te]) for tr, te in TimeSeriesSplit(self.k).split(order)]


def pool(data: DataBundle) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The items folds are cut from (train then test): inputs, labels, groups, time ranks."""
    x = torch.cat([data.x["train"], data.x["test"]])
    y = torch.cat([data.y["train"], data.y["test"]]).numpy()
    group = None if data.group is None else torch.cat([data.group["train"], data.group["test"]]).numpy()
    tr = (data.extras or {}).get("time_rank")
    rank = None if tr is None else np.concatenate([np.asarray(tr["train"]), np.asarray(tr["test"])])
    return x, y, group, rank


def fold_bundle(data: DataBundle, tr: np.ndarray, te: np.ndarray) -> DataBundle:
    """The data of one fold: train and test cut from the pool; val and calib as they were."""
    x, y, group, _ = pool(data)
    index = torch.cat([data.index["train"], data.index["test"]])
    tr_t, te_t = torch.as_tensor(tr), torch.as_tensor(te)
    yt = torch.as_tensor(y)
    return DataBundle(
        meta=data.meta, x={"train": x[tr_t], "val": data.x["val"], "calib": data.x["calib"], "test": x[te_t]},
        y={"train": yt[tr_t], "val": data.y["val"], "calib": data.y["calib"], "test": yt[te_t]},
        index={"train": index[tr_t], "val": data.index["val"], "calib": data.index["calib"], "test": index[te_t]},
        group=None if group is None else {"train": torch.as_tensor(group[tr]), "val": data.group["val"],
                                          "calib": data.group["calib"], "test": torch.as_tensor(group[te])})


def spread(fold_metrics: list[dict[str, float]], chosen: dict[str, float], names: list[str]) -> dict[str, Any]:
    """Per metric: the folds' mean, standard deviation (n − 1), min and max, the run's own split's
    value, the share of folds below it and its distance from the mean in standard deviations."""
    out = {}
    for k in names:
        vals = np.array([m[k] for m in fold_metrics if m.get(k) is not None], dtype=float)
        if not len(vals):
            continue
        sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        c = chosen.get(k)
        out[k] = {"mean": float(vals.mean()), "std": sd, "min": float(vals.min()), "max": float(vals.max()),
                  "chosen": c, "share_below": None if c is None else float((vals < c).mean()),
                  "z": None if c is None or sd == 0 else (c - float(vals.mean())) / sd}
    return out


def run_partition(part: Partition, data: DataBundle, evaluate_fold: Callable[[int, DataBundle], dict[str, float]],
                  chosen: dict[str, float], names: list[str]) -> dict[str, Any]:
    """Every fold through ``evaluate_fold`` (train + evaluate the baseline on one fold's data);
    the summary.json ``partition`` section."""
    folds = part.folds(data)
    _, _, group, _ = pool(data)
    rows = []
    for i, (tr, te) in enumerate(folds):
        shared = None if group is None else int(len(np.intersect1d(group[tr], group[te])))
        rows.append({"fold": i, "n_train": int(len(tr)), "n_test": int(len(te)), "groups_shared": shared,
                     "metrics": evaluate_fold(i, fold_bundle(data, tr, te))})
    return {"strategy": part.strategy, "k": part.k, "repeats": part.repeats if part.strategy == "repeated" else 1,
            "seed": part.seed, "pool": "train + test splits (val: early stopping, as in the run)", "folds": rows,
            "spread": spread([r["metrics"] for r in rows], chosen, names),
            "note": "uncalibrated test metrics of the baseline retrained on each fold; chosen: the run's own split"}


def report_section(doc: Doc, summary: dict[str, Any]) -> None:
    """The report's partition section: the spread over folds and where the run's split falls."""
    p = summary.get("partition")
    if not p:
        return
    reps = f" × {p['repeats']} repeats" if p["repeats"] > 1 else ""
    doc.h2(f"Dependence on the split ({p['strategy']}, k = {p['k']}{reps})")
    doc.table(["metric", "this run's split", "folds mean ± sd", "min – max", "folds below", "z"],
              [[k, fmt(s["chosen"], 4), f"{fmt(s['mean'], 4)} ± {fmt(s['std'], 4)}",
                f"{fmt(s['min'], 4)} – {fmt(s['max'], 4)}", fmt(s["share_below"], 2), fmt(s["z"], 2)]
               for k, s in p["spread"].items()])
    shared = [r["groups_shared"] for r in p["folds"] if r["groups_shared"] is not None]
    doc.p(f"{len(p['folds'])} folds of the {p['pool']}; seed {p['seed']}. {p['note']}."
          + (f" Groups on both sides of a fold: at most {max(shared)}." if shared else ""))


def retrained_metrics(ctx: Any, data: DataBundle, data_hash: str, seed: int) -> dict[str, float]:
    """The baseline trained (or loaded from the cache) on ``data`` with ``seed`` and the run's
    training settings, and its uncalibrated test metrics: the partition's folds and the seed
    spread (``ctx``: a pipeline RunContext)."""
    from mlbench.backends import runner_for
    from mlbench.compress import Artifact
    from mlbench.evaluate.loop import evaluate
    from mlbench.train.baseline import train_baseline
    model, _, _ = train_baseline(ctx.cfg, data, data_hash, ctx.model_factory, ctx.device, seed)
    runner = runner_for(Artifact(id="", format="torch", model=model), ctx.cfg.backend, ctx.device)
    return evaluate(runner, data.x["test"], data.y["test"], batch_size=ctx.cfg.eval.batch_size).metrics


def from_config(cfg: Any) -> Partition:
    p = cfg.get("partition") or {}
    return Partition(str(p.get("strategy", "none")), int(p.get("k", 5)), int(p.get("repeats", 2)), int(cfg.seed))


def partition(ctx: Any) -> None:  # ctx: a pipeline RunContext
    """The stage: off unless ``partition.strategy`` names one (checked at set-up, after the data)."""
    part = from_config(ctx.cfg)
    if part.strategy == "none":
        return
    from mlbench.components import BASELINE
    from mlbench.evaluate import registry
    from mlbench.progress import console

    def evaluate_fold(i: int, fold: DataBundle) -> dict[str, float]:
        console.print(f"[bold]partition[/] fold {i + 1}: train {len(fold.y['train'])}, test {len(fold.y['test'])}")
        return retrained_metrics(ctx, fold, fold.content_hash(), part.seed)

    names = list(registry.names(tag=registry.SEED_SPREAD))
    ctx.run.partition = run_partition(part, ctx.data, evaluate_fold, ctx.records[BASELINE].metrics, names)


# --------------------------------------------------------------------------- mlbench compare

def partition_rows(runs: list[tuple[Any, dict]], labels: dict) -> list[dict[str, Any]]:
    """``mlbench compare``: one row per metric of every run that measured its split spread."""
    out = []
    for d, s in runs:
        p = s.get("partition")
        if not p:
            continue
        for metric, sp in p["spread"].items():
            out.append({"run": labels[d], "data": s["data"]["name"], "strategy": p["strategy"], "k": p["k"],
                        "repeats": p["repeats"], "metric": metric, **{k: sp[k] for k in
                                                                       ("chosen", "mean", "std", "min", "max", "z")}})
    return out


def print_partition_rows(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from mlbench.progress import console
    t = Table(title="mlbench compare · dependence on the split")
    for c in ["run", "strategy", "metric", "this split", "folds mean ± sd", "min – max", "z"]:
        t.add_column(c, justify="left" if c in ("run", "strategy", "metric") else "right", overflow="fold")
    for r in rows:
        t.add_row(r["run"], f"{r['strategy']} k={r['k']}" + (f" ×{r['repeats']}" if r["repeats"] > 1 else ""),
                  r["metric"], fmt(r["chosen"], 4), f"{fmt(r['mean'], 4)} ± {fmt(r['std'], 4)}",
                  f"{fmt(r['min'], 4)} – {fmt(r['max'], 4)}", fmt(r["z"], 2))
    console.print(t)


def write_partition_rows(rows: list[dict[str, Any]], out: Any) -> list[Any]:
    """partition.csv of ``mlbench compare``."""
    from mlbench.results import write_rows
    return write_rows(rows, out, "partition")

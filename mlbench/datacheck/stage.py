"""The data-check stage: every configured check on the loaded splits, before any variant.

Runs in every ``mlbench`` run (``datacheck=light`` by default) and alone as
``mlbench datacheck``. Returns the ``datacheck`` section of summary.json.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from mlbench.data import DataBundle
from mlbench.datacheck.base import Check, CheckContext, Finding
from mlbench.errors import MlbenchError
from mlbench.models import embedding_space, penultimate
from mlbench.named import target_of
from mlbench.progress import console
from mlbench.results import write_table


def validate_data(data: DataBundle) -> None:
    """What no check can work with fails before any work, with one line."""
    present = int((torch.bincount(data.y["train"], minlength=data.meta.num_classes) > 0).sum())
    if present < 2:
        raise MlbenchError(f"datacheck: the train split of {data.meta.name} has {present} class; checks need two or more")


def select(checks: list[Check], data: DataBundle) -> tuple[list[Check], list[dict[str, str]]]:
    """The checks that fit the data, and the skipped ones with their reasons (a check that does
    not fit and says ``when_unfit: error`` fails here instead)."""
    validate_data(data)
    keep, skipped = [], []
    for c in checks:
        c.validate(data)
    for c in checks:
        why = c.fits(data)
        if why is None:
            keep.append(c)
        elif c.when_unfit == "skip":
            skipped.append({"check": c.name, "reason": why})
        else:
            raise MlbenchError(f"datacheck.{c.name}: {why}")
    return keep, skipped


def feature_source(data: DataBundle, model: torch.nn.Module | None, device: torch.device):
    """``features(split)``: the inputs (tabular data, or images without a model) or the
    model's penultimate-layer embeddings (images), computed once per split."""
    cache: dict[str, torch.Tensor] = {}
    use_model = data.meta.modality == "image" and model is not None
    space = f"{embedding_space(model)} of the baseline" if use_model else "inputs"

    def features(split: str) -> torch.Tensor:
        if split not in cache:
            x = data.x[split]
            cache[split] = penultimate(model, x, device=device) if use_model else x.flatten(1).float()
        return cache[split]
    return features, space


def imputed(data: DataBundle) -> DataBundle | None:
    """A copy whose NaN/inf feature values are replaced by the train split's per-feature median
    of the finite values (None when every value is finite): the checks after linting work on it."""
    if all(bool(torch.isfinite(data.x[s]).all()) for s in data.x):
        return None
    flat = data.x["train"].flatten(1).double()
    med = torch.nanmedian(torch.where(torch.isfinite(flat), flat, torch.nan), 0).values.nan_to_num(0.0)
    x = {}
    for s, t in data.x.items():
        f = t.flatten(1).double()
        x[s] = torch.where(torch.isfinite(f), f, med).to(t.dtype).view_as(t)
    return dataclasses.replace(data, x=x)


def run_checks(checks: list[Check], ctx: CheckContext, skipped: list[dict[str, str]], run_dir: Path
               ) -> dict[str, Any]:
    """Every check; linting sees the data as loaded, the others a copy with non-finite values
    imputed (:func:`imputed`)."""
    clean = imputed(ctx.data)
    notes = []
    if clean is not None:
        features, _ = feature_source(clean, None, ctx.device) if ctx.embedding_space == "inputs" else (ctx.features, None)
        other = dataclasses.replace(ctx, data=clean, features=features)
        notes.append("non-finite feature values were replaced by train medians for every check but lint")
    findings: list[Finding] = []
    figures: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    plots: list[str] = []
    for c in checks:
        t0 = time.perf_counter()
        res = c.run(ctx if clean is None or c.raw_data else other)
        findings += res.findings
        figures.update(res.figures)
        sections[c.name] = {"class": type(c).__name__, "target": target_of(c), "seconds": time.perf_counter() - t0,
                            "figures": res.figures, **res.section}
        if res.tables:
            sections[c.name]["files"] = {name: str(write_table(run_dir / "datacheck" / f"{name}.csv", rows)
                                                   .relative_to(run_dir)) for name, rows in res.tables.items()}
        plots += [str(p.relative_to(run_dir)) for p in res.plots]
    order = {"fail": 0, "warn": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    counts = Counter(f.severity for f in findings)
    return {"checks": sections, "findings": [f.as_dict() for f in findings], "figures": figures,
            "skipped": skipped, "space": ctx.embedding_space, "accuracy_target": ctx.accuracy_target,
            "counts": {s: counts.get(s, 0) for s in ("fail", "warn", "info")}, "plots": plots, "notes": notes}


def print_findings(section: dict[str, Any], full: bool = True) -> None:
    """A table of findings (``full``), or one line with the failures and warnings."""
    counts = section["counts"]
    head = f"[bold]datacheck[/] {counts['fail']} fail, {counts['warn']} warn, {counts['info']} info"
    if not full:
        console.print(head + "".join(f"\n  [{'red' if f['severity'] == 'fail' else 'yellow'}]{f['severity']}[/] "
                                     f"{f['check']}: {f['message']}"
                                     for f in section["findings"] if f["severity"] != "info"))
        return
    t = Table(title="mlbench datacheck", show_lines=False)
    for col in ("severity", "check", "finding", "count", "items (dataset index)"):
        t.add_column(col, overflow="fold")
    colour = {"fail": "red", "warn": "yellow", "info": "dim"}
    for f in section["findings"]:
        t.add_row(f"[{colour[f['severity']]}]{f['severity']}[/]", f["check"], f["message"], str(f["count"]),
                  ", ".join(map(str, f["items"][:8])) + (" …" if len(f["items"]) > 8 else ""))
    console.print(t)
    for s in section["skipped"]:
        console.print(f"[dim]skipped {s['check']}: {s['reason']}[/]")

"""The stress stage: one loop over the stressors, every variant on the same test items.

Each stressor yields rows (stressor × condition × variant) through its contract
(``stress/base.py``); this module turns the rows into each variant's ``stress``
section of summary.json, the flat metrics requirements can name, and the plots.
It never looks at what kind of stressor it runs.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench.evaluate.loop import Perturbation, evaluate, robust_accuracy
from mlbench.evaluate.metrics import ece
from mlbench.evaluate.stats import paired_deltas
from mlbench.named import target_of
from mlbench.process import release_memory
from mlbench.progress import console
from mlbench.stress.base import StressEnv, Stressor, StressRow
from mlbench.stress.plots import condition_lines

log = logging.getLogger(__name__)


@dataclass
class StressOutcome:
    """What the stage hands back: per variant its ``stress`` section and flat metrics, the
    rows themselves, and the plots written (paths relative to the run folder)."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    rows: list[StressRow] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def scorer(batch_size: int, boot: dict[str, Any], y: torch.Tensor):
    """``score(runner, x, base_probs=None, perturbation=None) -> (row, probs)``: accuracy
    (non-finite logits count as wrong) and ECE of ``runner`` on ``x`` (each batch passed through
    ``perturbation(xb, yb)`` when given); with the baseline's probabilities, paired deltas with
    intervals for the two statistics the stress tables report."""
    def score(runner, x: torch.Tensor, base_probs: torch.Tensor | None = None,
              perturbation: Perturbation | None = None) -> tuple[dict, torch.Tensor]:
        ev = evaluate(runner, x, y, batch_size=batch_size, perturbation=perturbation,
                      metrics=False)  # the two below are all it reports
        out: dict[str, Any] = {"accuracy": robust_accuracy(ev.logits, y)}
        if ev.problem is None:
            out["ece"] = ece(ev.probs, y)
            if base_probs is not None:
                d = paired_deltas(base_probs, ev.probs, y, None, metrics=("accuracy", "ece"), **boot)
                out["delta_accuracy"], out["delta_ece"] = d["accuracy"], d["ece"]
        else:
            out["problem"] = ev.problem
        release_memory()  # the evaluation's and the bootstrap's freed buffers, before the next variant
        return out, ev.probs
    return score


def _section(st: Stressor, rows: list[StressRow]) -> dict[str, Any]:
    sec: dict[str, Any] = {"kind": st.kind, "target": target_of(st),
                           **st.describe(), st.condition_key: {}}
    for r in rows:
        if r.skipped is not None:
            sec["skipped"] = r.skipped
        else:
            sec[st.condition_key][r.condition] = r.values
    return sec


def drop_unfit(stressors: list[Stressor], baseline: Any) -> list[dict[str, str]]:
    """Remove (in place) the stressors that need gradients when the baseline has none (an
    ONNX-only model); returns why each was skipped."""
    skipped = []
    if not baseline.differentiable:
        for st in [st for st in stressors if st.needs_gradients]:
            skipped.append({"stressor": st.name, "reason": (
                f"needs gradients; the baseline is a {baseline.format}-only model (a score-based black-box "
                "attack runs without them: stress=[square])")})
            stressors.remove(st)
    return skipped


def run_stressors(stressors: list[Stressor], env: StressEnv) -> StressOutcome:
    """Every stressor against every variant of ``env`` (baseline first)."""
    out = StressOutcome()
    names = [v.name for v in env.variants]
    base = names[0]
    tables: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for st in stressors:
        console.print(f"[bold]stress[/] {st.name}")
        rows = list(st.rows(env))
        out.rows += rows
        per_variant = {n: _section(st, [r for r in rows if r.variant == n]) for n in names}
        for n in names:
            st.summarize(per_variant[n], per_variant[base])
            out.sections.setdefault(n, {})[st.name] = per_variant[n]
            m = out.metrics.setdefault(n, {})
            for cond, r in per_variant[n][st.condition_key].items():
                m[f"stress/{st.name}/{cond}/{st.headline_name}"] = r[st.headline]
        if st.figure is not None:
            tables[st.figure][st.name] = {n: per_variant[n][st.condition_key] for n in names}
        out.plots += st.plot(per_variant, env)
    for n in names:  # summaries over every stressor that declares an aggregate
        secs = [(st, out.sections[n][st.name]) for st in stressors if st.aggregate == "corruption"]
        accs = [r[st.headline] for st, sec in secs for c, r in sec[st.condition_key].items() if c != "0"]
        if accs:
            ces = [sec["corruption_error"] for _, sec in secs if sec.get("corruption_error") is not None]
            out.metrics[n]["mean_corruption_accuracy"] = float(np.mean(accs))
            out.metrics[n]["mean_corruption_error"] = float(np.mean(ces)) if ces else None
    for (fname, xlabel, logx), t in tables.items():
        st0 = next(st for st in stressors if st.figure == (fname, xlabel, logx))
        p = condition_lines(t, st0.headline, xlabel, env.plots_dir / fname, logx)
        if p is not None:
            out.plots.append(p)
    shutil.rmtree(env.workdir, ignore_errors=True)
    return out

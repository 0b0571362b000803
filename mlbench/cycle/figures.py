"""What a cycle's timeline says: the policy table, the time to recover after each drift, the
cycle time per stage, the shortest update interval it sustains, and how the update time grows
with the training window (``scaling``)."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import torch

from mlbench.cycle.loop import STAGES, UPDATE_STAGES
from mlbench.cycle.policies import Never, Policy
from mlbench.evaluate.stats import paired_bootstrap


def onsets(rows: list[dict]) -> list[dict[str, Any]]:
    """Periods where the world's shift changes kind (none → covariate, covariate → none, ...);
    a severity rising within one kind is the same drift going on."""
    out = []
    for prev, cur in zip(rows, rows[1:], strict=False):
        if cur["kind"] != prev["kind"]:
            out.append({"period": cur["period"], "from": prev["scenario"], "to": cur["scenario"]})
    return out


def recovery(rows: list[dict], drifts: list[dict], tolerance: float) -> list[dict[str, Any]]:
    """Per change of shift kind: the accuracy before it (mean over the periods since the previous
    change) and what followed up to the next change or the end. ``threshold`` = before −
    ``tolerance``. ``status``: ``unaffected`` (no period fell below the threshold),
    ``recovered`` (it fell, then came back above the threshold and stayed there to the span's
    end) or ``not recovered``. ``periods_to_recover``: periods from the change to the first
    period of that final stretch; 0 when unaffected, None when not recovered. A drift that ramps
    up slowly counts from the change, not from its first period, so an accuracy that falls a
    few periods later is never "recovered in 0"."""
    acc = {r["period"]: r["accuracy"] for r in rows}
    starts = [0] + [d["period"] for d in drifts] + [len(rows)]
    out = []
    for i, d in enumerate(drifts):
        before = [acc[t] for t in range(starts[i], d["period"])]
        after = list(range(d["period"], starts[i + 2]))
        level = float(np.mean(before))
        threshold = level - tolerance
        below = [t for t in after if acc[t] < threshold]
        if not below:
            status, back = "unaffected", d["period"]
        elif below[-1] == after[-1]:
            status, back = "not recovered", None
        else:
            status, back = "recovered", below[-1] + 1
        out.append({**d, "accuracy_before": level, "threshold": threshold,
                    "lowest_after": min(acc[t] for t in after), "first_below": below[0] if below else None,
                    "periods_below": len(below), "status": status,
                    "periods_to_recover": None if back is None else back - d["period"]})
    return out


def policy_table(rows: list[dict], target: float | None, tolerance: float) -> dict[str, Any]:
    acc = np.array([r["accuracy"] for r in rows])
    updates = [r["update"] for r in rows if r["update"] is not None]
    done = [u for u in updates if u["status"] in ("deployed", "refused", "failed")]
    compute = sum(sum(r["seconds"].values()) for r in rows)
    return {
        "mean_accuracy": float(acc.mean()), "min_accuracy": float(acc.min()), "final_accuracy": float(acc[-1]),
        "periods_below_target": None if target is None else int((acc < target).sum()),
        "alarms": sum(bool(r["alarm"] or r["error_alarm"]) for r in rows),
        "retrains": len(done), "deployments": sum(u["status"] == "deployed" for u in done),
        "refused": sum(u["status"] == "refused" for u in done), "failed": sum(u["status"] == "failed" for u in done),
        "skipped": sum(u["status"] == "skipped" for u in updates),
        "labelled_items_used": int(sum(r.get("labels", r["n"]) for r in rows if r["period"] in
                                       {t for u in done for t in [*u["train_periods"], *u["gate_periods"]]})),
        "labels_bought": int(sum(r.get("labels", r["n"]) for r in rows)),
        "labels_to_target": labels_to_target(rows, target),
        "compute_s": float(compute),
        "recovery": (rec := recovery(rows, onsets(rows), tolerance)),
        "unrecovered": sum(x["status"] == "not recovered" for x in rec),
    }


def reference_policy(policies: list[Policy]) -> str | None:
    """The policy the others are compared with: the first that never updates (None: none does)."""
    return next((p.name for p in policies if isinstance(p, Never)), None)


def paired_mean(a: list[int], b: list[int], seed: int, n_resamples: int = 2000) -> dict[str, float] | None:
    """Mean of ``a − b`` (per-item correctness of two models on the same items: an accuracy
    difference) with a paired percentile bootstrap 95 % interval over the items."""
    if not a:
        return None
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    point, lo, hi = paired_bootstrap(d[:, None], lambda sums, n: sums / n, n_resamples, seed)
    return {"value": float(point[0]), "ci_low": float(lo[0]), "ci_high": float(hi[0]), "n": len(a)}


def versus(rows: list[dict], ref_rows: list[dict], seed: int) -> dict[str, float] | None:
    """This policy's accuracy over the whole stream minus the reference policy's, paired over the
    same items (every policy scores the same stream)."""
    if any("correct" not in r for r in [*rows, *ref_rows]):
        return None  # a timeline recorded before per-item correctness was kept
    return paired_mean([c for r in rows for c in r["correct"]], [c for r in ref_rows for c in r["correct"]], seed)


def updates_bought(rows: list[dict], seed: int) -> list[dict[str, Any]]:
    """What each deployment bought: over the periods the new model served (from the next period
    to the next deployment or the end), its accuracy minus that of the model it replaced, which
    scored the same items beside it; paired interval over those items."""
    out = []
    deployed = [i for i, r in enumerate(rows) if (r.get("update") or {}).get("status") == "deployed"]
    for k, i in enumerate(deployed):
        end = deployed[k + 1] if k + 1 < len(deployed) else len(rows) - 1
        served = [r for r in rows[i + 1:end + 1] if "previous" in r]
        new = [c for r in served for c in r["correct"]]
        old = [c for r in served for c in r["previous"]["correct"]]
        out.append({"period": rows[i]["period"], "version": rows[i + 1]["version"] if i + 1 < len(rows) else None,
                    "served_periods": [r["period"] for r in served], "accuracy": float(np.mean(new)) if new else None,
                    "accuracy_replaced": float(np.mean(old)) if old else None,
                    "bought": paired_mean(new, old, seed)})
    return out


def labels_to_target(rows: list[dict], target: float | None) -> int | None:
    """Labels that had arrived or been bought up to the period at which the accuracy, having
    fallen below ``target``, was first back at or above it (None: it never fell, never came
    back, or there is no target)."""
    if target is None:
        return None
    fell = next((i for i, r in enumerate(rows) if r["accuracy"] < target), None)
    if fell is None:
        return None
    back = next((i for i in range(fell + 1, len(rows)) if rows[i]["accuracy"] >= target), None)
    return None if back is None else int(sum(r.get("labels", r["n"]) for r in rows[:back]))


def _stat(v: list[float]) -> dict[str, float] | None:
    if not v:
        return None
    return {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def stage_times(timelines: dict[str, list[dict]]) -> dict[str, Any]:
    """Seconds per stage over every period (score, monitor) and every completed update
    (data check, train, compress, evaluate, gate), all policies together."""
    rows = [r for rs in timelines.values() for r in rs]
    upd = [r["update"] for r in rows if r["update"] is not None and r["update"]["status"] in ("deployed", "refused")]
    out = {s: _stat([r["seconds"][s] for r in rows if s in r["seconds"]]) for s in ("score", "monitor")}
    out.update({s: _stat([u["seconds"][s] for u in upd if s in u["seconds"]]) for s in UPDATE_STAGES})
    return {s: out[s] for s in STAGES}


def interval(stages: dict[str, Any], timelines: dict[str, list[dict]], window_items: int) -> dict[str, Any] | None:
    """The shortest update interval this machine sustains for the recipe and window: the
    median update (data check + train + compress + evaluate + gate) plus the median time to
    score and monitor a period. Range: the fastest and slowest update."""
    upd = [u for rs in timelines.values() for r in rs if (u := r["update"]) and u["status"] in ("deployed", "refused")]
    if not upd:
        return None
    totals = [sum(u["seconds"].get(s, 0.0) for s in UPDATE_STAGES) for u in upd]
    per_period = (stages["score"] or {}).get("median", 0.0) + (stages["monitor"] or {}).get("median", 0.0)
    return {"interval_s": float(np.median(totals)) + per_period, "update_s_median": float(np.median(totals)),
            "update_s_min": float(np.min(totals)), "update_s_max": float(np.max(totals)),
            "score_and_monitor_s": per_period, "updates": len(totals), "window_items": window_items,
            "train_items_median": float(np.median([u["n_train"] for u in upd]))}


def scaling(engine: Any, initial: Any) -> list[dict]:  # engine: a cycle.loop.Engine
    """Update time against the training-window size: one update per size from the initial
    model (warm start), on the CPU and, when present, on CUDA."""
    devices = [torch.device("cpu")] + ([engine.device] if engine.device.type == "cuda" else [])
    w = engine.cyc.window
    rows = []
    for dev in devices:
        for mult in engine.cyc.scaling:
            k = min(mult * w, engine.cyc.periods - 1)
            if any(r["device"] == dev.type and r["train_periods"] == k for r in rows):
                continue
            workdir = engine.state_dir / "scaling" / f"{dev.type}_{k}"
            rec, _ = engine.candidate(initial.dense, list(range(k)), [k], engine._seed(10_000 + k), workdir, dev, initial)
            shutil.rmtree(workdir, ignore_errors=True)
            rows.append({"device": dev.type, "train_periods": k, "train_items": rec["n_train"],
                         "holdout_items": rec["n_holdout"], "status": rec["status"],
                         **{f"{s}_s": rec["seconds"].get(s) for s in UPDATE_STAGES},
                         "update_s": sum(rec["seconds"].get(s, 0.0) for s in UPDATE_STAGES)})
    return rows

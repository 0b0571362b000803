"""Unlabelled evaluation data (``data.unlabelled``): the items a model will meet in production,
which nobody has labelled. What needs no label is measured on them for every variant; what
needs labels (accuracy, calibration, per-class and per-group figures, stress) is not, and the
section says so.

Per variant, against the labelled calib split (the reference the monitoring stage uses too):

- ``agreement``: share of unlabelled items whose top-1 class equals the baseline's, with a
  Wilson 95 % interval — what compressing the model changes on the data it will serve;
- label-free accuracy estimates: ATC (Garg et al. 2022; threshold on the confidence fitted so
  that the calib share above it equals the calib accuracy), DoC (Guillory et al. 2021; calib
  accuracy minus the drop in mean confidence), AC (average confidence) and BBSE's
  label-shift-corrected accuracy (Lipton et al. 2018) — each is an estimate, exact only under
  its own assumption (the report says which);
- predicted-class shares on the unlabelled items and on calib;
- drift: shift detectors (``unlabelled.detectors``: presets of the monitoring stage's, by
  default the output-based ones and feature-wise KS on tabular inputs) with calib as the
  reference and all unlabelled items as one window.

Outputs are the variants' own (before any calibrator), on calib and unlabelled alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from mlbench.errors import first_line
from mlbench.monitor.detectors import ATC, BBSE, View, build_detectors
from mlbench.monitor.stage import view
from mlbench.progress import console
from mlbench.text import Doc, fmt

NEEDS_LABELS = ["accuracy", "calibration (ECE, NLL, Brier)", "per-class recall", "per-group accuracy",
                "stress tests"]
ESTIMATES = {
    "atc": "ATC: share above the confidence threshold fitted on calib (exact when the shift moves confidence "
           "and accuracy together)",
    "doc": "DoC: calib accuracy minus the drop in mean confidence (exact for a calibrated model)",
    "average_confidence": "AC: mean top-1 probability (exact for a calibrated model)",
    "bbse": "BBSE: calib per-class recall weighted by the estimated class priors (exact under label shift)",
}


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of ``k`` successes in ``n`` (scipy's ``binomtest``)."""
    ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def estimates(calib_probs: np.ndarray, calib_y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Label-free accuracy estimates of a model on items with outputs ``probs``."""
    calib_acc = float((calib_probs.argmax(1) == calib_y).mean())
    return {"atc": ATC().fit(calib_probs, calib_y).estimate(probs),
            "doc": calib_acc - (float(calib_probs.max(1).mean()) - float(probs.max(1).mean())),
            "average_confidence": float(probs.max(1).mean()),
            "bbse": BBSE().fit(calib_probs, calib_y).estimate(probs)["accuracy"],
            "calib_accuracy": calib_acc}


def _view(lv: Any, x: Any, y: Any, batch_size: int, device: Any, embeddings: bool) -> View:
    """The variant's outputs on ``x`` with the flattened inputs (and embeddings only when a
    detector reads them: they cost a second pass)."""
    if embeddings:
        return view(lv.runner, lv.artifact, x, y, batch_size, device)
    out = view(lv.runner, lv.artifact, x, y, batch_size, device, outputs_only=True)
    return View(x.flatten(1).double().numpy(), None, out.probs)


def measure(data: Any, live: dict[str, Any], base_name: str, detector_entries: Any, alpha: float,
            batch_size: int, device: Any, seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ``unlabelled`` section of summary.json and each variant's probabilities on the items."""
    x_u = data.unlabelled
    calib_y = data.y["calib"].numpy()
    y_u = torch.zeros(len(x_u), dtype=torch.long)  # the evaluation loop wants labels; none are read
    dets = build_detectors(detector_entries, "unlabelled.detectors", alpha, seed)
    embeddings = any(d.needs == "embeddings" for d in dets)
    per: dict[str, Any] = {}
    probs_of: dict[str, np.ndarray] = {}
    skipped: list[dict[str, str]] = []
    base_pred = None
    for name, lv in live.items():
        try:
            ref = _view(lv, data.x["calib"], data.y["calib"], batch_size, device, embeddings)
            win = _view(lv, x_u, y_u, batch_size, device, embeddings)
        except Exception as e:  # noqa: BLE001 - one variant must not lose the others
            per[name] = {"skipped": f"{type(e).__name__}: {first_line(e)}"}
            continue
        probs_of[name] = win.probs.astype(np.float32)
        pred = win.probs.argmax(1)
        if name == base_name:
            base_pred = pred
        k = int(win.probs.shape[1])
        row: dict[str, Any] = {
            "estimates": estimates(ref.probs, calib_y, win.probs),
            "mean_confidence": {"unlabelled": float(win.probs.max(1).mean()), "calib": float(ref.probs.max(1).mean())},
            "predicted_share": {"unlabelled": (np.bincount(pred, minlength=k) / len(pred)).tolist(),
                                "calib": (np.bincount(ref.probs.argmax(1), minlength=k) / len(ref.probs)).tolist()},
            "drift": {},
        }
        if base_pred is not None and name != base_name:
            same = int((pred == base_pred).sum())
            lo, hi = wilson(same, len(pred))
            row["agreement"] = {"value": same / len(pred), "ci_low": lo, "ci_high": hi, "n": len(pred),
                                "interval": "Wilson 95 %"}
        for d in dets:
            why = d.fits(ref, data.meta.modality)
            if why is not None:
                if name == base_name:
                    skipped.append({"detector": d.name, "reason": why})
                continue
            r = d.fit(ref).test(win)
            row["drift"][d.name] = {"statistic": float(r["statistic"]), "p_value": float(r["p_value"]),
                                    "drift": bool(r["drift"])}
        per[name] = row
    section = {"n": int(len(x_u)), "reference": f"calib split ({len(calib_y)} labelled items)", "alpha": alpha,
               "variants": per, "detectors_skipped": skipped, "estimate_notes": ESTIMATES,
               "needs_labels": {"not measured": NEEDS_LABELS, "reason": "the unlabelled items have no labels"},
               "outputs": "each variant's own probabilities, before any calibrator"}
    return section, probs_of


def unlabelled(ctx: Any) -> None:
    """The run stage: measures ``data.unlabelled`` for every measured variant, writes their
    probabilities to ``predictions/unlabelled.npz`` and prints one line."""
    if ctx.data is None or ctx.data.unlabelled is None or not ctx.live:
        return
    t0 = time.perf_counter()
    conf = ctx.cfg.get("unlabelled") or {}
    console.print(f"[bold]unlabelled[/] {len(ctx.data.unlabelled)} items without labels: agreement, "
                  "label-free accuracy estimates, drift")
    section, probs = measure(ctx.data, ctx.live, "baseline", conf.get("detectors"), float(conf.get("alpha", 0.05)),
                             ctx.settings.quality_batch, ctx.device, ctx.cfg.seed)
    section["seconds"] = time.perf_counter() - t0
    out = Path(ctx.run_dir) / "predictions" / "unlabelled.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **probs)
    section["predictions"] = "predictions/unlabelled.npz"
    ctx.run.unlabelled = section
    console.print(console_line(section))


def console_line(section: dict[str, Any]) -> str:
    """One line: the baseline's estimates and drift alarms, the variant that agrees least."""
    base = section["variants"].get("baseline", {})
    est = base.get("estimates") or {}
    alarms = [n for n, r in (base.get("drift") or {}).items() if r["drift"]]
    agree = [(r["agreement"]["value"], n) for n, r in section["variants"].items() if r.get("agreement")]
    text = (f"unlabelled ({section['n']} items): baseline accuracy estimated {fmt(est.get('atc'), 3)} (ATC), "
            f"{fmt(est.get('doc'), 3)} (DoC) vs {fmt(est.get('calib_accuracy'), 3)} on calib; "
            + (f"drift flagged by {', '.join(alarms)}" if alarms else "no drift flagged"))
    if agree:
        v, n = min(agree)
        text += f"; lowest agreement with the baseline {v:.3f} ({n})"
    return text


def report_section(doc: Doc, summary: dict[str, Any]) -> None:
    """The report's section: one row per variant, then what each estimate assumes."""
    sec = summary.get("unlabelled")
    if not sec:
        return
    doc.h2(f"Unlabelled data ({sec['n']} items)")
    doc.p(f"Reference: {sec['reference']}. Not measured (needs labels): {', '.join(sec['needs_labels']['not measured'])}.")
    dets = sorted({d for r in sec["variants"].values() for d in (r.get("drift") or {})})
    rows = []
    for n, r in sec["variants"].items():
        if r.get("skipped"):
            rows.append([n, f"skipped: {r['skipped']}", *[""] * (5 + len(dets))])
            continue
        a, e = r.get("agreement"), r["estimates"]
        rows.append([n, "—" if a is None else f"{a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]",
                     fmt(e["atc"], 3), fmt(e["doc"], 3), fmt(e["average_confidence"], 3), fmt(e["bbse"], 3),
                     fmt(e["calib_accuracy"], 3),
                     *[("**drift** " if r["drift"][d]["drift"] else "") + f"p={r['drift'][d]['p_value']:.3g}"
                       if d in r["drift"] else "n/a" for d in dets]])
    doc.table(["variant", "agreement with baseline [95% CI]", "ATC", "DoC", "AC", "BBSE", "calib accuracy", *dets],
              rows)
    doc.items([f"**{k}**: {v}" for k, v in sec["estimate_notes"].items()]
              + [f"detector {s['detector']} skipped: {s['reason']}" for s in sec.get("detectors_skipped", [])])

"""The monitoring stage: after the variants, the detectors measured on shift scenarios built
from the held-out test split (reference: the calib split), for the baseline and per variant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench.data import DataBundle
from mlbench.errors import MlbenchError, first_line
from mlbench.evaluate.loop import evaluate
from mlbench.models import penultimate
from mlbench.monitor.detectors import ATC, BBSE, View
from mlbench.monitor.plots import estimate_plot, power_plot
from mlbench.monitor.protocol import (
    Monitor,
    Pools,
    corruption_class,
    failing_loudly,
)
from mlbench.monitor.scenarios import Scenario, kind_class
from mlbench.named import target_of, what_it_does
from mlbench.progress import console
from mlbench.stress.corruptions import Corruption


def corruption(name: str, data: DataBundle, seed: int, auto: dict[str, str]) -> Corruption:
    """The stress corruption a covariate scenario names — an option of ``conf/stress`` (``auto``:
    the one ``auto`` names for the data's modality) — checked against the data."""
    if name == "auto":
        if data.meta.modality not in auto:
            raise MlbenchError(f"auto_corruption names no corruption for {data.meta.modality} data")
        name = auto[data.meta.modality]
    cls = corruption_class(name)
    c = cls(severities=[1], when_unfit="error", seed=seed)
    c.name = name
    c.check(data.meta)
    return c


def input_cost(mon: Monitor, data: DataBundle, seed: int, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds per test item to make the covariate scenarios' corrupted copies, timed on the
    batch ``x`` (a corruption is deterministic: timing it changes nothing)."""
    t0 = time.perf_counter()
    for sc in mon.covariate():
        corruption(sc.corruption, data, seed, mon.auto_corruption).perturb(x, y, int(sc.param)).cpu()
    return (time.perf_counter() - t0) / max(len(x), 1)


def view(runner, artifact, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
         outputs_only: bool = False, embeddings: bool = True) -> View:
    """The deployed model's view of items: softmax outputs, and (unless ``outputs_only``, for
    detectors that read outputs alone) flattened inputs and, when ``embeddings``, penultimate
    embeddings (a second pass through the model: only when a detector reads them)."""
    probs = evaluate(runner, x, y, batch_size=batch_size, metrics=False).logits.softmax(1).double().numpy()
    if outputs_only:
        return View(np.empty((len(x), 0)), None, probs)
    emb = None
    if embeddings and artifact.differentiable:  # float32, as computed (windows taken from it are float64: View.take)
        emb = penultimate(artifact.model, x, device=runner.input_device, dtype=artifact.dtype).float().numpy()
    return View(x.flatten(1).float().numpy(), emb, probs)


def pools_for(mon: Monitor, runner, artifact, data: DataBundle, batch_size: int, device: torch.device,
              perturbed_x: dict[str, torch.Tensor], outputs_only: bool = False) -> Pools:
    emb = mon.reads_embeddings

    def one(x: torch.Tensor, y: torch.Tensor) -> View:
        return view(runner, artifact, x, y, batch_size, device, outputs_only, emb)
    p = Pools(one(data.x["calib"], data.y["calib"]), one(data.x["test"], data.y["test"]))
    for label, x in perturbed_x.items():
        p.perturbed[label] = one(x, data.y["test"])
    return p


def run_monitor(mon: Monitor, data: DataBundle, live: dict[str, Any], base_name: str, batch_size: int,
                device: torch.device, plots_dir: Path, seed: int) -> tuple[dict[str, Any], dict[str, dict], list[Path]]:
    """Returns the ``monitor`` section, per-variant metrics and the plots written."""
    sizes = {s: len(data.y[s]) for s in ("calib", "test")}
    data = mon.sample(data)  # at most monitor.max_items of each: windows are hundreds of items
    y = data.y["test"].numpy()
    group = data.group["test"].numpy() if data.group is not None else None
    modality = data.meta.modality
    perturbed = {}
    for sc in mon.covariate():
        c = corruption(sc.corruption, data, seed, mon.auto_corruption)
        perturbed[sc.label] = c.perturb(data.x["test"].to(device), data.y["test"].to(device), int(sc.param)).cpu()
    base = live[base_name]
    console.print("[bold]monitor[/] detectors on shift scenarios")
    pools = pools_for(mon, base.runner, base.artifact, data, batch_size, device, perturbed)
    skipped: list[dict] = []
    dets = mon.detectors_for(mon.detectors, pools.reference, modality, skipped)
    calib_y = data.y["calib"].numpy()
    est = (BBSE().fit(pools.reference.probs, calib_y), ATC().fit(pools.reference.probs, calib_y))
    rows, estimates = mon.power(pools, y, group, mon.scenarios, mon.windows, dets, mon.repetitions, est)
    section: dict[str, Any] = {
        "reference": f"calib split ({len(calib_y)} items"
                     + (f", a seeded sample of {sizes['calib']}" if len(calib_y) < sizes["calib"] else "")
                     + "), baseline outputs",
        "pool": f"test split ({len(y)} items" + (f", a seeded sample of {sizes['test']}" if len(y) < sizes["test"] else "")
                + ")",
        "alpha": mon.alpha, "repetitions": mon.repetitions, "windows": mon.windows,
        "scenarios": [s.label for s in mon.scenarios], "detectors": list(dets),
        "detector_notes": {n: what_it_does(d) for n, d in dets.items()},
        "detector_targets": {n: target_of(d) for n, d in dets.items()}, "skipped": skipped + mon.dropped,
        "power": rows, "estimates": estimates, "streams": mon.streams(pools, y, group),
        "interval": "Clopper–Pearson 95 % over repetitions",
    }
    if mon.failing_loudly:
        section["failing_loudly"] = failing_loudly(rows, list(dets))
    metrics: dict[str, dict] = {}
    deployment: dict[str, Any] = {}
    out_dets = {d.name: e for e, d in zip(mon.output_detectors, mon.build(mon.output_detectors)) if d.name in dets}
    n = mon.deployment_window
    for name, lv in live.items():
        try:
            deployment[name], metrics[name] = _deployed(mon, name, lv, base_name, pools, rows, dets, out_dets, y, group,
                                                        data, batch_size, device, perturbed, modality)
        except Exception as e:  # noqa: BLE001 - one variant's monitor must not lose the run
            first = first_line(e)
            deployment[name] = {"error": f"{type(e).__name__}: {first}"}
            metrics[name] = {"monitor_false_alarm_rate": None}
    section["deployment"] = {"window": n, "variants": deployment,
                             "note": "false_alarms: the baseline's monitor on the variant's outputs with no shift; "
                                     "power: detectors fitted on the variant's own reference"}
    plots = [power_plot(rows, plots_dir / "monitor_power.png")]
    if estimates:
        plots.append(estimate_plot(estimates, plots_dir / "monitor_estimates.png"))
    return section, metrics, [p for p in plots if p is not None]


def _deployed(mon: Monitor, name: str, lv: Any, base_name: str, pools: Pools, rows: list[dict], dets: dict,
              out_dets: dict[str, Any], y: np.ndarray, group: np.ndarray | None, data: DataBundle, batch_size: int,
              device: torch.device, perturbed: dict, modality: str) -> tuple[dict, dict]:
    """One variant's false alarms under the baseline's monitor and its detectors' power
    (``out_dets``: the output detectors that ran, name → config entry)."""
    n = mon.deployment_window
    base_power = {(r["scenario"], r["detector"]): r for r in rows if r["window"] == n}
    vp = pools if name == base_name else pools_for(mon, lv.runner, lv.artifact, data, batch_size, device, perturbed,
                                                   outputs_only=True)  # only output detectors run per variant
    # compression alone: the baseline's monitor watching this variant's outputs, no shift
    if name == base_name and n in mon.windows:  # the null rows measured above
        fa = [r for r in rows if kind_class(r["kind"]).null and r["window"] == n and r["detector"] in out_dets]
    else:
        fa, _ = mon.power(Pools(pools.reference, vp.clean), y, group, [Scenario("none")], [n],
                          {d: dets[d] for d in out_dets}, mon.repetitions, salt=1)
    # the detectors' power when this variant is the deployed model (fitted on its own reference);
    # concept drift is left out: no output detector can see it by construction
    shifted = [s for s in mon.scenarios if not (s.null or s.changes_labels)]
    if name == base_name and n in mon.windows:  # measured above
        pw = [r for r in rows if r["window"] == n and r["detector"] in out_dets and r["kind"] in
              {s.kind for s in shifted}]
    else:
        own = mon.detectors_for(list(out_dets.values()), vp.reference, modality, [])
        pw, _ = mon.power(vp, y, group, shifted, [n], own, mon.deployment_repetitions, salt=2)
    return ({"false_alarms": {r["detector"]: {k: r[k] for k in ("rate", "ci_low", "ci_high")} for r in fa},
             "power": {f"{r['scenario']}/{r['detector']}": {
                 "variant": r["rate"], "baseline": base_power.get((r["scenario"], r["detector"]), {}).get("rate")}
                 for r in pw}},
            {"monitor_false_alarm_rate": max((r["rate"] for r in fa), default=None)})

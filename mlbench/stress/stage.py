"""The stress stage: every stressor against every variant, on the same test items.

Corruptions perturb the test split once per severity and every variant is evaluated
on the same perturbed items with the same ``evaluate()``; attacks are crafted per
differentiable variant (white-box) or once on the baseline (transfer); weight faults
make faulty copies of each model; explanations compare captum attributions.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from mlbench.analysis.stats import paired_deltas
from mlbench.backends import OrtRunner, TorchRunner
from mlbench.evaluate import evaluate
from mlbench.evaluate.loop import serving_batch
from mlbench.evaluate.metrics import ece
from mlbench.progress import console
from mlbench.stress.adversarial import Attack
from mlbench.stress.base import generator
from mlbench.stress.corruptions import Corruption
from mlbench.stress.explain import Explanations, spearman, topk_overlap
from mlbench.stress.faults import WeightFaults, onnx_with_faults, torch_with_faults

log = logging.getLogger(__name__)


def robust_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy where a prediction with any non-finite logit counts as wrong."""
    finite = torch.isfinite(logits).all(1)
    pred = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -math.inf)).argmax(1)
    return float(((pred == y) & finite).double().mean())


def _differentiable(res) -> bool:
    art = res.artifact
    return art is not None and art.format == "torch" and not art.cpu_only


def _score(runner, x, y, bs, base_probs=None, boot=None, group=None) -> tuple[dict, torch.Tensor]:
    ev = evaluate(runner, x, y, batch_size=bs)
    out = {"accuracy": robust_accuracy(ev.logits, y)}
    probs = ev.probs
    if ev.problem is None:
        out["ece"] = ece(probs, y)
        if base_probs is not None:
            d = paired_deltas(base_probs, probs, y, group, **boot)
            out["delta_accuracy"] = d["accuracy"]
            out["delta_ece"] = d["ece"]
    else:
        out["problem"] = ev.problem
    return out, probs


def _trial_summary(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) > 1 and arr.std(ddof=1) > 0:
        half = float(sps.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    else:
        half = 0.0
    return {"mean": mean, "ci_low": max(0.0, mean - half), "ci_high": min(1.0, mean + half), "trials": values,
            "interval": "95% t-interval over trials, clipped to [0, 1]"}


def run_corruption(ctx, name: str, st: Corruption, boot: dict) -> None:
    d, bs = ctx.data, serving_batch(ctx.cfg)
    x, y = d.x["test"], d.y["test"]
    base = ctx.results["baseline"]
    for sev in st.severities:
        xs = st.perturb(x.to(ctx.device), y.to(ctx.device), sev).cpu()
        base_row, base_probs = _score(base.runner_obj, xs, y, bs)
        base.stress.setdefault(name, {"kind": "corruption", "severities": {}})["severities"][str(sev)] = base_row
        for vname, res in ctx.ok.items():
            if vname == "baseline":
                continue
            row, _ = _score(res.runner_obj, xs, y, bs, base_probs, boot)
            res.stress.setdefault(name, {"kind": "corruption", "severities": {}})["severities"][str(sev)] = row


def run_attack(ctx, name: str, st: Attack, boot: dict) -> None:
    d, bs = ctx.data, serving_batch(ctx.cfg)
    x, y = d.x["test"].to(ctx.device), d.y["test"].to(ctx.device)
    base = ctx.results["baseline"]
    for eps in st.eps:
        base_adv = st.craft(base.runner_obj.model, x, y, eps).cpu()
        base_row, base_probs = _score(base.runner_obj, base_adv, y.cpu(), bs)
        base_row["mode"] = "white-box"
        for vname, res in ctx.ok.items():
            if vname == "baseline":
                row = base_row
            elif _differentiable(res):
                r = res.runner_obj
                adv = st.craft(r.model, x.to(r.device), y.to(r.device), eps, r.dtype).cpu()
                row, _ = _score(r, adv, y.cpu(), bs, base_probs, boot)
                row["mode"] = "white-box"
            else:
                row, _ = _score(res.runner_obj, base_adv, y.cpu(), bs, base_probs, boot)
                row["mode"] = "transfer (crafted on the float baseline)"
            sec = res.stress.setdefault(name, {"kind": "adversarial", **st.describe(), "eps": {}})
            sec["eps"][f"{eps:g}"] = row


def run_faults(ctx, name: str, st: WeightFaults) -> None:
    d, bs = ctx.data, serving_batch(ctx.cfg)
    x, y = d.x["test"], d.y["test"]
    workdir = ctx.run_dir / "models" / ".faults"
    workdir.mkdir(parents=True, exist_ok=True)
    for vname, res in ctx.ok.items():
        art, r = res.artifact, res.runner_obj
        sec = res.stress.setdefault(name, {"kind": "fault", "mode": st.mode, "rates": {}})
        if art.format == "torch" and art.cpu_only:
            sec["skipped"] = "quantized torch modules keep packed weights; fault injection is not supported"
            continue
        for rate in st.rates:
            accs, flipped, fmt = [], [], None
            for trial in range(st.trials):
                g = generator(st.seed, name, vname, rate, trial)
                if art.format == "torch":
                    faulty, n = torch_with_faults(art.model, st.mode, rate, g)
                    runner = TorchRunner(faulty, r.device, r.dtype)
                    fmt = str(r.dtype).replace("torch.", "")
                else:
                    try:
                        path, n, fmt = onnx_with_faults(art.path, st.mode, rate, g, workdir)
                    except Exception as e:  # noqa: BLE001 - e.g. gaussian noise on int8
                        sec["skipped"] = str(e).splitlines()[0]
                        break
                    runner = OrtRunner(path, threads=ctx.cfg.backend.threads)
                ev = evaluate(runner, x, y, batch_size=bs)
                accs.append(robust_accuracy(ev.logits, y))
                flipped.append(n)
            if accs:
                sec["rates"][f"{rate:g}"] = {**_trial_summary(accs), "bits_flipped": flipped, "format": fmt}
    import shutil
    shutil.rmtree(workdir, ignore_errors=True)


def run_explanations(ctx, name: str, st: Explanations) -> None:
    d = ctx.data
    n = min(st.n_items, len(d.y["test"]))
    base = ctx.results["baseline"]
    br = base.runner_obj
    x, y = d.x["test"][:n].to(br.device), d.y["test"][:n].to(br.device)
    k = st.k(x[0].numel())
    maps: dict[str, dict[str, torch.Tensor]] = {}
    base_attr = {m: st.attribute(br.model, x, y, m) for m in st.methods}
    for vname, res in ctx.ok.items():
        sec = res.stress.setdefault(name, {"kind": "explanation", "items": n, "topk": k, "methods": {}})
        if not _differentiable(res):
            sec["skipped"] = "not differentiable (ONNX or quantized): no gradients for attributions"
            continue
        r = res.runner_obj
        xv, yv = x.to(r.device), y.to(r.device)
        for m in st.methods:
            a = base_attr[m] if vname == "baseline" else st.attribute(r.model, xv, yv, m, r.dtype)
            rho = spearman(base_attr[m].cpu(), a.cpu())
            ov = topk_overlap(base_attr[m].cpu(), a.cpu(), k)
            sec["methods"][m] = {"spearman_mean": float(rho.mean()), "spearman_median": float(rho.median()),
                                 "topk_overlap_mean": float(ov.mean()),
                                 **st.scores(r.model, xv, yv, m, a, r.dtype)}
            maps.setdefault(m, {})[vname] = a[:6].float().cpu()
    ctx.extra.setdefault("_attribution_maps", {})[name] = maps



def summarize(res, base) -> None:
    """Flat stress metrics (for requirements and the table) and corruption errors."""
    m = res.metrics
    accs = []
    ce = {}
    for name, sec in res.stress.items():
        if sec["kind"] == "corruption":
            rows = {s: r for s, r in sec["severities"].items() if s != "0"}
            accs += [r["accuracy"] for r in rows.values()]
            err_v = sum(1 - r["accuracy"] for r in rows.values())
            err_b = sum(1 - base.stress[name]["severities"][s]["accuracy"] for s in rows)
            sec["corruption_error"] = err_v / err_b if err_b > 0 else None
            ce[name] = sec["corruption_error"]
            for s, r in sec["severities"].items():
                m[f"stress/{name}/{s}/accuracy"] = r["accuracy"]
        elif sec["kind"] == "adversarial":
            for e, r in sec["eps"].items():
                m[f"stress/{name}/{e}/accuracy"] = r["accuracy"]
        elif sec["kind"] == "fault":
            for rate, r in sec["rates"].items():
                m[f"stress/{name}/{rate}/accuracy"] = r["mean"]
        elif sec["kind"] == "explanation":
            for meth, r in sec["methods"].items():
                m[f"stress/{name}/{meth}/spearman"] = r["spearman_mean"]
    if accs:
        m["mean_corruption_accuracy"] = float(np.mean(accs))
        vals = [v for v in ce.values() if v is not None]
        m["mean_corruption_error"] = float(np.mean(vals)) if vals else None


def stress(ctx) -> None:
    """Run the configured stressors (skipped ones were decided at set-up)."""
    if not ctx.stressors:
        return
    boot = {"n_resamples": ctx.cfg.eval.bootstrap.resamples, "seed": ctx.cfg.seed,
            "level": ctx.cfg.eval.bootstrap.level, "device": ctx.device}
    for name, st in ctx.stressors:
        console.print(f"[bold]stress[/] {name}")
        if isinstance(st, Corruption):
            run_corruption(ctx, name, st, boot)
        elif isinstance(st, Attack):
            run_attack(ctx, name, st, boot)
        elif isinstance(st, WeightFaults):
            run_faults(ctx, name, st)
        elif isinstance(st, Explanations):
            run_explanations(ctx, name, st)
    base = ctx.results["baseline"]
    for res in ctx.ok.values():
        summarize(res, base)
    ctx.extra["stress"] = {"stressors": {n: {"kind": st.kind, "class": type(st).__name__} for n, st in ctx.stressors},
                           "skipped": ctx.extra.get("stress_skipped", []),
                           "corruption_error": "sum over severities of the variant's error / the same sum "
                                               "for this run's baseline (1.0 = as robust as the baseline)"}
    from mlbench.stress.plots import stress_plots
    ctx.extra.setdefault("plots", []).extend(stress_plots(ctx))

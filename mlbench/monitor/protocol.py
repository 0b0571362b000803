"""The monitoring stage: measure the detectors, not just run them.

For every scenario × window size × detector: the detection rate over repeated windows at
level α (power; under no shift, the false-positive rate) with a Clopper–Pearson interval;
BBSE's prior and accuracy estimates and ATC's accuracy estimate against the truth of each
window; detection delay of river's streaming detectors on error streams that drift at a known
point; the protocol of "Failing Loudly" (Rabanser, Günnemann & Lipton, NeurIPS 2019); and per
deployed variant the false alarms that compression alone causes and the detectors' power when
the variant, not the baseline, is deployed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml
from hydra.utils import get_class
from scipy import stats as sps

from mlbench.choices import WhenUnfit, choose
from mlbench.errors import MlbenchError
from mlbench.monitor.detectors import (
    ATC,
    BBSE,
    Detector,
    View,
    build_detectors,
    streaming_detectors,
)
from mlbench.monitor.scenarios import Scenario, parse, shows_shift
from mlbench.schema import group_options
from mlbench.stress.corruptions import Corruption


def corruption_class(name: str) -> type[Corruption] | None:
    """The corruption class a covariate scenario names: an option of ``conf/stress`` whose target
    is a :class:`Corruption` (None for ``auto``, resolved per modality), or one :class:`MlbenchError`."""
    if name == "auto":
        return None
    options = {}
    for path in group_options("stress").values():
        node = (yaml.safe_load(path.read_text()) or {}).get(path.stem)
        if isinstance(node, dict) and "_target_" in node:
            cls = get_class(node["_target_"])
            if issubclass(cls, Corruption):
                options[path.stem] = cls
    if name not in options:
        raise MlbenchError(f"monitor covariate scenario: unknown corruption {name!r}; one of auto, "
                           + ", ".join(options))
    return options[name]


@functools.lru_cache(maxsize=4096)  # the same (k, n) recur across scenarios and detectors
def rate_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson interval of a binomial proportion."""
    ci = sps.binomtest(k, n).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


@dataclass
class Pools:
    """What the monitor reads of one deployed model: its reference view (calib split), and the
    views of the pool (test split) as it is and under each covariate scenario."""

    reference: View
    clean: View
    perturbed: dict[str, View] = field(default_factory=dict)  # scenario label -> view

    def view(self, sc: Scenario) -> View:
        return self.perturbed.get(sc.label, self.clean)


def fit_detectors(detectors: list[Detector], ref: View, modality: str, skipped: list) -> dict[str, Detector]:
    """The detectors fitted on ``ref``, by name; those that cannot run here go to ``skipped``."""
    out = {}
    for d in detectors:
        why = d.fits(ref, modality)
        if why is None:
            out[d.name] = d.fit(ref)
        else:
            skipped.append({"detector": d.name, "reason": why})
    return out


class Monitor:
    """The ``monitor`` config group: scenarios, window sizes, repetitions, detectors, α, the
    error streams, and whether to run the Failing Loudly comparison. Every parameter's default
    is in ``conf/monitor/light.yaml`` (the default option), nowhere else."""

    def __init__(self, *, scenarios: Sequence[dict[str, Any]], windows: Sequence[int], repetitions: int,
                 detectors: Sequence[Any], alpha: float, auto_corruption: dict[str, str], stream_length: int,
                 stream_repetitions: int, stream_scenario: dict | None, failing_loudly: bool, deployment_window: int,
                 deployment_repetitions: int | None, when_unfit: str, max_items: int, seed: int):
        if not 0 < alpha < 1:
            raise MlbenchError(f"monitor.alpha must be in (0, 1), got {alpha}")
        if repetitions < 1 or not windows or min(windows) < 2:
            raise MlbenchError("monitor needs repetitions >= 1 and window sizes >= 2")
        self.detectors = [e if isinstance(e, str) else dict(e) for e in detectors]
        self.alpha, self.seed = alpha, seed
        built = self.build(self.detectors)
        self.output_detectors = [e for e, d in zip(self.detectors, built) if d.needs == "probs"]
        self.reads_embeddings = any(d.needs == "embeddings" for d in built)  # else no embedding pass is made
        self.auto_corruption = dict(auto_corruption)
        for c in self.auto_corruption.values():
            corruption_class(c)
        self.scenarios = [parse(dict(s)) for s in scenarios]
        for s in self.scenarios:  # a misspelt corruption fails at set-up, not after the variants
            if s.perturbs_inputs:
                corruption_class(s.corruption)
        if not any(s.null for s in self.scenarios):
            self.scenarios.insert(0, Scenario("none"))  # the null is always measured
        self.windows, self.repetitions = sorted(int(w) for w in windows), repetitions
        self.stream_length, self.stream_repetitions = stream_length, stream_repetitions
        self.stream_scenario = parse(dict(stream_scenario)) if stream_scenario else None
        self.failing_loudly, self.deployment_window = failing_loudly, deployment_window
        self.deployment_repetitions = deployment_repetitions or repetitions
        self.when_unfit = choose(WhenUnfit, when_unfit, "monitor.when_unfit")
        if stream_length < 50 or stream_repetitions < 1:
            raise MlbenchError(f"monitor needs stream_length >= 50 (items before the change in each streaming "
                               f"run) and stream_repetitions >= 1, got {stream_length} and {stream_repetitions}")
        if deployment_window < 2 or (deployment_repetitions is not None and deployment_repetitions < 1):
            raise MlbenchError("monitor needs deployment_window >= 2 and deployment_repetitions >= 1")
        if max_items < 2:
            raise MlbenchError(f"monitor.max_items must be >= 2, got {max_items}")
        self.max_items = max_items
        self.dropped: list[dict[str, str]] = []

    def sample(self, data: Any) -> Any:
        """``data`` with its calib split (the reference) and test split (the pool windows are
        drawn from) cut to a seeded sample of at most ``max_items`` items each. Windows are
        hundreds of items, so a larger pool adds nothing but memory: the baseline's
        penultimate embeddings of a million items in float64 are gigabytes."""
        import dataclasses

        import torch
        cut = {}
        for s in ("calib", "test"):
            n = len(data.y[s])
            if n > self.max_items:
                g = torch.Generator().manual_seed(self.seed)
                cut[s] = torch.randperm(n, generator=g)[:self.max_items].sort().values
        if not cut:
            return data

        def pick(d: dict | None) -> dict | None:
            return None if d is None else {s: (v[cut[s]] if s in cut else v) for s, v in d.items()}
        return dataclasses.replace(data, x=pick(data.x), y=pick(data.y), index=pick(data.index), group=pick(data.group))

    def prepare(self, pool_size: int, has_group: bool) -> None:
        """Fails before any work when the data cannot serve the configuration; with
        ``when_unfit: skip`` (the presets) drops what does not fit instead and records why."""
        too_big = [w for w in self.windows if w > pool_size]
        no_group = [s for s in self.scenarios if s.needs_group] if not has_group else []
        if self.when_unfit == "error":
            if too_big:
                raise MlbenchError(f"monitor window of {max(too_big)} items is larger than the held-out test "
                                   f"split ({pool_size} items)")
            if no_group:
                raise MlbenchError("monitor subpopulation scenario needs a dataset with a group attribute")
        for w in too_big:
            self.dropped.append({"window": str(w), "reason": f"larger than the test split ({pool_size} items)"})
        for s in no_group:
            self.dropped.append({"scenario": s.label, "reason": "the dataset has no group attribute"})
        self.windows = [w for w in self.windows if w <= pool_size]
        self.scenarios = [s for s in self.scenarios if s not in no_group]
        if not self.windows:
            raise MlbenchError(f"monitor: every window is larger than the test split ({pool_size} items)")
        if self.deployment_window > pool_size:
            if self.when_unfit == "error":
                raise MlbenchError(f"monitor.deployment_window {self.deployment_window} > test split ({pool_size})")
            self.deployment_window = max(self.windows)

    def covariate(self) -> list[Scenario]:
        out = [s for s in self.scenarios if s.perturbs_inputs]
        if self.stream_scenario is not None and self.stream_scenario.perturbs_inputs:
            out.append(self.stream_scenario)
        return out

    # ------------------------------------------------------------------ the protocol
    def build(self, entries: Sequence[Any]) -> list[Detector]:
        """Fresh detectors for config entries (preset names or ``_target_`` mappings)."""
        return build_detectors(entries, "monitor.detectors", self.alpha, self.seed)

    def detectors_for(self, entries: Sequence[Any], ref: View, modality: str, skipped: list) -> dict[str, Detector]:
        return fit_detectors(self.build(entries), ref, modality, skipped)

    def power(self, pools: Pools, y: np.ndarray, group: np.ndarray | None, scenarios: list[Scenario],
              windows: list[int], detectors: dict[str, Detector], repetitions: int,
              estimators: tuple[BBSE, ATC] | None = None, salt: int = 0) -> tuple[list[dict], dict]:
        """Detection rates (and, with ``estimators``, estimate errors) over repeated windows."""
        rows, est = [], {}
        for si, sc in enumerate(scenarios):
            view, labels = pools.view(sc), sc.labels(y)
            for n in windows:
                rng = np.random.default_rng([self.seed, salt, si, n])
                hits = dict.fromkeys(detectors, 0)
                e = {"bbse_prior_mae": [], "bbse_accuracy_error": [], "atc_error": [], "accuracy": []}
                draws = [sc.draw(n, y, group, rng) for _ in range(repetitions)]
                wins = [view.take(idx) for idx in draws]
                for name, d in detectors.items():  # all windows of this size at once
                    hits[name] = sum(bool(r["drift"]) for r in d.test_many(wins))
                for idx, w in zip(draws, wins):
                    if estimators is not None:
                        bbse, atc = estimators
                        acc = float((w.probs.argmax(1) == labels[idx]).mean())
                        b = bbse.estimate(w.probs)
                        truth = np.bincount(labels[idx], minlength=len(b["priors"])) / n
                        e["bbse_prior_mae"].append(float(np.abs(b["priors"] - truth).mean()))
                        e["bbse_accuracy_error"].append(b["accuracy"] - acc)
                        e["atc_error"].append(atc.estimate(w.probs) - acc)
                        e["accuracy"].append(acc)
                for name, k in hits.items():
                    lo, hi = rate_ci(k, repetitions)
                    rows.append({"scenario": sc.label, "kind": sc.kind, "detector": name, "window": n,
                                 "rate": k / repetitions, "ci_low": lo, "ci_high": hi, "repetitions": repetitions})
                if estimators is not None:
                    est.setdefault(sc.label, {})[str(n)] = {
                        "bbse_prior_mae": float(np.mean(e["bbse_prior_mae"])),
                        "bbse_accuracy_mae": float(np.mean(np.abs(e["bbse_accuracy_error"]))),
                        "atc_accuracy_mae": float(np.mean(np.abs(e["atc_error"]))),
                        "true_accuracy_mean": float(np.mean(e["accuracy"])),
                        "atc_estimate_mean": float(np.mean(np.array(e["atc_error"]) + np.array(e["accuracy"]))),
                        "bbse_accuracy_estimate_mean": float(np.mean(np.array(e["bbse_accuracy_error"])
                                                                     + np.array(e["accuracy"])))}
        return rows, est

    def streams(self, pools: Pools, y: np.ndarray, group: np.ndarray | None) -> dict[str, Any] | None:
        """river's detectors on 0/1 error streams: ``stream_length`` items without shift, then as
        many under ``stream_scenario``; delay = first detection at or after the change − change."""
        sc = self.stream_scenario
        if sc is None:
            return None
        t0 = self.stream_length
        out: dict[str, dict[str, list]] = {}
        for r in range(self.stream_repetitions):
            rng = np.random.default_rng([self.seed, 7919, r])
            before = Scenario("none").draw(t0, y, group, rng)
            after = sc.draw(t0, y, group, rng)
            err = np.r_[pools.clean.probs[before].argmax(1) != y[before],
                        pools.view(sc).probs[after].argmax(1) != sc.labels(y)[after]].astype(int)
            for name, det in streaming_detectors(self.seed + r).items():
                first, false_alarms = None, 0
                for i, e in enumerate(err):
                    det.update(int(e))
                    if det.drift_detected:
                        if i < t0:
                            false_alarms += 1
                        elif first is None:
                            first = i - t0
                s = out.setdefault(name, {"delay": [], "false_alarms": []})
                s["delay"].append(first)
                s["false_alarms"].append(false_alarms)
        summary = {}
        for name, s in out.items():
            found = [d for d in s["delay"] if d is not None]
            summary[name] = {"detected": len(found) / len(s["delay"]), "delay_mean": float(np.mean(found)) if found else None,
                             "delay_median": float(np.median(found)) if found else None,
                             "false_alarms_mean": float(np.mean(s["false_alarms"])), "delays": s["delay"]}
        return {"scenario": sc.label, "change_at": t0, "length": 2 * t0, "repetitions": self.stream_repetitions,
                "detectors": summary, "library": "river.drift (ADWIN, KSWIN, PageHinkley)"}


def failing_loudly(rows: list[dict], detectors: Sequence[str]) -> dict[str, Any]:
    """The comparison of Rabanser et al. (2019) on our rows: mean power over the shifted
    scenarios per detector and window, and whether its three findings hold here."""
    shifted = [r for r in rows if shows_shift(r["kind"]) and r["detector"] in detectors]
    windows = sorted({r["window"] for r in shifted})
    mean = {d: {w: float(np.mean([r["rate"] for r in shifted if r["detector"] == d and r["window"] == w]))
                for w in windows} for d in detectors if any(r["detector"] == d for r in shifted)}
    overall = {d: float(np.mean(list(v.values()))) for d, v in mean.items()}
    ranked = sorted(overall, key=overall.get, reverse=True)
    out: dict[str, Any] = {"mean_power": mean, "overall": overall, "ranking": ranked, "findings": {}}
    if "bbsd_soft" in overall:
        out["findings"]["bbsd_soft_among_best"] = {
            "holds": bool(ranked.index("bbsd_soft") <= 1),
            "evidence": f"BBSDs ranks {ranked.index('bbsd_soft') + 1} of {len(ranked)} by mean power "
                        f"({overall['bbsd_soft']:.3f}; best {ranked[0]} {overall[ranked[0]]:.3f})"}
    if "ks_embeddings" in overall and "mmd_embeddings" in overall:
        gap = overall["ks_embeddings"] - overall["mmd_embeddings"]
        out["findings"]["univariate_ks_competitive_with_mmd"] = {
            "holds": bool(gap >= -0.05),
            "evidence": f"KS (Bonferroni) {overall['ks_embeddings']:.3f} vs MMD {overall['mmd_embeddings']:.3f} "
                        f"mean power on embeddings (difference {gap:+.3f})"}
    dc = next((d for d in overall if d.startswith("domain_classifier")), None)
    small = [w for w in windows if w <= 50]
    if dc and small:
        best_small = max(np.mean([mean[d][w] for w in small]) for d in mean if d != dc)
        dc_small = float(np.mean([mean[dc][w] for w in small]))
        out["findings"]["domain_classifier_weak_at_small_windows"] = {
            "holds": bool(dc_small <= best_small - 0.1),
            "evidence": f"windows <= 50: domain classifier {dc_small:.3f} vs the best other detector {best_small:.3f}"}
    return out


"""Exploration, complexity and achievability (Bayes-error bounds, F1, N1, intrinsic
dimension), and sufficiency (a learning curve fitted to a power law)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.preprocessing import StandardScaler

from mlbench.data import SPLITS
from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding, power_law
from mlbench.datacheck.common import proxy_model
from mlbench.datacheck.plots import (
    class_means,
    pca_scatter,
    sufficiency_plot,
)
from mlbench.errors import MlbenchError
from mlbench.evaluate.twosample import (
    ber_bounds,
    ber_interval,
    border_fraction,
    fisher_ratio,
    intrinsic_dimension,
)
from mlbench.text import Doc, fmt


class Explore(Check):
    """Exploratory analysis: class counts per split, feature summaries, a 2-D PCA projection
    coloured by class and by split, and class-mean images."""

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        out.section["class_counts"] = {s: torch.bincount(d.y[s], minlength=d.meta.num_classes).tolist()
                                       for s in SPLITS}
        x = d.x["train"].flatten(1).double()
        summ = {"mean": x.mean(0), "std": x.std(0), "min": x.min(0).values, "max": x.max(0).values}
        out.section["features"] = {"count": x.shape[1],
                                   **{k: [float(v) for v in t[:32]] for k, t in summ.items()},
                                   "note": "first 32 features of the train split"}
        feats = {s: ctx.proxy_features(s) for s in ("train", "test")}
        out.plots.append(pca_scatter(feats, {s: d.y[s].numpy() for s in feats}, ctx.plots_dir / "pca.png"))
        if d.meta.modality == "image":
            out.plots.append(class_means(d.x["train"], d.y["train"], d.meta.class_names,
                                         ctx.plots_dir / "class_means.png"))
        return out


class Complexity(Check):
    """Data complexity and achievability: Bayes-error-rate bounds from a minimum spanning tree
    (Friedman–Rafsky style) and from 1-NN (Cover–Hart), Fisher's discriminant ratio (F1),
    the MST border fraction (N1) and the TwoNN intrinsic dimension, on at most ``max_items``
    train items (inputs when an item has at most 1,024 values, else embeddings)."""

    def __init__(self, max_items: int = 2000, when_unfit: str = "skip"):
        super().__init__(when_unfit)
        self.max_items = max_items

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        conv = sec["conventions"]
        doc.h3(f"Complexity ({name}, {sec['items']} train items)")
        doc.table(["figure", "value", "convention"], [
            ["Bayes error, MST", f"[{sec['ber_mst']['lower']:.4f}, {sec['ber_mst']['upper']:.4f}]", conv["ber_mst"]],
            ["Bayes error, 1-NN", f"[{sec['ber_1nn']['lower']:.4f}, {sec['ber_1nn']['upper']:.4f}]", conv["ber_1nn"]],
            *([["Bayes error (verdict)", f"[{sec['ber']['lower']:.4f}, {sec['ber']['upper']:.4f}]", conv["ber"]]]
              if "ber" in sec else []),
            ["F1", fmt(sec["f1"]), conv["f1"]], ["N1", fmt(sec["n1"]), conv["n1"]],
            ["intrinsic dimension (TwoNN)", fmt(sec["intrinsic_dimension"], 2), ""]])

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        rng = np.random.default_rng(ctx.seed)
        x, y = ctx.proxy_features("train"), d.y["train"].numpy()
        pick = rng.permutation(len(y))[:self.max_items]
        x, y = StandardScaler().fit_transform(x[pick]), y[pick]
        mst, knn = ber_bounds(x, y, "mst"), ber_bounds(x, y, "knn")
        ber = ber_interval(mst, knn)
        fr = fisher_ratio(x, y)
        out.section = {"items": len(y), "ber_mst": mst, "ber_1nn": knn, "ber": ber, **fr,
                       "n1": border_fraction(x, y), "intrinsic_dimension": intrinsic_dimension(x),
                       "conventions": {"ber_mst": "upper = cross-class MST edges / n (2·C/(2n)); lower by Cover–Hart",
                                       "ber_1nn": "upper = leave-one-out 1-NN error; lower by Cover–Hart",
                                       "ber": "intersection of the two intervals when they overlap, else the span "
                                              "of both; the achievability verdict uses its lower bound",
                                       "f1": "1 / (1 + max Fisher ratio) (Lorena et al. 2019): lower is easier",
                                       "n1": "fraction of items on a cross-class MST edge"}}
        lower = ber["lower"]
        out.figures["ber_lower"] = lower
        out.figures["ber_upper"] = ber["upper"]
        if not ber["agree"]:
            out.findings.append(Finding(self.name, "warn", f"the two Bayes-error estimators disagree: MST "
                                                           f"[{mst['lower']:.3f}, {mst['upper']:.3f}], 1-NN "
                                                           f"[{knn['lower']:.3f}, {knn['upper']:.3f}]; the span "
                                                           f"of both is reported"))
        if ctx.accuracy_target is not None:
            achievable = lower <= 1 - ctx.accuracy_target
            out.figures["accuracy_achievable"] = int(achievable)
            if not achievable:
                out.findings.append(Finding(self.name, "fail", f"accuracy {ctx.accuracy_target:g} is not achievable "
                                                               f"with this data: the Bayes error is at least "
                                                               f"{lower:.3f}"))
        out.findings.append(Finding(self.name, "info", f"Bayes error between {lower:.3f} and "
                                                       f"{out.figures['ber_upper']:.3f}; N1 {out.section['n1']:.3f}, "
                                                       f"intrinsic dimension {out.section['intrinsic_dimension']:.1f}"))
        return out


class Sufficiency(Check):
    """Learning curve: a logistic-regression proxy retrained on growing fractions of the train
    split, scored on test; err(n) = a·n^(−b) + c fitted with a bootstrap band (test items
    resampled), and extrapolated to the train size that reaches the accuracy target."""

    def __init__(self, fractions: Sequence[float] = (0.1, 0.2, 0.4, 0.7, 1.0), resamples: int = 200,
                 when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if len(fractions) < 3 or any(not 0 < f <= 1 for f in fractions):
            raise MlbenchError("sufficiency.fractions needs at least 3 fractions in (0, 1]")
        self.fractions, self.resamples = sorted(float(f) for f in fractions), resamples

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        doc.h3(f"Sufficiency ({name})")
        doc.table(["train items", *map(str, sec["sizes"])], [["proxy test error", *[f"{e:.4f}" for e in sec["error"]]]])
        if sec.get("fit"):
            f = sec["fit"]
            doc.p(f"{sec['form']}: a = {f['a']:.3g}, b = {f['b']:.3g}, c = {f['c']:.3g}"
                  + (f"; accuracy {sec['target_accuracy']:g} needs about {sec['needed_train_items']:,.0f} items"
                     if sec.get("needed_train_items") else ""))

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        rng = np.random.default_rng(ctx.seed)
        xtr, ytr = ctx.proxy_features("train"), d.y["train"].numpy()
        xte, yte = ctx.proxy_features("test"), d.y["test"].numpy()
        order = rng.permutation(len(ytr))
        sizes, wrong = [], []
        for f in self.fractions:
            idx = order[:max(d.meta.num_classes * 2, int(round(f * len(ytr))))]
            if len(np.unique(ytr[idx])) < 2:
                continue
            scaler = StandardScaler().fit(xtr[idx])
            clf = proxy_model(ctx.seed).fit(scaler.transform(xtr[idx]), ytr[idx])
            wrong.append(clf.predict(scaler.transform(xte)) != yte)
            sizes.append(len(idx))
        curve = learning_curve(sizes, wrong, self.resamples, rng)
        n, err, fit, boot = curve["n"], curve["error"], curve["fit"], curve["boot"]
        out.section = {"sizes": sizes, "error": err.tolist(), "model": "logistic regression proxy",
                       "fit": None if fit is None else dict(zip("abc", fit)),
                       "form": "err(n) = a * n^(-b) + c"}
        target = ctx.accuracy_target
        if fit is not None and target is not None:
            need = _needed(fit, 1 - target)
            needs = [_needed(p, 1 - target) for p in boot]
            finite = [x for x in needs if math.isfinite(x)]
            out.section["target_accuracy"] = target
            out.section["needed_train_items"] = need if math.isfinite(need) else None
            out.section["needed_interval"] = (None if len(finite) < 0.9 * max(len(needs), 1)
                                              else [float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))])
            out.figures["needed_train_items"] = out.section["needed_train_items"]
            if err[-1] <= 1 - target:
                msg = f"the proxy already reaches accuracy {target:g} with {sizes[-1]} train items"
            elif math.isfinite(need):
                msg = f"accuracy {target:g} needs about {need:,.0f} train items by the fitted curve (have {sizes[-1]})"
            else:
                msg = f"the fitted curve levels off at error {fit[2]:.3f}: accuracy {target:g} is out of its reach"
            out.findings.append(Finding(self.name, "info", msg))
        out.plots.append(sufficiency_plot(n, err, fit, curve["band"], target, ctx.plots_dir / "sufficiency.png"))
        return out


def learning_curve(sizes: Sequence[int], wrong: Sequence[np.ndarray], resamples: int,
                   rng: np.random.Generator, extend: float = 4.0) -> dict[str, Any]:
    """A learning curve from per-size test outcomes: ``wrong[i]`` marks the test items a model
    trained on ``sizes[i]`` items got wrong (the same test items for every size). The error per
    size, err(n) = a·n^(−b) + c fitted by least squares (None when it does not converge), the
    fits of ``resamples`` bootstrap resamples of the test items, and a 95 % band of the fitted
    curve over n from the smallest size to ``extend`` × the largest."""
    n, w = np.asarray(sizes, float), np.asarray(wrong, float)
    err = w.mean(1)
    fit = _fit(n, err)
    boot = []
    for _ in range(resamples):
        i = rng.integers(0, w.shape[1], w.shape[1])
        p = _fit(n, w[:, i].mean(1))
        if p is not None:
            boot.append(p)
    band = None
    if boot:
        grid = np.geomspace(n.min(), n.max() * extend, 50)
        curves = np.stack([power_law(grid, *p) for p in boot])
        band = (grid, np.quantile(curves, 0.025, 0), np.quantile(curves, 0.975, 0))
    return {"n": n, "error": err, "fit": fit, "boot": boot, "band": band}


def _fit(n: np.ndarray, err: np.ndarray) -> tuple[float, float, float] | None:
    try:
        with warnings.catch_warnings():  # few sizes: the parameter covariance is often not estimable (not used)
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(power_law, n, err, p0=(1.0, 0.5, max(float(err.min()) / 2, 1e-4)),
                             bounds=([0, 0, 0], [np.inf, 3, 1]), maxfev=5000)
        return float(p[0]), float(p[1]), float(p[2])
    except (RuntimeError, ValueError):
        return None


def _needed(p: Sequence[float], target_error: float) -> float:
    a, b, c = p
    if target_error <= c or a <= 0 or b <= 0:
        return math.inf
    return float((a / (target_error - c)) ** (1 / b))

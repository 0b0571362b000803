"""The data checks: linting, duplicates and leakage, train/test shift, label errors,
exploratory analysis, complexity and achievability, sufficiency.

Each is tested on planted truth (tests/test_datacheck.py). Confident learning is written
here (Northcutt, Jiang & Chuang 2021) because the maintained implementation is AGPL.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from scipy.optimize import curve_fit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from mlbench.data import SPLITS
from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding, power_law
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
    domain_classifier,
    fisher_ratio,
    intrinsic_dimension,
    ks_features,
    mmd_test,
)
from mlbench.plotting import exemplar_grid

HEAD_ROWS = 20  # label issues kept in summary.json; the full table is datacheck/label_issues.csv


def _proxy(seed: int) -> Any:
    return LogisticRegression(max_iter=1000, C=1.0)


def _ids(ctx: CheckContext, split: str, positions: Sequence[int] | np.ndarray) -> list[int]:
    return ctx.data.index[split][torch.as_tensor(np.asarray(positions, dtype=np.int64))].tolist()


class Lint(Check):
    """NaN/inf, constant and near-constant features, exact duplicates within a split, class
    balance per split and its change between train and test (chi-squared test of homogeneity),
    values outside the declared input range, per-feature outliers (robust z-score against
    train), blank or saturated images."""

    def __init__(self, near_constant: float = 0.99, outlier_z: float = 6.0, alpha: float = 0.05,
                 when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if not 0 < near_constant <= 1 or outlier_z <= 0 or not 0 < alpha < 1:
            raise MlbenchError("lint needs 0 < near_constant <= 1, outlier_z > 0 and 0 < alpha < 1")
        self.near_constant, self.outlier_z, self.alpha = near_constant, outlier_z, alpha

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        f = out.findings
        image = d.meta.modality == "image"
        nonfinite = 0
        for s in SPLITS:
            x = d.x[s].flatten(1)
            bad = (~torch.isfinite(x)).any(1).nonzero().flatten()
            if len(bad):
                nonfinite += len(bad)
                f.append(Finding(self.name, "fail", f"{len(bad)} {s} items with NaN/inf values", len(bad),
                                 _ids(ctx, s, bad), s))
        out.figures["nonfinite_items"] = nonfinite
        xt = d.x["train"].flatten(1).double()
        xt = torch.where(torch.isfinite(xt), xt, torch.zeros_like(xt))
        std = xt.std(0)
        const = (std == 0).nonzero().flatten().tolist()
        mode_share = torch.tensor([float((col == col.mode().values).double().mean()) for col in xt.T])
        near = [j for j in (mode_share >= self.near_constant).nonzero().flatten().tolist() if j not in const]
        sev = "info" if image else "warn"  # constant border pixels are normal in images
        if const:
            f.append(Finding(self.name, sev, f"{len(const)} constant features in train (e.g. {const[:10]})",
                             len(const), []))
        if near:
            f.append(Finding(self.name, sev, f"{len(near)} near-constant features (one value in ≥ "
                                             f"{self.near_constant:.0%} of train items)", len(near), []))
        out.section["constant_features"], out.section["near_constant_features"] = const, near
        within = 0
        for s in SPLITS:
            groups = _duplicate_groups(d.x[s])
            extra = sum(len(g) - 1 for g in groups)
            within += extra
            if extra:
                items = [i for g in groups for i in g[1:]]
                f.append(Finding(self.name, "warn", f"{extra} exact duplicates within {s}", extra,
                                 _ids(ctx, s, items), s))
        out.figures["within_split_duplicates"] = within
        c = d.meta.num_classes
        counts = {s: torch.bincount(d.y[s], minlength=c).tolist() for s in SPLITS}
        out.section["class_counts"] = counts
        tr, te = np.asarray(counts["train"]), np.asarray(counts["test"])
        keep = (tr + te) > 0
        chi = sps.chi2_contingency(np.stack([tr[keep], te[keep]])) if keep.sum() > 1 else None
        tv = 0.5 * float(np.abs(tr / tr.sum() - te / te.sum()).sum())
        out.section["class_balance"] = {"imbalance_ratio_train": float(tr.max() / max(tr.min(), 1)),
                                        "total_variation_train_test": tv,
                                        "chi2_p_value": None if chi is None else float(chi.pvalue)}
        if tr.min() == 0:
            f.append(Finding(self.name, "fail", f"classes {np.flatnonzero(tr == 0).tolist()} have no train item", 0))
        elif tr.max() / tr.min() > 10:
            f.append(Finding(self.name, "warn", f"class imbalance {tr.max() / tr.min():.1f}:1 in train", 0))
        if chi is not None and chi.pvalue < self.alpha:
            f.append(Finding(self.name, "warn", f"class balance differs between train and test "
                                                f"(total variation {tv:.3f}, chi-squared p = {chi.pvalue:.2g})", 0))
        rng_items = 0
        if d.meta.input_range is not None:
            lo, hi = d.meta.input_range
            for s in SPLITS:
                x = d.x[s].flatten(1)
                bad = ((x < lo) | (x > hi)).any(1).nonzero().flatten()
                if len(bad):
                    rng_items += len(bad)
                    f.append(Finding(self.name, "fail", f"{len(bad)} {s} items outside the declared input "
                                                        f"range [{lo}, {hi}]", len(bad), _ids(ctx, s, bad), s))
        out.figures["out_of_range_items"] = rng_items
        med = xt.median(0).values
        mad = (xt - med).abs().median(0).values * 1.4826
        usable = mad > 0
        for s in SPLITS:
            x = d.x[s].flatten(1).double()[:, usable]
            z = ((x - med[usable]) / mad[usable]).abs()
            hit = (z > self.outlier_z).any(1).nonzero().flatten()
            if len(hit):
                f.append(Finding(self.name, "info", f"{len(hit)} {s} items with a feature beyond robust "
                                                    f"|z| > {self.outlier_z:g}", len(hit), _ids(ctx, s, hit), s))
        if image:
            lo, hi = d.meta.input_range or (None, None)
            for s in SPLITS:
                x = d.x[s].flatten(1)
                if not len(x):  # an empty split (the update cycle's windows have no val or calib)
                    continue
                blank = (x.std(1) < 1e-6).nonzero().flatten()
                if len(blank):
                    f.append(Finding(self.name, "warn", f"{len(blank)} blank {s} images", len(blank),
                                     _ids(ctx, s, blank), s))
                if hi is not None:
                    sat = ((x >= hi).double().mean(1) > 0.9).nonzero().flatten()
                    if len(sat):
                        f.append(Finding(self.name, "warn", f"{len(sat)} saturated {s} images", len(sat),
                                         _ids(ctx, s, sat), s))
        return out


def _row_hashes(x: torch.Tensor) -> list[bytes]:
    a = np.ascontiguousarray(x.flatten(1).float().numpy())
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in a]


def _duplicate_groups(x: torch.Tensor) -> list[list[int]]:
    seen: dict[bytes, list[int]] = {}
    for i, h in enumerate(_row_hashes(x)):
        seen.setdefault(h, []).append(i)
    return [g for g in seen.values() if len(g) > 1]


class Leakage(Check):
    """Exact duplicates across train/val/calib/test (a hash of the raw item), and near
    duplicates: an evaluation item whose nearest train neighbour (in input space for tabular
    data, in the baseline's penultimate-layer embedding space for images) is closer than
    ``threshold`` × the median nearest-neighbour distance within train. Distances are taken
    in chunks, so memory stays flat (no n × m matrix). The exact-duplicate search covers every
    item; the near-duplicate search is exact over the whole train split but, in an evaluation
    split larger than ``max_items``, checks a seeded sample of that many items and reports the
    count found there with the estimated total and its Wilson 95 % interval (the search costs
    n_eval × n_train distances: a million items against 10^5 would take hours)."""

    def __init__(self, threshold: float = 0.05, chunk_bytes: int = 64 << 20, max_items: int = 20000,
                 when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if threshold < 0:
            raise MlbenchError(f"leakage.threshold must be >= 0, got {threshold}")
        if max_items < 1:
            raise MlbenchError(f"leakage.max_items must be >= 1, got {max_items}")
        self.threshold, self.chunk_bytes, self.max_items = threshold, chunk_bytes, max_items

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        owner: dict[bytes, tuple[str, int]] = {}
        for i, h in enumerate(_row_hashes(d.x["train"])):
            owner.setdefault(h, ("train", i))
        cross = 0
        pairs, exact = [], {}
        for s in ("val", "calib", "test"):
            hashes = _row_hashes(d.x[s])
            hit = [i for i, h in enumerate(hashes) if h in owner]
            exact[s] = torch.zeros(len(hashes), dtype=torch.bool)
            exact[s][hit] = True
            if hit:
                cross += len(hit)
                pairs += [[int(d.index[s][i]), int(d.index["train"][owner[hashes[i]][1]])] for i in hit[:20]]
                out.findings.append(Finding(self.name, "fail", f"{len(hit)} {s} items also in train (exact)",
                                            len(hit), _ids(ctx, s, hit), s))
        out.figures["cross_split_duplicates"] = cross
        out.section["exact_pairs"] = pairs  # [evaluation index, train index]
        train = ctx.features("train").float()
        ref = nearest_distances(train[:2000], train, self.chunk_bytes, exclude_self=True)
        scale = float(ref.median())
        out.section.update({"space": ctx.embedding_space, "median_train_nn_distance": scale,
                            "threshold": self.threshold})
        near_total, sampled = 0, {}
        for s in ("val", "calib", "test"):
            feats, is_exact = ctx.features(s), exact[s]
            pick = None
            if len(feats) > self.max_items:  # a seeded sample; positions stay those of the split
                g = torch.Generator().manual_seed(ctx.seed)
                pick = torch.randperm(len(feats), generator=g)[:self.max_items].sort().values
                feats, is_exact = feats[pick], is_exact[pick]
            dist = nearest_distances(feats.float(), train, self.chunk_bytes)
            # exact duplicates are counted above (by hash: a distance computed through matrix
            # products can round a near duplicate's to 0, so "distance > 0" would miss some)
            near = ((dist <= self.threshold * scale) & ~is_exact).nonzero().flatten()
            near_total += len(near)
            where = f"{len(near)} {s} items"
            if pick is not None:
                est, lo, hi = (v * len(ctx.features(s)) for v in wilson(len(near), len(pick)))
                sampled[s] = {"checked": len(pick), "of": len(ctx.features(s)), "found": len(near),
                              "estimated": round(est), "ci_low": round(lo), "ci_high": round(hi)}
                near = pick[near]
                where = (f"{sampled[s]['found']} of {len(pick)} sampled {s} items (about {round(est)} "
                         f"of {sampled[s]['of']}, 95% CI {round(lo)}-{round(hi)})")
            if len(near):
                out.findings.append(Finding(
                    self.name, "warn", f"{where} within {self.threshold:g} × the median train "
                                       f"nearest-neighbour distance of a train item ({ctx.embedding_space})",
                    len(near), _ids(ctx, s, near), s))
        out.figures["near_duplicates"] = near_total
        if sampled:
            out.section["near_duplicates_sampled"] = sampled
        if d.extras.get("ids") is not None:
            ids = d.extras["ids"]
            shared = set(ids["train"].tolist()) & set().union(*(set(ids[s].tolist()) for s in ("val", "calib", "test")))
            out.figures["shared_ids"] = len(shared)
            if shared:
                out.findings.append(Finding(self.name, "fail", f"{len(shared)} ids appear in train and in an "
                                                               "evaluation split (group leakage)", len(shared)))
        else:
            out.section["group_leakage"] = "skipped: the dataset has no id column"
        return out


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """The proportion k/n with its Wilson score interval (scipy's ``binomtest``)."""
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def nearest_distances(q: torch.Tensor, ref: torch.Tensor, chunk_bytes: int = 64 << 20,
                      exclude_self: bool = False) -> torch.Tensor:
    """Euclidean distance from each row of ``q`` to its nearest row of ``ref``, in chunks of
    queries sized so that a (chunk × len(ref)) block stays within ``chunk_bytes``. With
    ``exclude_self``, ``q`` is the first rows of ``ref`` and each skips itself."""
    rows = max(1, chunk_bytes // (4 * max(len(ref), 1)))
    out = []
    for i in range(0, len(q), rows):
        block = torch.cdist(q[i:i + rows], ref)
        if exclude_self:
            idx = torch.arange(i, min(i + rows, len(q)))
            block[idx - i, idx] = math.inf
        out.append(block.min(1).values)
    return torch.cat(out) if out else torch.empty(0)


class Shift(Check):
    """Train against test: per-feature two-sample KS with Benjamini–Hochberg correction, MMD
    (RBF kernel, median-distance bandwidth, permutation p-value), and a domain classifier's
    AUC with a bootstrap interval. On inputs for tabular data, embeddings for images."""

    def __init__(self, alpha: float = 0.05, permutations: int = 1000, max_items: int = 2000,
                 when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if not 0 < alpha < 1 or permutations < 1 or max_items < 10:
            raise MlbenchError("shift needs 0 < alpha < 1, permutations >= 1 and max_items >= 10")
        self.alpha, self.permutations, self.max_items = alpha, permutations, max_items

    def run(self, ctx: CheckContext) -> CheckResult:
        out = CheckResult()
        g = torch.Generator().manual_seed(ctx.seed)
        a, b = ctx.features("train").double(), ctx.features("test").double()
        a = a[torch.randperm(len(a), generator=g)[:self.max_items]]
        b = b[torch.randperm(len(b), generator=g)[:self.max_items]]
        ks = ks_features(a.numpy(), b.numpy(), self.alpha, "bh")
        mmd = mmd_test(a.to(ctx.device), b.to(ctx.device), self.permutations, ctx.seed)
        dc = domain_classifier(a.numpy(), b.numpy(), seed=ctx.seed)
        ks.pop("p_values")
        out.section = {"space": ctx.embedding_space, "items": [len(a), len(b)], "alpha": self.alpha,
                       "ks": ks, "mmd": mmd, "domain_classifier": dc}
        detected = ks["drift"] or mmd["p_value"] < self.alpha or dc["drift"]
        out.figures["shift_detected"] = int(detected)
        out.figures["domain_auc"] = dc["auc"]
        if detected:
            out.findings.append(Finding(self.name, "warn",
                                        f"train and test differ: {len(ks['features_shifted'])} features by KS (BH), "
                                        f"MMD p = {mmd['p_value']:.3g}, domain AUC {dc['auc']:.3f} "
                                        f"[{dc['ci_low']:.3f}, {dc['ci_high']:.3f}]", len(ks["features_shifted"])))
        else:
            out.findings.append(Finding(self.name, "info", f"no train/test shift detected (MMD p = "
                                                           f"{mmd['p_value']:.3g}, domain AUC {dc['auc']:.3f})"))
        return out


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, classes: int, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predicted probabilities of a standardized logistic regression (K folds)."""
    probs = np.zeros((len(y), classes))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[tr])
        clf = _proxy(seed).fit(scaler.transform(x[tr]), y[tr])
        probs[np.ix_(te, clf.classes_)] = clf.predict_proba(scaler.transform(x[te]))
    return probs


def confident_learning(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Confident learning (Northcutt et al. 2021). Per class j the threshold t_j is the mean
    predicted probability of j over items labelled j; an item's confident class is the most
    probable class whose probability reaches its threshold. The confident joint C counts
    (given, confident) pairs; calibrated to the label counts and normalised it estimates the
    joint of noisy and true labels, whose off-diagonal mass is the noise rate. Items counted
    off the diagonal are the label issues, ranked by self-confidence (lowest first)."""
    n, k = probs.shape
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    confident = masked.argmax(1)
    has = above.any(1)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[has], confident[has]), 1)
    counts = np.bincount(labels, minlength=k).astype(float)
    rows = joint.sum(1, keepdims=True)
    calibrated = np.where(rows > 0, joint / np.where(rows > 0, rows, 1) * counts[:, None], 0)
    q = calibrated / calibrated.sum()
    issues = np.flatnonzero(has & (confident != labels))
    self_conf = probs[np.arange(n), labels]
    issues = issues[np.argsort(self_conf[issues], kind="stable")]
    true_mass = q.sum(0)
    noise_matrix = np.where(true_mass > 0, q / np.where(true_mass > 0, true_mass, 1), 0)  # P(given i | true j)
    return {"issues": issues, "suggested": confident, "self_confidence": self_conf, "thresholds": thresholds,
            "joint": q, "noise_rate": float(1 - np.trace(q)), "noise_matrix": noise_matrix}


class LabelErrors(Check):
    """Label issues in the train split by confident learning on K-fold out-of-fold probabilities
    of a standardized logistic regression (inputs when an item has at most 1,024 values, else
    the baseline's embeddings). With a dataset that records planted flips (synthetic data with
    ``label_noise``), precision and recall against them."""

    def __init__(self, folds: int = 5, when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if folds < 2:
            raise MlbenchError(f"label_errors.folds must be >= 2, got {folds}")
        self.folds = folds

    def validate(self, data) -> None:
        counts = torch.bincount(data.y["train"], minlength=data.meta.num_classes)
        small = int(counts[counts > 0].min())
        if small < self.folds:
            raise MlbenchError(f"datacheck.{self.name}: a class has {small} train items, fewer than "
                               f"folds={self.folds}; lower the folds or skip this check")

    def run(self, ctx: CheckContext) -> CheckResult:
        d, out = ctx.data, CheckResult()
        x = ctx.proxy_features("train")
        y = d.y["train"].numpy()
        probs = out_of_fold_probs(x, y, d.meta.num_classes, self.folds, ctx.seed)
        cl = confident_learning(probs, y)
        issues = cl["issues"]
        rate = len(issues) / len(y)
        out.figures["label_issue_rate"] = rate
        out.figures["label_noise_estimate"] = cl["noise_rate"]
        out.figures["label_issues"] = len(issues)
        rows = [{"index": int(d.index["train"][i]), "given": int(y[i]), "suggested": int(cl["suggested"][i]),
                 "self_confidence": float(cl["self_confidence"][i]), "rank": r + 1}
                for r, i in enumerate(issues)]
        out.tables["label_issues"] = rows  # every flagged item; summary.json keeps the head
        out.section = {"issues_total": len(rows), "issues_head": HEAD_ROWS, "model": f"logistic regression on {'inputs' if x.shape[1] == d.x['train'][0].numel() else ctx.embedding_space}, "
                                f"{self.folds}-fold out-of-fold probabilities",
                       "method": "confident learning (Northcutt et al. 2021), off-diagonal of the confident joint",
                       "issues": rows[:HEAD_ROWS], "noise_rate": cl["noise_rate"], "noise_matrix": cl["noise_matrix"].tolist(),
                       "thresholds": cl["thresholds"].tolist()}
        flipped = d.extras.get("flipped")
        if flipped is not None:
            flipped = np.asarray(flipped, dtype=bool)
            found = np.zeros(len(y), dtype=bool)
            found[issues] = True
            tp = int((found & flipped).sum())
            out.section["planted"] = {"flipped": int(flipped.sum()), "found": int(found.sum()), "true_positives": tp,
                                      "precision": tp / max(int(found.sum()), 1),
                                      "recall": tp / max(int(flipped.sum()), 1)}
        sev = "warn" if rate > 0.01 else "info"
        out.findings.append(Finding(self.name, sev, f"{len(issues)} likely label errors in train ({rate:.1%}); "
                                                    f"estimated noise rate {cl['noise_rate']:.1%}", len(issues),
                                    _ids(ctx, "train", issues), "train"))
        if d.meta.modality == "image" and len(issues):
            pos = issues[:32]
            out.plots.append(exemplar_grid(d.x["train"][torch.as_tensor(pos)],
                                           [f"#{int(d.index['train'][i])} {int(y[i])}→{int(cl['suggested'][i])}"
                                            for i in pos], ctx.plots_dir / "label_issues.png",
                                           "likely label errors: given → suggested"))
        return out


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
            clf = _proxy(ctx.seed).fit(scaler.transform(xtr[idx]), ytr[idx])
            wrong.append(clf.predict(scaler.transform(xte)) != yte)
            sizes.append(len(idx))
        n, w = np.asarray(sizes, float), np.asarray(wrong, float)
        err = w.mean(1)
        fit = _fit(n, err)
        boot = []
        for _ in range(self.resamples):
            i = rng.integers(0, len(yte), len(yte))
            p = _fit(n, w[:, i].mean(1))
            if p is not None:
                boot.append(p)
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
        band = None
        if boot:
            grid = np.geomspace(n.min(), n.max() * 4, 50)
            curves = np.stack([power_law(grid, *p) for p in boot])
            band = (grid, np.quantile(curves, 0.025, 0), np.quantile(curves, 0.975, 0))
        out.plots.append(sufficiency_plot(n, err, fit, band, target, ctx.plots_dir / "sufficiency.png"))
        return out


def _fit(n: np.ndarray, err: np.ndarray) -> tuple[float, float, float] | None:
    try:
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

"""Label errors by confident learning (Northcutt, Jiang & Chuang 2021), written here because
the maintained implementation (cleanlab) is AGPL; tested against planted flips."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.datacheck.common import HEAD_ROWS, dataset_ids, proxy_model
from mlbench.errors import MlbenchError
from mlbench.plotting import exemplar_grid
from mlbench.text import Doc


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, classes: int, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predicted probabilities of a standardized logistic regression (K folds)."""
    probs = np.zeros((len(y), classes))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[tr])
        clf = proxy_model(seed).fit(scaler.transform(x[tr]), y[tr])
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

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        total = sec.get("issues_total", len(sec["issues"]))
        doc.h3(f"Label issues ({name}): {total} flagged, estimated noise rate {sec['noise_rate']:.3f}")
        doc.p(f"{sec['model']}; {sec['method']}.")
        if "label_issues" in sec.get("files", {}):
            doc.p(f"Every flagged item (index, given, suggested, self-confidence, rank): "
                  f"`{sec['files']['label_issues']}`; the first {min(total, HEAD_ROWS)} by rank below.")
        if "planted" in sec:
            pl = sec["planted"]
            doc.p(f"Against the {pl['flipped']} planted flips: precision {pl['precision']:.3f}, "
                  f"recall {pl['recall']:.3f}.")
        doc.table(["rank", "index", "given", "suggested", "self-confidence"],
                  [[str(r["rank"]), str(r["index"]), str(r["given"]), str(r["suggested"]),
                    f"{r['self_confidence']:.3f}"] for r in sec["issues"][:HEAD_ROWS]])

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
                                    dataset_ids(ctx, "train", issues), "train"))
        if d.meta.modality == "image" and len(issues):
            pos = issues[:32]
            out.plots.append(exemplar_grid(d.x["train"][torch.as_tensor(pos)],
                                           [f"#{int(d.index['train'][i])} {int(y[i])}→{int(cl['suggested'][i])}"
                                            for i in pos], ctx.plots_dir / "label_issues.png",
                                           "likely label errors: given → suggested"))
        return out

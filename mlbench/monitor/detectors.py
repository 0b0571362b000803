"""Shift detectors and label-free estimators. Each detector is fitted on reference outputs
(``fit(reference)``) and tests a window (``test(window) -> {statistic, p_value, drift}``);
a :class:`View` holds a set of items' inputs, embeddings and softmax outputs.

Two-sample statistics come from ``mlbench.evaluate.twosample`` (shared with the data checks);
the streaming detectors are river's ADWIN, KSWIN and Page-Hinkley.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats as sps

from mlbench.errors import MlbenchError
from mlbench.evaluate.twosample import KSReference, ks_features_many, mmd_test
from mlbench.named import build_all


@dataclass
class View:
    """Outputs of the deployed model on some items: inputs (n, f), penultimate-layer embeddings
    (n, d) or None, softmax probabilities (n, C)."""

    inputs: np.ndarray
    embeddings: np.ndarray | None
    probs: np.ndarray

    def take(self, idx: np.ndarray) -> View:
        """The items ``idx`` (a window). Embeddings as float64 (a pool keeps the model's float32:
        a float64 copy of 20,000 CIFAR-sized items is half a gigabyte; float32 → float64 is exact,
        so the detectors' figures are the same); inputs are copied only when a detector reads them
        (a protocol holds a hundred windows at once, and image detectors never read raw pixels)."""
        return _Window(self, idx)


class _Window(View):
    """A window of a pool: its inputs are read (as float64) on demand."""

    def __init__(self, pool: View, idx: np.ndarray):
        self._pool, self._idx = pool, idx
        self.embeddings = None if pool.embeddings is None else np.asarray(pool.embeddings[idx], dtype=np.float64)
        self.probs = pool.probs[idx]

    @property
    def inputs(self) -> np.ndarray:  # type: ignore[override]
        return np.asarray(self._pool.inputs[self._idx], dtype=np.float64)

    def take(self, idx: np.ndarray) -> View:
        return _Window(self._pool, self._idx[idx])


def entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1)
    return -(q * np.log(q)).sum(1)


class Detector:
    """A shift detector. Subclasses declare ``presets`` (name → constructor arguments) for
    ``monitor.detectors`` and ``cycle.detectors`` (or are named there by ``_target_``) and
    ``needs``: a detector that needs only ``probs`` watches any deployed model, compressed or
    not (the monitoring × deployment table and the update cycle use only those)."""

    name: ClassVar[str] = "detector"
    needs: ClassVar[str] = "probs"  # "inputs", "embeddings" or "probs": what it reads from a View
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, alpha: float = 0.05):
        if not 0 < alpha < 1:
            raise MlbenchError(f"detector alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha

    def fits(self, reference: View, modality: str) -> str | None:
        """Why this detector cannot run here, or None."""
        if self.needs == "embeddings" and reference.embeddings is None:
            return "needs embeddings (the deployed model is not differentiable, or has no linear head)"
        if self.needs == "inputs" and modality == "image":
            return "feature-wise tests on raw pixels are not meaningful; use the embeddings"
        return None

    def fit(self, reference: View) -> Detector:
        self.ref = reference
        return self

    @classmethod
    def report_line(cls, name: str, note: str, mon: dict[str, Any]) -> str:
        """Its line in the report's monitoring section: what it does and reads, its
        false-positive rate without shift and how many shift scenarios it detects (power >=
        0.8) at the largest window."""
        w = max(mon["windows"])
        mine = [r for r in mon["power"] if r["detector"] == name and r["window"] == w]
        null = [r["rate"] for r in mine if r["scenario"] == "none"]
        shifts = [r for r in mine if r["scenario"] != "none"]
        caught = sum(r["rate"] >= 0.8 for r in shifts)
        figures = (f"at n = {w}: false-positive rate {null[0]:.2f}, " if null else f"at n = {w}: ") + \
            f"detects {caught} of {len(shifts)} shift scenarios (power >= 0.8)"
        return f"**{name}** (reads {cls.needs}): {note} — {figures}"

    def test(self, window: View) -> dict[str, Any]:
        raise NotImplementedError

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        """:meth:`test` of each window (detectors that can batch windows of one size override it)."""
        return [self.test(w) for w in windows]


def _ks_rows(ks: KSReference, samples: list[np.ndarray], alpha: float) -> list[dict[str, Any]]:
    """One-column KS tests of several windows against ``ks`` as detector results."""
    stats, pvals = ks.test_many(samples)
    return [{"statistic": float(st), "p_value": float(p), "drift": bool(p < alpha)}
            for st, p in zip(stats[:, 0], pvals[:, 0])]


def _space(view: View, needs: str) -> np.ndarray:
    return {"inputs": view.inputs, "embeddings": view.embeddings, "probs": view.probs}[needs]


class FeatureKS(Detector):
    """Two-sample KS per feature (inputs or embeddings), Bonferroni or Benjamini–Hochberg."""

    presets = {"ks_inputs": {"space": "inputs"}, "ks_embeddings": {"space": "embeddings"}}

    def __init__(self, space: str = "embeddings", correction: str = "bonferroni", alpha: float = 0.05):
        super().__init__(alpha)
        if space not in ("inputs", "embeddings"):
            raise MlbenchError(f"feature_ks.space must be inputs or embeddings, got {space!r}")
        self.needs, self.correction = space, correction
        self.name = f"ks_{space}"

    def fit(self, reference: View) -> Detector:
        super().fit(reference)
        self.ks = KSReference(_space(reference, self.needs))  # sorted once for every window
        return self

    def test(self, window: View) -> dict[str, Any]:
        return self.test_many([window])[0]

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        rs = ks_features_many(self.ks, [_space(w, self.needs) for w in windows], self.alpha, self.correction)
        return [{"statistic": r["statistic"], "p_value": r["p_value"], "drift": r["drift"]} for r in rs]


class MMD(Detector):
    """MMD with an RBF kernel (median-distance bandwidth) and a batched permutation p-value."""

    presets = {"mmd_inputs": {"space": "inputs"}, "mmd_embeddings": {"space": "embeddings"}}

    def __init__(self, space: str = "embeddings", permutations: int = 100, max_reference: int = 500,
                 alpha: float = 0.05, seed: int = 0):
        super().__init__(alpha)
        self.needs, self.permutations, self.max_reference, self.seed = space, permutations, max_reference, seed
        self.name = f"mmd_{space}"

    def test(self, window: View) -> dict[str, Any]:
        a = torch.as_tensor(_space(self.ref, self.needs)[:self.max_reference], dtype=torch.float64)
        b = torch.as_tensor(_space(window, self.needs), dtype=torch.float64)
        r = mmd_test(a, b, self.permutations, self.seed)
        return {"statistic": r["statistic"], "p_value": r["p_value"], "drift": r["p_value"] < self.alpha}


class BBSDs(Detector):
    """Black-box shift detection, soft: KS on each softmax output, Bonferroni (Lipton et al. 2018;
    Rabanser et al. 2019)."""

    presets = {"bbsd_soft": {}}

    def fit(self, reference: View) -> Detector:
        super().fit(reference)
        self.ks = KSReference(reference.probs)
        return self

    def test(self, window: View) -> dict[str, Any]:
        return self.test_many([window])[0]

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        rs = ks_features_many(self.ks, [w.probs for w in windows], self.alpha, "bonferroni")
        return [{"statistic": r["statistic"], "p_value": r["p_value"], "drift": r["drift"]} for r in rs]


class BBSDh(Detector):
    """Black-box shift detection, hard: Pearson's chi-squared test of homogeneity of the
    predicted-label counts, window against reference (a 2 × C table, empty classes left out;
    the statistic of ``scipy.stats.chi2_contingency`` without its 2 × 2 continuity correction,
    written out because scipy's per-call overhead is most of the cost here)."""

    presets = {"bbsd_hard": {}}

    def fit(self, reference: View) -> Detector:
        super().fit(reference)
        self.ref_counts = np.bincount(reference.probs.argmax(1), minlength=reference.probs.shape[1])
        return self

    def test(self, window: View) -> dict[str, Any]:
        return self.test_many([window])[0]

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        stats, dfs = [], []
        for w in windows:
            table = np.stack([self.ref_counts, np.bincount(w.probs.argmax(1), minlength=len(self.ref_counts))])
            table = table[:, table.sum(0) > 0].astype(float)
            if table.shape[1] < 2:
                stats.append(0.0)
                dfs.append(0)
                continue
            expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
            stats.append(float(((table - expected) ** 2 / expected).sum()))
            dfs.append(table.shape[1] - 1)
        ps = sps.chi2.sf(stats, np.maximum(dfs, 1))  # one vectorised call: elementwise the same function
        return [{"statistic": st, "p_value": float(p), "drift": bool(p < self.alpha)} if df else
                {"statistic": 0.0, "p_value": 1.0, "drift": False} for st, df, p in zip(stats, dfs, ps)]


class ConfidenceShift(Detector):
    """KS on the maximum softmax probability."""

    presets = {"confidence": {}}

    def fit(self, reference: View) -> Detector:
        super().fit(reference)
        self.ks = KSReference(reference.probs.max(1))
        return self

    def test(self, window: View) -> dict[str, Any]:
        return self.test_many([window])[0]

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        return _ks_rows(self.ks, [w.probs.max(1) for w in windows], self.alpha)


class EntropyShift(Detector):
    """KS on the predictive entropy (nats)."""

    presets = {"entropy": {}}

    def fit(self, reference: View) -> Detector:
        super().fit(reference)
        self.ks = KSReference(entropy(reference.probs))
        return self

    def test(self, window: View) -> dict[str, Any]:
        return self.test_many([window])[0]

    def test_many(self, windows: list[View]) -> list[dict[str, Any]]:
        return _ks_rows(self.ks, [entropy(w.probs) for w in windows], self.alpha)


class DomainClassifier(Detector):
    """A classifier told to separate reference from window (embeddings, logistic regression,
    out-of-fold scores); p-value of the one-sided Mann–Whitney test that window items score
    higher (the AUC's test)."""

    presets = {"domain_classifier_embeddings": {"space": "embeddings"}}

    def __init__(self, space: str = "embeddings", max_reference: int = 500, alpha: float = 0.05, seed: int = 0):
        super().__init__(alpha)
        self.needs, self.max_reference, self.seed = space, max_reference, seed
        self.name = f"domain_classifier_{space}"

    def test(self, window: View) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        a = _space(self.ref, self.needs)[:self.max_reference]
        b = _space(window, self.needs)
        x = np.concatenate([a, b]).astype(np.float64, copy=False)  # pools keep float32
        y = np.r_[np.zeros(len(a)), np.ones(len(b))]
        folds = int(min(5, len(b)))
        if folds < 2:
            return {"statistic": 0.5, "p_value": 1.0, "drift": False}
        mu, sd = x.mean(0), x.std(0) + 1e-8
        s = cross_val_predict(LogisticRegression(max_iter=300), (x - mu) / sd, y,
                              cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
                              method="predict_proba")[:, 1]
        r = sps.mannwhitneyu(s[y == 1], s[y == 0], alternative="greater")
        auc = float(r.statistic) / (len(a) * len(b))
        return {"statistic": auc, "p_value": float(r.pvalue), "drift": bool(r.pvalue < self.alpha)}


# ------------------------------------------------------------------------- estimators

class BBSE:
    """Black-box shift estimation (Lipton, Wang & Smola 2018): with C[i, j] = P(ŷ = i, y = j)
    on the calib split and μ̂ the window's predicted-label distribution, importance weights
    w = C⁻¹ μ̂ (least squares, clipped at 0), target priors q = w · p_ref (normalised), and
    the label-shift-corrected accuracy Σ_j q_j · P(ŷ = j | y = j)."""

    def fit(self, calib_probs: np.ndarray, calib_labels: np.ndarray) -> BBSE:
        c = calib_probs.shape[1]
        pred = calib_probs.argmax(1)
        self.joint = np.zeros((c, c))
        np.add.at(self.joint, (pred, calib_labels), 1)
        self.joint /= len(calib_labels)
        self.prior = np.bincount(calib_labels, minlength=c) / len(calib_labels)
        self.recall = np.where(self.prior > 0, np.diag(self.joint) / np.where(self.prior > 0, self.prior, 1), 0)
        return self

    def estimate(self, window_probs: np.ndarray) -> dict[str, Any]:
        c = self.joint.shape[0]
        mu = np.bincount(window_probs.argmax(1), minlength=c) / len(window_probs)
        w = np.clip(np.linalg.lstsq(self.joint, mu, rcond=None)[0], 0, None)  # μ̂ = C w
        q = w * self.prior
        q = q / q.sum() if q.sum() > 0 else self.prior
        return {"priors": q, "weights": w, "accuracy": float((q * self.recall).sum())}


class ATC:
    """Average thresholded confidence (Garg et al. 2022): the threshold t on the top-1
    probability makes the calib items above it as many as the correct ones, i.e. balances the
    wrong items at or above t against the correct ones below it (the authors' reference
    implementation, ``find_ATC_threshold``); a window's accuracy estimate is its share of items
    with confidence >= t."""

    def fit(self, calib_probs: np.ndarray, calib_labels: np.ndarray) -> ATC:
        conf = calib_probs.max(1)
        order = np.argsort(conf, kind="stable")
        right = (calib_probs.argmax(1) == calib_labels)[order]
        wrong_above = (~right).sum() - np.cumsum(~right)  # wrong items after position i
        right_below = np.cumsum(right)  # correct items up to position i
        gap = np.abs(wrong_above - right_below)
        i = int(np.argmin(gap))
        self.threshold = float(conf[order][i]) if gap[i] < (~right).sum() else 0.0
        return self

    def estimate(self, window_probs: np.ndarray) -> float:
        return float((window_probs.max(1) >= self.threshold).mean())


def streaming_detectors(seed: int = 0) -> dict[str, Any]:
    """river's drift detectors on the 0/1 error stream."""
    from river import drift  # river is only needed when labels arrive as a stream
    return {"adwin": drift.ADWIN(), "kswin": drift.KSWIN(seed=seed), "page_hinkley": drift.PageHinkley()}


def build_detectors(entries: Any, where: str, alpha: float, seed: int) -> list[Detector]:
    """The detectors a config list names (presets or ``_target_`` mappings), with the run's
    ``alpha`` and ``seed`` offered to each."""
    return build_all(entries, Detector, where, alpha=alpha, seed=seed)

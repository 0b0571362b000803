"""Two-sample tests and data-complexity statistics on feature matrices.

Written here, batched in torch: the permutation test runs every permutation as one
matrix product (on the GPU when the tensors are there), which no library offers;
the KS test of many windows against one reference is batched over columns (see
:class:`KSReference`); the rest call scipy and scikit-learn (``ks_2samp``, ``false_discovery_control``,
``LogisticRegression``, ``roc_auc_score``, ``minimum_spanning_tree``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from scipy.sparse.csgraph import minimum_spanning_tree
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

# scipy's ks_2samp behind its axis / NaN-policy wrapper, which costs more than the test itself
# on windows of a few hundred items (inspecting signatures, broadcasting shapes): the monitoring
# stage runs tens of thousands of these. The inputs here are finite 1-D columns, so the wrapper has
# nothing to do; the statistic and p-value are scipy's own, bit for bit (tests compare them).
_KS = getattr(sps.ks_2samp, "__wrapped__", None)


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """scipy's two-sample KS test (two-sided, exact where scipy is) on two finite 1-D samples:
    (statistic, p-value)."""
    r = _KS(a, b) if _KS is not None else sps.ks_2samp(a, b)
    return float(r.statistic), float(r.pvalue)


# scipy's two-sided result is a function of (n1, n2, D) alone, where D is the largest gap
# between the empirical CDFs (the exact p-value takes most of the time). Windows of one size
# against one reference take few distinct values of D, so each is asked of scipy once.
_KS_MEMO: dict[tuple[int, int, float], tuple[float, float]] = {}
_KS_MEMO_MAX = 200_000


class KSReference:
    """Two-sample KS tests of many windows against one fixed reference, every column at once.

    The reference columns are sorted once; a window's statistics for all columns come from one
    batched ``torch.searchsorted``, computed exactly as ``scipy.stats.ks_2samp`` does (the same
    integer counts, the same float64 divisions and comparisons). The statistic and p-value
    reported are scipy's own for that (n1, n2, D), asked of scipy on the first window that
    produced it, so every figure equals a direct ``ks_2samp`` call bit for bit (tests compare
    them on windows with and without ties). Written here because no library batches the test
    over columns or reuses its exact p-values."""

    def __init__(self, reference: np.ndarray):
        a = np.asarray(reference, dtype=np.float64)
        self.ref = a[:, None] if a.ndim == 1 else a
        self.n1 = len(self.ref)
        self.sorted = torch.from_numpy(np.ascontiguousarray(np.sort(self.ref, 0).T))  # (columns, n1)
        self.constant = np.ptp(self.ref, 0) == 0

    def test(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per column: (statistics, p-values), as ``ks_2samp(reference[:, j], window[:, j])``."""
        stats, pvals = self.test_many([window])
        return stats[0], pvals[0]

    def test_many(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Windows of one size at once: (statistics, p-values), each (windows, columns)."""
        b = np.stack([np.asarray(w, dtype=np.float64) for w in windows])
        b = b[:, :, None] if b.ndim == 2 else b  # (windows, n2, columns)
        r, n2, c = b.shape
        bs = torch.from_numpy(np.ascontiguousarray(np.sort(b, 1).transpose(0, 2, 1).reshape(r * c, n2)))
        ref = self.sorted.repeat(r, 1)  # (windows * columns, n1)
        pooled = torch.cat([ref, bs], 1)
        cdf1 = torch.searchsorted(ref, pooled, right=True).numpy() / self.n1
        cdf2 = torch.searchsorted(bs, pooled, right=True).numpy() / n2
        diffs = cdf1 - cdf2
        min_s, max_s = np.clip(-diffs.min(1), 0, 1), diffs.max(1)
        d = np.where(min_s > max_s, min_s, max_s)
        stats, pvals = np.empty(r * c), np.empty(r * c)
        for i, di in enumerate(d.tolist()):
            key = (self.n1, n2, di)
            hit = _KS_MEMO.get(key)
            if hit is None:
                if len(_KS_MEMO) >= _KS_MEMO_MAX:
                    _KS_MEMO.clear()
                hit = _KS_MEMO[key] = ks_2samp(self.ref[:, i % c], b[i // c, :, i % c])
            stats[i], pvals[i] = hit
        return stats.reshape(r, c), pvals.reshape(r, c)


def ks_features(a: np.ndarray | KSReference, b: np.ndarray, alpha: float = 0.05,
                correction: str = "bh") -> dict[str, Any]:
    """Two-sample Kolmogorov–Smirnov test per feature (``scipy.stats.ks_2samp``; ``a`` may be
    a :class:`KSReference` built once for many windows), corrected for the number of features:
    Benjamini–Hochberg (``bh``) or Bonferroni (``bonferroni``). ``drift`` when any corrected
    p-value is below ``alpha``; ``p_value`` is the smallest corrected one."""
    return ks_features_many(a if isinstance(a, KSReference) else KSReference(a), [b], alpha, correction)[0]


def ks_features_many(ref: KSReference, windows: list[np.ndarray], alpha: float = 0.05,
                     correction: str = "bh") -> list[dict[str, Any]]:
    """:func:`ks_features` of each window (all of one size) against ``ref``, batched."""
    if correction not in ("bh", "bonferroni"):
        raise ValueError(f"correction must be bh or bonferroni, got {correction!r}")
    windows = [np.asarray(w) for w in windows]
    all_stats, all_p = ref.test_many(windows)
    out = []
    for b, s, p in zip(windows, all_stats, all_p):
        same = ref.constant & (np.ptp(b, 0) == 0) & (ref.ref[0] == b[0])  # one constant on both sides
        stats = np.where(same, 0.0, s).tolist()
        p_arr = np.where(same, 1.0, p)
        adj = (sps.false_discovery_control(p_arr, method="bh") if correction == "bh"
               else np.minimum(1.0, p_arr * len(p_arr)))
        shifted = np.flatnonzero(adj < alpha)
        out.append({"statistic": float(max(stats)) if stats else 0.0,
                    "p_value": float(adj.min()) if len(adj) else 1.0, "drift": bool(len(shifted)),
                    "features_shifted": shifted.tolist(), "correction": correction, "p_values": adj.tolist()})
    return out


def median_bandwidth(z: torch.Tensor, max_items: int = 1000) -> float:
    """The median pairwise Euclidean distance (on at most ``max_items`` items)."""
    s = z[:max_items]
    d = torch.cdist(s, s)
    iu = torch.triu_indices(len(s), len(s), 1, device=s.device)
    med = d[iu[0], iu[1]].median()
    return float(med) if float(med) > 0 else 1.0


def mmd_test(a: torch.Tensor, b: torch.Tensor, permutations: int = 1000, seed: int = 0,
             bandwidth: float | None = None, chunk: int = 250) -> dict[str, Any]:
    """Maximum mean discrepancy with an RBF kernel exp(-d² / (2 σ²)), σ the median pairwise
    distance of the pooled sample, and a permutation p-value p = (b + 1) / (m + 1), where b
    counts the m permutations whose MMD² (biased V-statistic) is at least the observed one.
    All permutations are one batched computation: with w the ±1/n weights of a labelling,
    MMD² = wᵀ K w, so a (chunk × N) matrix of labellings gives a chunk of statistics at once."""
    z = torch.cat([a, b]).double()
    n_a, n = len(a), len(a) + len(b)
    sigma = bandwidth or median_bandwidth(z)
    k = torch.cdist(z, z).pow_(2).div_(-2 * sigma ** 2).exp_()  # in place: one n × n matrix at a time
    w0 = torch.cat([torch.full((n_a,), 1.0 / n_a), torch.full((n - n_a,), -1.0 / (n - n_a))]).to(z)
    observed = float(w0 @ k @ w0)
    g = torch.Generator().manual_seed(seed)
    exceed = 0
    for start in range(0, permutations, chunk):
        m = min(chunk, permutations - start)
        perm = torch.argsort(torch.rand(m, n, generator=g), dim=1).to(z.device)
        w = w0[perm]  # each row: the same weights over a shuffled labelling
        stat = ((w @ k) * w).sum(1)
        exceed += int((stat >= observed - 1e-12).sum())
    p = (exceed + 1) / (permutations + 1)
    return {"statistic": observed, "p_value": p, "bandwidth": sigma, "permutations": permutations}


def domain_classifier(a: np.ndarray, b: np.ndarray, folds: int = 5, seed: int = 0, resamples: int = 200,
                      level: float = 0.95) -> dict[str, Any]:
    """Classifier two-sample test: logistic regression told to separate sample ``a`` from
    ``b``, scored by the AUC of its out-of-fold probabilities (0.5 = indistinguishable), with
    a percentile bootstrap interval over items."""
    x = np.concatenate([a, b]).astype(np.float64)
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))]).astype(int)
    scores = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[tr])
        clf = LogisticRegression(max_iter=500).fit(scaler.transform(x[tr]), y[tr])
        scores[te] = clf.predict_proba(scaler.transform(x[te]))[:, 1]
    auc = float(roc_auc_score(y, scores))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) == 2:
            boot.append(roc_auc_score(y[i], scores[i]))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"auc": auc, "ci_low": float(lo), "ci_high": float(hi), "drift": bool(lo > 0.5), "folds": folds}


# ------------------------------------------------------------------------- complexity

def lower_from_upper(upper: float, classes: int) -> float:
    """Cover–Hart: the Bayes error R* ≥ ((M−1)/M)·(1 − √(1 − (M/(M−1))·R)) for an estimate R of
    the asymptotic 1-NN error, with M classes."""
    m = classes
    inner = max(0.0, 1 - (m / (m - 1)) * upper)
    return ((m - 1) / m) * (1 - math.sqrt(inner))


def _mst_edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    d[d == 0] = 1e-12  # csgraph treats 0 as "no edge": keep duplicates connected
    np.fill_diagonal(d, 0)
    tree = minimum_spanning_tree(d).tocoo()
    return tree.row, tree.col


def ber_bounds(x: np.ndarray, y: np.ndarray, method: str = "mst") -> dict[str, float]:
    """Bounds on the Bayes error rate. ``mst`` (Friedman–Rafsky statistic; Sekeh, Oselio & Hero,
    "Learning to Bound the Multi-class Bayes Error", Th. 3–4, as DataEval's ``ber_mst``): with
    C the minimum-spanning-tree edges joining two classes, δ = C/(2n) and upper = 2δ = C/n;
    ``knn``: upper = the leave-one-out 1-NN error. Lower bound from the upper by Cover–Hart
    (:func:`lower_from_upper`). The upper is capped at (M−1)/M, the most any classifier can
    err with M classes."""
    classes = len(np.unique(y))
    if method == "mst":
        r, c = _mst_edges(x)
        upper = float((y[r] != y[c]).sum()) / len(y)
    elif method == "knn":
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        upper = float((y[d.argmin(1)] != y).mean())
    else:
        raise ValueError(f"method must be mst or knn, got {method!r}")
    upper = min(upper, (classes - 1) / classes)
    return {"upper": upper, "lower": lower_from_upper(upper, classes)}


def ber_interval(mst: dict[str, float], knn: dict[str, float]) -> dict[str, Any]:
    """One Bayes-error interval from the MST and 1-NN bounds: their intersection
    [max lower, min upper] when they overlap (both are bounds, so both hold); when they do
    not, the estimators disagree beyond their sampling noise and the interval is the span of
    both, [min lower, max upper], marked ``agree: False``. The achievability verdict uses
    ``lower`` of this interval."""
    lo, hi = max(mst["lower"], knn["lower"]), min(mst["upper"], knn["upper"])
    if lo <= hi:
        return {"lower": lo, "upper": hi, "combined": "intersection", "agree": True}
    return {"lower": min(mst["lower"], knn["lower"]), "upper": max(mst["upper"], knn["upper"]),
            "combined": "span", "agree": False}


def fisher_ratio(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Fisher's discriminant ratio, the multi-class form of Ho & Basu's F1 (Mollineda et al.):
    the largest over features of Σ_c n_c (μ_c − μ)² / Σ_c Σ_{i∈c} (x_i − μ_c)². Reported with
    the complexity form of Lorena et al. (2019), 1 / (1 + ratio): lower = easier."""
    mu = x.mean(0)
    between = np.zeros(x.shape[1])
    within = np.zeros(x.shape[1])
    for c in np.unique(y):
        xc = x[y == c]
        between += len(xc) * (xc.mean(0) - mu) ** 2
        within += ((xc - xc.mean(0)) ** 2).sum(0)
    ratio = np.where(within > 0, between / np.where(within > 0, within, 1), 0.0)
    best = float(ratio.max())
    return {"fisher_ratio": best, "f1": 1 / (1 + best)}


def border_fraction(x: np.ndarray, y: np.ndarray) -> float:
    """N1 (Ho & Basu; Lorena et al. 2019): the fraction of items joined by a minimum-spanning-tree
    edge to an item of another class (0 = classes apart, near 1 = mixed)."""
    r, c = _mst_edges(x)
    cross = y[r] != y[c]
    return len(np.union1d(r[cross], c[cross])) / len(y)


def intrinsic_dimension(x: np.ndarray) -> float:
    """TwoNN estimate (Facco et al. 2017): d = n / Σ log(r₂ / r₁), r₁ and r₂ the distances to
    each item's first and second nearest neighbours (items with r₁ = 0 are left out)."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    part = np.sort(d, axis=1)[:, :2]
    keep = part[:, 0] > 0
    mu = part[keep, 1] / part[keep, 0]
    return float(keep.sum() / np.log(mu).sum())

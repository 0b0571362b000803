"""Operating conditions: are the factors a deployment cares about balanced against the labels,
diverse, and covered by the test split?

A *factor* is the data's group column (``data.group``) or a declared column of a table
(``factors``): a categorical column by its categories, a numeric one by quantile bins of its
train values. :class:`Balance` measures how much each factor says about the label (mutual
information, normalized), whether the class mix within each factor value differs from the rest
(chi-squared per value, Benjamini–Hochberg over all values) and how evenly the values occur
(normalized entropy, Simpson's index). :class:`Coverage` counts test items per factor value
(requirements can ask for a minimum: ``{data: min_factor_test_items, op: ">=", value: 30}``) and
finds the test items that lie outside the training data in the check's feature space: their
k-th nearest training neighbour is farther than the critical radius, the ``quantile`` of the
same distance among training items (leave-one-out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

from mlbench.data import DataBundle
from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.datacheck.common import dataset_ids, nearest_distances
from mlbench.errors import MlbenchError
from mlbench.text import Doc, fmt

SPLITS_SEEN = ("train", "test")


@dataclass
class Factor:
    """One operating-condition factor: its value names and each split's value per item."""

    name: str
    source: str  # "group column", "categorical column", "numeric column (quantile bins)"
    values: list[str]
    codes: dict[str, np.ndarray]


def factor_names(data: DataBundle, declared: list[str]) -> list[str]:
    """The factors a check reads: the group column (when the data has one), then ``declared``.
    A declared name that is not a column of the data is one error line."""
    meta = data.meta
    vocab = (meta.preprocessing or {}).get("vocabularies") or {}
    known = set(meta.feature_names or []) | set(vocab)
    group = [meta.group_name or "group"] if data.group is not None else []
    for name in declared:
        if name not in known and name not in group:
            cols = sorted(set(vocab) | {n for n in meta.feature_names or [] if not any(n.startswith(c + "_") for c in vocab)})
            raise MlbenchError(f"datacheck factors: {name!r} is not a column of {meta.name}"
                               + (f"; columns: {', '.join(cols[:20])}" if cols else " (it has no named columns)"))
    return group + [n for n in declared if n not in group]


def build_factors(data: DataBundle, declared: list[str], bins: int) -> list[Factor]:
    """Every factor's values per split (train, val, calib, test)."""
    meta = data.meta
    vocab = (meta.preprocessing or {}).get("vocabularies") or {}
    names = list(meta.feature_names or [])
    out = []
    for name in factor_names(data, declared):
        if data.group is not None and name == (meta.group_name or "group"):
            n = int(max(int(g.max()) if len(g) else -1 for g in data.group.values())) + 1
            out.append(Factor(name, "group column", [str(i) for i in range(n)],
                              {s: g.numpy().astype(np.int64) for s, g in data.group.items()}))
        elif name in vocab:  # one-hot columns name_value, in vocabulary order; none set: unseen
            cols = [names.index(f"{name}_{v}") for v in vocab[name]]
            codes = {}
            for s, x in data.x.items():
                block = x[:, cols].numpy()
                codes[s] = np.where(block.max(1) > 0.5, block.argmax(1), len(cols)).astype(np.int64)
            out.append(Factor(name, "categorical column", [str(v) for v in vocab[name]] + ["(unseen)"], codes))
        else:  # numeric: quantile bins of the train values (edges are invariant to standardization)
            j = names.index(name)
            train = data.x["train"][:, j].double().numpy()
            edges = np.unique(np.quantile(train, np.linspace(0, 1, bins + 1)[1:-1]))
            lo = np.concatenate([[-np.inf], edges])
            hi = np.concatenate([edges, [np.inf]])
            mean = ((meta.normalization or {}).get("mean") or [0.0] * len(names))[j]
            std = ((meta.normalization or {}).get("std") or [1.0] * len(names))[j]
            raw = lambda v: v * std + mean  # noqa: E731 - bin edges in the column's own units
            labels = [f"< {raw(hi[0]):.4g}"] + [f"[{raw(a):.4g}, {raw(b):.4g})" for a, b in zip(lo[1:-1], hi[1:-1])] \
                + ([f">= {raw(lo[-1]):.4g}"] if len(edges) else [])
            out.append(Factor(name, "numeric column (quantile bins)", labels if len(edges) else ["all"],
                              {s: np.searchsorted(edges, x[:, j].double().numpy(), side="right").astype(np.int64)
                               for s, x in data.x.items()}))
    return out


def diversity(codes: np.ndarray, k: int) -> dict[str, float | None]:
    """How evenly ``k`` values occur: normalized entropy H/log k and Simpson's index
    (1 − Σp²) / (1 − 1/k); both 1 when every value is equally common, 0 when one value is all."""
    if k < 2 or not len(codes):
        return {"normalized_entropy": None, "simpson": None}
    p = np.bincount(codes, minlength=k) / len(codes)
    nz = p[p > 0]
    return {"normalized_entropy": float(-(nz * np.log(nz)).sum() / np.log(k)),
            "simpson": float((1 - (p ** 2).sum()) / (1 - 1 / k))}


class _FactorCheck(Check):
    modalities = ("image", "tabular")

    def __init__(self, factors: list[str] | None = None, bins: int = 4, when_unfit: str = "skip"):
        super().__init__(when_unfit)
        if bins < 2:
            raise MlbenchError(f"datacheck {type(self).__name__.lower()}: bins must be >= 2, got {bins}")
        self.declared, self.bins = [str(f) for f in factors or []], bins

    def validate(self, data: DataBundle) -> None:
        factor_names(data, self.declared)

    def fits(self, data: DataBundle) -> str | None:
        why = super().fits(data)
        if why is None and data.group is None and not self.declared:
            return "no factor: the data has no group column and no factors were declared (factors: [column, ...])"
        return why


class Balance(_FactorCheck):
    """Factors against labels on the train split: mutual information (normalized: 0 independent,
    1 the factor determines the label), per factor value a chi-squared test of its class mix
    against the other values' (Benjamini–Hochberg over every value of every factor), and the
    diversity of the values in train and test (normalized entropy, Simpson's index)."""

    def __init__(self, factors: list[str] | None = None, bins: int = 4, alpha: float = 0.05,
                 max_nmi: float = 0.1, when_unfit: str = "skip"):
        super().__init__(factors, bins, when_unfit)
        if not 0 < alpha < 1 or not 0 <= max_nmi <= 1:
            raise MlbenchError("datacheck balance needs 0 < alpha < 1 and 0 <= max_nmi <= 1")
        self.alpha, self.max_nmi = alpha, max_nmi

    def run(self, ctx: CheckContext) -> CheckResult:
        out, d = CheckResult(), ctx.data
        y = d.y["train"].numpy()
        rows, tests = [], []
        for f in build_factors(d, self.declared, self.bins):
            codes = f.codes["train"]
            k = len(f.values)
            row = {"factor": f.name, "source": f.source, "values": f.values,
                   "mutual_information": float(mutual_info_score(codes, y)),
                   "normalized_mutual_information": float(normalized_mutual_info_score(codes, y)),
                   "diversity": {s: diversity(f.codes[s], k) for s in SPLITS_SEEN}, "parity": []}
            table = np.zeros((k, d.meta.num_classes), dtype=np.int64)
            np.add.at(table, (codes, y), 1)
            for v in range(k):
                if table[v].sum() == 0:
                    continue
                rest = table.sum(0) - table[v]
                pair = np.stack([table[v], rest])
                keep = pair.sum(0) > 0
                if keep.sum() < 2 or rest.sum() == 0:
                    continue
                res = sps.chi2_contingency(pair[:, keep])
                row["parity"].append({"value": f.values[v], "n": int(table[v].sum()), "chi2": float(res.statistic),
                                      "p_value": float(res.pvalue)})
                tests.append(row["parity"][-1])
            rows.append(row)
        if tests:
            adjusted = sps.false_discovery_control([t["p_value"] for t in tests], method="bh")
            for t, p in zip(tests, adjusted, strict=True):
                t["p_adjusted"] = float(p)
        f = out.findings
        for r in rows:
            if r["normalized_mutual_information"] > self.max_nmi:
                f.append(Finding(self.name, "warn", f"factor {r['factor']} says much about the label in train "
                                                   f"(normalized mutual information {r['normalized_mutual_information']:.3f} "
                                                   f"> {self.max_nmi:g}): a model may learn the factor", 0))
            skewed = [t for t in r["parity"] if t["p_adjusted"] < self.alpha]
            if skewed:
                f.append(Finding(self.name, "warn", f"factor {r['factor']}: the class mix of "
                                                   f"{', '.join(t['value'] for t in skewed[:5])} differs from the rest "
                                                   f"(chi-squared, BH-adjusted p < {self.alpha:g})", len(skewed)))
        out.section = {"factors": rows, "alpha": self.alpha, "max_nmi": self.max_nmi, "split": "train"}
        out.figures["max_factor_nmi"] = max((r["normalized_mutual_information"] for r in rows), default=None)
        out.figures["skewed_factor_values"] = sum(t["p_adjusted"] < self.alpha for t in tests)
        divs = [r["diversity"]["test"]["normalized_entropy"] for r in rows]
        out.figures["min_factor_diversity_test"] = min((v for v in divs if v is not None), default=None)
        return out

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        doc.h3(f"Factor balance ({name}, train split)")
        doc.table(["factor", "values", "NMI with the label", "skewed values (BH)", "entropy train / test",
                   "Simpson train / test"],
                  [[r["factor"], str(len(r["values"])), fmt(r["normalized_mutual_information"], 3),
                    str(sum(t["p_adjusted"] < sec["alpha"] for t in r["parity"])),
                    " / ".join(fmt(r["diversity"][s]["normalized_entropy"], 3) for s in SPLITS_SEEN),
                    " / ".join(fmt(r["diversity"][s]["simpson"], 3) for s in SPLITS_SEEN)] for r in sec["factors"]])


class Coverage(_FactorCheck):
    """The test split's coverage of the operating conditions: test items per factor value (a
    value with fewer than ``min_items``, or absent from test or train, is a finding) and the
    test items outside the training data in the check's feature space (inputs for tables, the
    baseline's embeddings for images): k-th nearest training neighbour beyond the critical
    radius, the ``quantile`` of that distance among training items."""

    def __init__(self, factors: list[str] | None = None, bins: int = 4, min_items: int = 30, k: int = 5,
                 quantile: float = 0.99, max_train: int = 5000, when_unfit: str = "skip"):
        super().__init__(factors, bins, when_unfit)
        if min_items < 1 or k < 1 or not 0 < quantile < 1 or max_train < 10:
            raise MlbenchError("datacheck coverage needs min_items >= 1, k >= 1, 0 < quantile < 1, max_train >= 10")
        self.min_items, self.k, self.quantile, self.max_train = min_items, k, quantile, max_train

    def fits(self, data: DataBundle) -> str | None:  # the embedding coverage needs no factor
        return Check.fits(self, data)

    def run(self, ctx: CheckContext) -> CheckResult:
        out, d = CheckResult(), ctx.data
        f = out.findings
        counts = []
        for fac in build_factors(d, self.declared, self.bins):
            k = len(fac.values)
            n = {s: np.bincount(fac.codes[s], minlength=k) for s in SPLITS_SEEN}
            for v in range(k):
                if fac.values[v] == "(unseen)" and n["test"][v] == 0:
                    continue
                counts.append({"factor": fac.name, "value": fac.values[v], "train": int(n["train"][v]),
                               "test": int(n["test"][v])})
            few = [c for c in counts if c["factor"] == fac.name and c["test"] < self.min_items]
            if few:
                f.append(Finding(self.name, "warn", f"factor {fac.name}: {len(few)} value(s) with fewer than "
                                                   f"{self.min_items} test items ({', '.join(c['value'] for c in few[:5])})",
                                 len(few)))
            untrained = [c for c in counts if c["factor"] == fac.name and c["train"] == 0 and c["test"] > 0]
            if untrained:
                f.append(Finding(self.name, "fail", f"factor {fac.name}: value(s) in test never seen in train "
                                                   f"({', '.join(c['value'] for c in untrained[:5])})", len(untrained)))
        radius, far, dist = self._embedding(ctx)
        ids = dataset_ids(ctx, "test", far.tolist())
        if len(far):
            f.append(Finding(self.name, "warn", f"{len(far)} test items outside the training data (k={self.k} nearest "
                                               f"training neighbour beyond the critical radius {radius:.4g})",
                             len(far), ids, "test"))
        n_test = len(d.y["test"])
        out.section = {"space": ctx.embedding_space, "min_items": self.min_items, "counts": counts,
                       "k": self.k, "quantile": self.quantile, "critical_radius": radius,
                       "train_items_used": int(min(len(d.y["train"]), self.max_train)),
                       "uncovered": ids, "uncovered_count": int(len(far))}
        out.figures["min_factor_test_items"] = min((c["test"] for c in counts), default=None)
        out.figures["uncovered_test_items"] = int(len(far))
        out.figures["uncovered_test_share"] = len(far) / n_test if n_test else None
        out.tables["coverage_uncovered"] = [{"dataset_index": i, "kth_neighbour_distance": float(dist[p])}
                                            for i, p in zip(dataset_ids(ctx, "test", far.tolist()), far.tolist(),
                                                            strict=True)]
        return out

    def _embedding(self, ctx: CheckContext) -> tuple[float, np.ndarray, np.ndarray]:
        """The critical radius and the test items beyond it (positions, farthest first), and
        every test item's k-th nearest training distance."""
        train = ctx.features("train").float().cpu()
        test = ctx.features("test").float().cpu()
        g = torch.Generator().manual_seed(ctx.seed)
        if len(train) > self.max_train:
            train = train[torch.randperm(len(train), generator=g)[:self.max_train]]
        k = min(self.k, len(train) - 1)
        own = nearest_distances(train, train, exclude_self=True, k=k).double().numpy()
        radius = float(np.quantile(own, self.quantile))
        dist = nearest_distances(test, train, k=k).double().numpy()
        far = np.flatnonzero(dist > radius)
        return radius, far[np.argsort(-dist[far], kind="stable")], dist

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        doc.h3(f"Coverage of the operating conditions ({name})")
        if sec["counts"]:
            doc.table(["factor", "value", "train items", "test items"],
                      [[c["factor"], c["value"], str(c["train"]), str(c["test"])] for c in sec["counts"]])
            doc.p(f"A value with fewer than {sec['min_items']} test items is a finding.")
        doc.p(f"Embedding coverage ({sec['space']}): {sec['uncovered_count']} test items have their "
              f"{sec['k']}-th nearest training neighbour (of {sec['train_items_used']}) beyond the critical radius "
              f"{sec['critical_radius']:.4g} (the {sec['quantile']:g} quantile of the same distance among training "
              "items)" + (": listed in the CSV." if sec["uncovered_count"] else "."))

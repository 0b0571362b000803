"""Data linting (constant, non-finite, out-of-range, imbalanced, duplicated inputs) and
leakage between splits (exact and near duplicates, conflicting labels)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from scipy import stats as sps

from mlbench.data import SPLITS
from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.datacheck.common import dataset_ids, nearest_distances, wilson
from mlbench.errors import MlbenchError


class Lint(Check):
    """NaN/inf, constant and near-constant features, exact duplicates within a split, class
    balance per split and its change between train and test (chi-squared test of homogeneity),
    values outside the declared input range, per-feature outliers (robust z-score against
    train), blank or saturated images."""

    raw_data = True  # it reports the non-finite values the other checks see imputed

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
        nonfinite, train_nonfinite = 0, False
        for s in SPLITS:
            bad = _rows_where(d.x[s].flatten(1), lambda b: (~torch.isfinite(b)).any(1))
            if len(bad):
                nonfinite += len(bad)
                train_nonfinite |= s == "train"
                f.append(Finding(self.name, "fail", f"{len(bad)} {s} items with NaN/inf values", len(bad),
                                 dataset_ids(ctx, s, bad), s))
        out.figures["nonfinite_items"] = nonfinite
        for severity, message, count in d.extras.get("source_findings", []):  # what the data source saw
            f.append(Finding(self.name, severity, message, count, []))
        xt = d.x["train"].flatten(1)
        if train_nonfinite:  # non-finite values count as 0 here (a copy only then)
            xt = torch.where(torch.isfinite(xt), xt, torch.zeros((), dtype=xt.dtype))
        # constant: every value equal (what a zero standard deviation means), without a float64
        # copy of the split; the most common value's share per column
        const = (xt.amax(0) == xt.amin(0)).nonzero().flatten().tolist() if len(xt) else []
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
                                 dataset_ids(ctx, s, items), s))
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
                bad = _rows_where(d.x[s].flatten(1), lambda b: ((b < lo) | (b > hi)).any(1))
                if len(bad):
                    rng_items += len(bad)
                    f.append(Finding(self.name, "fail", f"{len(bad)} {s} items outside the declared input "
                                                        f"range [{lo}, {hi}]", len(bad), dataset_ids(ctx, s, bad), s))
        out.figures["out_of_range_items"] = rng_items
        med, mad = _median_mad(xt)
        usable = mad > 0
        m_u, mad_u = med[usable], mad[usable]
        for s in SPLITS:  # in blocks of items: the float64 copies stay small
            hit = _rows_where(d.x[s].flatten(1),
                              lambda b: ((b.double()[:, usable] - m_u) / mad_u).abs().gt(self.outlier_z).any(1))
            if len(hit):
                f.append(Finding(self.name, "info", f"{len(hit)} {s} items with a feature beyond robust "
                                                    f"|z| > {self.outlier_z:g}", len(hit), dataset_ids(ctx, s, hit), s))
        if image:
            lo, hi = d.meta.input_range or (None, None)
            for s in SPLITS:
                x = d.x[s].flatten(1)
                if not len(x):  # an empty split (the update cycle's windows have no val or calib)
                    continue
                blank = (x.std(1) < 1e-6).nonzero().flatten()
                if len(blank):
                    f.append(Finding(self.name, "warn", f"{len(blank)} blank {s} images", len(blank),
                                     dataset_ids(ctx, s, blank), s))
                if hi is not None:
                    sat = _rows_where(x, lambda b: (b >= hi).sum(1).double() / b.shape[1] > 0.9)
                    if len(sat):
                        f.append(Finding(self.name, "warn", f"{len(sat)} saturated {s} images", len(sat),
                                         dataset_ids(ctx, s, sat), s))
        return out


def _row_hashes(x: torch.Tensor) -> list[bytes]:
    a = np.ascontiguousarray(x.flatten(1).float().numpy())
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in a]


def _rows_where(x: torch.Tensor, test, step: int = 1024) -> torch.Tensor:
    """Positions of the rows of ``x`` where ``test(block)`` (one bool per row) holds, ``step``
    rows at a time: its boolean temporaries stay small whatever the split's size."""
    hits = [test(x[i:i + step]).nonzero().flatten() + i for i in range(0, len(x), step)]
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.long)


def _median_mad(x: torch.Tensor, block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column (float64): the median and the median absolute deviation × 1.4826, ``block``
    columns at a time, so no float64 copy of the whole split is made (a median is one of the
    column's values: the figures equal those of one call on the whole float64 matrix)."""
    meds, mads = [], []
    for j in range(0, x.shape[1], block):
        col = x[:, j:j + block].double()
        m = col.median(0).values
        meds.append(m)
        mads.append((col - m).abs().median(0).values * 1.4826)
    empty = torch.zeros(0, dtype=torch.float64)
    return (torch.cat(meds), torch.cat(mads)) if meds else (empty, empty)


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
                                            len(hit), dataset_ids(ctx, s, hit), s))
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
                    len(near), dataset_ids(ctx, s, near), s))
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
        if ctx.partition != "none":
            self._partition(ctx, out)
        return out

    def _partition(self, ctx: CheckContext, out: CheckResult) -> None:
        """What the partition strategy says a leak is. Every strategy cuts folds from the pool of
        the train and test splits: exact duplicates inside that pool can land on both sides of a
        fold. ``group``: the group column is the unit of independence (a patient, a site), so the
        run's own split must not share a group between train and an evaluation split (the folds
        never do). ``time``: an evaluation item earlier than the latest training item is a look
        into the future."""
        d, strategy = ctx.data, ctx.partition
        pool = _row_hashes(d.x["train"]) + _row_hashes(d.x["test"])
        dup = len(pool) - len(set(pool))
        info = {"strategy": strategy, "pool_duplicates": dup}
        out.figures["pool_duplicates"] = dup
        if dup:
            out.findings.append(Finding(self.name, "warn", f"{dup} items of the train+test pool the {strategy} folds "
                                                           "are cut from repeat another exactly (they can fall on "
                                                           "both sides of a fold)", dup))
        if strategy == "group" and d.group is not None:
            train = set(d.group["train"].tolist())
            shared = {s: len(train & set(d.group[s].tolist())) for s in ("val", "calib", "test")}
            info["groups_shared_with_train"] = shared
            out.figures["groups_shared"] = sum(shared.values())
            for s, n in shared.items():
                if n:
                    out.findings.append(Finding(self.name, "fail", f"{n} groups of {d.meta.group_name or 'group'} are in "
                                                                   f"train and in {s} (partition.strategy=group: a group "
                                                                   "is one unit; its folds keep groups apart)", n,
                                                split=s))
        rank = (d.extras or {}).get("time_rank")
        if strategy == "time" and rank is not None:
            latest = int(rank["train"].max())
            later = {s: int((rank[s] < latest).sum()) for s in ("val", "calib", "test")}
            info["earlier_than_latest_train"] = later
            out.figures["time_leaks"] = later["test"]
            if later["test"]:
                out.findings.append(Finding(self.name, "fail", f"{later['test']} test items are earlier than the latest "
                                                               "training item (partition.strategy=time: each fold tests "
                                                               "on later rows only)", later["test"], split="test"))
        out.section["partition"] = info

"""Paired statistics: a vectorized paired percentile bootstrap and the exact McNemar test.

Why written here: scipy's ``bootstrap`` resamples one statistic at a time in
Python-sized batches; comparing many metrics of two models on 10^4 items with
10^4 resamples needs one pass. Every metric we bootstrap is a function of
*sums over items* (accuracy, NLL, Brier, binned ECE/MCE, per-class TP/FP/FN,
per-group counts), so a resample is a vector of multinomial counts ``w`` and
all sums for all resamples are one matrix product ``W @ columns``. That runs
on the GPU when there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from scipy.stats import binom

from mlbench.evaluate.metrics import N_BINS, PROB_FLOOR, confidence_bins
from mlbench.evaluate.registry import PREDICTIONS, names


@dataclass
class Interval:
    value: float
    ci_low: float
    ci_high: float


def resample_weights(n: int, b: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``b`` bootstrap resamples of ``n`` items as a (b, n) float32 matrix of counts
    (each row sums to ``n``): the same as drawing ``n`` indices with replacement."""
    w = torch.zeros(b, n, device=device, dtype=torch.float32)
    # the CPU generator fills a tensor in order, so drawing the (b, n) indices a block of rows at a
    # time gives the same counts as one draw, without a (b, n) int64 matrix (80 MB at 10,000 items)
    rows = b if device.type != "cpu" else max(1, _INDEX_BLOCK_BYTES // (8 * max(n, 1)))
    for i in range(0, b, rows):
        k = min(rows, b - i)
        idx = torch.randint(0, n, (k, n), generator=generator, device=device)
        w[i:i + k].scatter_add_(1, idx, torch.ones(1, device=device).expand(k, n))
    return w


def _sum64(cols: torch.Tensor, block: int = 65536) -> torch.Tensor:
    """Column sums in float64 as a (1, k) row. Up to ``block`` rows at once: a float64 copy of
    a million-row matrix would double its memory, so larger ones are summed block by block."""
    if len(cols) <= block:
        return cols.double().sum(0, keepdim=True)
    total = torch.zeros(1, cols.shape[1], dtype=torch.float64, device=cols.device)
    for start in range(0, len(cols), block):
        total += cols[start:start + block].double().sum(0, keepdim=True)
    return total


# The resample counts depend only on (items, resamples, seed, chunk, device): a run bootstraps
# many pairs on the same test split (every variant, every stress condition), so the last set
# drawn is kept while it is small, and drawn again (identically) otherwise.
_KEEP_WEIGHTS_BYTES = 64 << 20
_INDEX_BLOCK_BYTES = 16 << 20
_kept: dict[tuple, list[torch.Tensor]] = {}


def _weight_chunks(n: int, n_resamples: int, seed: int, chunk: int, device: torch.device):
    """The (chunk, n) count matrices of ``n_resamples`` resamples drawn from ``seed``."""
    key = (n, n_resamples, seed, chunk, str(device))
    if key in _kept:
        yield from _kept[key]
        return
    keep = 4 * n * n_resamples <= _KEEP_WEIGHTS_BYTES
    gen = torch.Generator(device=device).manual_seed(seed)
    drawn = []
    for start in range(0, n_resamples, chunk):
        w = resample_weights(n, min(chunk, n_resamples - start), gen, device)
        if keep:
            drawn.append(w)
        yield w
    if keep:
        _kept.clear()
        _kept[key] = drawn


def paired_bootstrap(columns: torch.Tensor, statistic: Callable[[torch.Tensor, float], torch.Tensor],
                     n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                     device: torch.device | None = None, memory_budget: int = 256 << 20,
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Percentile bootstrap over items.

    ``columns`` is (n_items, k): per-item quantities whose *sums* determine the
    statistics. ``statistic(sums, n)`` maps (r, k) sums to (r, m) statistics.
    Returns (point estimates (m,), lower bounds (m,), upper bounds (m,)) at ``level``.
    Deterministic for a given ``seed`` and device. ``n_resamples=0``: no intervals (None).
    Resamples are drawn in chunks whose (chunk, n_items) count matrices stay within
    ``memory_budget`` bytes, so memory stays flat at a million items.
    """
    device = device or columns.device
    cols = columns.to(device, torch.float32)
    n = cols.shape[0]
    point = statistic(_sum64(cols), n)[0]
    if n_resamples == 0:
        return point.cpu(), None, None
    chunk = int(min(1000, max(1, memory_budget // (16 * max(n, 1)))))  # counts + their float copy
    stats = []
    for w in _weight_chunks(n, n_resamples, seed, chunk, device):
        stats.append(statistic((w @ cols).double(), n))
    s = torch.cat(stats)
    alpha = (1 - level) / 2
    q = torch.quantile(s.float(), torch.tensor([alpha, 1 - alpha], device=device), dim=0)
    return point.cpu(), q[0].cpu().double(), q[1].cpu().double()


def mcnemar_exact(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict[str, float]:
    """Exact (binomial) McNemar test on the discordant pairs: b = A right & B wrong,
    c = A wrong & B right; two-sided p = min(1, 2 * P[Binom(b + c, 1/2) <= min(b, c)])."""
    a, bb = correct_a.bool(), correct_b.bool()
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    p = 1.0 if b + c == 0 else min(1.0, 2 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return {"b": b, "c": c, "p_value": p}


# --- the metrics of a pair of models as sums of per-item columns ------------------------

def _model_columns(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> torch.Tensor:
    c = probs.shape[1]
    probs = probs.double()
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    p_true = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(PROB_FLOOR)
    onehot_y = torch.nn.functional.one_hot(labels, c).double()
    onehot_p = torch.nn.functional.one_hot(pred, c).double()
    bins = confidence_bins(conf, n_bins)
    onehot_bin = torch.nn.functional.one_hot(bins, n_bins).double()
    return torch.cat([
        correct[:, None],                              # 0: correct
        -p_true.log()[:, None],                        # 1: nll
        ((probs - onehot_y) ** 2).sum(1)[:, None],     # 2: brier
        onehot_bin * (conf - correct)[:, None],        # 3 .. 3+B: signed gap per bin
        onehot_bin,                                    # bin counts
        onehot_y * onehot_p,                           # TP per class
        onehot_p * (1 - onehot_y),                     # FP per class
        onehot_y * (1 - onehot_p),                     # FN per class
    ], dim=1)


COLUMN_CHUNK = 65536  # items per block while building columns: the float64 temporaries stay ~100 MB


def pair_columns(probs_base: torch.Tensor, probs_var: torch.Tensor, labels: torch.Tensor,
                 group: torch.Tensor | None = None, n_bins: int = N_BINS) -> tuple[torch.Tensor, dict]:
    """Columns for :func:`pair_statistic` (float32, one row per item) and the layout it needs.
    Built in blocks of items, so memory is the float32 result plus one block's float64
    temporaries (a million items: ~0.4 GB for 4 classes, not the ~2 GB of doing it at once)."""
    labels = labels.long()
    c = probs_base.shape[1]
    g = torch.unique(group) if group is not None else None

    def block(sl: slice) -> torch.Tensor:
        pb, pv, y = probs_base[sl], probs_var[sl], labels[sl]
        cb = _model_columns(pb, y, n_bins)
        cv = _model_columns(pv, y, n_bins)
        disagree = (pb.argmax(1) != pv.argmax(1)).double()[:, None]
        support = torch.nn.functional.one_hot(y, c).double()
        parts = [cb, cv, disagree, support]
        if g is not None:
            gmask = (group[sl][:, None] == g[None, :]).double()
            pred_b = torch.nn.functional.one_hot(pb.argmax(1), c).double()
            pred_v = torch.nn.functional.one_hot(pv.argmax(1), c).double()
            # per (group, class) prediction counts, for demographic parity
            pg_b = (gmask[:, :, None] * pred_b[:, None, :]).flatten(1)
            pg_v = (gmask[:, :, None] * pred_v[:, None, :]).flatten(1)
            parts += [gmask, gmask * cb[:, :1], gmask * cv[:, :1], pg_b, pg_v]
        return torch.cat(parts, dim=1).float()

    n = len(labels)
    first = block(slice(0, min(COLUMN_CHUNK, n)))
    cols = torch.empty(n, first.shape[1], dtype=torch.float32, device=first.device)
    cols[:len(first)] = first
    for start in range(COLUMN_CHUNK, n, COLUMN_CHUNK):
        cols[start:start + COLUMN_CHUNK] = block(slice(start, start + COLUMN_CHUNK))
    layout = {"classes": c, "bins": n_bins, "groups": 0 if g is None else len(g),
              "width": 3 + 2 * n_bins + 3 * c}
    return cols, layout


# the per-model metrics the table marks ``bootstrap``: each must be a function of per-item sums
DELTA_METRICS = names(source=PREDICTIONS, bootstrap=True)


def _metrics_from_sums(s: torch.Tensor, n: int, classes: int, bins: int, support: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
    """Each per-model metric, for every row of sums (one row per resample)."""
    acc = s[:, 0] / n
    nll = s[:, 1] / n
    brier = s[:, 2] / n
    gap = s[:, 3:3 + bins]
    counts = s[:, 3 + bins:3 + 2 * bins]
    ece = gap.abs().sum(1) / n
    mce = torch.where(counts > 0, gap.abs() / counts.clamp_min(1), torch.zeros_like(gap)).amax(1)
    o = 3 + 2 * bins
    tp, fp, fn = s[:, o:o + classes], s[:, o + classes:o + 2 * classes], s[:, o + 2 * classes:o + 3 * classes]
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1e-12), torch.zeros_like(tp))
    valid = (denom > 0).double()
    f1_macro = (f1 * valid).sum(1) / valid.sum(1).clamp_min(1)
    recall = torch.where(support > 0, tp / support.clamp_min(1e-12), torch.full_like(tp, float("inf")))
    worst = recall.amin(1)
    return {"accuracy": acc, "f1_macro": f1_macro, "nll": nll, "brier": brier, "ece": ece, "mce": mce,
            "worst_class_recall": worst}


def pair_statistic(layout: dict, only: tuple[str, ...] | None = None
                   ) -> tuple[Callable[[torch.Tensor, float], torch.Tensor], list[str]]:
    """The statistic for :func:`paired_bootstrap`: variant minus baseline for each of
    ``DELTA_METRICS``, then ``disagreement``, then (with groups) the variant-minus-baseline
    change in worst-group accuracy and in demographic-parity difference; ``only`` keeps
    those named (each is computed the same way either way)."""
    c, bins, w, groups = layout["classes"], layout["bins"], layout["width"], layout["groups"]
    names = [*DELTA_METRICS, "disagreement"] + (
        ["worst_group_accuracy", "demographic_parity_difference"] if groups else [])
    if only is not None:
        names = [n for n in names if n in only]
    per_model = [k for k in DELTA_METRICS if k in names]

    def statistic(s: torch.Tensor, n: float) -> torch.Tensor:
        support = s[:, 2 * w + 1:2 * w + 1 + c]
        mb = _metrics_from_sums(s[:, :w], n, c, bins, support)
        mv = _metrics_from_sums(s[:, w:2 * w], n, c, bins, support)
        out = [torch.stack([mv[k] - mb[k] for k in per_model], dim=1)] if per_model else []
        if "disagreement" in names:
            out.append(s[:, 2 * w:2 * w + 1] / n)
        if "worst_group_accuracy" in names or "demographic_parity_difference" in names:
            o = 2 * w + 1 + c
            gn = s[:, o:o + groups].clamp_min(1e-12)
            gb = (s[:, o + groups:o + 2 * groups] / gn).amin(1)
            gv = (s[:, o + 2 * groups:o + 3 * groups] / gn).amin(1)
            o2 = o + 3 * groups

            def dp(block: torch.Tensor) -> torch.Tensor:  # max over classes of the group gap in P(pred = k | g)
                rate = block.view(-1, groups, c) / gn[:, :, None]
                return (rate.amax(1) - rate.amin(1)).amax(1)

            dpb = dp(s[:, o2:o2 + groups * c])
            dpv = dp(s[:, o2 + groups * c:o2 + 2 * groups * c])
            both = {"worst_group_accuracy": gv - gb, "demographic_parity_difference": dpv - dpb}
            out.append(torch.stack([both[k] for k in names if k in both], dim=1))
        return torch.cat(out, dim=1)

    return statistic, names


def paired_deltas(probs_base: torch.Tensor, probs_var: torch.Tensor, labels: torch.Tensor,
                  group: torch.Tensor | None = None, n_resamples: int = 2000, seed: int = 0,
                  level: float = 0.95, device: torch.device | None = None,
                  metrics: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Variant minus baseline for the core metrics on the same items, each with a paired
    percentile bootstrap interval; accuracy also gets the exact McNemar p-value.
    ``metrics``: compute and bootstrap only these statistics (from the same sums of the same
    resamples, so their values and intervals equal those of the full computation exactly)."""
    cols, layout = pair_columns(probs_base, probs_var, labels, group)
    stat, names = pair_statistic(layout, metrics)
    point, lo, hi = paired_bootstrap(cols, stat, n_resamples, seed, level, device)
    out = {name: {"value": float(point[i]), "ci_low": None if lo is None else float(lo[i]),
                  "ci_high": None if hi is None else float(hi[i])} for i, name in enumerate(names)}
    labels = labels.long()
    mc = mcnemar_exact(probs_base.argmax(1) == labels, probs_var.argmax(1) == labels)
    if "accuracy" in out:
        out["accuracy"]["p_value"] = mc["p_value"]
        out["accuracy"]["mcnemar_b"], out["accuracy"]["mcnemar_c"] = mc["b"], mc["c"]
    for v in out.values():
        v["significant"] = None if v["ci_low"] is None else not (v["ci_low"] <= 0.0 <= v["ci_high"])
    return out

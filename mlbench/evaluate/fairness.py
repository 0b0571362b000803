"""Group and class fairness, agreement between models, compression-identified exemplars.

Definitions (docs/metrics.md): differences, not ratios; one-vs-rest per class
and the maximum over classes for multiclass problems.
"""

from __future__ import annotations

import torch


def group_metrics(pred: torch.Tensor, labels: torch.Tensor, group: torch.Tensor,
                  num_classes: int) -> dict:
    """Per-group accuracy, worst-group accuracy, demographic-parity difference and
    equalized-odds difference.

    - demographic_parity_difference: max over classes k of
      max_g P(pred = k | g) - min_g P(pred = k | g).
    - equalized_odds_difference: max over classes k of the larger of the TPR gap and
      the FPR gap across groups (one-vs-rest for class k); a rate that a group cannot
      have (no positives or no negatives for k) is left out of that gap.
    """
    groups = torch.unique(group).tolist()
    if len(groups) < 2:
        return {"error": f"group attribute has a single group ({groups}); group metrics need two or more"}
    acc = {int(g): float((pred[group == g] == labels[group == g]).float().mean()) for g in groups}
    counts = {int(g): int((group == g).sum()) for g in groups}
    dp = eo = 0.0
    for k in range(num_classes):
        rates, tprs, fprs = [], [], []
        for g in groups:
            m = group == g
            pk, yk = pred[m] == k, labels[m] == k
            rates.append(float(pk.float().mean()))
            if yk.any():
                tprs.append(float(pk[yk].float().mean()))
            if (~yk).any():
                fprs.append(float(pk[~yk].float().mean()))
        dp = max(dp, max(rates) - min(rates))
        gaps = [max(r) - min(r) for r in (tprs, fprs) if len(r) >= 2]
        eo = max(eo, max(gaps, default=0.0))
    return {"per_group_accuracy": acc, "group_sizes": counts,
            "worst_group_accuracy": min(acc.values()),
            "demographic_parity_difference": dp, "equalized_odds_difference": eo}


def flips(pred_base: torch.Tensor, pred_var: torch.Tensor, labels: torch.Tensor,
          index: torch.Tensor) -> dict:
    """Disagreement rate and the test items that change correctness."""
    rb, rv = pred_base == labels, pred_var == labels
    return {"disagreement": float((pred_base != pred_var).float().mean()),
            "right_to_wrong": index[rb & ~rv].tolist(),
            "wrong_to_right": index[~rb & rv].tolist()}


def exemplars(preds: dict[str, torch.Tensor], base: str, labels: torch.Tensor, index: torch.Tensor,
              min_variants: int = 2, limit: int = 50) -> list[dict]:
    """Compression-identified exemplars (Hooker et al.): items the baseline gets right and
    at least ``min_variants`` variants get wrong, most variants first."""
    others = {k: v for k, v in preds.items() if k != base}
    if not others:
        return []
    right = preds[base] == labels
    wrong = torch.stack([v != labels for v in others.values()])  # (variants, items)
    count = (wrong & right[None]).sum(0)
    need = min(min_variants, len(others))
    pos = torch.nonzero(count >= need).squeeze(1)
    pos = pos[torch.argsort(count[pos], descending=True, stable=True)][:limit]
    names = list(others)
    return [{"index": int(index[i]), "position": int(i), "label": int(labels[i]),
             "n_variants_wrong": int(count[i]),
             "variants": [names[j] for j in range(len(names)) if wrong[j, i]]} for i in pos]

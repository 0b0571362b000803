"""Train/test shift: KS per feature (BH), MMD with a permutation test, a domain classifier."""

from __future__ import annotations

from typing import Any

import torch

from mlbench.datacheck.base import Check, CheckContext, CheckResult, Finding
from mlbench.errors import MlbenchError
from mlbench.evaluate.twosample import (
    domain_classifier,
    ks_features,
    mmd_test,
)
from mlbench.text import Doc


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

    @classmethod
    def report(cls, doc: Doc, name: str, sec: dict[str, Any]) -> None:
        k, m, dcl = sec["ks"], sec["mmd"], sec["domain_classifier"]
        doc.h3(f"Train/test shift ({name}, {sec['space']})")
        doc.items([f"KS per feature (BH): {len(k['features_shifted'])} shifted, smallest corrected p {k['p_value']:.3g}",
                   f"MMD² {m['statistic']:.4g}, permutation p {m['p_value']:.3g} ({m['permutations']} permutations)",
                   f"domain classifier AUC {dcl['auc']:.3f} [{dcl['ci_low']:.3f}, {dcl['ci_high']:.3f}]"])

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

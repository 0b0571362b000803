"""Does the augmentation buy the robustness the stress stage measures? (``augment.compare=true``)

The baseline's recipe is trained a second time without augmentation (same seed, same data, same
settings; cached like any baseline, so it is the very model a run without ``augment`` trains) and
joins the run as the variant ``no_augment``. Every later stage measures it like any variant, so
the effect of augmentation is the baseline minus ``no_augment`` on the same test items: the paired
deltas the run already computes (percentile bootstrap over items, McNemar for accuracy), signs
turned round, for accuracy, F1, NLL, Brier and ECE, every corruption and attack at every severity,
and per group (a paired bootstrap of the accuracy difference within each group).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from mlbench.compress.base import Artifact, Facts, Pass, PassContext
from mlbench.text import Doc, delta_text, fmt

PLAIN = "no_augment"
HEADLINE = ("accuracy", "f1_macro", "worst_class_recall", "nll", "brier", "ece")
LOWER_IS_BETTER = {"nll", "brier", "ece"}


@dataclass
class TrainedWithoutAugmentation(Pass):
    """The baseline's architecture trained by the same recipe without augmentation (the weights
    are trained or loaded before the variants stage; ``key``: their cache key)."""

    name: ClassVar[str] = "train_without_augmentation"
    key: str = ""

    def __post_init__(self) -> None:
        self.model: torch.nn.Module | None = None  # not a field: not part of the lineage id

    def apply(self, art: Artifact, ctx: PassContext) -> tuple[Artifact, dict[str, Any]]:
        from mlbench.models import count_params
        model = copy.deepcopy(self.model).eval()
        return Artifact(id="", format="torch", model=model, facts=Facts(*count_params(model))), \
            {"baseline_key": self.key}


def plain_spec(ctx: Any) -> Any:  # ctx: a pipeline RunContext
    """The ``no_augment`` variant: the baseline's recipe without augmentation, trained now (or
    read from the cache)."""
    from mlbench.components import VariantSpec
    from mlbench.progress import console
    from mlbench.train.augment import without
    from mlbench.train.baseline import train_baseline
    model, info, key = train_baseline(without(ctx.cfg), ctx.data, ctx.data_hash, ctx.model_factory, ctx.device,
                                      ctx.cfg.seed)
    step = TrainedWithoutAugmentation(key=key)
    step.model = model
    verb = "loaded from cache" if info["cache_hit"] else f"trained in {info['train_s']:.1f} s"
    console.print(f"[bold]augment.compare[/] the same recipe without augmentation {verb} (id {key})")
    return VariantSpec(PLAIN, "the baseline's recipe without augmentation (same seed)", [step])


def _flip(d: dict[str, Any]) -> dict[str, Any]:
    """baseline − no_augment from no_augment − baseline (the same resamples, negated)."""
    lo, hi = d.get("ci_low"), d.get("ci_high")
    return {"effect": 0.0 - d["value"], "ci_low": None if hi is None else 0.0 - hi,
            "ci_high": None if lo is None else 0.0 - lo,
            "significant": d.get("significant"), **({"p_value": d["p_value"]} if "p_value" in d else {})}


def effects(base: Any, plain: Any, group_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure: the augmented baseline's value, the plain model's, the effect
    (augmented − plain) with its paired interval. ``base``/``plain``: VariantRecords."""
    rows = []
    for m in HEADLINE:
        if m in plain.deltas and m in base.metrics:
            rows.append({"kind": "test", "figure": m, "augmented": base.metrics[m], "plain": plain.metrics.get(m),
                         "better": "lower" if m in LOWER_IS_BETTER else "higher", **_flip(plain.deltas[m])})
    for name, st in plain.stress.items():
        for sev, r in (st.get("severities") or {}).items():
            if "delta_accuracy" not in r:
                continue
            b = ((base.stress.get(name) or {}).get("severities") or {}).get(sev, {})
            rows.append({"kind": st.get("kind", "stress"), "figure": f"{name} @ {sev}", "augmented": b.get("accuracy"),
                         "plain": r.get("accuracy"), "better": "higher", **_flip(r["delta_accuracy"])})
    return rows + group_rows


def group_effects(probs_aug: torch.Tensor, probs_plain: torch.Tensor, labels: torch.Tensor, group: torch.Tensor,
                  n_resamples: int, seed: int, level: float) -> list[dict[str, Any]]:
    """Per group: accuracy of both models and the paired difference (augmented − plain) with a
    percentile bootstrap over that group's items."""
    from mlbench.evaluate.stats import paired_deltas
    rows = []
    for g in torch.unique(group).tolist():
        m = group == g
        d = paired_deltas(probs_plain[m], probs_aug[m], labels[m], n_resamples=n_resamples, seed=seed, level=level,
                          metrics=("accuracy",))["accuracy"]
        right = labels[m]
        rows.append({"kind": "group", "figure": f"group {g} accuracy (n={int(m.sum())})",
                     "augmented": float((probs_aug[m].argmax(1) == right).float().mean()),
                     "plain": float((probs_plain[m].argmax(1) == right).float().mean()), "better": "higher",
                     "effect": d["value"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                     "significant": d["significant"], "p_value": d.get("p_value")})
    return rows


def augmentation(ctx: Any) -> None:  # ctx: a pipeline RunContext
    """The stage: the effect table, once both models were measured and stressed."""
    from mlbench.components import BASELINE
    if not ctx.cfg.augment.get("compare") or PLAIN not in ctx.live or BASELINE not in ctx.live:
        return
    base, plain = ctx.records[BASELINE], ctx.records[PLAIN]
    groups = []
    if ctx.data.group is not None:
        bs = ctx.cfg.eval.bootstrap
        ea, ep = ctx.live[BASELINE].evaluation, ctx.live[PLAIN].evaluation
        groups = group_effects(ea.probs, ep.probs, ea.labels.long(), ctx.data.group["test"], bs.resamples,
                               ctx.cfg.seed, bs.level)
    rows = effects(base, plain, groups)
    ctx.run.augment = {"preset": str(ctx.cfg.augment.get("name")), "plain_variant": PLAIN,
                       "effect": "augmented baseline − the same recipe without augmentation, same seed and test "
                                 "items; paired percentile bootstrap intervals",
                       "rows": rows}
    path = ctx.run_dir / "plots" / "augment_effect.png"
    if rows and _plot(rows, path, ctx.run.augment["preset"]):
        ctx.run.plots.append(str(path.relative_to(ctx.run_dir)))
    print_effects(ctx.run.augment)


def _plot(rows: list[dict[str, Any]], path: Path, preset: str) -> bool:
    """A forest plot of the accuracy effects (test, corruptions, attacks, groups)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    acc = [r for r in rows if r["better"] == "higher" and r["ci_low"] is not None
           and r["figure"] not in ("f1_macro", "worst_class_recall")]
    if not acc:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(acc) + 1.2))
    ys = list(range(len(acc)))[::-1]
    for y, r in zip(ys, acc):
        colour = "tab:green" if r["ci_low"] > 0 else "tab:red" if r["ci_high"] < 0 else "tab:gray"
        ax.errorbar(r["effect"], y, xerr=[[r["effect"] - r["ci_low"]], [r["ci_high"] - r["effect"]]], fmt="o",
                    color=colour, capsize=2, ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, [r["figure"] for r in acc], fontsize=7)
    ax.set_xlabel("accuracy: augmented − without (95 % paired interval)")
    ax.set_title(f"What augment={preset} buys", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _verdict(r: dict[str, Any]) -> str:
    if r["ci_low"] is None or not r["significant"]:
        return "no clear effect"
    gain = r["effect"] > 0 if r["better"] == "higher" else r["effect"] < 0
    return "helps" if gain else "hurts"


def print_effects(section: dict[str, Any]) -> None:
    from rich.table import Table

    from mlbench.progress import console
    t = Table(title=f"augment={section['preset']}: augmented − without (paired, same seed)")
    for c in ["figure", "augmented", "without", "effect [95 % CI]", ""]:
        t.add_column(c, justify="left" if c in ("figure", "") else "right")
    for r in section["rows"]:
        t.add_row(r["figure"], fmt(r["augmented"], 4), fmt(r["plain"], 4), _interval(r), _verdict(r))
    console.print(t)


def _interval(r: dict[str, Any]) -> str:
    return delta_text({**r, "value": r["effect"]})


def report_section(doc: Doc, summary: dict[str, Any]) -> None:
    """The effect of the augmentation, one row per figure, and its forest plot."""
    a = summary.get("augment")
    if not a:
        return
    doc.h2(f"What the augmentation buys (augment={a['preset']})")
    doc.p(f"Effect = {a['effect']}. The model without augmentation is the variant `{a['plain_variant']}`.")
    doc.table(["figure", "kind", "augmented", "without", "effect [95 % CI]", "verdict"],
              [[r["figure"], r["kind"], fmt(r["augmented"], 4), fmt(r["plain"], 4), _interval(r), _verdict(r)]
               for r in a["rows"]])
    if "plots/augment_effect.png" in summary.get("plots", []):
        doc.image("plots/augment_effect.png", "accuracy effect of the augmentation with paired intervals")


# --------------------------------------------------------------------------- mlbench compare

def augment_rows(runs: list[tuple[Any, dict]], labels: dict) -> list[dict[str, Any]]:
    """``mlbench compare``: one row per figure of every run that compared its augmentation."""
    return [{"run": labels[d], "data": s["data"]["name"], "preset": s["augment"]["preset"],
             **{k: r.get(k) for k in ("kind", "figure", "augmented", "plain", "effect", "ci_low", "ci_high")}}
            for d, s in runs if s.get("augment") for r in s["augment"]["rows"]]


def print_augment_rows(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from mlbench.progress import console
    t = Table(title="mlbench compare · what the augmentation buys (augmented − without)")
    for c in ["run", "preset", "figure", "augmented", "without", "effect [95 % CI]"]:
        t.add_column(c, justify="left" if c in ("run", "preset", "figure") else "right", overflow="fold")
    for r in rows:
        t.add_row(r["run"], r["preset"], r["figure"], fmt(r["augmented"], 4), fmt(r["plain"], 4), _interval(r))
    console.print(t)


def write_augment_rows(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """augment.csv of ``mlbench compare``."""
    from mlbench.results import write_rows
    return write_rows(rows, out, "augment")

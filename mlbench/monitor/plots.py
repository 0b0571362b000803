"""Monitoring plots: power against window size, and the label-free estimates against truth."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402


def power_plot(rows: list[dict], path: Path) -> Path | None:
    """One panel per scenario: detection rate against window size per detector, with intervals."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    if not scenarios:
        return None
    cols = min(4, len(scenarios))
    nrows = math.ceil(len(scenarios) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(scenarios):]:
        ax.axis("off")
    windows = sorted({r["window"] for r in rows})
    for ax, sc in zip(axes.flat, scenarios):
        for det in dict.fromkeys(r["detector"] for r in rows if r["scenario"] == sc):
            rs = sorted((r for r in rows if r["scenario"] == sc and r["detector"] == det), key=lambda r: r["window"])
            w = [r["window"] for r in rs]
            ax.plot(w, [r["rate"] for r in rs], marker="o", ms=3, label=det)
            ax.fill_between(w, [r["ci_low"] for r in rs], [r["ci_high"] for r in rs], alpha=0.12)
        ax.set_xscale("log")
        ax.set_xticks(windows, [str(w) for w in windows], fontsize=7)  # the window sizes run, as plain text
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(("false-positive rate · " if sc == "none" else "power · ") + sc, fontsize=8)
        ax.set_xlabel("window size", fontsize=8)
    axes.flat[0].legend(fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def estimate_plot(estimates: dict, path: Path) -> Path:
    """ATC and BBSE accuracy estimates against the true window accuracy (means per scenario × window)."""
    fig, ax = plt.subplots(figsize=(4.4, 4))
    for key, label in (("atc_estimate_mean", "ATC"), ("bbse_accuracy_estimate_mean", "BBSE-corrected")):
        xs = [e["true_accuracy_mean"] for sc in estimates.values() for e in sc.values()]
        ys = [e[key] for sc in estimates.values() for e in sc.values()]
        ax.scatter(xs, ys, s=12, label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("true window accuracy (mean)")
    ax.set_ylabel("estimate (mean)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

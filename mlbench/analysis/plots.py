"""Plots a person would rather look at than read. PNGs under ``plots/``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mlbench.evaluate.metrics import N_BINS, confidence_bins  # noqa: E402


def _reliability(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS):
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    bins = confidence_bins(conf, n_bins)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, torch.ones_like(conf))
    acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct) / count.clamp_min(1)
    mean_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf) / count.clamp_min(1)
    return count, acc, mean_conf


def reliability_diagram(curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path,
                        title: str) -> Path:
    """Accuracy against mean confidence per equal-width bin (15), one line per model;
    bar shading shows how many examples each bin holds (first model)."""
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 5.6), gridspec_kw={"height_ratios": [3, 1]},
                                  sharex=True)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    for i, (name, (probs, labels)) in enumerate(curves.items()):
        count, acc, conf = _reliability(probs, labels)
        keep = count > 0
        ax.plot(conf[keep], acc[keep], marker="o", ms=4, label=name)
        if i == 0:
            centers = (torch.arange(N_BINS) + 0.5) / N_BINS
            axh.bar(centers, count / count.sum(), width=1 / N_BINS, color="C0", alpha=0.5, edgecolor="white")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    axh.set_xlabel("confidence (top-label)")
    axh.set_ylabel("share")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_plot(curves: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Samples per second against batch size, one line per variant (log-log): where
    compression starts to pay."""
    curves = {n: c for n, c in curves.items() if len(c) >= 2}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, c in curves.items():
        bs = sorted(c, key=int)
        ax.plot([int(b) for b in bs], [c[b] for b in bs], marker="o", ms=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples / s")
    ax.set_title("throughput against batch size", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

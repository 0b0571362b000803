"""Plots a person would rather look at than read. PNGs under ``plots/``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from mlbench.evaluate.metrics import N_BINS, confidence_bins  # noqa: E402
from mlbench.plotting import plain_log_ticks  # noqa: E402


def _reliability(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS):
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    bins = confidence_bins(conf, n_bins)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, torch.ones_like(conf))
    acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct) / count.clamp_min(1)
    mean_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf) / count.clamp_min(1)
    return count, acc, mean_conf


FEW = 10  # a bin with fewer items than this is drawn hollow: its accuracy is too noisy to read


def reliability_diagram(curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path,
                        title: str) -> Path:
    """Accuracy against mean confidence per equal-width bin (15), one line per model; bins
    holding fewer than ``FEW`` items are hollow markers. Below, the number of items in each
    bin (first model), written on the bars."""
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 5.8), gridspec_kw={"height_ratios": [3, 1.2]},
                                  sharex=True)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    for i, (name, (probs, labels)) in enumerate(curves.items()):
        count, acc, conf = _reliability(probs, labels)
        keep = count > 0
        line, = ax.plot(conf[keep], acc[keep], lw=1.2, label=name)
        many, few = keep & (count >= FEW), keep & (count < FEW)
        ax.plot(conf[many], acc[many], ls="none", marker="o", ms=4, color=line.get_color())
        ax.plot(conf[few], acc[few], ls="none", marker="o", ms=4, mfc="white", color=line.get_color())
        if i == 0:
            centers = (torch.arange(N_BINS) + 0.5) / N_BINS
            bars = axh.bar(centers, count, width=1 / N_BINS, color="C0", alpha=0.5, edgecolor="white")
            for b, c in zip(bars, count.tolist()):
                if c > 0:
                    axh.annotate(f"{int(c)}", (b.get_x() + b.get_width() / 2, c), ha="center", va="bottom",
                                 fontsize=6)
            axh.set_yscale("symlog", linthresh=10)
            axh.set_ylim(0, max(float(count.max()) * 3, 20))
            axh.yaxis.set_major_formatter(ScalarFormatter())  # 1, 10, 100: plain text, no mathtext
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9, wrap=True)
    ax.plot([], [], ls="none", marker="o", mfc="white", color="grey", label=f"bin with < {FEW} items")
    ax.legend(fontsize=7, loc="upper left")
    axh.set_xlabel("confidence (top-label)")
    axh.set_ylabel("items")
    # a fixed layout that leaves room for the (wrapped) title and labels: a layout pass, or a
    # tight bounding box at save time, each cost about a third of this plot (one per variant)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.93, bottom=0.09, hspace=0.08)
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
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples / s")
    ax.set_title("throughput against batch size", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curve(history: list[dict[str, float]], path: Path, best_epoch: int | None = None) -> Path | None:
    """Train and validation loss per epoch, and validation accuracy on a second axis; the
    epoch whose weights were kept (lowest validation loss) is marked."""
    if len(history) < 2:
        return None
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(ep, [h["train_loss"] for h in history], label="train loss")
    ax.plot(ep, [h["val_loss"] for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    acc = ax.twinx()
    acc.plot(ep, [h["val_accuracy"] for h in history], color="C2", ls="--", label="validation accuracy")
    acc.set_ylabel("validation accuracy")
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"kept: epoch {best_epoch}")
    lines = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=7, loc="center right")
    ax.set_title("baseline training", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

"""Plot helpers shared by the stages and the reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:  # torch is not imported for plots that do not need it (mlbench compare)
    import torch


def plain_log_ticks(axis) -> None:
    """Label a log-scaled axis as plain numbers (0.2, 1, 64, 10000) with matplotlib's own choice
    of which ticks get a label: its default 10^k labels go through mathtext, which costs more
    than the rest of a small plot."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    base = axis.get_transform().base
    axis.set_major_formatter(Plain(base=base))
    axis.set_minor_formatter(Plain(base=base, labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a figure; the folder is made when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # titles wider than the axes are not clipped
    plt.close(fig)
    return path


def exemplar_grid(images: torch.Tensor, captions: list[str], path: Path, title: str) -> Path:
    """A grid of input images (C, H, W in [0, 1]) with captions."""
    n = len(images)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        img = img.float()
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1))
        ax.set_title(cap, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a title wider than a 2-image grid is not clipped
    plt.close(fig)
    return path

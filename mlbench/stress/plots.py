"""Stress plots: accuracy against severity, eps and fault rate; attribution maps."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import torch

from mlbench.plotting import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _grid(n: int):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def condition_lines(tables: dict[str, dict[str, dict]], value_key: str, xlabel: str, path: Path,
                    logx: bool = False) -> Path | None:
    """One panel per stressor: ``tables[stressor][variant]`` maps a condition to its row;
    the row's ``value_key`` against the condition, with the t-interval band where rows have one."""
    if not tables:
        return None
    fig, axes = _grid(len(tables))
    for ax, (name, per_variant) in zip(axes, tables.items()):
        rows: dict = {}
        for vname, rows in per_variant.items():
            if not rows:
                continue
            xs = sorted(rows, key=float)
            ax.plot([float(x) for x in xs], [rows[x][value_key] for x in xs], marker="o", ms=3, label=vname)
            if all("ci_low" in rows[x] for x in xs):
                ax.fill_between([float(x) for x in xs], [rows[x]["ci_low"] for x in xs],
                                [rows[x]["ci_high"] for x in xs], alpha=0.15)
        if logx:
            ax.set_xscale("symlog", linthresh=min([float(r) for r in rows if float(r) > 0] or [1e-9]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def attribution_maps(name: str, method: str, per_variant: dict[str, torch.Tensor], x: torch.Tensor,
                     shape: tuple[int, ...], plots_dir: Path) -> Path:
    """Inputs in the first row, each variant's |attribution| (summed over channels) below."""
    rows, cols = len(per_variant) + 1, min(6, len(next(iter(per_variant.values()))))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows), squeeze=False)
    for j in range(cols):
        img = x[j]
        axes[0][j].imshow(img[0] if shape[0] == 1 else img.permute(1, 2, 0), cmap="gray")
        axes[0][j].set_title(f"input #{j}", fontsize=7)
        for i, (vname, a) in enumerate(per_variant.items(), start=1):
            axes[i][j].imshow(a[j].view(shape).sum(0), cmap="magma")
            if j == 0:
                axes[i][j].set_ylabel(vname, fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{method} attributions (|attribution| summed over channels)", fontsize=8)
    return save_figure(fig, plots_dir / f"attribution_maps_{name}_{method}.png")

"""Data-check plots: PCA projection, class-mean images, the sufficiency curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlbench.datacheck.base import power_law  # noqa: E402
from mlbench.plotting import save_figure  # noqa: E402


def pca_scatter(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], path: Path) -> Path:
    """First two principal components (fitted on train, standardized): coloured by class, and
    by split."""
    tr = features["train"]
    mu, sd = tr.mean(0), tr.std(0)
    sd[sd == 0] = 1
    z = {s: (f - mu) / sd for s, f in features.items()}
    _, _, vt = np.linalg.svd(z["train"] - z["train"].mean(0), full_matrices=False)
    proj = {s: v @ vt[:2].T for s, v in z.items()}
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    allp = np.concatenate(list(proj.values()))
    ally = np.concatenate([labels[s] for s in proj])
    sc = a.scatter(allp[:, 0], allp[:, 1], c=ally, cmap="tab10", s=5, alpha=0.7)
    a.set_title("PCA, coloured by class", fontsize=9)
    fig.colorbar(sc, ax=a, fraction=0.04)
    for s, p in proj.items():
        b.scatter(p[:, 0], p[:, 1], s=5, alpha=0.5, label=s)
    b.legend(fontsize=7)
    b.set_title("PCA, coloured by split", fontsize=9)
    return save_figure(fig, path)


def class_means(x: torch.Tensor, y: torch.Tensor, names: list[str], path: Path) -> Path:
    classes = len(names)
    cols = min(10, classes)
    rows = (classes + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, ax in zip(range(classes), axes.flat):
        sel = x[y == k]
        if len(sel) == 0:
            continue
        m = sel.float().mean(0)
        ax.imshow(m[0] if m.shape[0] == 1 else m.permute(1, 2, 0).clamp(0, 1), cmap="gray")
        ax.set_title(str(names[k])[:12], fontsize=7)
    fig.suptitle("class-mean images (train)", fontsize=9)
    return save_figure(fig, path)


def sufficiency_plot(n: np.ndarray, err: np.ndarray, fit, band, target: float | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(n, err, "o", label="proxy test error")
    if band is not None:
        grid, lo, hi = band
        ax.fill_between(grid, lo, hi, alpha=0.2, label="95% bootstrap band")
    if fit is not None:
        grid = np.geomspace(n.min(), n.max() * 4, 100)
        ax.plot(grid, power_law(grid, *fit), label=f"a·n^-b + c (c = {fit[2]:.3f})")
    if target is not None:
        ax.axhline(1 - target, ls=":", color="grey", label=f"allowed error {1 - target:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("train items")
    ax.set_ylabel("test error")
    ax.legend(fontsize=7)
    return save_figure(fig, path)

"""Pareto front over configurable axes (default: accuracy up, latency and size down)."""

from __future__ import annotations

import warnings
from typing import Any


def pareto_front(points: dict[str, dict[str, Any]], axes: list[tuple[str, str]]) -> list[str]:
    """Names of the points no other point dominates. ``axes``: (metric, "max" | "min").
    A point dominates another if it is at least as good on every axis and better on one.
    Points missing an axis are left out."""
    def vec(p):
        return [p[m] if mode == "max" else -p[m] for m, mode in axes]

    cands = {n: tuple(vec(p)) for n, p in points.items() if all(p.get(m) is not None for m, _ in axes)}
    unique = set(cands.values())  # tied points share one verdict: quadratic in distinct points only
    kept = {a for a in unique
            if not any(all(x >= y for x, y in zip(b, a)) and b != a for b in unique)}
    return [n for n, a in cands.items() if a in kept]


def pareto_plot(points: dict[str, dict[str, Any]], axes: list[tuple[str, str]], front: list[str], path) -> bool:
    """Scatter of the first two axes; marker area follows the third; the front is joined.
    Returns False (and draws nothing) when no point has both plotted axes."""
    import matplotlib  # on use: only a run that draws the plot pays for matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    (ym, ymode), (xm, xmode) = axes[0], axes[1]
    zm = axes[2][0] if len(axes) > 2 else None
    names = [n for n, p in points.items() if p.get(xm) is not None and p.get(ym) is not None]
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.2))
    zs = [points[n].get(zm) or 0 for n in names] if zm else [1] * len(names)
    zmax = max(zs) or 1
    on = [n in front for n in names]
    ax.scatter([points[n][xm] for n in names], [points[n][ym] for n in names],
               s=[40 + 260 * (z / zmax) for z in zs], alpha=0.75,
               c=["C1" if o else "C0" for o in on], edgecolors="black", linewidths=[1.2 if o else 0.0 for o in on])
    for n, o in zip(names, on):  # label the front, or everything when there are few points
        if o or len(names) <= 30:
            ax.annotate(n, (points[n][xm], points[n][ym]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    fr = sorted((n for n in front if n in names), key=lambda n: points[n][xm])
    if len(fr) > 1:
        ax.plot([points[n][xm] for n in fr], [points[n][ym] for n in fr], ls="--", color="C1", lw=1)
    ax.set_xlabel(f"{xm} ({'lower' if xmode == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{ym} ({'lower' if ymode == 'min' else 'higher'} is better)")
    ax.set_title("Pareto front (orange, outlined)" + (f"; marker area ~ {zm}" if zm else ""), fontsize=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long labels can defeat tight_layout; the plot is still right
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

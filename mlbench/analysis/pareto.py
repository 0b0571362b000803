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


CI_KEYS = {"latency_p50_ms": ("latency_p50_ci_low_ms", "latency_p50_ci_high_ms")}


def _spread_labels(ys_px: list[float], height: float) -> list[float]:
    """Label positions (display pixels, in the order given) moved apart vertically so that no
    two are closer than ``height``, each as near its point as that allows."""
    order = sorted(range(len(ys_px)), key=lambda i: ys_px[i])
    placed = [0.0] * len(ys_px)
    last = -float("inf")
    for i in order:
        placed[i] = max(ys_px[i], last + height)
        last = placed[i]
    shift = (sum(placed) - sum(ys_px)) / max(len(ys_px), 1)  # re-centre the column of labels
    return [p - shift for p in placed]


MAX_LABELS = 30  # more points than this: only the front (and the passing variants) are labelled


def pareto_plot(points: dict[str, dict[str, Any]], axes: list[tuple[str, str]], front: list[str], path,
                passed: set[str] | None = None) -> bool:
    """Scatter of the first two axes (x on a log scale when it spans more than 5x, with 95 %
    interval bars where the metric has them); marker area follows the third axis, with a legend
    of reference sizes beside the plot; the front is outlined (and joined when there are only
    two axes); ``passed`` variants get a ✓.
    Labels are moved apart so they never overlap; with more than ``MAX_LABELS`` points only the
    front and the passing variants are labelled, points on the same spot share a label, and at
    most ``MAX_LABELS`` labels are drawn (leftmost first). Returns False (and draws nothing) when no
    point has both plotted axes."""
    import matplotlib  # on use: only a run that draws the plot pays for matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlbench.plotting import plain_log_ticks
    (ym, ymode), (xm, xmode) = axes[0], axes[1]
    zm = axes[2][0] if len(axes) > 2 else None
    names = [n for n, p in points.items() if p.get(xm) is not None and p.get(ym) is not None]
    if not names:
        return False
    xs = [float(points[n][xm]) for n in names]
    ys = [float(points[n][ym]) for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    zs = [float(points[n].get(zm) or 0) for n in names] if zm else [1.0] * len(names)
    zmax = max(zs) or 1.0

    def area(z: float) -> float:
        return 40 + 360 * (z / zmax)

    on = [n in front for n in names]
    lo_key, hi_key = CI_KEYS.get(xm, (None, None))
    if lo_key and all(points[n].get(lo_key) is not None for n in names):
        err = [[x - float(points[n][lo_key]) for n, x in zip(names, xs)],
               [float(points[n][hi_key]) - x for n, x in zip(names, xs)]]
        ax.errorbar(xs, ys, xerr=err, fmt="none", ecolor="grey", elinewidth=1, capsize=3, zorder=1)
    ax.scatter(xs, ys, s=[area(z) for z in zs], alpha=0.75, zorder=2,
               c=["C1" if o else "C0" for o in on], edgecolors="black", linewidths=[1.4 if o else 0.0 for o in on])
    fr = sorted((n for n in front if n in names), key=lambda n: points[n][xm])
    if len(fr) > 1 and not zm:  # with a third axis the front is not a curve in this plane
        ax.plot([points[n][xm] for n in fr], [points[n][ym] for n in fr], ls="--", color="C1", lw=1, zorder=1)
    if min(xs) > 0 and max(xs) / min(xs) > 5:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.margins(x=0.15, y=0.2)
    ax.set_xlabel(f"{xm} ({'lower' if xmode == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{ym} ({'lower' if ymode == 'min' else 'higher'} is better)")
    ax.set_title("Pareto front: orange, outlined" + (" · ✓ meets every requirement" if passed else ""), fontsize=9)
    if zm:  # reference marker sizes for the third axis
        refs = sorted({zmax, zmax / 4})
        handles = [ax.scatter([], [], s=area(z), color="grey", alpha=0.4) for z in refs]
        unit = (lambda z: f"{z / 1024:.0f} KB") if zm == "size_bytes" else (lambda z: f"{z:.3g}")
        ax.legend(handles, [f"{zm} {unit(z)}" for z in refs], fontsize=7, loc="upper left", frameon=False,
                  labelspacing=1.6, borderpad=1.0, bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.canvas.draw()  # label placement works in display pixels of the final layout
    to_px, to_data = ax.transData, ax.transData.inverted()
    # every point is labelled when there are few; else the front and the variants that pass (a
    # column of hundreds of labels would run far off the figure and take most of a minute to draw).
    # Points drawn on the same pixel share one label ("+k here": the same variant in many runs).
    shown = [i for i, n in enumerate(names) if len(names) <= MAX_LABELS or n in front or (passed and n in passed)]
    spots: dict[tuple[int, int], list[int]] = {}
    for i in shown:
        x0, y0 = to_px.transform((xs[i], ys[i]))
        spots.setdefault((round(x0), round(y0)), []).append(i)
    groups = sorted(spots.values(), key=lambda g: xs[g[0]])[:MAX_LABELS]
    px = [to_px.transform((xs[g[0]], ys[g[0]])) for g in groups]
    label_y = _spread_labels([p[1] for p in px], height=11.0)
    for g, (x0, y0), yl in zip(groups, px, label_y):
        n = names[g[0]]
        text = n + (" ✓" if passed and n in passed else "") + (f" (+{len(g) - 1} here)" if len(g) > 1 else "")
        target = to_data.transform((x0 + 12, yl))
        ax.annotate(text, (to_data.transform((x0, y0))), xytext=target, textcoords="data", fontsize=7,
                    va="center", arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5}
                    if abs(yl - y0) > 3 else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.savefig(path, dpi=110, bbox_inches="tight")  # nothing clipped, whatever the label lengths
    plt.close(fig)
    return True

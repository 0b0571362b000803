"""Stress plots: accuracy against severity, eps and fault rate; attribution maps."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _grid(n: int):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _save(fig, ctx, name: str) -> str:
    path = ctx.run_dir / "plots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(ctx.run_dir))


def _lines(ctx, kind: str, key: str, xlabel: str, fname: str, value=lambda r: r["accuracy"], logx=False):
    names = [n for n, st in ctx.stressors if st.kind == kind]
    if not names:
        return []
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        for vname, res in ctx.ok.items():
            sec = res.stress.get(name, {})
            rows = sec.get(key, {})
            if not rows:
                continue
            xs = sorted(rows, key=float)
            ys = [value(rows[x]) for x in xs]
            ax.plot([float(x) for x in xs], ys, marker="o", ms=3, label=vname)
            if kind == "fault":
                ax.fill_between([float(x) for x in xs], [rows[x]["ci_low"] for x in xs],
                                [rows[x]["ci_high"] for x in xs], alpha=0.15)
        if logx:
            ax.set_xscale("symlog", linthresh=min([float(r) for r in rows if float(r) > 0] or [1e-9]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7)
    return [_save(fig, ctx, fname)]


def _attribution_maps(ctx) -> list[str]:
    out = []
    if ctx.data.meta.modality != "image":
        return out
    for name, maps in ctx.extra.get("_attribution_maps", {}).items():
        for method, per_variant in maps.items():
            rows, cols = len(per_variant) + 1, min(6, len(next(iter(per_variant.values()))))
            fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows), squeeze=False)
            shape = ctx.data.meta.input_shape
            x = ctx.data.x["test"][:cols]
            for j in range(cols):
                img = x[j]
                axes[0][j].imshow(img[0] if shape[0] == 1 else img.permute(1, 2, 0), cmap="gray")
                axes[0][j].set_title(f"input #{j}", fontsize=7)
                for i, (vname, a) in enumerate(per_variant.items(), start=1):
                    m = a[j].view(shape).sum(0)
                    axes[i][j].imshow(m, cmap="magma")
                    if j == 0:
                        axes[i][j].set_ylabel(vname, fontsize=6)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            fig.suptitle(f"{method} attributions (|attribution| summed over channels)", fontsize=8)
            out.append(_save(fig, ctx, f"attribution_maps_{name}_{method}.png"))
    return out


def stress_plots(ctx) -> list[str]:
    return (_lines(ctx, "corruption", "severities", "severity", "accuracy_vs_severity.png")
            + _lines(ctx, "adversarial", "eps", "eps", "robust_accuracy_vs_eps.png")
            + _lines(ctx, "fault", "rates", "rate (bit-error rate or relative noise std)",
                     "accuracy_vs_bit_error_rate.png", value=lambda r: r["mean"], logx=True)
            + _attribution_maps(ctx))

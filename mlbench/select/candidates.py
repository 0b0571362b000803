"""The candidates of ``mlbench select``: which models, trained how, and what is measured of each."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mlbench.data import DataBundle
from mlbench.errors import MlbenchError


@dataclass
class Candidate:
    """One candidate model: its name, model config and what was measured of it."""

    name: str
    model: dict[str, Any]  # a model config (``_target_`` ...), as model= would give
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # the trained weights' cache key
    probs: torch.Tensor | None = None  # test-split probabilities (for paired intervals)
    train_s: float = 0.0


def _grid(sweep: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(sweep)
    for k, v in sweep.items():
        if not isinstance(v, (list, tuple)) or not v:
            raise MlbenchError(f"select.sweep.{k} must be a non-empty list of values, got {v!r}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def candidates_of(cfg: DictConfig, modality: str | None) -> list[Candidate] | None:
    """The candidate list: ``select.sweep`` (the run's model over a grid of its options), else
    ``select.candidates`` (``auto``: ``select.families[<modality>]``; or ``{name: model config}``,
    a config without ``_target_`` being options over the run's model). One error line for an
    empty or malformed list. ``modality`` None (before the data is read): None for ``auto``,
    so that everything else is checked before any work."""
    sel = cfg.select
    base = OmegaConf.to_container(cfg.model, resolve=True)
    sweep = OmegaConf.to_container(sel.sweep, resolve=True) if sel.get("sweep") else {}
    if sweep:
        out = []
        for combo in _grid(sweep):
            unknown = [k for k in combo if k not in base]
            if unknown:
                raise MlbenchError(f"select.sweep: {', '.join(unknown)} is not an option of the run's model "
                                   f"({base.get('_target_')}: {', '.join(k for k in base if not k.startswith('_'))})")
            out.append(Candidate(" ".join(f"{k}={v}" for k, v in combo.items()), {**base, **combo}))
        return out
    chosen = sel.candidates
    if isinstance(chosen, str):
        if chosen != "auto":
            raise MlbenchError(f"select.candidates must be auto or a mapping name -> model config, got {chosen!r}")
        if modality is None:
            return None
        fam = (sel.get("families") or {}).get(modality)
        if not fam:
            raise MlbenchError(f"select.candidates=auto: select.families has no family for {modality} data")
        chosen = fam
    cands = OmegaConf.to_container(chosen, resolve=True) if chosen is not None else {}
    if not isinstance(cands, dict) or not cands:
        raise MlbenchError("select.candidates is empty: name at least one candidate model "
                           "(select.candidates={name: {_target_: ...}}, or select.sweep={width: [16, 32]})")
    out = []
    for name, node in cands.items():
        if not isinstance(node, dict):
            raise MlbenchError(f"select.candidates.{name} must be a model config mapping, got {node!r}")
        out.append(Candidate(str(name), node if "_target_" in node else {**base, **node}))
    return out


def with_model(cfg: DictConfig, model: dict[str, Any]) -> DictConfig:
    """``cfg`` with ``model`` replaced (what keys the candidate's weights in the baseline cache)."""
    c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(c, False)
    c.model = model
    return c


def train_subset(data: DataBundle, keep: np.ndarray) -> DataBundle:
    """``data`` with its train split cut to the rows ``keep`` (the others as they were)."""
    k = torch.as_tensor(keep)
    group = None if data.group is None else {**data.group, "train": data.group["train"][k]}
    return dataclasses.replace(data, x={**data.x, "train": data.x["train"][k]}, y={**data.y, "train": data.y["train"][k]},
                               index={**data.index, "train": data.index["train"][k]}, group=group, extras={})


def nested_sizes(n: int, fractions: list[float], classes: int) -> list[int]:
    """Train sizes of the learning curve: each fraction of ``n`` (at least two items per class),
    ascending, without repeats."""
    return sorted({min(n, max(2 * classes, int(round(f * n)))) for f in fractions})


def flops_per_item(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one item (``torch.utils.flop_counter``: matrix products and
    convolutions, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def measure_candidates(ctx: Any, cands: list[Candidate], fractions: list[float], resamples: int) -> None:
    """Train every candidate on the full train split and on the learning curve's nested fractions
    (``ctx``: a pipeline RunContext after set-up and data); fill in each one's metrics and curve."""
    from safetensors.torch import save as save_safetensors

    from mlbench.backends import runner_for
    from mlbench.components import instantiate_checked
    from mlbench.compress import Artifact
    from mlbench.datacheck.complexity import learning_curve
    from mlbench.evaluate.loop import evaluate
    from mlbench.models import count_params
    from mlbench.progress import console
    from mlbench.train.baseline import train_baseline
    d, seed = ctx.data, ctx.cfg.seed
    n = len(d.y["train"])
    order = np.random.default_rng(seed).permutation(n)  # one permutation: nested subsets, same for all
    sizes = nested_sizes(n, fractions, d.meta.num_classes)
    subsets = {m: (train_subset(d, np.sort(order[:m])) if m < n else d) for m in sizes}
    hashes = {m: (b.content_hash() if m < n else ctx.data_hash) for m, b in subsets.items()}
    bs = ctx.cfg.eval.batch_size
    for c in cands:
        factory = instantiate_checked(OmegaConf.create(c.model), f"select.candidates.{c.name}", recursive=False)
        ccfg = with_model(ctx.cfg, c.model)
        wrong = []
        for m in sizes:
            model, info, key = train_baseline(ccfg, subsets[m], hashes[m], factory, ctx.device, seed)
            runner = runner_for(Artifact(id=key, format="torch", model=model), ctx.cfg.backend, ctx.device)
            ev = evaluate(runner, d.x["test"], d.y["test"], batch_size=bs)
            wrong.append((ev.probs.argmax(1) != ev.labels).numpy())
            if m == n:
                c.key, c.probs, c.train_s = key, ev.probs, float(info.get("train_s") or 0.0)
                c.metrics = dict(ev.metrics)
                tr = evaluate(runner, d.x["train"], d.y["train"], batch_size=bs, metrics=False)
                va = evaluate(runner, d.x["val"], d.y["val"], batch_size=bs, metrics=False)
                acc = {s: float((e.probs.argmax(1) == e.labels).float().mean()) for s, e in (("train", tr), ("val", va))}
                params, _ = count_params(model)
                c.metrics.update(train_accuracy=acc["train"], val_accuracy=acc["val"],
                                 train_val_gap=acc["train"] - acc["val"], params=params,
                                 size_bytes=len(save_safetensors(model.state_dict())),
                                 flops=flops_per_item(model, tuple(d.meta.input_shape)), best_epoch=info.get("best_epoch"),
                                 cache_hit=bool(info.get("cache_hit")))
        curve = learning_curve(sizes, wrong, resamples, np.random.default_rng(seed))
        fit = curve["fit"]
        c.curve = {"sizes": sizes, "error": curve["error"].tolist(), "fit": None if fit is None else dict(zip("abc", fit)),
                   "band": None if curve["band"] is None else [a.tolist() for a in curve["band"]],
                   "asymptote_ci": _asymptote_ci(curve["boot"])}
        console.print(f"  [green]✓[/] {c.name}: accuracy {c.metrics['accuracy']:.4f}, params {c.metrics['params']:,}, "
                      f"FLOPs {c.metrics['flops']:,}, train-val gap {c.metrics['train_val_gap']:+.3f}")


def _asymptote_ci(boot: list[tuple[float, float, float]]) -> list[float] | None:
    """95 % interval of the fitted curve's floor c (the error more data would not remove)."""
    if len(boot) < 20:
        return None
    cs = np.array([p[2] for p in boot])
    return [float(np.quantile(cs, 0.025)), float(np.quantile(cs, 0.975))]

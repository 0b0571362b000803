"""A score-based black-box attack: the Square Attack (Andriushchenko et al., ECCV 2020), as the
Adversarial Robustness Toolbox implements it (``art.attacks.evasion.SquareAttack``).

It needs only the model's output probabilities, so it runs against every variant's own runner
— an ONNX-only model, int8 graphs — where the white-box attacks (FGSM, PGD) need gradients.
Each variant is attacked on its own (no transfer), within a budget of ``max_iter`` random
square updates per item (an update is kept when it lowers the margin loss). ART evaluates the
model up to three times per update (every item's prediction, then the margin at the current and
at the candidate input of the items still classified correctly), so the queries recorded — the
model evaluations per item actually made — run up to about 3 × ``max_iter``. ART's implementation reads image batches
(N, C, H, W), so it runs on images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mlbench.errors import MlbenchError
from mlbench.evaluate.loop import evaluate
from mlbench.stress.base import InputStressor, StressEnv, StressRow, condition_rows
from mlbench.text import Doc, delta_text


class SquareAttack(InputStressor):
    """``eps``: L-inf radii in input units (pixels in [0, 1]); ``max_iter``: random square
    updates per item (the query budget); ``p_init``: the first square's share of the image; ``restarts``."""

    kind = "adversarial"
    condition_key = "eps"
    modalities = ("image",)
    figure = ("robust_accuracy_vs_eps.png", "eps", False)

    def __init__(self, eps: Sequence[float] = (0.05, 0.1), max_iter: int = 100, p_init: float = 0.8,
                 restarts: int = 1, batch_size: int = 512, when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        if any(e < 0 for e in eps) or max_iter < 1 or not 0 < p_init <= 1 or restarts < 1 or batch_size < 1:
            raise MlbenchError("square needs eps >= 0, max_iter >= 1, 0 < p_init <= 1, restarts >= 1, batch_size >= 1")
        self.eps, self.max_iter, self.p_init = [float(e) for e in eps], max_iter, p_init
        self.restarts, self.batch_size = restarts, batch_size
        self.bounds = (0.0, 1.0)

    def work(self, n: int, differentiable: bool) -> tuple[int, int]:
        """Up to three model evaluations per random-search step and restart (ART's Square)."""
        return len(self.conditions()) * n * (1 + 3 * self.max_iter * self.restarts), 0

    def conditions(self) -> list[float]:
        return self.eps

    def fits(self, meta) -> str | None:
        why = super().fits(meta)
        if why is None and len(meta.input_shape) == 3:
            h, w = meta.input_shape[1:]
            tile = max(round(math.sqrt(self.p_init * h * w)), 1)
            if tile >= min(h, w):  # ART places the first square strictly inside the image
                return (f"p_init {self.p_init} gives a first square of {tile} pixels on {h}x{w} images; it must be "
                        f"smaller than the image (lower p_init)")
        return why

    def check(self, meta) -> bool:
        if meta.input_range is not None:
            self.bounds = meta.input_range
        return super().check(meta)

    def describe(self) -> dict[str, Any]:
        return {"method": "square", "norm": "Linf", "eps": self.eps, "max_iter": self.max_iter,
                "p_init": self.p_init, "restarts": self.restarts, "loss": "margin (ART's default)",
                "mode": "black-box, score-based: each variant attacked through its own outputs",
                "library": "adversarial-robustness-toolbox (art.attacks.evasion.SquareAttack)"}

    def craft(self, runner: Any, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int) -> tuple[torch.Tensor, float]:
        """Adversarial inputs for ``runner`` and the mean number of model queries per item."""
        from art.attacks.evasion import SquareAttack as ArtSquare
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        queried = [0]

        def predict(batch: np.ndarray) -> np.ndarray:
            queried[0] += len(batch)
            xb = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            return evaluate(runner, xb, torch.zeros(len(xb), dtype=torch.long), batch_size=self.batch_size,
                            metrics=False).logits.softmax(1).numpy()

        if eps == 0:
            return x.clone(), 0.0
        est = BlackBoxClassifierNeuralNetwork(predict, input_shape=tuple(x.shape[1:]), nb_classes=num_classes,
                                              clip_values=self.bounds, channels_first=True)
        attack = ArtSquare(est, norm=np.inf, eps=eps, max_iter=self.max_iter, p_init=self.p_init,
                           nb_restarts=self.restarts, batch_size=len(x), verbose=False)
        state = np.random.get_state()
        np.random.seed(self.seed)  # ART draws its squares from numpy's global generator
        try:
            adv = attack.generate(x.numpy().astype(np.float32), y=y.numpy())
        finally:
            np.random.set_state(state)
        return torch.from_numpy(adv).float(), queried[0] / max(len(x), 1)

    def rows(self, env: StressEnv) -> Iterator[StressRow]:
        x, y = env.x.cpu(), env.y.cpu()
        for c in self.conditions():
            base_probs = None
            for v in env.variants:
                adv, queries = self.craft(v.runner, x, y, c, env.meta.num_classes)
                row, probs = env.score(v.runner, adv, base_probs)
                if base_probs is None:
                    base_probs = probs
                row.update(mode="black-box (Square)", queries_per_item=queries)
                yield StressRow(self.name, v.name, self.label(c), row)

    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict]], variants: dict[str, dict]) -> None:
        """Per attack: accuracy per eps with its paired change and the queries spent per item."""
        def cell(k: str, r: dict) -> str:
            d = r.get("delta_accuracy")
            return (f"{k}: {r['accuracy']:.3f}" + (f" Δ {delta_text(d, 3)}" if d else "")
                    + f" ({r.get('queries_per_item', 0):.0f} queries/item)")

        for name, per_variant in sections.items():
            s0 = next(iter(per_variant.values()))
            doc.h3(f"{name} — Square attack (black-box, score-based) L-inf, budget {s0['max_iter']} queries per "
                   f"item, p_init {s0['p_init']}, {s0['restarts']} restart(s)")
            doc.table(["variant", "accuracy by eps"], condition_rows(per_variant, "eps", cell, numeric=True))

"""Hardware-fault models: random bit flips in stored weights, and Gaussian weight noise.

Bit flips act on the format the weights are stored in: float32 (or bf16/fp16) tensors of a
torch model, float32 or int8 initializers of an ONNX model. At a bit-error rate ``ber`` exactly
``round(ber * total_bits)`` distinct bits are flipped, chosen uniformly over all weight bits.
Each artifact format reaches its own stored weights (``Format.with_faults``,
``compress/formats.py``; the arithmetic is in ``compress/weights.py``); a format that cannot
is reported as not applicable for that variant.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlbench.compress.weights import (
    flip_bits_,
    flip_positions,
    onnx_with_faults,
    torch_with_faults,
)
from mlbench.errors import MlbenchError
from mlbench.stress.base import (
    ModelStressor,
    StressEnv,
    StressVariant,
    condition_rows,
    generator,
)
from mlbench.text import Doc

__all__ = ["WeightFaults", "flip_bits_", "flip_positions", "onnx_with_faults", "torch_with_faults"]

class WeightFaults(ModelStressor):
    """``mode``: ``bitflip`` (``rates`` are bit-error rates) or ``gaussian`` (``rates`` are the
    noise std relative to each tensor's std). Each rate is tried ``trials`` times with
    different seeds; accuracy is reported as mean with a 95 % t-interval over trials."""

    kind = "fault"
    condition_key = "rates"
    per_trial = ("bits_flipped",)
    figure = ("accuracy_vs_bit_error_rate.png", "rate (bit-error rate or relative noise std)", True)

    def __init__(self, mode: str = "bitflip", rates: Sequence[float] = (1e-7, 1e-6, 1e-5), trials: int = 3,
                 when_unfit: str = "error", seed: int = 0):
        super().__init__(when_unfit, seed)
        if mode not in ("bitflip", "gaussian"):
            raise MlbenchError(f"weight fault mode must be bitflip or gaussian, got {mode!r}")
        if any(r < 0 for r in rates) or (mode == "bitflip" and any(r > 1 for r in rates)):
            raise MlbenchError(f"fault rates must be in [0, 1] (bit-error rate) or >= 0, got {list(rates)}")
        if trials < 1:
            raise MlbenchError("weight faults need trials >= 1")
        self.mode, self.rates, self.trials = mode, [float(r) for r in rates], trials

    def conditions(self) -> list[float]:
        return self.rates

    @classmethod
    def report(cls, doc: Doc, sections: dict[str, dict[str, dict]], variants: dict[str, dict]) -> None:
        """Per fault model: mean accuracy per rate with its t-interval over trials."""
        for name, per_variant in sections.items():
            doc.h3(name)
            doc.table(["variant", "accuracy by rate"], condition_rows(
                per_variant, "rates", lambda k, r: f"{k}: {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                numeric=True))

    def describe(self) -> dict:
        return {"mode": self.mode}

    def perturb(self, variant: StressVariant, rate: float, trial: int, env: StressEnv):
        art = variant.artifact
        g = generator(self.seed, self.name, variant.name, rate, trial)
        faulty, n, fmt = art.kind.with_faults(art, self.mode, rate, g, env.workdir)
        return faulty, {"bits_flipped": n, "format": fmt}

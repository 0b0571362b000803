from __future__ import annotations

import pytest
import torch

from mlbench.calibrate import IsotonicCalibration, TemperatureScaling, VectorScaling
from mlbench.evaluate.metrics import ece, nll


def planted(n=4000, c=4, t_true=2.5, seed=0):
    """Labels drawn from softmax(z); the model reports z * t_true (overconfident by t_true)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    return z * t_true, y


def test_temperature_recovers_planted_temperature_and_keeps_accuracy():
    logits, y = planted()
    cal = TemperatureScaling().fit(logits, y)
    assert cal.temperature == pytest.approx(2.5, rel=0.08)
    probs = cal(logits)
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    assert nll(probs, y) < nll(logits.softmax(1), y)
    assert ece(probs, y) < ece(logits.softmax(1), y)
    assert cal.warning is None


def test_temperature_warns_when_calib_split_has_no_errors():
    logits = torch.eye(3)[[0, 1, 2] * 20] * 5
    y = torch.tensor([0, 1, 2] * 20)
    cal = TemperatureScaling().fit(logits, y)
    assert cal.warning and cal.temperature < 1


@pytest.mark.parametrize("cls", [VectorScaling, IsotonicCalibration])
def test_other_calibrators_lower_nll_and_give_valid_probs(cls):
    logits, y = planted(seed=1)
    probs = cls().fit(logits[:3000], y[:3000])(logits[3000:])
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert (probs >= 0).all()
    assert nll(probs, y[3000:]) < nll(logits[3000:].softmax(1), y[3000:])

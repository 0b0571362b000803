from __future__ import annotations

import pytest
import torch

from mlbench.errors import MlbenchError
from mlbench.models import CNN, MLP, ResNet, count_params


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("cls", [MLP, CNN])
def test_models_give_logits(cls, shape):
    m = cls(shape, 7).eval()
    assert m(torch.rand(3, *shape)).shape == (3, 7)


def test_resnet18_shape_and_size():
    m = ResNet((3, 32, 32), 10, depth=18, width=64).eval()
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert 11_000_000 < count_params(m)[0] < 11_300_000  # the CIFAR ResNet-18 has ~11.17M


def test_image_models_reject_tabular_input():
    with pytest.raises(MlbenchError):
        CNN((30,), 2)
    with pytest.raises(MlbenchError):
        ResNet((3, 32, 32), 10, depth=11)

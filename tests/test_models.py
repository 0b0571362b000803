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


def test_embedding_batches_are_sized_by_their_activations_and_give_the_same_embeddings(monkeypatch):
    """A cap of three items' leaf outputs: the embedding pass runs batches of three (seven
    forward calls for 20 items) and gives the embeddings of one whole batch (to float32
    rounding: tiny batches may take other kernels); the default keeps whole batches of this
    small model, bit for bit."""
    import mlbench.models as models
    from mlbench.models import activation_bytes, penultimate

    torch.manual_seed(0)
    model = CNN((1, 8, 8), 4).eval()
    x = torch.rand(20, 1, 8, 8)
    whole = penultimate(model, x, batch_size=len(x))
    per_item = activation_bytes(model, x[:1])
    assert torch.equal(penultimate(model, x), whole)  # 20 items fit the default cap: one batch
    monkeypatch.setattr(models, "EMBEDDING_BATCH_BYTES", 3 * per_item + 1)
    calls = []
    hook = model.register_forward_pre_hook(lambda m, inp: calls.append(len(inp[0])))
    capped = penultimate(model, x)
    hook.remove()
    assert calls[1:] == [3] * 6 + [2]  # the first call (one item) measures the activations
    torch.testing.assert_close(capped, whole, rtol=1e-6, atol=1e-7)

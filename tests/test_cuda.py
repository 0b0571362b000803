"""The same code on CUDA (skipped on machines without a GPU; run by scripts/gpu_check.sh)."""

from __future__ import annotations

import functools

import pytest
import torch

from mlbench.backends import TorchRunner
from mlbench.data import Digits
from mlbench.evaluate import evaluate, latency
from mlbench.evaluate.stats import paired_deltas
from mlbench.models import CNN
from mlbench.stress import Attack, GaussianNoise
from mlbench.train import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def trained():
    d = Digits().load()
    torch.manual_seed(0)
    m = CNN(d.meta.input_shape, 10)
    res = fit(m, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=20, batch_size=128,
              optimizer=functools.partial(torch.optim.AdamW, lr=3e-3), amp="bf16", channels_last=True, device=CUDA)
    return d, m, res


def test_training_on_cuda_with_bf16_reaches_accuracy(trained):
    d, m, res = trained
    assert next(m.parameters()).device.type == "cuda"
    acc = evaluate(TorchRunner(m, CUDA), d.x["test"], d.y["test"]).metrics["accuracy"]
    assert acc >= 0.95 and res.samples_per_s > 0


def test_passes_on_a_cuda_trained_model(trained, tmp_path):
    """A model a CUDA runner switched to channels_last must still prune, fine-tune and export."""
    from mlbench.compress import (
        Artifact,
        Finetune,
        OnnxExport,
        OrtQuantizeDynamic,
        PassContext,
        PruneUnstructured,
    )
    d, m, _ = trained
    TorchRunner(m, CUDA, channels_last=True)  # switches m's weights to channels_last in place
    ctx = PassContext(data=d, device=CUDA, workdir=tmp_path, fit_kwargs={
        "batch_size": 128, "optimizer": functools.partial(torch.optim.AdamW, lr=1e-3), "device": CUDA,
        "amp": "bf16", "channels_last": True})
    base = Artifact(id="b", format="torch", model=m)
    ft = Finetune(epochs=1)(PruneUnstructured(sparsity=0.5)(base, ctx), ctx)
    assert ft.records[-1]["info"]["nonzero_params"] < 0.6 * ft.records[-1]["info"]["params"]
    q = OrtQuantizeDynamic()(OnnxExport()(base, ctx), ctx)
    assert q.facts.parity.top1_agreement > 0.95 and q.facts.parity.reference == "parent"


def test_cuda_graph_runner_matches_eager(trained):
    d, m, _ = trained
    eager, graphed = TorchRunner(m, CUDA), TorchRunner(m, CUDA, cuda_graphs=True)
    for i in range(5):
        x = d.x["test"][i:i + 1]
        assert torch.allclose(eager.predict(x), graphed.predict(x), atol=1e-5)
    lat = latency(graphed, d.x["test"], min_calls=50, min_time_s=0.0)
    assert lat["latency_calls"] >= 50 and lat["latency_p50_ms"] > 0


def test_cpu_and_cuda_agree(trained):
    d, m, _ = trained
    a = evaluate(TorchRunner(m, CUDA), d.x["test"], d.y["test"]).probs
    b = evaluate(TorchRunner(m.cpu(), torch.device("cpu")), d.x["test"], d.y["test"]).probs
    assert (a - b).abs().max() < 5e-3  # cuDNN convolutions run in TF32 by default


def test_bootstrap_on_cuda_matches_cpu_point_and_width():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (3000,), generator=g)
    pb = (torch.randn(3000, 5, generator=g) + 2 * torch.nn.functional.one_hot(y, 5)).softmax(1)
    pv = (pb.log() + 0.3 * torch.randn(3000, 5, generator=g)).softmax(1)
    c = paired_deltas(pb, pv, y, n_resamples=4000, device=torch.device("cpu"))
    u = paired_deltas(pb, pv, y, n_resamples=4000, device=CUDA)
    for k in ("accuracy", "nll", "ece"):
        assert u[k]["value"] == pytest.approx(c[k]["value"], abs=1e-6)
        wc, wu = c[k]["ci_high"] - c[k]["ci_low"], u[k]["ci_high"] - u[k]["ci_low"]
        assert wu == pytest.approx(wc, rel=0.15)


def test_stress_on_cuda(trained):
    d, m, _ = trained
    x, y = d.x["test"].to(CUDA), d.y["test"].to(CUDA)
    c = GaussianNoise()
    c.check(d.meta)
    out = c.perturb(x, y, 5)
    assert out.device.type == "cuda" and out.min() >= 0 and out.max() <= 1
    atk = Attack("pgd", "Linf", [0.1], steps=10, random_start=True)
    atk.check(d.meta)
    adv = atk.craft(m.to(CUDA), x, y, 0.1)
    assert adv.device.type == "cuda" and (adv - x).abs().max() <= 0.1 + 1e-5
